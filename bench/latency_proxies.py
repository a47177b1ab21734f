"""What the benchmarks share: local backends, each behind a fault proxy that adds latency.

A benchmark measures what a workflow's concurrency saves when every call costs a
cloud API's round trip: each backend is started on a free loopback port, and the
fault proxy (``tests/backends/fault_proxy.py --latency-ms N``) in front of it adds
that round trip to every request. Every process is stopped by its PID when the
`ExitStack` closes.

Example:
    ```python
    with ExitStack() as stack:
        port = free_port()
        urls = start_behind_latency_proxies(stack, workdir, 100.0, {
            "aws": Backend(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                port, http_ready(f"http://127.0.0.1:{port}/moto-api/"),
            ),
        })
        urls["aws"].proxy  # what the blocks point at
    ```
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from deployments.local_servers import BackendProcess, free_port, http_ready

FAULT_PROXY = Path(__file__).resolve().parents[1] / "tests" / "backends" / "fault_proxy.py"


@dataclass(frozen=True)
class Backend:
    """How to start one backend: its command line, port, readiness check and environment."""

    argv: Sequence[str]
    port: int
    ready: Callable[[], bool]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProxiedUrls:
    """Where a started backend answers: directly (to seed and read back) and proxied."""

    backend: str
    proxy: str


def start_behind_latency_proxies(
    stack: ExitStack, workdir: Path, latency_ms: float, backends: Mapping[str, Backend]
) -> dict[str, ProxiedUrls]:
    """Starts each backend and a fault proxy adding `latency_ms` to each of its requests.

    Args:
        stack: Closes (stops) every process started here.
        workdir: Where the processes' logs go.
        latency_ms: Milliseconds added before each forwarded request.
        backends: Name -> how to start it.

    Returns:
        Name -> the backend's own URL and its proxy's URL.
    """
    urls: dict[str, ProxiedUrls] = {}
    for name, backend in backends.items():
        process = BackendProcess(
            name, backend.argv, backend.ready, workdir, env=backend.env, timeout=60
        )
        stack.callback(process.stop)
        port = free_port()
        proxy = BackendProcess(
            f"{name}-proxy",
            [
                sys.executable,
                str(FAULT_PROXY),
                "--port",
                str(port),
                "--upstream",
                f"http://127.0.0.1:{backend.port}",
                "--latency-ms",
                str(latency_ms),
            ],
            http_ready(f"http://127.0.0.1:{port}/__faults__"),
            workdir,
        )
        stack.callback(proxy.stop)
        urls[name] = ProxiedUrls(f"http://127.0.0.1:{backend.port}", f"http://127.0.0.1:{port}")
    return urls

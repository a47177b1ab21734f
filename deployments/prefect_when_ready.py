"""Runs a ``prefect`` command once a URL answers, its imports done while it waits.

Importing Prefect's command line (and, for a worker, its worker code) takes seconds;
``magicflow up`` starts the worker this way at the same time as the Prefect server,
so those seconds overlap the server's own start instead of following it. Once
``--ready-url`` answers 200 the command runs in this process exactly as
``python -m prefect ...`` would run it (Prefect's ``__main__`` calls the same
``prefect.cli.app``).

Example:
    ```console
    $ python -m deployments.prefect_when_ready --import prefect.workers.process
        --ready-url http://127.0.0.1:4200/api/work_pools/magicflow
        -- worker start --pool magicflow  # (one line)
    ```
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence

from deployments.local_servers import http_ready

READY_TIMEOUT_SECONDS = 300.0
"""How long to wait for the URL before giving up (exit 1)."""


def command_argv(ready_url: str, imports: Sequence[str], command: Sequence[str]) -> list[str]:
    """The command line that runs ``prefect COMMAND`` once ``ready_url`` answers 200.

    Args:
        ready_url: What must answer 200 first.
        imports: Modules to import while waiting (beyond Prefect's command line).
        command: The ``prefect`` arguments, e.g. ``["worker", "start", "--pool", "p"]``.

    Returns:
        The argv, for this interpreter.

    Example:
        >>> command_argv("http://127.0.0.1:4200/api/health", [], ["version"])[1:4]
        ['-m', 'deployments.prefect_when_ready', '--ready-url']
    """
    argv = [sys.executable, "-m", "deployments.prefect_when_ready", "--ready-url", ready_url]
    for module in imports:
        argv += ["--import", module]
    return [*argv, "--", *command]


def wait_until_ready(url: str, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    """Polls ``url`` until it answers 200.

    Args:
        url: What must answer.
        timeout: Seconds before giving up.

    Raises:
        SystemExit: It did not answer in time (this module runs as a process of its own).
    """
    ready, deadline = http_ready(url), time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer 200 in {timeout:g}s")
        time.sleep(0.1)


def main(argv: Sequence[str] | None = None) -> None:
    """Imports, waits for ``--ready-url``, then runs the ``prefect`` command given after ``--``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ready-url", required=True, help="run once this answers 200")
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], help="a module to import first"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="prefect's arguments, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    began = time.monotonic()
    importlib.import_module("prefect.cli")
    for module in args.imports:
        importlib.import_module(module)
    print(f"imported in {time.monotonic() - began:.1f}s; waiting for {args.ready_url}", flush=True)
    wait_until_ready(args.ready_url)
    from prefect.cli import app

    sys.argv = ["prefect", *command]
    app()


if __name__ == "__main__":
    main()

"""Runs a command-line entry point once the stack is ready for it, its imports done while it waits.

Importing Prefect or every workflow takes seconds. ``magicflow up`` starts the
listener this way at the same time as the Prefect server: it imports its entry
point's module at once, the modules named by ``--import-once-up`` once ``--ready-url``
answers 200 (so they do not slow the server's own start), and once ``--ready-file``
exists too, runs the entry point (``module:function``, which reads ``sys.argv`` as a
console script does) in this process with the arguments given after it.

Example:
    ```console
    $ python -m deployments.when_ready --ready-url http://127.0.0.1:4200/api/health
        --ready-file .magicflow/blocks-saved
        --import-once-up flows.registry:default_registry
        -- flows.kafka_trigger:main --as-flow --metrics-port 9464  # (one line)
    ```
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from deployments.local_servers import http_ready

READY_TIMEOUT_SECONDS = 300.0
"""How long to wait for the URL (and the file) before giving up (exit 1)."""


def command_argv(
    ready_url: str,
    entry_point: str,
    args: Sequence[str],
    ready_file: Path | None = None,
    imports_once_up: Sequence[str] = (),
) -> list[str]:
    """The command line that runs ``entry_point`` with ``args`` once the stack is ready.

    Args:
        ready_url: What must answer 200 first.
        entry_point: ``module:function``, e.g. ``prefect.cli:app`` for ``prefect``.
        args: Its arguments, e.g. ``["worker", "start", "--pool", "p"]``.
        ready_file: A file that must exist too (written by whoever makes it ready).
        imports_once_up: Modules imported once ``ready_url`` answers, while waiting for
            ``ready_file`` (so they do not compete with the server's own start);
            ``module:attribute`` also reads the attribute (one built on first use).

    Returns:
        The argv, for this interpreter.

    Example:
        >>> command_argv("http://127.0.0.1:4200/api/health", "prefect.cli:app", ["-v"])[-3:]
        ['--', 'prefect.cli:app', '-v']
    """
    argv = [sys.executable, "-m", "deployments.when_ready", "--ready-url", ready_url]
    if ready_file is not None:
        argv += ["--ready-file", str(ready_file)]
    for name in imports_once_up:
        argv += ["--import-once-up", name]
    return [*argv, "--", entry_point, *args]


def wait_until_ready(
    url: str,
    timeout: float = READY_TIMEOUT_SECONDS,
    ready_file: Path | None = None,
    once_up: Sequence[str] = (),
) -> None:
    """Polls ``url`` until it answers 200, then ``ready_file`` until it exists.

    Args:
        url: What must answer.
        timeout: Seconds before giving up.
        ready_file: A file that must exist too.
        once_up: Modules (or ``module:attribute``) to import in between.

    Raises:
        SystemExit: Not ready in time (this module runs as a process of its own).
    """
    ready, deadline = http_ready(url), time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer 200 in {timeout:g}s")
        time.sleep(0.1)
    import_all(once_up)
    while ready_file is not None and not ready_file.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{ready_file} was not written in {timeout:g}s")
        time.sleep(0.1)


def import_all(names: Sequence[str]) -> None:
    """Imports each module; ``module:attribute`` also reads the attribute."""
    for name in names:
        module_name, _, attribute = name.partition(":")
        imported = importlib.import_module(module_name)
        if attribute:  # e.g. a registry built on first use
            getattr(imported, attribute)


def main(argv: Sequence[str] | None = None) -> None:
    """Imports, waits until ready, then runs the entry point given after ``--``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ready-url", required=True, help="run once this answers 200")
    parser.add_argument("--ready-file", type=Path, default=None, help="and once this exists")
    parser.add_argument(
        "--import-once-up",
        dest="once_up",
        action="append",
        default=[],
        help="a module to import once --ready-url answers (module:attribute also reads it)",
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="after --: module:function, then its arguments"
    )
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or ":" not in command[0]:
        parser.error("give the entry point (module:function) after --")
    (module, _, function), arguments = command[0].partition(":"), command[1:]
    began = time.monotonic()
    run = getattr(importlib.import_module(module), function)
    print(f"imported in {time.monotonic() - began:.1f}s; waiting for {args.ready_url}", flush=True)
    wait_until_ready(args.ready_url, ready_file=args.ready_file, once_up=args.once_up)
    sys.argv = [module, *arguments]
    sys.exit(run())


if __name__ == "__main__":
    main()

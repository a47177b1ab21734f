"""The ``magicflow`` command: one entry point, one subcommand module each, one exit-code table.

Every subcommand lives in its own module of this package and exposes
``add_parser(commands)``; the module imports only the standard library at the top,
so ``magicflow --help`` answers without loading Prefect or any client library.

Errors reach the user as one line, ``magicflow: error: <cause>. <fix>``, with the
exit code of `ExitCode` that says what kind of failure it was; set
``MAGICFLOW_DEBUG=1`` to get the traceback as well.

Example:
    ```console
    $ magicflow --help
    $ magicflow submit tenant-provisioning --param tenant=acme --wait
    ```
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum
from importlib import import_module
from typing import NoReturn

DEBUG_ENV = "MAGICFLOW_DEBUG"
"""Set to 1 to print the traceback of an error along with its one-line explanation."""


class ExitCode(IntEnum):
    """Exit codes of every ``magicflow`` command; `MEANING` says what each means."""

    OK = 0
    RUN_FAILED = 1
    USAGE = 2
    REJECTED = 3
    TIMED_OUT = 4
    NOT_CONFIGURED = 5
    UNREACHABLE = 6
    ENVIRONMENT = 7
    INTERNAL = 70


MEANING = {
    ExitCode.OK: "done; with --wait, the run completed",
    ExitCode.RUN_FAILED: "the run failed, crashed or was cancelled",
    ExitCode.USAGE: "the command line is wrong",
    ExitCode.REJECTED: "the request was rejected by the listener",
    ExitCode.TIMED_OUT: "no final status before the timeout",
    ExitCode.NOT_CONFIGURED: "a block, file or setting is missing or invalid",
    ExitCode.UNREACHABLE: "Kafka, the Prefect API or another service is unreachable",
    ExitCode.ENVIRONMENT: "the local machine is not ready (a taken port, a stale state folder)",
    ExitCode.INTERNAL: f"unexpected error (a bug): rerun with {DEBUG_ENV}=1 and report it",
}
"""What each exit code means, as ``magicflow --help`` lists it."""


class CliError(Exception):
    """An error the command explains in one line, with its exit code.

    Args:
        cause: What went wrong, naming the resource (port, file, block, URL).
        fix: What to do about it.
        exit_code: The `ExitCode` to exit with.

    Example:
        >>> str(CliError("block 'kafka' not found", "run magicflow up", ExitCode.NOT_CONFIGURED))
        "block 'kafka' not found. Fix: run magicflow up"
    """

    def __init__(self, cause: str, fix: str | None, exit_code: ExitCode) -> None:
        self.cause = cause
        self.fix = fix
        self.exit_code = exit_code
        super().__init__(f"{cause}. Fix: {fix}" if fix else cause)


COMMAND_MODULES = (
    "magicflow.cli.stack",
    "magicflow.cli.submit",
    "magicflow.cli.check",
    "magicflow.cli.blocks",
    "magicflow.cli.automations",
    "magicflow.cli.langflow",
    "magicflow.cli.compose",
)
"""Subcommand modules, in the order ``--help`` lists them."""


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, naming the fix."""

    def error(self, message: str) -> NoReturn:
        """Prints ``<prog>: error: <message>. Fix: see <prog> --help`` and exits 2.

        Args:
            message: What argparse found wrong.
        """
        self.exit(
            int(ExitCode.USAGE),
            f"{self.prog}: error: {message}. Fix: see {self.prog} --help\n",
        )


def _epilog() -> str:
    lines = ["exit codes:"]
    lines += [f"  {code.value:>2}  {code.name.lower()}: {MEANING[code]}" for code in ExitCode]
    lines.append(f"set {DEBUG_ENV}=1 to add the traceback to an error")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``magicflow`` argument parser with every subcommand.

    Returns:
        The parser; each subcommand sets ``handler`` (called with the parsed args).
    """
    parser = OneLineParser(
        prog="magicflow",
        description="MagicFlow: an operations team's idempotent daily work as Prefect flows.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        import_module(module).add_parser(commands)
    return parser


def explain(error: BaseException) -> CliError:
    """Turns any exception into a one-line `CliError` with the right exit code.

    The one place that knows how the libraries underneath report the usual
    problems: a block that was never saved, a broker or API that is down.

    Args:
        error: What a command raised.

    Returns:
        The explanation to print.
    """
    if isinstance(error, CliError):
        return error
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(error).__mro__}
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "Unable to find block document named" in text:
        return CliError(
            text.rstrip("."),
            "save the block first (magicflow blocks apply, the Prefect UI, or Block.save)",
            ExitCode.NOT_CONFIGURED,
        )
    if names & {"aiokafka.errors.KafkaConnectionError", "aiokafka.errors.KafkaTimeoutError"}:
        return CliError(
            f"Kafka is unreachable ({text})",
            "start the broker (magicflow up) or check the block's bootstrap_servers",
            ExitCode.UNREACHABLE,
        )
    if names & {"httpx.ConnectError", "httpx.ConnectTimeout"}:
        return CliError(
            f"the Prefect API is unreachable or refused the call ({text})",
            "start it (magicflow up or prefect server start) and check PREFECT_API_URL",
            ExitCode.UNREACHABLE,
        )
    if "magicflow.errors.MagicFlowError" in names:
        code = (
            ExitCode.UNREACHABLE
            if "magicflow.errors.TransientError" in names
            else ExitCode.NOT_CONFIGURED
        )
        return CliError(text, None, code)
    return CliError(
        f"unexpected {type(error).__name__}: {text}",
        f"rerun with {DEBUG_ENV}=1 for the traceback and report it",
        ExitCode.INTERNAL,
    )


def report_problems(problems: Iterable[object]) -> int:
    """Prints one ``magicflow: error:`` line per problem of a configuration file.

    Args:
        problems: The problems; each prints as one line naming the file, the key
            and what is wrong.

    Returns:
        `ExitCode.NOT_CONFIGURED`.
    """
    for problem in problems:
        print(f"magicflow: error: {problem}", file=sys.stderr, flush=True)
    return int(ExitCode.NOT_CONFIGURED)


def fail(error: BaseException) -> int:
    """Prints an error as one line on stderr and returns its exit code.

    Args:
        error: The error.

    Returns:
        The exit code.
    """
    explained = explain(error)
    if os.environ.get(DEBUG_ENV) == "1":
        traceback.print_exception(error)
    print(f"magicflow: error: {explained}", file=sys.stderr, flush=True)
    return int(explained.exit_code)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``magicflow`` command.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The exit code (see `ExitCode`).
    """
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    # The command explains a failure in one line; the Kafka client's own error logs
    # would say the same in many.
    # Restored afterwards: a caller in the same process (a notebook) keeps its logging.
    kafka_client_logger = logging.getLogger("aiokafka")
    kafka_client_level = kafka_client_logger.level
    kafka_client_logger.setLevel(logging.CRITICAL)
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("magicflow: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as error:
        return fail(error)
    finally:
        kafka_client_logger.setLevel(kafka_client_level)

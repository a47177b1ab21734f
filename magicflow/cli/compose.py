"""``magicflow compose pause|resume|cancel RUN``: control a running composition.

``pause`` takes effect before the composition's next step; ``resume`` lets a paused
composition go on without running a finished step again; ``cancel`` stops the steps
not started and runs the error callbacks with reason ``cancelled``. The same is done
from the API (`flows.compose.control_composition`) or the Prefect UI (the Variable
``compose-control-<run id>``; a paused run's Resume button).

Example:
    ```console
    $ magicflow compose pause 0b6f2d1e-5a9c-4f55-9a43-5b3c7f1e2d10
    composition 0b6f2d1e-...: pause asked (it was Running); it takes effect before the next step
    ```
"""

from __future__ import annotations

import argparse
import uuid

from magicflow.cli import CliError, ExitCode

EFFECT = {
    "pause": "it takes effect before the next step",
    "resume": "it goes on from the next step; finished steps are not run again",
    "cancel": "the steps not started are cancelled and its error callbacks run",
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``magicflow compose`` to the command line.

    Args:
        commands: The ``magicflow`` subcommands.
    """
    parser = commands.add_parser(
        "compose",
        help="pause, resume or cancel a running composition",
        description="Pause, resume or cancel a running composition (a run of the compose flow).",
    )
    parser.add_argument("action", choices=sorted(EFFECT), help="what to do")
    parser.add_argument("run", help="the composition's flow run id")
    parser.set_defaults(handler=compose_command)


def compose_command(args: argparse.Namespace) -> int:
    """Runs ``magicflow compose ACTION RUN``.

    Args:
        args: The parsed command line.

    Returns:
        The exit code (see `magicflow.cli.ExitCode`).
    """
    try:
        run_id = uuid.UUID(args.run)
    except ValueError:
        raise CliError(
            f"{args.run!r} is not a flow run id", "copy the run's id from the UI", ExitCode.USAGE
        ) from None

    from flows.compose import control_composition
    from magicflow.errors import ConflictError, NotFoundError

    try:
        was = control_composition(run_id, args.action)
    except (NotFoundError, ConflictError) as error:
        raise CliError(
            str(error), "name a composition run that has not finished", ExitCode.USAGE
        ) from None
    print(
        f"composition {run_id}: {args.action} asked (it was {was}); {EFFECT[args.action]}",
        flush=True,
    )
    return int(ExitCode.OK)

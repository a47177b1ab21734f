"""``magicflow compose pause|resume|cancel|feed|close RUN``: control a running composition.

``pause`` takes effect before the composition's next step; ``resume`` lets a paused
composition go on without running a finished step again; ``cancel`` stops the steps
not started and runs the error callbacks with reason ``cancelled``. The same is done
from the API (`flows.compose_control.control_composition`) or the Prefect UI (the Variable
``compose-control-<run id>``; a paused run's Resume button). ``feed RUN SIGNATURES``
adds signatures (one JSON signature or a JSON list of them) to the run's open swarm,
``close RUN`` closes it: the swarm completes once what was fed has run.

Example:
    ```console
    $ magicflow compose pause 0b6f2d1e-5a9c-4f55-9a43-5b3c7f1e2d10
    composition 0b6f2d1e-...: pause asked (it was Running); it takes effect before the next step
    ```
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from magicflow.cli import CliError, ExitCode

EFFECT = {
    "pause": "it takes effect before the next step",
    "resume": "it goes on from the next step; finished steps are not run again",
    "cancel": "the steps not started are cancelled and its error callbacks run",
    "feed": "fed to its open swarm; they run after what was fed before",
    "close": "its open swarm completes once what was fed has run",
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``magicflow compose`` to the command line.

    Args:
        commands: The ``magicflow`` subcommands.
    """
    parser = commands.add_parser(
        "compose",
        help="pause, resume, cancel, feed or close a running composition",
        description=(
            "Pause, resume or cancel a running composition (a run of the compose flow), "
            "or feed signatures to its open swarm and close it."
        ),
    )
    parser.add_argument("action", choices=sorted(EFFECT), help="what to do")
    parser.add_argument("run", help="the composition's flow run id")
    parser.add_argument(
        "signatures",
        nargs="?",
        help='feed only: a JSON signature or list, e.g. \'{"target": "add", "params": {"x": 1}}\'',
    )
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

    if (args.signatures is None) == (args.action == "feed"):
        wanted = "give" if args.action == "feed" else "give no"
        raise CliError(
            f"compose {args.action} {'needs' if args.action == 'feed' else 'takes no'} SIGNATURES",
            f"{wanted} JSON signatures after the run id",
            ExitCode.USAGE,
        )

    from flows.compose_control import close_swarm, control_composition, feed_swarm
    from magicflow.errors import ConflictError, InvalidInputError, NotFoundError

    try:
        if args.action == "feed":
            items = _signatures(args.signatures)
            feed_swarm(run_id, items)
            was = f"{len(items)} signature(s)"
        elif args.action == "close":
            close_swarm(run_id)
            was = "open"
        else:
            was = f"it was {control_composition(run_id, args.action)}"
    except (NotFoundError, ConflictError) as error:
        raise CliError(
            str(error), "name a composition run that has not finished", ExitCode.USAGE
        ) from None
    except InvalidInputError as error:
        fix = "fix the signature and feed it again"
        raise CliError(str(error), fix, ExitCode.REJECTED) from None
    print(f"composition {run_id}: {args.action} asked ({was}); {EFFECT[args.action]}", flush=True)
    return int(ExitCode.OK)


def _signatures(text: str) -> list[Any]:
    """Signatures from the command line's JSON (one, or a list).

    Raises:
        InvalidInputError: Not JSON, or not signatures.
    """
    from pydantic import TypeAdapter, ValidationError

    from flows.composition import Signature
    from magicflow.errors import InvalidInputError

    try:
        loaded = json.loads(text)
        return TypeAdapter(list[Signature]).validate_python(
            loaded if isinstance(loaded, list) else [loaded]
        )
    except (ValueError, ValidationError) as error:
        first = error.errors()[0] if isinstance(error, ValidationError) else None
        cause = f"{first['loc']}: {first['msg']}" if first else "not JSON"
        raise InvalidInputError("compose feed", f"signatures: {cause}") from None

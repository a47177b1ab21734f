"""``magicflow automations apply``: create the Prefect automations MagicFlow relies on.

Today that is one: the zombie-run automation (`deployments.automations`), which
marks a flow run ``Crashed`` when its heartbeats stop, so that a lost host still
yields a ``crashed`` status on Kafka. Run it once per Prefect server, after
``prefect deploy``; a second run writes nothing and reports ``unchanged``. The
heartbeat must match ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` in ``prefect.yaml``.

Example:
    ```console
    $ magicflow automations apply
    created   automation 'magicflow-crash-zombie-flow-runs': crash runs after 90 s without heartbeat
    ```
"""

from __future__ import annotations

import argparse
import asyncio


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``magicflow automations apply`` to the command line.

    Args:
        commands: The ``magicflow`` subcommands.
    """
    automations = commands.add_parser(
        "automations",
        help="create the Prefect automations MagicFlow relies on (zombie runs)",
        description="Create or update the Prefect automations MagicFlow relies on.",
    )
    actions = automations.add_subparsers(
        dest="automations_command", required=True, metavar="ACTION"
    )
    apply = actions.add_parser(
        "apply",
        help="create or update the zombie-run automation (idempotent)",
        description="Create or update the automation that crashes runs whose heartbeats stop.",
    )
    apply.add_argument(
        "--heartbeat-seconds",
        type=int,
        default=None,
        metavar="S",
        help="the flows' PREFECT_FLOWS_HEARTBEAT_FREQUENCY, as prefect.yaml sets it "
        "(default 30, Prefect's minimum)",
    )
    apply.add_argument(
        "--window-seconds",
        type=int,
        default=None,
        metavar="S",
        help="crash a run this long after its last heartbeat (default: 3 heartbeats)",
    )
    apply.add_argument(
        "--dry-run", action="store_true", help="read only: report what would be written"
    )
    apply.set_defaults(handler=apply_command)


def apply_command(args: argparse.Namespace) -> int:
    """Runs ``magicflow automations apply``.

    Args:
        args: The parsed command line.

    Returns:
        The exit code (see `magicflow.cli.ExitCode`).
    """
    from deployments.automations import (
        HEARTBEAT_SECONDS,
        apply_automation,
        zombie_runs_automation,
    )

    heartbeat = args.heartbeat_seconds or HEARTBEAT_SECONDS
    automation = zombie_runs_automation(heartbeat, args.window_seconds)
    print(asyncio.run(apply_automation(automation, dry_run=args.dry_run)), flush=True)
    return 0

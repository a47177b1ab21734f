"""``magicflow blocks``: create connection blocks from a YAML file, and list the saved ones.

``magicflow blocks apply CONFIG.yaml [--dry-run]`` creates or updates every block
the file describes (see `deployments.blocks_config` for the format) and prints one
line per block: ``created``, ``updated`` (with the names of the fields that
changed) or ``unchanged``. Secret values come from environment variables or files
named in the file, never from the file itself, and are never printed. A second
apply of the same file writes nothing. Any problem in the file (an unknown type or
field, a literal secret, an unset variable) is reported one line each, and then
nothing is written.

``magicflow blocks list`` shows every saved block with its fields, secrets masked.

Example:
    ```console
    $ MAGICFLOW_VAULT_TOKEN=... magicflow blocks apply deployments/local-stack-blocks.yaml
    created   KafkaConnection 'magicflow'
    created   VaultConnection 'vault'
    2 blocks: 2 created, 0 updated, 0 unchanged
    $ magicflow blocks list
    ```
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from pathlib import Path

from magicflow.cli import report_problems


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``magicflow blocks apply`` and ``magicflow blocks list`` to the command line.

    Args:
        commands: The ``magicflow`` subcommands.
    """
    blocks = commands.add_parser(
        "blocks",
        help="create connection blocks from a YAML file (apply), or show them (list)",
        description="Create or update connection blocks from a YAML file, or list them.",
    )
    actions = blocks.add_subparsers(dest="blocks_command", required=True, metavar="ACTION")
    apply = actions.add_parser(
        "apply",
        help="create or update every block in CONFIG (secrets from env vars or files)",
        description="Create or update every block described in CONFIG; write only what differs.",
    )
    apply.add_argument("config", type=Path, help="blocks configuration (YAML)")
    apply.add_argument(
        "--dry-run", action="store_true", help="read only: report what would be written"
    )
    apply.set_defaults(handler=apply_command)
    listing = actions.add_parser(
        "list", help="show saved blocks, secrets masked", description="Show saved blocks."
    )
    listing.set_defaults(handler=list_command)


def apply_command(args: argparse.Namespace) -> int:
    """Runs ``magicflow blocks apply``.

    Args:
        args: The parsed command line.

    Returns:
        The exit code (see `magicflow.cli.ExitCode`).
    """
    from deployments.blocks_config import (
        apply_blocks,
        build_blocks,
        parse_blocks_config,
    )
    from deployments.config_files import ConfigFileError

    try:
        specs = build_blocks(parse_blocks_config(args.config))
    except ConfigFileError as error:
        return report_problems(error.problems)
    outcomes = asyncio.run(apply_blocks(specs, dry_run=args.dry_run))
    for outcome in outcomes:
        print(outcome, flush=True)
    counts = Counter(outcome.action.value for outcome in outcomes)
    print(
        f"{len(outcomes)} blocks: {counts['created']} created, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged"
        + (" (dry run: nothing written)" if args.dry_run else ""),
        flush=True,
    )
    return 0


def list_command(args: argparse.Namespace) -> int:
    """Runs ``magicflow blocks list``.

    Args:
        args: The parsed command line.

    Returns:
        The exit code (see `magicflow.cli.ExitCode`).
    """
    from deployments.blocks_config import list_saved_blocks

    saved = asyncio.run(list_saved_blocks())
    for block in saved:
        print(block, flush=True)
    if not saved:
        print("no saved blocks", flush=True)
    return 0

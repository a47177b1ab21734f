"""``magicflow check``: validate ``prefect.yaml`` against the code before deploying.

``magicflow check [--file prefect.yaml] [--blocks FILE | --no-blocks]`` reports
every problem in the deployments file, one line each, naming the file, the
deployment, the key and what is wrong (see `deployments.check` for everything it
checks), and exits with `ExitCode.NOT_CONFIGURED` when there is any. Block names the
deployments use must be in the blocks configuration (by default the local stack's,
``deployments/local-stack-blocks.yaml`` beside ``prefect.yaml``). CI runs it.

Example:
    ```console
    $ magicflow check
    prefect.yaml: 1 deployment, 0 registered workflows, 2 block references: no problems
    $ magicflow check --file prefect.yaml --blocks /etc/magicflow/blocks.yaml
    ```
"""

from __future__ import annotations

import argparse
from pathlib import Path

from magicflow.cli import ExitCode, report_problems

DEFAULT_BLOCKS_FILE = Path("deployments") / "local-stack-blocks.yaml"
"""The blocks configuration checked by default, relative to the ``prefect.yaml`` folder."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``magicflow check`` to the command line.

    Args:
        commands: The ``magicflow`` subcommands.
    """
    check = commands.add_parser(
        "check",
        help="validate prefect.yaml against the code (one line per problem)",
        description="Validate prefect.yaml, and the blocks it names, against the code.",
    )
    check.add_argument(
        "--file",
        type=Path,
        default=Path("prefect.yaml"),
        help="the deployments file (default: ./prefect.yaml)",
    )
    blocks = check.add_mutually_exclusive_group()
    blocks.add_argument(
        "--blocks",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"blocks configuration the deployments' block names must be in "
        f"(default: {DEFAULT_BLOCKS_FILE} beside prefect.yaml)",
    )
    blocks.add_argument(
        "--no-blocks", action="store_true", help="check block names' form only, not their presence"
    )
    check.set_defaults(handler=check_command)


def check_command(args: argparse.Namespace) -> int:
    """Runs ``magicflow check``.

    Args:
        args: The parsed command line.

    Returns:
        `ExitCode.OK`, or `ExitCode.NOT_CONFIGURED` when there is a problem.
    """
    from deployments.check import check_prefect_yaml

    blocks_file: Path | None = args.blocks
    if blocks_file is None and not args.no_blocks:
        blocks_file = args.file.parent / DEFAULT_BLOCKS_FILE
    result = check_prefect_yaml(args.file, blocks_file)
    if result.problems:
        report_problems(result.problems)
        print(f"{args.file}: {len(result.problems)} problem(s)", flush=True)
        return int(ExitCode.NOT_CONFIGURED)
    print(
        f"{args.file}: {result.deployments} deployment(s), {result.workflows} registered "
        f"workflow(s), {result.blocks} block reference(s): no problems",
        flush=True,
    )
    return int(ExitCode.OK)

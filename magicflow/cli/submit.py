"""``magicflow submit``: publish a workflow request to Kafka and, with ``--wait``, follow it.

``magicflow submit WORKFLOW --param k=v ... [--params-json JSON] [--id ID]
[--dry-run] [--wait] [--timeout S] [--kafka-block NAME | --bootstrap-servers
HOST:PORT]`` publishes a request to the requests topic. With ``--wait`` it prints
each status of the request and the run's Prefect UI link, and exits with the
run's outcome (see `magicflow.cli.ExitCode`).

Example:
    ```console
    $ magicflow submit tenant-provisioning --param tenant=acme --param quota=5 --wait
    ```
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from typing import TYPE_CHECKING, Any

from magicflow.cli import CliError, ExitCode

if TYPE_CHECKING:
    from magicflow.messages import WorkflowStatus

WORKFLOW_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
"""What a workflow name looks like (the request schema's rule, repeated for a fast check)."""


def parse_param(text: str) -> tuple[str, Any]:
    """Parses one ``--param key=value``; the value is JSON when it parses as JSON.

    Args:
        text: ``key=value``.

    Returns:
        The key and its value (``5`` -> 5, ``true`` -> True, ``acme`` -> "acme").

    Raises:
        argparse.ArgumentTypeError: There is no ``=`` or no key.

    Example:
        >>> parse_param("quota=5"), parse_param("tenant=acme")
        (('quota', 5), ('tenant', 'acme'))
    """
    key, separator, raw = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``magicflow submit`` to the command line.

    Args:
        commands: The ``magicflow`` subcommands.
    """
    run = commands.add_parser(
        "submit",
        help="publish a workflow request to Kafka (and follow it with --wait)",
        description="Publish a workflow request to Kafka; with --wait, follow its statuses.",
    )
    run.add_argument(
        "workflow", help="registered workflow name (lowercase letters, digits and '-')"
    )
    run.add_argument(
        "--param",
        action="append",
        default=[],
        type=parse_param,
        metavar="KEY=VALUE",
        help="a parameter; the value is parsed as JSON when it is valid JSON (repeatable)",
    )
    run.add_argument(
        "--params-json", default=None, metavar="JSON", help="parameters as one JSON object"
    )
    run.add_argument(
        "--id",
        dest="request_id",
        default=None,
        help="request id, the idempotency key (default: a new UUID)",
    )
    run.add_argument("--dry-run", action="store_true", help="ask the workflow to plan only")
    run.add_argument("--requested-by", default=None, help="who asks, e.g. ci:pipeline-42")
    run.add_argument(
        "--wait", action="store_true", help="follow statuses until a final one, then exit with it"
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds --wait follows statuses before exit code 4 (default 600)",
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument(
        "--kafka-block",
        default=None,
        metavar="NAME",
        help="saved KafkaConnection block (default: $MAGICFLOW_KAFKA_BLOCK or 'magicflow')",
    )
    where.add_argument(
        "--bootstrap-servers",
        default=None,
        metavar="HOST:PORT",
        help="talk to these brokers directly instead of through a block",
    )
    run.set_defaults(handler=submit_command)


def print_status(status: WorkflowStatus) -> None:
    """Prints a status as one line (time, state, workflow, run, changes), then its UI link.

    Args:
        status: A status read from the status topic.
    """
    parts = [status.at.strftime("%H:%M:%S"), f"{status.state.value:<9}", status.workflow or "-"]
    if status.dry_run:
        parts.append("(dry run)")
    if status.flow_run_id:
        parts.append(f"run={status.flow_run_id}")
    if status.changes:
        parts.append("changes=" + ",".join(f"{k}:{v}" for k, v in status.changes.items() if v))
    if status.reason:
        parts.append(f"reason={status.reason}")
    print(" ".join(parts), flush=True)
    if status.ui_url:
        print(f"  {status.ui_url}", flush=True)


def submit_command(args: argparse.Namespace) -> int:
    """Runs ``magicflow submit``.

    Args:
        args: The parsed command line.

    Returns:
        The exit code (see `magicflow.cli.ExitCode`).
    """
    if not re.match(WORKFLOW_PATTERN, args.workflow):
        raise CliError(
            f"workflow name {args.workflow!r} does not match {WORKFLOW_PATTERN}",
            "use the registered name, e.g. tenant-provisioning",
            ExitCode.USAGE,
        )
    parameters: dict[str, Any] = {}
    if args.params_json is not None:
        try:
            loaded = json.loads(args.params_json)
        except ValueError:
            raise CliError("--params-json is not valid JSON", None, ExitCode.USAGE) from None
        if not isinstance(loaded, dict):
            raise CliError("--params-json must be a JSON object", None, ExitCode.USAGE)
        parameters.update(loaded)
    parameters.update(dict(args.param))

    from pydantic import ValidationError

    from blocks.kafka import KafkaConnection
    from magicflow.submit import submit
    from magicflow.workflows import DEFAULT_KAFKA_BLOCK, KAFKA_BLOCK_ENV

    kafka: KafkaConnection | str = (
        KafkaConnection(bootstrap_servers=args.bootstrap_servers)
        if args.bootstrap_servers
        else args.kafka_block or os.environ.get(KAFKA_BLOCK_ENV, DEFAULT_KAFKA_BLOCK)
    )
    request_id = args.request_id or str(uuid.uuid4())
    print(f"request {request_id}: {args.workflow}", flush=True)
    try:
        result = submit(
            args.workflow,
            parameters,
            kafka=kafka,
            request_id=request_id,
            dry_run=args.dry_run,
            requested_by=args.requested_by,
            wait=args.wait,
            timeout_seconds=args.timeout,
            on_status=print_status,
        )
    except ValidationError as error:
        fields = ", ".join(".".join(map(str, e["loc"])) or "request" for e in error.errors())
        raise CliError(f"invalid request ({fields})", None, ExitCode.USAGE) from None
    if result.waited and result.final is None:
        print(f"no final status after {args.timeout:g}s", file=sys.stderr, flush=True)
    if result.ui_url:
        print(f"Prefect UI: {result.ui_url}", flush=True)
    return int(result.exit_code)

"""The ``magicflow`` command: submit a workflow request and follow it.

``magicflow submit WORKFLOW --param k=v ... [--params-json JSON] [--id ID]
[--dry-run] [--wait] [--timeout S] [--kafka-block NAME | --bootstrap-servers
HOST:PORT]`` publishes a request to the requests topic. With ``--wait`` it prints
each status of the request and the run's Prefect UI link, and exits 0 on
``completed``, 1 on ``failed``/``crashed``/``cancelled``, 3 on ``rejected`` and 4
on timeout (see `ExitCode`).

Example:
    ```console
    $ magicflow submit tenant-provisioning --param tenant=acme --param quota=5 --wait
    ```
"""

import argparse
import json
import os
import sys
import uuid
from collections.abc import Sequence

from pydantic import JsonValue, ValidationError

from blocks.kafka import KafkaConnection
from magicflow.messages import WorkflowStatus
from magicflow.submit import DEFAULT_TIMEOUT_SECONDS, ExitCode, SubmitResult, submit
from magicflow.workflows import DEFAULT_KAFKA_BLOCK, KAFKA_BLOCK_ENV

__all__ = ["ExitCode", "SubmitResult", "main", "submit"]


def parse_param(text: str) -> tuple[str, JsonValue]:
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
        value: JsonValue = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magicflow", description="MagicFlow command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("submit", help="publish a workflow request (and follow it)")
    run.add_argument("workflow", help="registered workflow name")
    run.add_argument(
        "--param",
        action="append",
        default=[],
        type=parse_param,
        metavar="KEY=VALUE",
        help="a parameter; the value is parsed as JSON when it is valid JSON",
    )
    run.add_argument(
        "--params-json", default=None, metavar="JSON", help="parameters as a JSON object"
    )
    run.add_argument("--id", dest="request_id", default=None, help="request id (idempotency key)")
    run.add_argument("--dry-run", action="store_true", help="plan without writing")
    run.add_argument("--requested-by", default=None, help="who asks, e.g. ci:pipeline-42")
    run.add_argument("--wait", action="store_true", help="follow statuses until a final one")
    run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, metavar="S")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--kafka-block", default=None, metavar="NAME", help="saved KafkaConnection")
    where.add_argument("--bootstrap-servers", default=None, metavar="HOST:PORT")
    return parser


def _print_status(status: WorkflowStatus) -> None:
    parts = [status.at.strftime("%H:%M:%S"), f"{status.state.value:<9}", status.workflow or "-"]
    if status.flow_run_id:
        parts.append(f"run={status.flow_run_id}")
    if status.changes:
        parts.append("changes=" + ",".join(f"{k}:{v}" for k, v in status.changes.items() if v))
    if status.reason:
        parts.append(f"reason={status.reason}")
    print(" ".join(parts), flush=True)
    if status.ui_url:
        print(f"  {status.ui_url}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``magicflow`` command.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The exit code (see `ExitCode`; 2 for usage errors).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    parameters: dict[str, JsonValue] = {}
    if args.params_json is not None:
        try:
            loaded = json.loads(args.params_json)
        except ValueError:
            parser.error("--params-json is not valid JSON")
        if not isinstance(loaded, dict):
            parser.error("--params-json must be a JSON object")
        parameters.update(loaded)
    parameters.update(dict(args.param))
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
            on_status=_print_status,
        )
    except ValidationError as error:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in error.errors())
        parser.error(f"invalid request ({fields})")
    if result.waited and result.final is None:
        print(f"no final status after {args.timeout:g}s", file=sys.stderr, flush=True)
    if result.ui_url:
        print(f"Prefect UI: {result.ui_url}", flush=True)
    return int(result.exit_code)


if __name__ == "__main__":
    sys.exit(main())

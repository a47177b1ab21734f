"""``magicflow langflow``: LangFlow flows, their schedules and their runs, all kept in Prefect.

A thin layer over `tasks.langflow`, `flows.langflow` and `deployments.langflow`:

- ``flows sync [--work-pool P] [--dry-run]``: run the ``sync-langflow`` workflow
  (every runnable flow gets a ``run-langflow/<flow name>`` deployment);
- ``flows list`` and ``flows show NAME``: the flows, their inputs, outputs and problems;
- ``schedules create FLOW (--cron EXPR | --interval 30m) [--timezone TZ] [--input TEXT]``,
  ``schedules list``, ``schedules delete ID``: Prefect deployment schedules;
- ``runs list [--flow NAME]``, ``runs logs RUN``, ``runs output RUN``: Prefect flow
  runs, their logs, and what they returned (the run's artifact).

LangFlow is reached through the saved `LangflowConnection` block named by
``--block`` (or ``$MAGICFLOW_LANGFLOW_BLOCK``), else through ``LANGFLOW_API_URL``
and ``LANGFLOW_API_KEY``. Prefect through ``PREFECT_API_URL``. The API key is
never printed.

Example:
    ```console
    $ export LANGFLOW_API_URL=http://127.0.0.1:7860 LANGFLOW_API_KEY=sk-...
    $ magicflow langflow flows sync
    $ magicflow langflow schedules create "Support bot" --cron "0 7 * * 1-5" --timezone Europe/Paris
    $ magicflow langflow runs output 0b6c...
    ```
"""

from __future__ import annotations

import argparse
import json
import os
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from magicflow.cli import CliError, ExitCode

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.responses import DeploymentResponse

    from magicflow.errors import MagicFlowError

BLOCK_ENV = "MAGICFLOW_LANGFLOW_BLOCK"
"""Environment variable naming the saved `LangflowConnection` block the commands use."""

_LIST_FIX = "see magicflow langflow flows list"
_CONNECTION_FIX = (
    "set LANGFLOW_API_URL and LANGFLOW_API_KEY (or --block NAME of a saved LangflowConnection)"
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``magicflow langflow`` and its subcommands to the command line.

    Args:
        commands: The ``magicflow`` subcommands.
    """
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--block",
        default=None,
        metavar="NAME",
        help=f"saved LangflowConnection block (default: ${BLOCK_ENV}, else LANGFLOW_API_URL "
        "and LANGFLOW_API_KEY)",
    )
    langflow = commands.add_parser(
        "langflow",
        help="LangFlow flows as Prefect workflows: sync, schedules, runs",
        description="LangFlow flows as Prefect workflows. Schedules, runs, logs and outputs "
        "live in Prefect (the same ones the Prefect UI shows).",
    )
    groups = langflow.add_subparsers(dest="langflow_group", required=True, metavar="GROUP")

    flows = groups.add_parser("flows", help="LangFlow flows").add_subparsers(
        dest="langflow_command", required=True, metavar="COMMAND"
    )
    sync = flows.add_parser(
        "sync",
        parents=[connection],
        help="deploy every runnable flow as run-langflow/<flow name>; pause the deleted ones",
    )
    sync.add_argument("--work-pool", default="magicflow", help="work pool of new deployments")
    sync.add_argument("--dry-run", action="store_true", help="only show what would change")
    sync.set_defaults(handler=_guarded(_flows_sync))
    listing = flows.add_parser(
        "list", parents=[connection], help="the flows, their inputs, outputs and problems"
    )
    listing.set_defaults(handler=_guarded(_flows_list))
    show = flows.add_parser(
        "show", parents=[connection], help="one flow: components, run order, problems"
    )
    show.add_argument("name", help="the flow's name, id or endpoint name")
    show.set_defaults(handler=_guarded(_flows_show))

    schedules = groups.add_parser("schedules", help="schedules (Prefect deployment schedules)")
    schedule_commands = schedules.add_subparsers(
        dest="langflow_command", required=True, metavar="COMMAND"
    )
    create = schedule_commands.add_parser(
        "create", parents=[connection], help="run a flow on a cron schedule or an interval"
    )
    create.add_argument("flow", help="the flow's name, id or endpoint name")
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", default=None, metavar="EXPR", help="e.g. '0 7 * * 1-5'")
    when.add_argument("--interval", default=None, metavar="N[s|m|h|d]", help="e.g. 30m")
    create.add_argument("--timezone", default=None, metavar="TZ", help="IANA name (default UTC)")
    create.add_argument("--input", default=None, metavar="TEXT", help="input value of its runs")
    create.add_argument(
        "--tweaks",
        default=None,
        metavar="JSON",
        help='tweaks of its runs, e.g. \'{"ChatOutput-x1Y2z": {"sender_name": "Ops"}}\'',
    )
    create.add_argument("--work-pool", default="magicflow", help="if a deployment is created")
    create.set_defaults(handler=_guarded(_schedules_create))
    schedule_commands.add_parser("list", help="every schedule of every flow").set_defaults(
        handler=_guarded(_schedules_list)
    )
    delete = schedule_commands.add_parser("delete", help="delete one schedule")
    delete.add_argument("schedule_id", metavar="ID", help="a schedule id from schedules list")
    delete.set_defaults(handler=_guarded(_schedules_delete))

    runs = groups.add_parser("runs", help="runs (Prefect flow runs of run-langflow)")
    run_commands = runs.add_subparsers(dest="langflow_command", required=True, metavar="COMMAND")
    run_list = run_commands.add_parser("list", help="recent runs, newest first")
    run_list.add_argument("--flow", default=None, metavar="NAME", help="only this flow's runs")
    run_list.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    run_list.set_defaults(handler=_guarded(_runs_list))
    logs = run_commands.add_parser("logs", help="a run's log lines")
    logs.add_argument("run", metavar="RUN", help="flow run id (see runs list)")
    logs.set_defaults(handler=_guarded(_runs_logs))
    output = run_commands.add_parser("output", help="what a run returned")
    output.add_argument("run", metavar="RUN", help="flow run id (see runs list)")
    output.add_argument(
        "--json", action="store_true", help="input, output, timing and the structured result"
    )
    output.set_defaults(handler=_guarded(_runs_output))


# --- errors ---------------------------------------------------------------------------------


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turns MagicFlow's typed errors into one-line `CliError` with LangFlow-specific fixes."""

    def run(args: argparse.Namespace) -> int:
        from magicflow.errors import MagicFlowError

        try:
            return handler(args)
        except MagicFlowError as error:
            raise _explain(error) from None

    return run


def _explain(error: MagicFlowError) -> CliError:
    from magicflow.errors import (
        InvalidInputError,
        NotFoundError,
        PermissionDeniedError,
        TransientError,
    )

    text = str(error)
    if isinstance(error, PermissionDeniedError):
        return CliError(text, _CONNECTION_FIX, ExitCode.NOT_CONFIGURED)
    if isinstance(error, TransientError):
        return CliError(
            text,
            "check that LangFlow runs at LANGFLOW_API_URL (or the block's url)",
            ExitCode.UNREACHABLE,
        )
    if isinstance(error, NotFoundError):
        if error.resource.startswith("prefect:work-pool/"):
            pool = error.resource.removeprefix("prefect:work-pool/")
            fix = f"create it (prefect work-pool create {pool} --type process) or pass --work-pool"
            return CliError(text, fix, ExitCode.NOT_CONFIGURED)
        if error.resource.startswith("prefect:deployment/"):
            return CliError(text, "run magicflow langflow flows sync", ExitCode.USAGE)
        return CliError(text, _LIST_FIX, ExitCode.USAGE)
    if isinstance(error, InvalidInputError):
        return CliError(text, _fix_for_input(error.resource), ExitCode.USAGE)
    return CliError(text, None, ExitCode.NOT_CONFIGURED)


def _fix_for_input(resource: str) -> str | None:
    return {
        "schedule:cron": "give five fields, e.g. --cron '0 7 * * 1-5'",
        "schedule:timezone": "give an IANA name, e.g. --timezone Europe/Paris",
        "schedule:interval": "e.g. --interval 30m, 2h or 1d",
    }.get(resource, None if not resource.startswith("langflow:") else _LIST_FIX)


def _langflow_block(args: argparse.Namespace) -> str | None:
    return getattr(args, "block", None) or os.environ.get(BLOCK_ENV) or None


def _run_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise CliError(
            f"{text!r} is not a flow run id", "see magicflow langflow runs list", ExitCode.USAGE
        ) from None


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [list(map(str, header))] + [[("-" if v is None else str(v)) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print(
            "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        )


# --- flows ----------------------------------------------------------------------------------


def _flows_sync(args: argparse.Namespace) -> int:
    from flows.langflow import sync_langflow
    from tasks.langflow import langflow_connection

    block = _langflow_block(args)
    langflow_connection(block)  # an unknown block fails here, in one line
    _quiet_run_logs()
    changes = sync_langflow(langflow=block, work_pool=args.work_pool, dry_run=args.dry_run)
    _table(
        ["RESOURCE", "ACTION", "DETAIL"],
        [
            (
                change.resource,
                change.action.value + (" (dry run)" if change.dry_run else ""),
                ", ".join(f"{k}={v}" for k, v in sorted(change.detail.items())),
            )
            for change in changes
        ],
    )
    if block is None:
        print("note: runs read LANGFLOW_API_URL / LANGFLOW_API_KEY on the worker (no --block)")
    return int(ExitCode.OK)


def _quiet_run_logs() -> None:
    """Keeps the run's own log lines (and tracebacks) in Prefect, off this terminal.

    A failure still reaches the user, as the one-line error of the exception the
    run raised; ``MAGICFLOW_DEBUG=1`` shows everything.
    """
    import logging

    from magicflow.cli import DEBUG_ENV

    if os.environ.get(DEBUG_ENV) == "1":
        return
    for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if type(handler).__name__ == "PrefectConsoleHandler":
                handler.setLevel(logging.CRITICAL + 1)


def _flows_list(args: argparse.Namespace) -> int:
    from tasks.langflow import analyze_flow_graph, list_langflow_flows

    rows = []
    for flow in list_langflow_flows.fn(_langflow_block(args), include_graphs=True):
        analysis = analyze_flow_graph(flow)
        inputs = ",".join(c.type for c in analysis.inputs) or "-"
        outputs = ",".join(c.type for c in analysis.outputs) or "-"
        problems = ",".join(sorted({p.kind for p in analysis.problems}))
        rows.append(
            (flow.name, flow.id, flow.endpoint_name, f"{inputs} -> {outputs}", problems or "ok")
        )
    _table(["NAME", "ID", "ENDPOINT", "INPUT -> OUTPUT", "RUNNABLE"], rows)
    return int(ExitCode.OK)


def _flows_show(args: argparse.Namespace) -> int:
    from tasks.langflow import analyze_flow_graph, get_langflow_flow

    flow = get_langflow_flow.fn(_langflow_block(args), args.name)
    analysis = analyze_flow_graph(flow)
    print(f"name:        {flow.name}")
    print(f"id:          {flow.id}")
    print(f"endpoint:    {flow.endpoint_name or '-'}")
    print(f"description: {flow.description or '-'}")
    print(f"inputs:      {', '.join(f'{c.id} ({c.type})' for c in analysis.inputs) or '-'}")
    print(f"outputs:     {', '.join(f'{c.id} ({c.type})' for c in analysis.outputs) or '-'}")
    print(f"run order:   {' -> '.join(analysis.order) or '-'}")
    print(f"runnable:    {'yes' if analysis.runnable else 'no'}")
    for problem in analysis.problems:
        print(f"  problem:   {problem}")
    return int(ExitCode.OK)


# --- schedules ------------------------------------------------------------------------------


def _prefect() -> SyncPrefectClient:
    from prefect import get_client

    return get_client(sync_client=True)


def _deployment_for(
    client: SyncPrefectClient, flow: str, block: str | None, work_pool: str
) -> DeploymentResponse:
    """The flow's deployment; made now, like a sync would, when the flow has none yet."""
    from deployments.langflow import ensure_langflow_deployment, find_langflow_deployment
    from magicflow.errors import InvalidInputError, NotFoundError
    from tasks.langflow import analyze_flow_graph, get_langflow_flow

    try:
        return find_langflow_deployment(client, flow)
    except NotFoundError:
        pass
    langflow_flow = get_langflow_flow.fn(block, flow)
    analysis = analyze_flow_graph(langflow_flow)
    if not analysis.runnable:
        problems = "; ".join(map(str, analysis.problems))
        raise InvalidInputError(langflow_flow.resource, f"not runnable: {problems}")
    ensure_langflow_deployment.fn(langflow_flow, analysis, langflow=block, work_pool=work_pool)
    return find_langflow_deployment(client, langflow_flow.id)


def _describe_schedule(schedule: Any) -> tuple[str, str]:
    inner = schedule.schedule
    if getattr(inner, "cron", None):
        return f"cron {inner.cron}", inner.timezone or "UTC"
    if getattr(inner, "interval", None):
        return f"every {inner.interval}", inner.timezone or "UTC"
    return str(inner), "-"


def _schedules_create(args: argparse.Namespace) -> int:
    from deployments.langflow import add_langflow_schedule, build_schedule
    from tasks.langflow import check_tweaks

    # Checked before anything is sent anywhere.
    build_schedule(cron=args.cron, interval=args.interval, timezone=args.timezone)
    tweaks = None
    if args.tweaks is not None:
        try:
            tweaks = json.loads(args.tweaks)
        except ValueError:
            raise CliError(
                "--tweaks is not valid JSON",
                'give an object, e.g. \'{"ChatOutput-x1Y2z": {"sender_name": "Ops"}}\'',
                ExitCode.USAGE,
            ) from None
        check_tweaks(f"langflow:flow/{args.flow}", tweaks)
    with _prefect() as client:
        deployment = _deployment_for(client, args.flow, _langflow_block(args), args.work_pool)
        schedule = add_langflow_schedule(
            client,
            deployment,
            cron=args.cron,
            interval=args.interval,
            timezone=args.timezone,
            input_value=args.input,
            tweaks=tweaks,
        )
    what, timezone = _describe_schedule(schedule)
    print(f"schedule {schedule.id}: run-langflow/{deployment.name} {what} ({timezone})")
    return int(ExitCode.OK)


def _schedules_list(args: argparse.Namespace) -> int:
    from deployments.langflow import read_langflow_schedules

    rows = []
    with _prefect() as client:
        for deployment, schedule in read_langflow_schedules(client):
            what, timezone = _describe_schedule(schedule)
            rows.append(
                (
                    schedule.id,
                    deployment.name,
                    what,
                    timezone,
                    "yes" if schedule.active and not deployment.paused else "no",
                    (schedule.parameters or {}).get("input_value"),
                )
            )
    _table(["ID", "FLOW", "SCHEDULE", "TIMEZONE", "ACTIVE", "INPUT"], rows)
    return int(ExitCode.OK)


def _schedules_delete(args: argparse.Namespace) -> int:
    from deployments.langflow import delete_langflow_schedule

    with _prefect() as client:
        deployment = delete_langflow_schedule(client, args.schedule_id)
    print(f"deleted schedule {args.schedule_id} of run-langflow/{deployment.name}")
    return int(ExitCode.OK)


# --- runs -----------------------------------------------------------------------------------


def _runs_list(args: argparse.Namespace) -> int:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    from deployments.langflow import RUN_FLOW_NAME, find_langflow_deployment
    from magicflow.errors import NotFoundError

    with _prefect() as client:
        deployment_id = None
        if args.flow:
            try:
                deployment_id = find_langflow_deployment(client, args.flow).id
            except NotFoundError:
                deployment_id = None
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[RUN_FLOW_NAME])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=max(args.limit, 1) * (10 if args.flow else 1),
        )
    if args.flow:
        runs = [
            run
            for run in runs
            if run.name == f"{RUN_FLOW_NAME}/{args.flow}"
            or (deployment_id is not None and run.deployment_id == deployment_id)
        ]
    rows = [
        (
            run.id,
            run.name,
            run.state_name or "-",
            run.start_time.isoformat(timespec="seconds") if run.start_time else None,
            f"{run.total_run_time.total_seconds():.1f}s",
        )
        for run in runs[: max(args.limit, 1)]
    ]
    _table(["ID", "NAME", "STATE", "STARTED", "DURATION"], rows)
    return int(ExitCode.OK)


def _read_run(client: SyncPrefectClient, run_id: uuid.UUID) -> Any:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_flow_run(run_id)
    except ObjectNotFound:
        raise CliError(
            f"no flow run {run_id}", "see magicflow langflow runs list", ExitCode.USAGE
        ) from None


def _runs_logs(args: argparse.Namespace) -> int:
    import logging

    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    run_id = _run_id(args.run)
    with _prefect() as client:
        _read_run(client, run_id)
        offset = 0
        while True:
            page = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                limit=200,
                offset=offset,
                sort=LogSort.TIMESTAMP_ASC,
            )
            for log in page:
                stamp = log.timestamp.isoformat(timespec="seconds")
                print(f"{stamp} {logging.getLevelName(log.level):<8} {log.message}")
            if len(page) < 200:
                return int(ExitCode.OK)
            offset += len(page)


def _runs_output(args: argparse.Namespace) -> int:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.langflow import run_artifact_key

    run_id = _run_id(args.run)
    with _prefect() as client:
        run = _read_run(client, run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[run_artifact_key(run_id)]))
        )
    if not artifacts:
        state = run.state_name or "unknown"
        raise CliError(
            f"flow run {run_id} ({run.name}, {state}) recorded no LangFlow output",
            f"see magicflow langflow runs logs {run_id}",
            ExitCode.RUN_FAILED,
        )
    data = artifacts[0].data
    rows: Any = json.loads(data) if isinstance(data, str) else data  # a table: [{field, value}]
    record = {row["field"]: row["value"] for row in rows}
    if args.json:
        record["outputs"] = json.loads(record.get("outputs") or "[]")
        print(json.dumps(record, indent=2))
    else:
        print(record.get("output") or "")
    return int(ExitCode.OK)

"""The operations report: what MagicFlow did in a period, for a person to read at a glance.

Everything comes from systems of record, read live:

* the Prefect API: the flow runs expected to start in the period, counted by workflow
  and final state, with p50/p95 durations, the failure reasons, runs per day by state
  (a Markdown bar chart), and the approvals still waiting (Paused runs, longest first);
* Kubernetes: the ResourceQuotas of the namespaces MagicFlow manages (labelled
  `tasks.kubernetes.MANAGED_BY_LABEL` by the tenant runbook), with a connection given;
* the latest DR validation per target: the ``dr-target-<name>`` table artifacts that
  `flows.dr_validation` publishes. Artifacts live in the Prefect server's database, so
  every worker and every reader sees the same latest result; a persisted flow result
  lives in the result storage of the worker that ran it (a local path unless a shared
  storage block is configured), so it would not survive a move to another machine.

The report is published as a Markdown artifact (``operations-report``) and a table
artifact of runs (``operations-report-runs``); with ``upload`` it is also written to
an S3 or GCS bucket (``report.md`` and a ``runs-per-day.svg`` chart), idempotently.

Example:
    ```python
    from datetime import timedelta
    from flows.reports import generate_report

    report = generate_report(timedelta(days=7), kubernetes="prod-cluster")
    print(report.markdown())
    ```
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

from prefect import get_client, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    FlowFilter,
    FlowFilterId,
    FlowRunFilter,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from flows.dr_validation import TARGET_ARTIFACT_PREFIX
from magicflow import Change, InvalidInputError, workflow
from tasks.aws import put_s3_object
from tasks.gcp import put_gcs_object
from tasks.kubernetes import TenantQuota, list_tenant_resource_quotas

REPORT_ARTIFACT_KEY = "operations-report"
"""Key of the report's Markdown artifact; ``-runs`` is its table of runs."""

PAGE = 200
"""Flow runs read from the Prefect API per request."""

MAX_RUNS = 20_000
"""A period with more runs than this is refused: ask for a shorter one."""

BAR_WIDTH = 30
"""Characters of the longest bar in the Markdown chart."""

_FINAL_ORDER = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED", "PAUSED", "RUNNING")


class ReportUpload(BaseModel):
    """Where a copy of the report goes: a bucket, through a saved connection block.

    Attributes:
        kind: ``s3`` (an `AwsCredentials` block) or ``gcs`` (a `GcpConnection` block).
        connection: The block's name.
        bucket: The report bucket.
        prefix: Objects are ``<prefix><until date>/report.md`` and ``runs-per-day.svg``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["s3", "gcs"]
    connection: str = Field(min_length=1)
    bucket: str = Field(min_length=3, max_length=222)
    prefix: str = Field(default="reports/", max_length=512)


class WorkflowRuns(BaseModel):
    """The runs of one workflow in the period.

    Attributes:
        workflow: The flow's name (``invoke-dr``, ``provision-tenant``...).
        states: Final (or current) state type -> how many runs.
        total: All its runs in the period.
        p50_seconds: Median run time of its finished runs (None without any).
        p95_seconds: 95th percentile run time (nearest rank).
    """

    model_config = ConfigDict(frozen=True)

    workflow: str
    states: dict[str, int]
    total: int
    p50_seconds: float | None
    p95_seconds: float | None


class FailedRun(BaseModel):
    """A failed or crashed run and why (its final state's message)."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    flow_run_id: UUID
    name: str
    state: str
    reason: str


class WaitingApproval(BaseModel):
    """A paused run waiting for a person, and since when."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    flow_run_id: UUID
    name: str
    paused_since: datetime
    waiting_seconds: float


class Report(BaseModel):
    """The operations report of a period (also the run's result).

    Attributes:
        since: Start of the period (inclusive).
        until: End of the period.
        workflows: Runs per workflow, most runs first.
        runs_per_day: ``YYYY-MM-DD`` -> state type -> runs (the chart's data).
        failures: Failed and crashed runs, newest first.
        waiting_approvals: Paused runs, longest waiting first (whenever they started).
        quotas: Tenant ResourceQuotas; None when no Kubernetes connection was given.
        dr_targets: The latest DR validation row per target (see `flows.dr_validation`).
        uploads: The upload changes (empty without ``upload``).
    """

    model_config = ConfigDict(frozen=True)

    since: datetime
    until: datetime
    workflows: list[WorkflowRuns]
    runs_per_day: dict[str, dict[str, int]]
    failures: list[FailedRun]
    waiting_approvals: list[WaitingApproval]
    quotas: list[TenantQuota] | None
    dr_targets: list[dict[str, Any]]
    uploads: list[Change] = Field(default_factory=list)

    def chart(self) -> str:
        """Runs per day by state as inline Markdown bars (one line a day).

        Example:
            >>> r = Report(since=datetime(2026, 1, 1, tzinfo=UTC),
            ...     until=datetime(2026, 1, 2, tzinfo=UTC), workflows=[], failures=[],
            ...     runs_per_day={"2026-01-01": {"COMPLETED": 3, "FAILED": 1}},
            ...     waiting_approvals=[], quotas=None, dr_targets=[])
            >>> print(r.chart())
            `2026-01-01` `██████████████████████████████` 3 completed · `▒▒▒▒▒▒▒▒▒▒` 1 failed
        """
        most = max((n for day in self.runs_per_day.values() for n in day.values()), default=0)
        lines = []
        for day, states in sorted(self.runs_per_day.items()):
            parts = [
                f"`{_BARS.get(state, '░') * max(1, round(BAR_WIDTH * n / most))}` "
                f"{n} {state.lower()}"
                for state, n in _ordered(states)
            ]
            lines.append(f"`{day}` " + " · ".join(parts))
        return "\n".join(lines) or "No runs in the period."

    def markdown(self) -> str:
        """The whole report as Markdown, as the artifact and the uploaded copy show it."""
        out = [
            f"# Operations report {self.since:%Y-%m-%d %H:%M} to {self.until:%Y-%m-%d %H:%M} UTC",
            "",
            f"{sum(w.total for w in self.workflows)} runs of {len(self.workflows)} workflows; "
            f"{len(self.failures)} failed; {len(self.waiting_approvals)} approvals waiting; "
            f"{sum(1 for row in self.dr_targets if row.get('result') != 'passed')} of "
            f"{len(self.dr_targets)} DR targets failing.",
            "",
            "## Runs per day",
            "",
            self.chart(),
            "",
            "## Runs by workflow",
            "",
            "| workflow | runs | completed | failed | crashed | cancelled | other | p50 | p95 |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for w in self.workflows:
            named = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
            other = w.total - sum(w.states.get(s, 0) for s in named)
            counts = " | ".join(str(w.states.get(s, 0)) for s in named)
            out.append(
                f"| {w.workflow} | {w.total} | {counts} | {other} | "
                f"{_seconds(w.p50_seconds)} | {_seconds(w.p95_seconds)} |"
            )
        out += ["", "## Failures", ""]
        out += [
            f"- **{f.workflow}** `{f.name}` ({f.state.lower()}): {_one_line(f.reason)}"
            for f in self.failures
        ] or ["None."]
        out += ["", "## Approvals waiting", ""]
        out += [
            f"- **{a.workflow}** `{a.name}` waiting {_seconds(a.waiting_seconds)} "
            f"(since {a.paused_since:%Y-%m-%d %H:%M} UTC)"
            for a in self.waiting_approvals
        ] or ["None."]
        out += ["", "## Latest DR validation per target", ""]
        if self.dr_targets:
            out += ["| target | kind | result | recovery point | age | RPO | checked | problems |"]
            out += ["| --- | --- | --- | --- | --- | --- | --- | --- |"]
            out += [
                f"| {r.get('target')} | {r.get('kind')} | {r.get('result')} | "
                f"{r.get('recovery_point')} | {r.get('age')} | {r.get('rpo')} | "
                f"{r.get('checked_at')} | {_one_line(str(r.get('problems') or ''))} |"
                for r in self.dr_targets
            ]
        else:
            out.append("No DR validation has run yet.")
        out += ["", "## Tenant quotas", ""]
        if self.quotas is None:
            out.append("Skipped: no Kubernetes connection was given.")
        elif not self.quotas:
            out.append("No ResourceQuota in a namespace MagicFlow manages.")
        else:
            out += ["| tenant | namespace | quota | resource | used | hard |"]
            out += ["| --- | --- | --- | --- | --- | --- |"]
            out += [
                f"| {q.tenant} | {q.namespace} | {q.name} | {resource} | "
                f"{q.used.get(resource, '-')} | {hard} |"
                for q in self.quotas
                for resource, hard in sorted(q.hard.items())
            ]
        return "\n".join(out)

    def svg_chart(self) -> str:
        """Runs per day by state as a stacked bar chart in SVG (uploaded with the report)."""
        days = sorted(self.runs_per_day)
        most = max((sum(s.values()) for s in self.runs_per_day.values()), default=1) or 1
        width, height, bar = 40 + 36 * max(1, len(days)), 220, 28
        shapes = []
        for index, day in enumerate(days):
            y = float(height - 30)
            for state, n in _ordered(self.runs_per_day[day]):
                h = 160 * n / most
                y -= h
                shapes.append(
                    f'<rect x="{40 + 36 * index}" y="{y:.1f}" width="{bar}" height="{h:.1f}" '
                    f'fill="{_COLOURS.get(state, "#999")}"><title>{day} {state.lower()}: {n}'
                    "</title></rect>"
                )
            shapes.append(
                f'<text x="{40 + 36 * index}" y="{height - 14}" font-size="9">{day[5:]}</text>'
            )
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<text x="4" y="14" font-size="12">Runs per day by state (max {most})</text>'
            + "".join(shapes)
            + "</svg>"
        )


_BARS = {"COMPLETED": "█", "FAILED": "▒", "CRASHED": "▓", "CANCELLED": "░"}
_COLOURS = {"COMPLETED": "#2e7d32", "FAILED": "#c62828", "CRASHED": "#6a1b9a"}


def _ordered(states: dict[str, int]) -> list[tuple[str, int]]:
    rank = {state: index for index, state in enumerate(_FINAL_ORDER)}
    return sorted(states.items(), key=lambda item: (rank.get(item[0], 99), item[0]))


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (None for no values).

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile(list(map(float, range(1, 21))), 0.95)
        (2.0, 19.0)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def _read_runs(flow_run_filter: FlowRunFilter) -> list[FlowRun]:
    runs: list[FlowRun] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_flow_runs(
                flow_run_filter=flow_run_filter,
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=PAGE,
                offset=len(runs),
            )
            runs.extend(page)
            if len(page) < PAGE:
                return runs
            if len(runs) >= MAX_RUNS:
                raise InvalidInputError(
                    "report:period", f"more than {MAX_RUNS} runs; ask for a shorter period"
                )


def _flow_names(runs: list[FlowRun]) -> dict[UUID, str]:
    ids = list({run.flow_id for run in runs})
    if not ids:
        return {}
    with get_client(sync_client=True) as client:
        flows = client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=ids)), limit=len(ids))
    return {flow.id: flow.name for flow in flows}


@task(name="read-flow-runs", cache_policy=NO_CACHE)
def summarise_flow_runs(
    since: datetime, until: datetime
) -> tuple[list[WorkflowRuns], dict[str, dict[str, int]], list[FailedRun], list[WaitingApproval]]:
    """Reads the period's runs and every paused run from the Prefect API and sums them up.

    Args:
        since: Runs expected to start at or after this time.
        until: ... and before this time.

    Returns:
        Runs per workflow, runs per day by state, failures, and waiting approvals.
    """
    runs = _read_runs(
        FlowRunFilter(
            expected_start_time=FlowRunFilterExpectedStartTime.model_validate(
                {"after_": since, "before_": until}
            )
        )
    )
    paused = _read_runs(
        FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
        )
    )
    names = _flow_names(runs + paused)
    by_workflow: dict[str, Counter[str]] = defaultdict(Counter)
    durations: dict[str, list[float]] = defaultdict(list)
    per_day: dict[str, Counter[str]] = defaultdict(Counter)
    failures: list[FailedRun] = []
    for run in runs:
        name = names.get(run.flow_id, str(run.flow_id))
        state = run.state_type.value if run.state_type else "UNKNOWN"
        by_workflow[name][state] += 1
        when = run.expected_start_time or run.created or since
        per_day[f"{when.astimezone(UTC):%Y-%m-%d}"][state] += 1
        if run.state and run.state.is_final() and run.total_run_time:
            durations[name].append(run.total_run_time.total_seconds())
        if run.state_type in (StateType.FAILED, StateType.CRASHED):
            reason = (run.state.message if run.state else None) or "no message"
            failures.append(FailedRun(workflow=name, flow_run_id=run.id, name=run.name,
                                      state=state, reason=_one_line(reason, 1000)))  # fmt: skip
    workflows = sorted(
        (
            WorkflowRuns(
                workflow=name,
                states=dict(counts),
                total=sum(counts.values()),
                p50_seconds=percentile(durations[name], 0.5),
                p95_seconds=percentile(durations[name], 0.95),
            )
            for name, counts in by_workflow.items()
        ),
        key=lambda w: (-w.total, w.workflow),
    )
    now = datetime.now(UTC)
    waiting = sorted(
        (
            WaitingApproval(
                workflow=names.get(run.flow_id, str(run.flow_id)),
                flow_run_id=run.id,
                name=run.name,
                paused_since=(run.state.timestamp if run.state else now),
                waiting_seconds=(now - (run.state.timestamp if run.state else now)).total_seconds(),
            )
            for run in paused
        ),
        key=lambda a: -a.waiting_seconds,
    )
    failures.reverse()  # newest first
    return workflows, {day: dict(c) for day, c in per_day.items()}, failures, waiting


@task(name="read-latest-dr-validations", cache_policy=NO_CACHE)
def read_latest_dr_validations() -> list[dict[str, Any]]:
    """The latest ``dr-target-<name>`` artifact of every DR validation target.

    Returns:
        One table row per target (see `flows.dr_validation.TargetResult.row`), by name.
    """
    artifact_filter = ArtifactCollectionFilter(
        key=ArtifactCollectionFilterKey(like_=TARGET_ARTIFACT_PREFIX)
    )
    artifacts: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_latest_artifacts(
                artifact_filter=artifact_filter, limit=PAGE, offset=len(artifacts)
            )
            artifacts.extend(page)
            if len(page) < PAGE:
                break
    rows: list[dict[str, Any]] = []
    for artifact in artifacts:
        if not (artifact.key or "").startswith(TARGET_ARTIFACT_PREFIX):
            continue
        data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        if isinstance(data, list) and data and isinstance(data[0], dict):
            rows.append(data[0])
    return sorted(rows, key=lambda row: str(row.get("target")))


def _period(since: object, until: object) -> tuple[datetime, datetime]:
    try:
        end = TypeAdapter(datetime | None).validate_python(until) or datetime.now(UTC)
        start_or_span = TypeAdapter(datetime | timedelta).validate_python(since)
    except ValidationError:
        raise InvalidInputError(
            "report:period", "since is a date-time or a duration (e.g. P1D); until a date-time"
        ) from None
    end = end if end.tzinfo else end.replace(tzinfo=UTC)
    if isinstance(start_or_span, timedelta):
        start = end - start_or_span
    else:
        start = start_or_span if start_or_span.tzinfo else start_or_span.replace(tzinfo=UTC)
    if start >= end:
        raise InvalidInputError("report:period", f"since ({start}) must be before until ({end})")
    return start, end


def _upload(report: Report, upload: ReportUpload) -> list[Change]:
    folder = f"{upload.prefix}{report.until:%Y-%m-%d}/"
    files = [
        ("report.md", report.markdown(), "text/markdown; charset=utf-8"),
        ("runs-per-day.svg", report.svg_chart(), "image/svg+xml"),
    ]
    put = put_s3_object if upload.kind == "s3" else put_gcs_object
    return [
        put(upload.connection, upload.bucket, folder + name, content, content_type)
        for name, content, content_type in files
    ]


@workflow(name="generate-report", validate_parameters=False, persist_result=True)
def generate_report(
    since: datetime | timedelta = timedelta(days=1),
    until: datetime | None = None,
    kubernetes: str | None = None,
    upload: ReportUpload | None = None,
) -> Report:
    """Writes the operations report of a period from the Prefect API, Kubernetes and DR results.

    Args:
        since: Start of the period, or its length before ``until`` (e.g. ``P7D``).
        until: End of the period; now when empty.
        kubernetes: Name of a saved Kubernetes connection block, for the tenant quota
            table; without one that section says it was skipped.
        upload: A bucket to write ``report.md`` and ``runs-per-day.svg`` to.

    Returns:
        The `Report` (also published as Markdown and table artifacts).

    Raises:
        InvalidInputError: A malformed period or upload, before anything is read.

    Example:
        ```python
        from flows.reports import generate_report

        generate_report(
            "P7D",
            kubernetes="prod-cluster",
            upload={"kind": "s3", "connection": "aws", "bucket": "acme-ops-reports"},
        )
        ```
    """
    start, end = _period(since, until)
    destination: ReportUpload | None = None
    if upload is not None:
        try:
            destination = ReportUpload.model_validate(upload)
        except ValidationError as error:
            raise InvalidInputError(
                "report:upload", "; ".join(str(e["msg"]) for e in error.errors())
            ) from None
    workflows, per_day, failures, waiting = summarise_flow_runs(start, end)
    quotas = list_tenant_resource_quotas(kubernetes) if kubernetes else None
    report = Report(
        since=start,
        until=end,
        workflows=workflows,
        runs_per_day=per_day,
        failures=failures,
        waiting_approvals=waiting,
        quotas=quotas,
        dr_targets=read_latest_dr_validations(),
    )
    if destination is not None:
        report = report.model_copy(update={"uploads": _upload(report, destination)})
    create_markdown_artifact(
        markdown=report.markdown(), key=REPORT_ARTIFACT_KEY, description="Operations report"
    )
    create_table_artifact(
        table=[
            {"workflow": w.workflow, "runs": w.total, **{s.lower(): n for s, n in w.states.items()},
             "p50_seconds": w.p50_seconds, "p95_seconds": w.p95_seconds}
            for w in workflows
        ] or [{"workflow": "-", "runs": 0}],
        key=f"{REPORT_ARTIFACT_KEY}-runs",
        description=f"Runs by workflow, {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC",
    )  # fmt: skip
    return report

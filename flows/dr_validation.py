"""Backup validation: every backup is fresh enough (its RPO) and really restores.

For each target (`flows.dr_targets`), concurrently up to ``max_concurrency``:

1. find the newest recovery point and compare its age with the target's RPO;
2. with ``restore_test``, restore it into a scratch resource named
   ``magicflow-dr-scratch-<run id>-<target>``, check the copy against what the source
   recorded (checksums, sizes, or the restored resource's reported properties), and
   delete the scratch resource, also when the restore or the check fails.

Before that, scratch resources older than ``sweep_after`` (left by a run that
crashed) are deleted. A progress artifact counts the targets done while it runs.
The report is a table artifact, a Markdown artifact and the flow's persisted result;
each target's latest result is also a table artifact keyed ``dr-target-<name>``,
which the operations report reads: artifacts live in Prefect's database, so any
machine that reaches the API reads them, whereas a persisted result lives in the
result storage of the machine that ran the flow. A run with any target failing
fails, with `DrValidationFailed` (which carries the report).

Example:
    ```python
    from datetime import timedelta
    from flows.dr_validation import validate_dr_backups

    report = validate_dr_backups([
        {"kind": "s3-versions", "name": "orders-dumps", "connection": "aws",
         "bucket": "acme-backups", "prefix": "orders/", "rpo": timedelta(hours=26)},
        {"kind": "vault-kv", "name": "orders-secrets", "connection": "vault",
         "path": "orders/db", "rpo": timedelta(days=7)},
    ])
    print(report.markdown())
    ```
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast
from uuid import UUID, uuid4

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.variables import Variable
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from flows.dr_targets import DrTarget, RecoveryPoint, parse_targets
from magicflow import Change, InvalidInputError, MagicFlowError, job_logger, workflow
from magicflow.recovery import SCRATCH_PREFIX, RestoreCheck, scratch_name

TARGET_ARTIFACT_PREFIX = "dr-target-"
"""Each target's latest result is the table artifact keyed ``dr-target-<target name>``."""
PUBLISHING_THREADS = 4
"""Threads writing the targets' artifacts while other targets run."""
PROGRESS_EVERY_S = 1.0
"""The progress artifact is updated at most this often (and when the last target ends)."""

REPORT_ARTIFACT_KEY = "dr-validation"
"""Key of the run's report artifacts (table and ``-report`` Markdown)."""

MAX_CONCURRENCY = 64


def describe_age(age: timedelta | None) -> str:
    """A duration as a person reads it: ``3d 4h``, ``2h 05m``, ``45s``.

    Example:
        >>> describe_age(timedelta(days=1, hours=2, minutes=3)), describe_age(timedelta(seconds=7))
        ('1d 2h', '7s')
    """
    if age is None:
        return "-"
    seconds = int(age.total_seconds())
    if seconds < 0:
        return f"-{describe_age(-age)}"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


class TargetResult(BaseModel):
    """What validation found for one target.

    Attributes:
        target: The target's name.
        kind: Its kind (``s3-versions``...).
        resource: What is backed up.
        recovery_point: The newest recovery point's id; None when there is none.
        taken: When that point was taken.
        age: Its age at the check.
        rpo: The target's RPO.
        rpo_met: Whether the point is younger than the RPO.
        restore: ``passed``, ``failed`` or ``skipped`` (no restore test asked, or no point).
        check: The restore check, when one ran.
        scratch: The scratch resource name used; None without a restore test.
        scratch_deleted: Whether the scratch resource is gone again (None: none was made).
        problems: What is wrong, one sentence each: expected, then found.
        checked_at: When the target was checked.
        flow_run_id: The validation run.
    """

    model_config = ConfigDict(frozen=True)

    target: str
    kind: str
    resource: str
    recovery_point: str | None
    taken: datetime | None
    age: timedelta | None
    rpo: timedelta
    rpo_met: bool
    restore: Literal["passed", "failed", "skipped"]
    check: RestoreCheck | None = None
    scratch: str | None = None
    scratch_deleted: bool | None = None
    problems: list[str] = Field(default_factory=list)
    checked_at: datetime
    flow_run_id: UUID | None = None

    @property
    def passed(self) -> bool:
        """True when the RPO is met and nothing failed."""
        return not self.problems

    def row(self) -> dict[str, Any]:
        """The result as one flat, JSON-friendly table row (the ``dr-target-`` artifact)."""
        return {
            "target": self.target,
            "kind": self.kind,
            "resource": self.resource,
            "recovery_point": self.recovery_point or "-",
            "taken": self.taken.isoformat() if self.taken else None,
            "age": describe_age(self.age),
            "age_seconds": self.age.total_seconds() if self.age is not None else None,
            "rpo": describe_age(self.rpo),
            "rpo_seconds": self.rpo.total_seconds(),
            "rpo_met": self.rpo_met,
            "restore": self.restore,
            "expected": _facts(self.check.expected) if self.check else "",
            "found": _facts(self.check.found) if self.check else "",
            "result": "passed" if self.passed else "failed",
            "problems": "; ".join(self.problems),
            "checked_at": self.checked_at.isoformat(),
            "flow_run_id": str(self.flow_run_id) if self.flow_run_id else None,
        }


def _facts(facts: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(facts.items()))


class DrValidationReport(BaseModel):
    """The report of one validation run.

    Attributes:
        flow_run_id: The run (None outside a flow run).
        started: When the run started.
        restore_test: Whether restore tests were run.
        results: One result per target, in the order given.
    """

    model_config = ConfigDict(frozen=True)

    flow_run_id: UUID | None
    started: datetime
    restore_test: bool
    results: list[TargetResult]

    @property
    def passed(self) -> bool:
        """True when every target passed."""
        return all(result.passed for result in self.results)

    @property
    def failed(self) -> list[TargetResult]:
        """The targets that failed."""
        return [result for result in self.results if not result.passed]

    def summary(self) -> str:
        """One line: how many passed, and which failed why."""
        passed = len(self.results) - len(self.failed)
        text = f"{passed} of {len(self.results)} targets passed"
        if self.failed:
            text += "; failed: " + ", ".join(
                f"{r.target} ({'RPO' if not r.rpo_met else 'restore'})" for r in self.failed
            )
        return text

    def markdown(self) -> str:
        """The report as Markdown: a summary, a table of all targets, then each failure."""
        lines = [
            f"# DR validation: {self.summary()}",
            "",
            f"Started {self.started:%Y-%m-%d %H:%M:%S} UTC; restore tests "
            f"{'on' if self.restore_test else 'off'}.",
            "",
            "| target | kind | newest recovery point | age | RPO | restore test | result |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.results:
            mark = "passed" if r.passed else "**FAILED**"
            lines.append(
                f"| {r.target} | {r.kind} | `{r.recovery_point or '-'}` | {describe_age(r.age)} "
                f"| {describe_age(r.rpo)} | {r.restore} | {mark} |"
            )
        if self.failed:
            lines += ["", "## Failures", ""]
            for r in self.failed:
                lines.append(f"### {r.target} (`{r.resource}`)")
                lines.append(f"Recovery point: `{r.recovery_point or 'none'}`.")
                lines += [f"- {problem}" for problem in r.problems]
                lines.append("")
        return "\n".join(lines)


class DrValidationFailed(MagicFlowError):
    """A validation run found targets that break their RPO or fail their restore test.

    Attributes:
        report: The whole report (``failed`` lists the failing targets).
    """

    def __init__(self, report: DrValidationReport) -> None:
        self.report = report
        super().__init__("dr:validation", report.summary())

    def __reduce__(self) -> tuple[type, tuple[DrValidationReport]]:  # type: ignore[override]
        return (type(self), (self.report,))


def _problem_with_rpo(point: RecoveryPoint | None, target: DrTarget, now: datetime) -> str | None:
    if point is None:
        return f"no recovery point found in {target.resource}"
    if point.created is None or now - point.created > target.rpo:
        taken = f"{point.created:%Y-%m-%d %H:%M:%S} UTC" if point.created else "an unknown time"
        age = describe_age(now - point.created) if point.created else "unknown"
        return (
            f"RPO {describe_age(target.rpo)}: expected a recovery point taken after "
            f"{now - target.rpo:%Y-%m-%d %H:%M:%S} UTC, found {point.id} taken {taken} "
            f"({age} old)"
        )
    return None


def _why(error: BaseException) -> str:
    # Job errors name the resource and the cause and, by contract, hold no secret.
    return str(error) if isinstance(error, MagicFlowError) else type(error).__name__


# The target's result goes into the report (the flow's persisted result) and its own
# artifact; stored again on its own, nothing would read it.
@task(
    name="validate-dr-target",
    task_run_name="validate {target.name}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def validate_dr_target(
    target: DrTarget, restore_test: bool, scratch: str, flow_run_id: UUID | None = None
) -> TargetResult:
    """Checks one target: its newest recovery point's age and, if asked, a restore test.

    The scratch resource is deleted in a ``finally``: after a passed check, a failed
    one, and a restore that failed half way.

    Args:
        target: The target.
        restore_test: Whether to restore into a scratch resource and check it.
        scratch: The scratch resource name for this target in this run.
        flow_run_id: The validation run, recorded in the result.

    Returns:
        The target's result (the flow publishes it as the table artifact
        ``dr-target-<name>``); failures are in ``problems``, never raised.
    """
    problems: list[str] = []
    point: RecoveryPoint | None = None
    check: RestoreCheck | None = None
    restore: Literal["passed", "failed", "skipped"] = "skipped"
    scratch_deleted: bool | None = None
    try:
        point = target.newest_recovery_point()
    except Exception as error:
        problems.append(f"could not list the recovery points: {_why(error)}")
    now = datetime.now(UTC)
    rpo_problem = _problem_with_rpo(point, target, now) if not problems else None
    problems += [rpo_problem] if rpo_problem else []
    if restore_test and point is not None:
        try:
            target.restore(point, scratch)
            check = target.verify(point, scratch)
            restore = "passed" if check.passed else "failed"
            if not check.passed:
                problems.append(f"restore check of {point.id}: {check.problem}")
        except Exception as error:
            restore = "failed"
            problems.append(f"restore test of {point.id} failed: {_why(error)}")
        finally:
            try:
                deleted = target.delete_scratch(scratch)
                scratch_deleted = None if deleted is None else True
            except Exception as error:
                scratch_deleted = False
                problems.append(f"scratch resource {scratch} was not deleted: {_why(error)}")
    result = TargetResult(
        target=target.name,
        kind=target.kind,
        resource=target.resource,
        recovery_point=point.id if point else None,
        taken=point.created if point else None,
        age=now - point.created if point and point.created else None,
        rpo=target.rpo,
        rpo_met=rpo_problem is None and point is not None,
        restore=restore,
        check=check,
        scratch=scratch if restore_test and point is not None else None,
        scratch_deleted=scratch_deleted,
        problems=problems,
        checked_at=now,
        flow_run_id=flow_run_id,
    )
    return result


def _publish_target(result: TargetResult) -> None:
    row = result.row()
    create_table_artifact(
        table=[row],
        key=f"{TARGET_ARTIFACT_PREFIX}{result.target}",
        description=f"DR validation of {result.target}: {row['result']}",
    )


@task(name="sweep-dr-scratch", cache_policy=NO_CACHE)
def sweep_dr_scratch(targets: Sequence[DrTarget], created_before: datetime) -> list[Change]:
    """Deletes scratch resources older than `created_before`, left by runs that crashed.

    One sweep per kind and connection that the targets use. A failing sweep is
    logged, not raised: this run's own scratch resources are deleted by their targets.

    Args:
        targets: The run's targets.
        created_before: Scratch resources created before this time are deleted.

    Returns:
        The sweeps' changes.
    """
    swept: dict[tuple[Any, ...], DrTarget] = {}
    for target in targets:
        place = (
            target.kind,
            target.connection,
            getattr(target, "scratch_mount", None),
            getattr(target, "region", None),
        )
        swept.setdefault(place, target)
    changes: list[Change] = []
    for target in swept.values():
        try:
            change = target.delete_scratch(SCRATCH_PREFIX, created_before)
        except MagicFlowError as error:
            job_logger().warning("Could not sweep old scratch resources: %s", error)
            continue
        if change is not None:
            changes.append(change)
    return changes


def _check_options(restore_test: object, max_concurrency: object, sweep_after: object) -> None:
    if not isinstance(restore_test, bool):
        raise InvalidInputError("dr:validation", "restore_test is true or false")
    if not isinstance(max_concurrency, int) or not 1 <= max_concurrency <= MAX_CONCURRENCY:
        raise InvalidInputError(
            "dr:validation", f"max_concurrency is a whole number from 1 to {MAX_CONCURRENCY}"
        )
    if sweep_after is not None and (
        not isinstance(sweep_after, timedelta) or sweep_after <= timedelta(0)
    ):
        raise InvalidInputError("dr:validation", "sweep_after is a positive duration or none")


def _publish(report: DrValidationReport) -> None:
    rows = [result.row() for result in report.results]
    create_table_artifact(
        table=rows, key=REPORT_ARTIFACT_KEY, description=f"DR validation: {report.summary()}"
    )
    create_markdown_artifact(
        markdown=report.markdown(),
        key=f"{REPORT_ARTIFACT_KEY}-report",
        description=report.summary(),
    )


DR_TARGETS_VARIABLE = "dr_targets"
"""The Prefect variable holding the nightly deployment's targets (a JSON list)."""


def configured_dr_targets() -> list[Any]:
    """The targets saved in the Prefect variable ``dr_targets``.

    Returns:
        The variable's list of targets (checked later by `parse_targets`).

    Raises:
        InvalidInputError: About ``dr:targets`` when the variable is unset or not a
            JSON list, saying how to set it.

    Example:
        ```sh
        prefect variable set dr_targets '[{"kind": "rds-snapshots", ...}]' --overwrite
        ```
    """
    value = Variable.get(DR_TARGETS_VARIABLE, default=None)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, list):
        raise InvalidInputError(
            "dr:targets",
            f"no targets given and the Prefect variable {DR_TARGETS_VARIABLE} holds no JSON "
            f"list; set it with `prefect variable set {DR_TARGETS_VARIABLE} '[...]' --overwrite`",
        )
    return value


@workflow(name="validate-dr-backups", persist_result=True, validate_parameters=False)
def validate_dr_backups(
    targets: list[DrTarget] | None = None,
    restore_test: bool = True,
    max_concurrency: int = 4,
    sweep_after: timedelta | None = timedelta(days=1),
) -> DrValidationReport:
    """Validates backups: each target's newest recovery point meets its RPO and restores.

    Targets are checked concurrently (at most ``max_concurrency`` at a time). With
    ``restore_test``, each newest point is restored into a scratch resource, checked
    and deleted again. The run fails when any target breaks its RPO or its restore
    test; the report names the target, the recovery point, and what was expected and
    found.

    Args:
        targets: The backups to validate (see `flows.dr_targets`), as dicts or models;
            None (the nightly deployment) reads them from the JSON Prefect variable
            ``dr_targets`` when the run starts.
        restore_test: Restore each newest recovery point into scratch and check it.
        max_concurrency: How many targets are checked at the same time (1 to 64).
        sweep_after: Scratch resources older than this, left by crashed runs, are
            deleted first (from the systems the targets use); None to skip.

    Returns:
        The `DrValidationReport` (also the run's persisted result).

    Raises:
        InvalidInputError: A target is malformed (unknown kind, RPO of zero or less...),
            naming it, before anything is read or written.
        DrValidationFailed: Some target failed; ``.report`` has the whole report.

    Example:
        ```python
        from flows.dr_validation import validate_dr_backups

        validate_dr_backups(
            [{"kind": "rds-snapshots", "name": "orders-db", "connection": "aws",
              "db_instance_identifier": "orders", "rpo": "P1D"}],
            max_concurrency=8,
        )
        ```
    """
    parsed = parse_targets(targets if targets is not None else configured_dr_targets())
    if isinstance(sweep_after, str | int | float):
        sweep_after = _duration(sweep_after)
    _check_options(restore_test, max_concurrency, sweep_after)
    context = FlowRunContext.get()
    run_id = context.flow_run.id if context and context.flow_run else uuid4()
    started = datetime.now(UTC)
    if sweep_after is not None:
        sweep_dr_scratch(parsed, started - sweep_after)
    # Synchronous in a sync flow: Prefect returns the id, not a coroutine.
    progress = cast(
        UUID,
        create_progress_artifact(progress=0.0, description=f"0 of {len(parsed)} targets done"),
    )
    runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(max_workers=max_concurrency)
    # Each target's artifact is written as the target finishes, by threads of its own:
    # an API round trip that holds no target's slot. Each call runs in a copy of this
    # run's context, so the artifact belongs to this flow run.
    publisher = ThreadPoolExecutor(max_workers=PUBLISHING_THREADS, thread_name_prefix="dr-publish")
    with runner, publisher:
        futures: list[PrefectFuture[TargetResult]] = [
            runner.submit(
                validate_dr_target,
                parameters={
                    "target": target,
                    "restore_test": restore_test,
                    "scratch": scratch_name(run_id, target.name),
                    "flow_run_id": run_id,
                },
            )
            for target in parsed
        ]
        published: list[Future[None]] = []
        updated = time.monotonic()
        for done, future in enumerate(as_completed(futures), start=1):
            published.append(publisher.submit(copy_context().run, _publish_target, future.result()))
            # At most one progress update a second (and the last): each is a round trip.
            if done == len(futures) or time.monotonic() - updated >= PROGRESS_EVERY_S:
                update_progress_artifact(
                    progress,
                    progress=100.0 * done / len(futures),
                    description=f"{done} of {len(futures)} targets done",
                )
                updated = time.monotonic()
        results = [future.result() for future in futures]
        for publishing in published:
            publishing.result()
    report = DrValidationReport(
        flow_run_id=run_id, started=started, restore_test=restore_test, results=results
    )
    _publish(report)
    if not report.passed:
        raise DrValidationFailed(report)
    return report


def _duration(value: str | float) -> timedelta:
    try:
        return TypeAdapter(timedelta).validate_python(value)
    except ValueError:
        raise InvalidInputError("dr:validation", "sweep_after is a duration, e.g. P1D") from None

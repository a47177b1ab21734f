"""A runbook run, step by step: jobs submitted with their undo, the report, and the tenant lock.

The tenant runbooks (`flows.tenant_provisioning`, `flows.quota_adjustment`) are
Prefect flows whose steps are jobs. `Runbook` keeps, for one run, every step the
runbook planned: submitted (a Prefect future), skipped (a system the spec left
out) or never started (its input failed). From that it builds the run's report
(a Markdown artifact and a table artifact), the list of `Change` the flow
returns, and, on failure, the rollback.

Rollback: the undo of every step that created something in this run (its
`Change` is ``created`` and not a dry run), in the reverse order in which the
creations finished, each undo a task run of its own (tagged ``rollback``, named
``undo <resource>``) so the Prefect UI shows it step by step. Nothing that
existed before the run is touched: steps that found a resource (``unchanged``,
``updated``) have no undo. Prefect's transactions are not used for this because
a transaction rolls back as soon as any task attempt inside it fails, including
an attempt that is then retried successfully, and while concurrent branches are
still creating resources; a rollback has to wait until every branch has settled.

`tenant_lock` serializes the runs of one tenant with a Prefect global concurrency
limit of 1 named after the tenant, created on first use (Prefect's ``concurrency``
does not create a missing limit: it skips acquisition with a warning).

Example:
    ```python
    from flows.runbook import Runbook, tenant_lock, undo_with
    from tasks import delete_namespace, ensure_namespace

    @flow
    def onboard(team: str, rollback_on_failure: bool = False):
        with tenant_lock(team):
            runbook = Runbook("onboard", team)
            runbook.submit(
                f"k8s:namespace/{team}", ensure_namespace, "prod-cluster", team,
                undo=undo_with(delete_namespace, "prod-cluster", team),
            )
            runbook.raise_on_failure(rollback_on_failure)
            return runbook.complete()
    ```
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ParamSpec, TypeVar

from prefect import Flow, Task, get_client, tags
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.blocks.core import Block
from prefect.client.schemas.actions import (
    GlobalConcurrencyLimitCreate,
    GlobalConcurrencyLimitUpdate,
)
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.futures import PrefectFuture, wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from magicflow import (
    Action,
    Change,
    DeadlineExceededError,
    MagicFlowError,
    connection,
    job_logger,
)
from magicflow.changes import summarize_changes
from magicflow.workflows import workflow

P = ParamSpec("P")
R = TypeVar("R")
B = TypeVar("B", bound=Block)

Undo = Callable[[Change], Change]
"""Undoes what a step created, given the step's `Change` (e.g. to read an id from it)."""

TENANT_LOCK_PREFIX = "magicflow-tenant-"
"""Global concurrency limits serializing a tenant's runs are named ``<prefix><tenant>``."""

TENANT_LOCK_TIMEOUT_SECONDS = 2 * 86400.0
"""How long a run waits for another run of the same tenant (e.g. one waiting for approval)."""

ROLLBACK_TAG = "rollback"
"""Tag of the undo task runs."""

MAX_PARALLEL_STEPS = 16
"""Jobs that may run at once in one run (they wait on the network, not the CPU)."""

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def runbook_flow(
    name: str, tenant_of: Callable[[dict[str, Any]], object]
) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """The `magicflow.workflow` decorator with what every tenant runbook shares.

    - The run is named ``<name>/<tenant>``.
    - Parameters are validated by the flow itself, so that a bad request fails the
      run with an `InvalidInputError` naming its fields (and its status says so),
      instead of failing before the flow starts.
    - Up to `MAX_PARALLEL_STEPS` jobs run at once.

    Args:
        name: The flow's name, e.g. ``provision-tenant``.
        tenant_of: Finds the tenant's name in the run's parameters (as given: a model,
            or the JSON of a request).

    Returns:
        The decorator.

    Example:
        ```python
        @runbook_flow("offboard-tenant", lambda parameters: parameters.get("tenant"))
        def offboard_tenant(tenant: str) -> list[Change]: ...
        ```
    """

    def run_name() -> str:
        tenant = tenant_of(dict(flow_run.parameters))
        valid = isinstance(tenant, str) and len(tenant) <= 63 and _DNS_LABEL.fullmatch(tenant)
        return f"{name}/{tenant if valid else 'invalid-request'}"

    return workflow(
        name=name,
        flow_run_name=run_name,
        validate_parameters=False,
        task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_STEPS),
    )


class Outcome(StrEnum):
    """What became of a planned step."""

    DONE = "done"
    FAILED = "failed"
    NOT_STARTED = "not started"
    SKIPPED = "skipped"


@dataclass
class Step:
    """One planned step of a runbook run.

    Attributes:
        resource: What the step is about, e.g. ``k8s:namespace/acme``.
        job: The job's name (``ensure_namespace``), or a short description.
        future: The submitted job, or None when the step was skipped or never started.
        undo: How to undo what the step creates, or None when it creates nothing.
        reason: Why the step was skipped or never started.
    """

    resource: str
    job: str
    future: PrefectFuture[Any] | None = None
    undo: Undo | None = None
    reason: str | None = None
    fixed: Change | None = None

    @property
    def skipped(self) -> bool:
        """True for a step that was not attempted."""
        return self.fixed is not None and self.fixed.action is Action.SKIPPED

    @property
    def outcome(self) -> Outcome:
        """Done, failed, not started (its input failed) or skipped."""
        if self.skipped:
            return Outcome.SKIPPED
        if self.fixed is not None:
            return Outcome.DONE
        if self.future is None:
            return Outcome.NOT_STARTED
        state = self.future.state
        if state.is_completed():
            return Outcome.DONE
        if state.is_pending() or state.is_scheduled():  # "NotReady": an input failed
            return Outcome.NOT_STARTED
        return Outcome.FAILED

    @property
    def result(self) -> Any:
        """The job's result (a `Change` for most jobs); None unless done."""
        if self.outcome is not Outcome.DONE:
            return None
        if self.fixed is not None:
            return self.fixed
        assert self.future is not None  # noqa: S101 - DONE without a fixed change
        return self.future.result()

    @property
    def change(self) -> Change | None:
        """The step's `Change` (skipped steps have one too), or None."""
        if self.fixed is not None:
            return self.fixed
        result = self.result
        return result if isinstance(result, Change) else None

    @property
    def error(self) -> BaseException | None:
        """Why the step failed, or None."""
        if self.outcome is not Outcome.FAILED:
            return None
        assert self.future is not None  # noqa: S101 - FAILED implies a future
        error = self.future.state.result(raise_on_failure=False)
        return error if isinstance(error, BaseException) else None

    @property
    def finished_at(self) -> datetime | None:
        """When the step's job finished, for the rollback order."""
        return self.future.state.timestamp if self.future is not None else None


def connection_for(resource: str, field: str, name: str, block_type: type[B]) -> B:
    """Loads the block a request's field names, or fails naming the field.

    Args:
        resource: What the request is about, e.g. ``tenant-spec:acme``.
        field: The field that names the block, e.g. ``aws.connection``.
        name: The block's name.
        block_type: The block's type.

    Returns:
        The block.

    Raises:
        NotFoundError: No such block; the message names the field, the block and how
            to create it.
        InvalidInputError: The name is that of a block of another type.

    Example:
        ```python
        vault = connection_for("tenant-spec:acme", "vault.connection", "vault", VaultConnection)
        ```
    """
    try:
        return connection(name, block_type)
    except MagicFlowError as error:
        raise type(error)(resource, f"{field}: {error.cause}") from None


def undo_with(undo_job: Task[..., Change], *args: Any, **kwargs: Any) -> Undo:
    """An `Undo` that runs `undo_job` with these arguments as its own task run.

    Args:
        undo_job: A deleting job, e.g. `tasks.delete_namespace`.
        *args: Its positional arguments.
        **kwargs: Its keyword arguments.

    Returns:
        The undo; its task run is named ``undo <resource>``.

    Example:
        ```python
        undo = undo_with(delete_namespace, kubernetes, "acme")
        ```
    """

    def undo(change: Change) -> Change:
        return _named(undo_job, f"undo {change.resource}")(*args, **kwargs)

    return undo


def _named(job: Task[..., R], name: str) -> Task[..., R]:
    # A callable, because Prefect formats a string task-run name with the parameters.
    return job.with_options(task_run_name=lambda: name)


class Runbook:
    """The steps of one runbook run, their report and their rollback.

    Args:
        workflow: The workflow's name, e.g. ``provision-tenant`` (titles and artifact keys).
        tenant: The tenant the run is about.
        dry_run: Whether the run only plans (it then never rolls back).
    """

    def __init__(self, workflow: str, tenant: str, dry_run: bool = False) -> None:
        self.workflow = workflow
        self.tenant = tenant
        self.dry_run = dry_run
        self.steps: list[Step] = []
        self.rolled_back: list[tuple[Step, Change | BaseException]] = []

    # --- planning -----------------------------------------------------------------------

    def submit(
        self,
        resource: str,
        job: Task[..., R],
        *args: Any,
        undo: Undo | None = None,
        wait_for: Iterable[PrefectFuture[Any]] = (),
        **kwargs: Any,
    ) -> PrefectFuture[R]:
        """Submits a job as a step (it runs concurrently with the other submitted steps).

        Args:
            resource: What the step is about (shown in the report and the task-run name).
            job: The job.
            *args: The job's positional arguments (futures are resolved first).
            undo: How to undo what the step creates (see `undo_with`).
            wait_for: Steps that must finish first; if one fails, this step never starts.
            **kwargs: The job's keyword arguments.

        Returns:
            The step's future.
        """
        named = _named(job, f"{job.name} {resource}")
        future = named.submit(*args, wait_for=list(wait_for), **kwargs)
        self.steps.append(Step(resource=resource, job=job.name, future=future, undo=undo))
        return future

    def skip(self, resource: str, reason: str) -> None:
        """Records a step that was not attempted (its system is not in the spec).

        Args:
            resource: What the step would have been about.
            reason: Why it is skipped, shown in the report and in the `Change`'s detail.
        """
        change = Change(
            resource=resource,
            action=Action.SKIPPED,
            dry_run=self.dry_run,
            detail={"reason": reason},
        )
        self.steps.append(Step(resource=resource, job="-", reason=reason, fixed=change))
        job_logger().info("%s: skipped (%s)", resource, reason)

    def found(self, change: Change, job: str) -> None:
        """Records a step the runbook settled from what an earlier step read.

        Args:
            change: The outcome, e.g. ``unchanged`` for a config file that the target
                branch already holds.
            job: The job whose result it was concluded from.
        """
        self.steps.append(Step(resource=change.resource, job=job, fixed=change))

    def never_started(self, resource: str, job: str, reason: str) -> None:
        """Records a step that could not start because a step it needs failed.

        Args:
            resource: What the step would have been about.
            job: The job it would have run.
            reason: Which step it waited for.
        """
        self.steps.append(Step(resource=resource, job=job, reason=reason))

    def result_of(self, future: PrefectFuture[R]) -> R | None:
        """Waits for a step and returns its result, or None when it failed or never ran.

        Args:
            future: A future returned by `submit`.

        Returns:
            The job's result, or None (the failure is in the report).
        """
        future.wait()
        state = future.state
        return future.result() if state.is_completed() else None

    # --- results ------------------------------------------------------------------------

    def settle(self) -> None:
        """Waits until every submitted step has finished (or will never start)."""
        wait([step.future for step in self.steps if step.future is not None])

    @property
    def failed(self) -> list[Step]:
        """Steps that failed, in plan order."""
        return [step for step in self.steps if step.outcome is Outcome.FAILED]

    def changes(self) -> list[Change]:
        """Every step's `Change`, skipped ones included, in plan order."""
        return [change for step in self.steps if (change := step.change) is not None]

    def rollback(self) -> list[Change]:
        """Undoes what this run created, newest first; each undo is a task run of its own.

        Steps whose `Change` is not ``created``, or is a dry run, are left alone: what
        existed before the run survives. An undo that fails is reported and the
        others still run.

        Returns:
            The undo jobs' changes (``deleted``, or ``unchanged`` when already gone).
        """
        created = [
            step
            for step in self.steps
            if step.undo is not None
            and (change := step.change) is not None
            and change.action is Action.CREATED
            and not change.dry_run
        ]
        created.sort(key=lambda step: step.finished_at or datetime.min, reverse=True)
        undone: list[Change] = []
        logger = job_logger()
        with tags(ROLLBACK_TAG):
            for step in created:
                change = step.change
                assert change is not None and step.undo is not None  # noqa: S101 - filtered
                try:
                    result = step.undo(change)
                except Exception as error:  # reported; the other undos still run
                    logger.error("rollback of %s failed: %s", step.resource, _describe(error))
                    self.rolled_back.append((step, error))
                else:
                    self.rolled_back.append((step, result))
                    undone.append(result)
        return undone

    def failure(self) -> MagicFlowError:
        """The error a failed run raises: the first failure's type, with a summary.

        Returns:
            A `MagicFlowError` (of the first failed step's type when it is one) about
            ``tenant:<name>`` that says what failed, and what was created and rolled back.
        """
        failed = self.failed
        first = failed[0].error if failed else None
        counts = self._counts()
        cause = (
            f"{len(failed)} step(s) failed, first {failed[0].resource}: {_describe(first)}"
            if failed
            else "the run failed"
        )
        cause += (
            f"; {counts[Action.CREATED.value]} created, {counts[Outcome.NOT_STARTED.value]} "
            "never started"
        )
        if self.rolled_back:
            undone = sum(1 for _, result in self.rolled_back if isinstance(result, Change))
            cause += f"; rolled back {undone} of {len(self.rolled_back)}"
        cause += "; see the run's report artifact"
        error_type = type(first) if isinstance(first, MagicFlowError) else MagicFlowError
        try:
            return error_type(f"tenant:{self.tenant}", cause)
        except TypeError:  # a subclass with another constructor
            return MagicFlowError(f"tenant:{self.tenant}", cause)

    def raise_on_failure(self, rollback_on_failure: bool = False) -> None:
        """Waits for every step; when one failed, reports, optionally rolls back, and raises.

        Args:
            rollback_on_failure: Undo what this run created before raising (never in a
                dry run).

        Raises:
            MagicFlowError: A step failed (see `failure`); the report artifacts say which,
                what was created, what never started and what was rolled back.
        """
        self.settle()
        if not self.failed:
            return
        if rollback_on_failure and not self.dry_run:
            self.rollback()
        title = f"{self.workflow} {self.tenant}: failed"
        self.publish_report(title, table=True)
        raise self.failure()

    def complete(self) -> list[Change]:
        """Publishes the report of a run that succeeded and returns its changes.

        Returns:
            Every step's `Change`, in plan order.
        """
        self.settle()
        outcome = "planned (dry run)" if self.dry_run else "completed"
        self.publish_report(f"{self.workflow} {self.tenant}: {outcome}", table=False)
        return self.changes()

    # --- the report -----------------------------------------------------------------------

    def _counts(self) -> dict[str, int]:
        counts = summarize_changes(self.changes())
        for outcome in (Outcome.FAILED, Outcome.NOT_STARTED):
            counts[outcome.value] = sum(1 for step in self.steps if step.outcome is outcome)
        return counts

    def report_rows(self) -> list[dict[str, str]]:
        """One row per step: resource, job, outcome, detail; then the rollback's undos."""
        rows = []
        for step in self.steps:
            change = step.change
            if change is not None:
                outcome = change.action.value + (" (dry run)" if change.dry_run else "")
                detail = ", ".join(f"{k}={v}" for k, v in sorted(change.detail.items()))
            elif step.outcome is Outcome.FAILED:
                outcome, detail = "failed", _describe(step.error)
            elif step.outcome is Outcome.NOT_STARTED:
                outcome = "not started"
                detail = step.reason or "a step it needs failed"
            else:
                outcome, detail = "done", type(step.result).__name__
            rows.append(
                {"resource": step.resource, "job": step.job, "outcome": outcome, "detail": detail}
            )
        for step, result in self.rolled_back:
            rows.append(
                {
                    "resource": step.resource,
                    "job": "rollback",
                    "outcome": result.action.value if isinstance(result, Change) else "failed",
                    "detail": "" if isinstance(result, Change) else _describe(result),
                }
            )
        return rows

    def report_markdown(self, title: str) -> str:
        """The run's report as Markdown.

        Args:
            title: The report's heading.

        Returns:
            A summary line, then what failed, what this run created or updated, what
            never started, what was skipped and what was rolled back.
        """
        counts = self._counts()
        summary = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "nothing to do"
        lines = [f"# {title}", "", f"{'Dry run: ' if self.dry_run else ''}{summary}.", ""]
        rows = self.report_rows()
        sections = (
            ("Failed", [r for r in rows if r["outcome"] == "failed" and r["job"] != "rollback"]),
            ("Created by this run", [r for r in rows if r["outcome"].startswith("created")]),
            ("Updated", [r for r in rows if r["outcome"].startswith("updated")]),
            ("Never started", [r for r in rows if r["outcome"] == "not started"]),
            ("Skipped", [r for r in rows if r["outcome"] == "skipped"]),
            ("Rolled back", [r for r in rows if r["job"] == "rollback"]),
        )
        for heading, section in sections:
            if section:
                lines += [f"## {heading}", ""]
                lines += [
                    f"- `{r['resource']}` ({r['job']}): {r['outcome']}"
                    + (f" - {r['detail']}" if r["detail"] else "")
                    for r in section
                ]
                lines.append("")
        return "\n".join(lines)

    def publish_report(self, title: str, table: bool) -> None:
        """Publishes the Markdown report, and the table of every step when `table` is set.

        A completed run's changes table is published by `magicflow.workflow`; a failed
        run needs this one, which also lists failed and never-started steps.

        Args:
            title: The report's heading, e.g. ``provision-tenant acme: failed``.
            table: Also publish the table of steps.
        """
        key = f"{self.workflow}-{self.tenant}"
        create_markdown_artifact(
            self.report_markdown(title), key=f"{key}-report", description=title
        )
        if table:
            create_table_artifact(self.report_rows(), key=f"{key}-steps", description=title)


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    # By the job contract, MagicFlow errors hold no secret; others are named by type only.
    if isinstance(error, MagicFlowError):
        return f"{type(error).__name__}: {error}"
    return type(error).__name__


# --- the tenant lock -----------------------------------------------------------------------


def tenant_lock_name(tenant: str) -> str:
    """Name of the global concurrency limit that serializes a tenant's runs."""
    return f"{TENANT_LOCK_PREFIX}{tenant}"


def _ensure_limit_of_one(name: str) -> None:
    """Creates the concurrency limit with one slot, or makes an existing one so."""
    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
            except ObjectAlreadyExists:  # another run created it first
                pass
            return
        if limit.limit != 1 or not limit.active:
            client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(limit=1, active=True)
            )


@contextmanager
def tenant_lock(
    tenant: str, timeout_seconds: float = TENANT_LOCK_TIMEOUT_SECONDS
) -> Iterator[None]:
    """Holds the tenant's slot: no other run of a tenant runbook for it runs meanwhile.

    Args:
        tenant: The tenant's name.
        timeout_seconds: How long to wait for another run of the tenant to finish.

    Yields:
        Nothing; the slot is held until the block ends (its lease is renewed meanwhile,
        and expires a few minutes after a crashed run).

    Raises:
        DeadlineExceededError: Another run held the slot for longer than the timeout.

    Example:
        ```python
        with tenant_lock("acme"):
            ...  # no other provisioning or quota adjustment of acme runs now
        ```
    """
    name = tenant_lock_name(tenant)
    _ensure_limit_of_one(name)
    job_logger().info("Waiting for the tenant lock %r (one run per tenant at a time)", name)
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(name, occupy=1, strict=True, timeout_seconds=timeout_seconds)
            )
        except TimeoutError:
            raise DeadlineExceededError(
                f"tenant:{tenant}",
                f"another run of this tenant held its lock for more than {timeout_seconds:g} s",
            ) from None
        job_logger().info("Holding the tenant lock %r", name)
        yield


def tag_current_run(new_tags: Sequence[str]) -> None:
    """Adds tags to the running flow run (a flow can set its own run's name, not its tags).

    Args:
        new_tags: Tags to add, e.g. ``["tenant:acme"]``.
    """
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(context.flow_run.id).tags
        if set(new_tags) <= set(current):
            return
        client.update_flow_run(context.flow_run.id, tags=[*current, *new_tags])

"""DR invocation: a failover plan, published, approved by a second person, then applied.

1. The plan (`flows.dr_plan`) is checked, and each step is planned live from the
   backends (its job in dry-run mode): what would change is published as a Markdown
   artifact. A dry run (the default) stops here.
2. The run pauses for a human decision (`DrApproval`: approver, approve or deny, a
   reason), given in the Prefect UI (the run's *Resume* button shows the form) or from
   Python with ``resume_flow_run(flow_run_id, run_input={...})``. The requester may not
   approve their own request: such an approval is refused and the run keeps waiting.
   No decision before ``approval_timeout``, or a denial, fails the run with nothing
   changed.
3. The steps are applied in order. Each is an idempotent job, so a rerun after a
   step failed plans and applies again, and reports the steps already done
   ``unchanged``.

Who requested the run: the ``requested_by`` parameter, else the run's
``magicflow-requested-by:`` tag (set from a Kafka request's ``requested_by``). A real
invocation needs one. Only one invocation runs at a time: its deployment has a
concurrency limit of 1 (``prefect.yaml``).

Example:
    ```python
    from flows.dr_invocation import invoke_dr

    plan = {"name": "orders-eu-central", "steps": [
        {"kind": "ssm-parameter", "name": "db-host", "connection": "aws",
         "parameter": "/orders/db/host", "value": "orders-dr.internal"}]}
    invoke_dr(plan)  # dry run: publishes the plan, changes nothing
    invoke_dr(plan, dry_run=False, requested_by="alice")  # pauses for a second person
    ```
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field, TypeAdapter, ValidationError

from flows.dr_plan import DrPlan, DrStep, parse_plan, step_error
from flows.dr_targets import describe_validation_error
from magicflow import (
    Change,
    DeadlineExceededError,
    InvalidInputError,
    MagicFlowError,
    PermissionDeniedError,
    job_logger,
    publish_changes_artifact,
    workflow,
)
from magicflow.messages import REQUESTED_BY_TAG_PREFIX

APPROVAL_POLL_SECONDS = 2
"""How often a paused invocation asks Prefect whether it was resumed."""

MAX_APPROVAL_TIMEOUT = timedelta(days=7)


class DrApproval(RunInput):
    """The decision on a DR invocation, given in the Prefect UI or with ``resume_flow_run``.

    Attributes:
        approver: Who decides; not the requester.
        decision: ``approve`` or ``deny``.
        reason: Why, for the record (at least 3 characters).
    """

    approver: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"\S",
        description="Your name. The requester cannot approve their own request.",
    )
    decision: Literal["approve", "deny"] = Field(
        description="approve: apply the plan now; deny: stop, changing nothing."
    )
    reason: str = Field(min_length=3, max_length=1000, description="Why, for the record.")


def same_person(one: str, other: str) -> bool:
    """Whether two identities name the same person: ``portal:Alice`` is ``alice``.

    Example:
        >>> same_person("portal:Alice", " alice "), same_person("alice", "bob")
        (True, False)
    """

    def forms(identity: str) -> set[str]:
        text = identity.strip().lower()
        return {text, text.rsplit(":", 1)[-1].strip()}

    return bool(forms(one) & forms(other))


def _requester(requested_by: str | None) -> str | None:
    if requested_by:
        return requested_by
    context = FlowRunContext.get()
    tags = context.flow_run.tags if context and context.flow_run else []
    return next(
        (
            tag[len(REQUESTED_BY_TAG_PREFIX) :]
            for tag in tags
            if tag.startswith(REQUESTED_BY_TAG_PREFIX)
        ),
        None,
    )


def _check_options(plan: DrPlan, dry_run: object, approval_timeout: object) -> timedelta:
    resource = f"dr:plan/{plan.name}"
    if not isinstance(dry_run, bool):
        raise InvalidInputError(resource, "dry_run is true or false")
    try:
        timeout: timedelta = TypeAdapter(timedelta).validate_python(approval_timeout)
    except ValidationError as error:
        raise InvalidInputError(
            resource, f"approval_timeout: {describe_validation_error(error)}"
        ) from None
    if not timedelta(seconds=1) <= timeout <= MAX_APPROVAL_TIMEOUT:
        raise InvalidInputError(resource, "approval_timeout is from 1 second to 7 days")
    return timeout


def _plan_table(steps: list[DrStep], planned: list[Change]) -> str:
    lines = [
        "| # | step | kind | resource | would | detail |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for number, (step, change) in enumerate(zip(steps, planned, strict=True), start=1):
        detail = ", ".join(f"{key}={value}" for key, value in sorted(change.detail.items()))
        would = "no change" if not change.changed else change.action.value
        lines.append(
            f"| {number} | {step.name} | {step.kind} | `{change.resource}` | {would} | {detail} |"
        )
    return "\n".join(lines)


def _plan_markdown(
    plan: DrPlan, steps: list[DrStep], planned: list[Change], requester: str | None, dry_run: bool
) -> str:
    changing = sum(change.changed for change in planned)
    lines = [
        f"# DR plan {plan.name}: {changing} of {len(planned)} steps would change",
        "",
        plan.description,
        "",
        f"Requested by `{requester or 'unknown'}`. "
        + ("Dry run: nothing is applied." if dry_run else "Waiting for approval."),
        "",
        _plan_table(steps, planned),
    ]
    return "\n".join(lines)


def _wait_for_approval(plan: DrPlan, requester: str, timeout: timedelta, table: str) -> DrApproval:
    """Pauses until someone other than the requester decides; raises at the deadline."""
    resource = f"dr:plan/{plan.name}"
    until = datetime.now(UTC) + timeout
    deadline = time.monotonic() + timeout.total_seconds()
    form = DrApproval.with_initial_data(
        description=(
            f"## Approve the failover `{plan.name}`?\n\n{plan.description}\n\n"
            f"Requested by **{requester}**: the requester cannot approve their own request "
            "(such an approval is refused and the run keeps waiting). Give your name, "
            "approve or deny, and a reason. Without a decision by "
            f"{until:%Y-%m-%d %H:%M:%S} UTC the run fails and nothing changes.\n\n{table}"
        )
    )
    attempt = 0
    while True:
        remaining = int(deadline - time.monotonic())
        if remaining < 1:
            raise DeadlineExceededError(
                resource, f"no approval within {timeout}; nothing was changed"
            )
        try:
            approval = pause_flow_run(
                wait_for_input=form,
                timeout=remaining,
                poll_interval=APPROVAL_POLL_SECONDS,
                key=f"dr-approval-{attempt}",
            )
        except FlowPauseTimeout:
            raise DeadlineExceededError(
                resource, f"no approval within {timeout}; nothing was changed"
            ) from None
        except ValidationError as error:
            raise InvalidInputError(
                resource,
                f"the decision does not fit the form ({describe_validation_error(error)}); "
                "nothing was changed",
            ) from None
        attempt += 1
        if not same_person(approval.approver, requester):
            return approval
        job_logger().warning(
            "%s: refused an approval by %r, who requested this invocation; waiting for another "
            "person",
            resource,
            approval.approver,
        )


@workflow(name="invoke-dr", validate_parameters=False, persist_result=True)
def invoke_dr(
    plan: DrPlan,
    dry_run: bool = True,
    requested_by: str | None = None,
    approval_timeout: timedelta = timedelta(hours=1),
) -> list[Change]:
    """Fails over to the DR region: publishes the plan, waits for approval, applies it.

    Args:
        plan: The failover's steps (see `flows.dr_plan`), as a dict or a `DrPlan`.
        dry_run: Only plan (the default): publish what would change, change nothing.
        requested_by: Who asks; defaults to the run's ``magicflow-requested-by:`` tag.
            A real run needs one, and that person cannot approve it.
        approval_timeout: How long to wait for a decision (1 second to 7 days).

    Returns:
        Each step's change, in order (planned ones in a dry run).

    Raises:
        InvalidInputError: A malformed plan or step (named), or a real run without a
            requester; nothing was read or written.
        NotFoundError: A step names a resource that does not exist (named); nothing
            was written.
        DeadlineExceededError: No decision before the timeout; nothing was changed.
            (Prefect's server records such a run as Failed, "timed out and never
            resumed", as it refuses any move out of an expired pause.)
        PermissionDeniedError: The approver denied it; nothing was changed.
        MagicFlowError: A step failed while applying, named ``dr:step/<name>``; the
            steps before it are done, a rerun continues.

    Example:
        ```python
        from prefect.flow_runs import resume_flow_run

        # In another process, once the run is paused (its id from the UI or the API):
        resume_flow_run(
            flow_run_id,
            run_input={"approver": "bob", "decision": "approve", "reason": "primary is down"},
        )
        ```
    """
    parsed = parse_plan(plan)
    timeout = _check_options(parsed, dry_run, approval_timeout)
    resource = f"dr:plan/{parsed.name}"
    requester = _requester(requested_by)
    if not dry_run and not requester:
        raise InvalidInputError(
            resource,
            "a real invocation needs requested_by (or a Kafka request's requested_by), "
            "so that its requester cannot approve it",
        )
    steps: list[DrStep] = []
    planned: list[Change] = []
    for step in parsed.steps:
        try:
            pinned = step.pinned()
            planned.append(pinned.run(dry_run=True))
        except MagicFlowError as error:
            raise step_error(step, error) from None
        steps.append(pinned)
    create_markdown_artifact(
        markdown=_plan_markdown(parsed, steps, planned, requester, dry_run),
        key=f"dr-plan-{parsed.name}",
        description=f"DR plan {parsed.name}",
    )
    if dry_run:
        return planned
    assert requester is not None  # noqa: S101 - checked above; for the type checker
    approval = _wait_for_approval(parsed, requester, timeout, _plan_table(steps, planned))
    if approval.decision != "approve":
        raise PermissionDeniedError(
            resource, f"denied by {approval.approver}: {approval.reason}; nothing was changed"
        )
    create_markdown_artifact(
        markdown=(
            f"Approved by **{approval.approver}** at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC "
            f"(requested by {requester}): {approval.reason}"
        ),
        key=f"dr-approval-{parsed.name}",
        description=f"Approval of DR plan {parsed.name}",
    )
    return _apply(parsed, steps)


def _apply(plan: DrPlan, steps: list[DrStep]) -> list[Change]:
    """Applies the steps in order; on a failure, records what was done, then raises."""
    changes: list[Change] = []
    for step in steps:
        try:
            changes.append(step.run(dry_run=False))
        except MagicFlowError as error:
            failed = step_error(step, error)
            publish_changes_artifact(
                changes,
                key=f"dr-invocation-{plan.name}",
                description=f"Stopped at step {step.name}: {failed}. A rerun continues from there.",
            )
            raise failed from None
    return changes


def approval_input(
    approver: str, decision: Literal["approve", "deny"], reason: str
) -> dict[str, Any]:
    """The ``run_input`` for ``resume_flow_run``, checked against the form first.

    Args:
        approver: Who decides (not the requester).
        decision: ``approve`` or ``deny``.
        reason: Why.

    Returns:
        The dict to pass as ``run_input``.

    Raises:
        InvalidInputError: A field does not fit the form.

    Example:
        >>> approval_input("bob", "approve", "primary region is down")["decision"]
        'approve'
    """
    try:
        return DrApproval(approver=approver, decision=decision, reason=reason).model_dump()
    except ValidationError as error:
        raise InvalidInputError("dr:approval", describe_validation_error(error)) from None

"""Prefect automations MagicFlow's deployments rely on, created from code idempotently.

Zombie runs: a flow run whose host dies (power, kernel panic, a SIGKILL of the worker
and its child) stays ``Running`` forever: nobody is left to report the crash, so no
``on_crashed`` hook runs and no ``crashed`` status reaches Kafka. Every flow-run
process sends a heartbeat event every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``
seconds (``prefect.yaml`` sets it for every deployment, `HEARTBEAT_SECONDS`).
The automation built here is Prefect's "detect zombie flows" recipe: a proactive
trigger that expects another heartbeat (or a final, paused or suspended state)
within a window after each heartbeat, and otherwise changes the run's state to
``Crashed``. The crash follower (`flows.listener.crashes.follow_crashed_runs`, run by
the listener) then publishes the ``crashed`` status.

Example:
    ```python
    from deployments.automations import apply_automation, zombie_runs_automation

    outcome = await apply_automation(zombie_runs_automation(heartbeat_seconds=30))
    print(outcome)  # created automation 'magicflow-crash-zombie-flow-runs' ...
    ```
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prefect import get_client
from prefect.automations import Automation, AutomationCore
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

from magicflow.changes import Action
from magicflow.errors import InvalidInputError

ZOMBIE_AUTOMATION_NAME = "magicflow-crash-zombie-flow-runs"
"""Name of the zombie-run automation (the one MagicFlow owns under that name)."""

HEARTBEAT_SECONDS = 30
"""Seconds between flow-run heartbeats: ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` in
``prefect.yaml`` (Prefect's minimum is 30)."""

MISSED_HEARTBEATS = 3
"""Heartbeats a run may miss before it is marked ``Crashed`` (Prefect's recipe: 30 s x 3)."""

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"

STILL_ALIVE_OR_DONE_EVENTS = (
    HEARTBEAT_EVENT,
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
    # A paused run keeps sending heartbeats, but a suspended one exits its process
    # on purpose (approvals wait days): neither is a zombie.
    "prefect.flow-run.Paused",
    "prefect.flow-run.Suspended",
)
"""After a heartbeat, any of these events within the window means the run is not a zombie."""


def zombie_runs_automation(
    heartbeat_seconds: int = HEARTBEAT_SECONDS, window_seconds: int | None = None
) -> Automation:
    """The automation that marks a flow run ``Crashed`` when its heartbeats stop.

    Args:
        heartbeat_seconds: The flows' heartbeat frequency (at least 30, Prefect's minimum).
        window_seconds: How long after a heartbeat the next one must arrive;
            defaults to `MISSED_HEARTBEATS` heartbeats. It must be longer than one
            heartbeat, or live runs would be crashed.

    Returns:
        The automation (not yet saved; see `apply_automation`).

    Raises:
        InvalidInputError: The heartbeat is under 30 s, or the window is not longer
            than one heartbeat.

    Example:
        >>> zombie_runs_automation(30).trigger.within.total_seconds()
        90.0
    """
    resource = f"automation:{ZOMBIE_AUTOMATION_NAME}"
    if heartbeat_seconds < HEARTBEAT_SECONDS:
        raise InvalidInputError(
            resource,
            f"heartbeat_seconds must be at least 30 (Prefect's minimum), not {heartbeat_seconds}",
        )
    window = window_seconds if window_seconds is not None else heartbeat_seconds * MISSED_HEARTBEATS
    if window <= heartbeat_seconds:
        raise InvalidInputError(
            resource,
            f"the window ({window} s) must be longer than the heartbeat ({heartbeat_seconds} s), "
            "or every live run would be marked crashed",
        )
    return Automation(
        name=ZOMBIE_AUTOMATION_NAME,
        description=(
            f"Marks a flow run Crashed when no heartbeat arrives within {window} s of the last "
            f"(runs send one every {heartbeat_seconds} s): its host or process died. "
            "Created by `magicflow automations apply`."
        ),
        enabled=True,
        trigger=EventTrigger(
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            after={HEARTBEAT_EVENT},
            expect=set(STILL_ALIVE_OR_DONE_EVENTS),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=window),
        ),
        actions=[
            ChangeFlowRunState(
                name=None,
                force=False,
                state=StateType.CRASHED,
                message=f"No heartbeat for {window} s: the flow run's host or process died.",
            )
        ],
    )


@dataclass(frozen=True)
class AutomationOutcome:
    """What applying an automation did (or, in a dry run, would do).

    Attributes:
        name: The automation's name.
        action: ``created``, ``updated`` or ``unchanged``.
        dry_run: True when nothing was written.
        detail: A short description of the automation.
    """

    name: str
    action: Action
    dry_run: bool = False
    detail: str = ""

    def __str__(self) -> str:
        suffix = " (dry run)" if self.dry_run else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.action.value:<9} automation {self.name!r}{detail}{suffix}"


def _comparable(automation: AutomationCore) -> dict[str, Any]:
    """What defines an automation's behaviour, without server-assigned ids."""
    document = AutomationCore.model_validate(automation, from_attributes=True).model_dump(
        mode="json", exclude={"id", "created", "updated"}
    )
    document["trigger"].pop("id", None)
    for key in ("after", "expect", "for_each"):
        if isinstance(document["trigger"].get(key), list):
            document["trigger"][key] = sorted(document["trigger"][key])
    return document


async def apply_automation(automation: Automation, dry_run: bool = False) -> AutomationOutcome:
    """Creates the automation, or updates the one of the same name where it differs.

    Args:
        automation: From `zombie_runs_automation`.
        dry_run: Read only; report what would be written.

    Returns:
        The outcome; a second apply of the same automation writes nothing.
    """
    within = getattr(automation.trigger, "within", None)
    detail = f"crash runs after {int(within.total_seconds())} s without heartbeat" if within else ""
    async with get_client() as client:
        existing = await client.read_automations_by_name(automation.name)
    wanted = automation.model_copy(update={"id": None})
    if not existing:
        if not dry_run:
            await wanted.acreate()
        return AutomationOutcome(automation.name, Action.CREATED, dry_run, detail)
    current = existing[0]
    if _comparable(current) == _comparable(wanted):
        return AutomationOutcome(automation.name, Action.UNCHANGED, dry_run, detail)
    if not dry_run:
        await wanted.model_copy(update={"id": current.id}).aupdate()
    return AutomationOutcome(automation.name, Action.UPDATED, dry_run, detail)

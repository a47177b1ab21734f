"""Prefect deployments and schedules of LangFlow flows: one deployment of ``run-langflow`` per flow.

Every runnable LangFlow flow gets an ordinary Prefect deployment of the
``run-langflow`` flow (`flows.langflow.run_langflow`), named after the LangFlow
flow, on the ``magicflow`` work pool by default, with the flow's defaults as
parameters. Everything lives in Prefect: the deployment, its schedules (Prefect
deployment schedules: cron with a timezone, or an interval), its runs, logs and
artifacts. Nothing is stored anywhere else.

A deployment carries the tags ``langflow`` and ``langflow-flow:<LangFlow flow
id>``, and the id as its ``flow`` parameter, so a renamed LangFlow flow is still
recognised: its deployment keeps its name (and its schedules and history) and is
updated in place, since Prefect deployments cannot be renamed. A deployment whose
LangFlow flow is deleted, or no longer passes analysis, is paused (its history
stays) and tagged `UNAVAILABLE_TAG`; it is resumed when the flow is back and sound.

Example:
    ```python
    from prefect import get_client

    from deployments.langflow import add_langflow_schedule, find_langflow_deployment

    with get_client(sync_client=True) as client:
        deployment = find_langflow_deployment(client, "Support bot")
        add_langflow_schedule(client, deployment, cron="0 7 * * 1-5", timezone="Europe/Paris")
    ```
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from magicflow import Action, Change, InvalidInputError, NotFoundError, job, report

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import DeploymentSchedule
    from prefect.client.schemas.responses import DeploymentResponse

    from tasks.langflow import LangflowFlow, LangflowFlowAnalysis

RUN_FLOW_NAME = "run-langflow"
"""Name of the Prefect flow every LangFlow deployment runs."""

ENTRYPOINT = "flows.langflow:run_langflow"
"""Module path of that flow: workers have MagicFlow installed, so no code is pulled."""

DEFAULT_WORK_POOL = "magicflow"
"""Work pool of new LangFlow deployments unless another is given."""

LANGFLOW_TAG = "langflow"
"""Tag of every deployment MagicFlow made for a LangFlow flow."""

FLOW_TAG_PREFIX = "langflow-flow:"
"""Tag prefix carrying the LangFlow flow id: how a renamed flow is still recognised."""

UNAVAILABLE_TAG = "langflow-unavailable"
"""Tag of a deployment paused because its flow was deleted or fails analysis."""

MANAGED_PARAMETERS = ("flow", "langflow", "input_type", "output_type")
"""Parameters a sync keeps in line with LangFlow; others (``input_value``...) are the user's."""

_BANNED_IN_NAMES = re.compile(r"[/%&<>]")
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_INTERVAL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DESCRIPTION_CHARS = 500


def deployment_name_for(flow_name: str) -> str:
    """The deployment name of a LangFlow flow: its name, without characters Prefect refuses.

    Args:
        flow_name: The LangFlow flow's name.

    Returns:
        The name, with ``/ % & < >`` replaced by ``-``.

    Example:
        >>> deployment_name_for("Support bot / EU")
        'Support bot - EU'
    """
    return _BANNED_IN_NAMES.sub("-", flow_name).strip() or "unnamed"


def langflow_flow_id_of(deployment: DeploymentResponse) -> str | None:
    """The LangFlow flow id a deployment runs, from its ``langflow-flow:`` tag."""
    return next(
        (tag[len(FLOW_TAG_PREFIX) :] for tag in deployment.tags if tag.startswith(FLOW_TAG_PREFIX)),
        None,
    )


def read_langflow_deployments(
    client: SyncPrefectClient, flow_id: str | None = None
) -> list[DeploymentResponse]:
    """Every deployment MagicFlow made for LangFlow flows, or the one of a flow id.

    Args:
        client: A synchronous Prefect client.
        flow_id: Only the deployment of this LangFlow flow.

    Returns:
        The deployments, sorted by name.
    """
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterTags,
        FlowFilter,
        FlowFilterName,
    )

    tags = [LANGFLOW_TAG] + ([f"{FLOW_TAG_PREFIX}{flow_id}"] if flow_id else [])
    found: list[DeploymentResponse] = []
    while True:
        page = client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[RUN_FLOW_NAME])),
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=tags)),
            limit=200,
            offset=len(found),
        )
        found.extend(page)
        if len(page) < 200:
            return sorted(found, key=lambda deployment: deployment.name)


def find_langflow_deployment(client: SyncPrefectClient, flow: str) -> DeploymentResponse:
    """The deployment of a LangFlow flow, by deployment name or LangFlow flow id.

    Args:
        client: A synchronous Prefect client.
        flow: The deployment's name (the LangFlow flow's name) or the flow's id.

    Returns:
        The deployment.

    Raises:
        NotFoundError: No LangFlow deployment has this name or flow id.
    """
    deployments = read_langflow_deployments(client)
    for deployment in deployments:
        if flow in (deployment.name, langflow_flow_id_of(deployment)):
            return deployment
    wanted = deployment_name_for(flow)
    for deployment in deployments:
        if deployment.name == wanted:
            return deployment
    known = ", ".join(repr(d.name) for d in deployments[:10]) or "none yet"
    raise NotFoundError(
        f"prefect:deployment/{RUN_FLOW_NAME}/{flow}",
        f"no deployment of this LangFlow flow (deployments: {known}); run a sync first",
    )


def _description(flow: LangflowFlow) -> str:
    text = f"Runs the LangFlow flow '{flow.name}' ({flow.id})."
    if flow.description:
        text += f" {' '.join(flow.description.split())}"
    return text[:_DESCRIPTION_CHARS]


def _wanted_parameters(analysis: LangflowFlowAnalysis, langflow: str | None) -> dict[str, Any]:
    return {
        "flow": analysis.flow_id,
        "langflow": langflow,
        "input_type": analysis.input_type,
        "output_type": analysis.output_type,
    }


def _wanted_tags(flow_id: str, current: list[str] | None = None) -> list[str]:
    kept = [
        tag
        for tag in current or []
        if tag != UNAVAILABLE_TAG and not tag.startswith(FLOW_TAG_PREFIX)
    ]
    return sorted({*kept, "magicflow", LANGFLOW_TAG, f"{FLOW_TAG_PREFIX}{flow_id}"})


@job
def ensure_langflow_deployment(
    flow: LangflowFlow,
    analysis: LangflowFlowAnalysis,
    langflow: str | None = None,
    work_pool: str = DEFAULT_WORK_POOL,
    dry_run: bool = False,
) -> Change:
    """Ensures a runnable LangFlow flow has its ``run-langflow`` deployment, in line with LangFlow.

    Created when missing (named after the flow, its defaults as parameters);
    otherwise only the managed parameters (`MANAGED_PARAMETERS`), the description,
    tags, entrypoint and work pool are brought in line. A deployment paused by a
    sync (`UNAVAILABLE_TAG`) is resumed; one paused by a person stays paused.

    Args:
        flow: The LangFlow flow.
        analysis: Its analysis; it must be runnable.
        langflow: Name of the saved `LangflowConnection` block runs use (None:
            the worker's ``LANGFLOW_API_URL`` / ``LANGFLOW_API_KEY``).
        work_pool: The work pool of a new deployment.
        dry_run: Read only and report what would be done.

    Returns:
        A `Change` on ``prefect:deployment/run-langflow/<name>``; detail has the
        LangFlow ``flow_id`` and, for an update, the ``fields`` that changed.

    Raises:
        InvalidInputError: The flow is not runnable.
        NotFoundError: The work pool of a new deployment does not exist.

    Example:
        ```python
        analysis = analyze_langflow_flow(flow)
        ensure_langflow_deployment(flow, analysis, langflow="langflow")
        ```
    """
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.exceptions import ObjectNotFound

    name = deployment_name_for(flow.name)
    if not analysis.runnable:
        raise InvalidInputError(
            flow.resource, f"not runnable: {'; '.join(map(str, analysis.problems))}"
        )
    wanted = _wanted_parameters(analysis, langflow)
    with get_client(sync_client=True) as client:
        existing = read_langflow_deployments(client, flow.id)
        if not existing:
            resource = f"prefect:deployment/{RUN_FLOW_NAME}/{name}"
            detail: dict[str, Any] = {"flow_id": flow.id, "work_pool": work_pool}
            if dry_run:
                return report(
                    Change(resource=resource, action=Action.CREATED, dry_run=True, detail=detail)
                )
            from prefect.utilities.callables import parameter_schema

            from flows.langflow import run_langflow

            try:
                client.read_work_pool(work_pool)
            except ObjectNotFound:
                raise NotFoundError(
                    f"prefect:work-pool/{work_pool}", "no such work pool in Prefect"
                ) from None
            flow_id = client.create_flow_from_name(RUN_FLOW_NAME)
            client.create_deployment(
                flow_id=flow_id,
                name=name,
                entrypoint=ENTRYPOINT,
                work_pool_name=work_pool,
                parameters={**wanted, "input_value": analysis.default_input or ""},
                parameter_openapi_schema=parameter_schema(run_langflow).model_dump_for_openapi(),
                enforce_parameter_schema=True,
                description=_description(flow),
                tags=_wanted_tags(flow.id),
                paused=False,
            )
            return report(Change(resource=resource, action=Action.CREATED, detail=detail))

        deployment = existing[0]
        resource = f"prefect:deployment/{RUN_FLOW_NAME}/{deployment.name}"
        update: dict[str, Any] = {}
        parameters = {**deployment.parameters, **wanted}
        if parameters != deployment.parameters:
            update["parameters"] = parameters
        if deployment.description != _description(flow):
            update["description"] = _description(flow)
        tags = _wanted_tags(flow.id, deployment.tags)
        if sorted(deployment.tags) != tags:
            update["tags"] = tags
        if deployment.entrypoint != ENTRYPOINT:
            update["entrypoint"] = ENTRYPOINT
        if not deployment.work_pool_name:
            update["work_pool_name"] = work_pool
        if deployment.paused and UNAVAILABLE_TAG in deployment.tags:
            update["paused"] = False
        detail = {"flow_id": flow.id}
        if deployment.name != name:
            detail["langflow_name"] = flow.name  # renamed in LangFlow; Prefect keeps the name
        if not update:
            return report(Change(resource=resource, action=Action.UNCHANGED, detail=detail))
        detail["fields"] = sorted(update)
        if not dry_run:
            client.update_deployment(deployment.id, DeploymentUpdate(**update))
        return report(
            Change(resource=resource, action=Action.UPDATED, dry_run=dry_run, detail=detail)
        )


@job
def pause_langflow_deployment(
    deployment_id: UUID | str, reason: str, dry_run: bool = False
) -> Change:
    """Pauses the deployment of a LangFlow flow that was deleted or fails analysis.

    Its runs, logs and artifacts stay in Prefect; its schedules stop producing
    runs. It is tagged `UNAVAILABLE_TAG` so a later sync resumes it when the flow
    is back and runnable.

    Args:
        deployment_id: The Prefect deployment.
        reason: Why, for the change's detail (e.g. ``deleted in LangFlow``).
        dry_run: Read only and report what would be done.

    Returns:
        A `Change`: ``updated`` when it was paused now, ``unchanged`` when it
        already was.

    Example:
        ```python
        pause_langflow_deployment(deployment.id, reason="deleted in LangFlow")
        ```
    """
    from prefect import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(UUID(str(deployment_id)))
        resource = f"prefect:deployment/{RUN_FLOW_NAME}/{deployment.name}"
        detail: dict[str, Any] = {"reason": reason, "flow_id": langflow_flow_id_of(deployment)}
        if deployment.paused and UNAVAILABLE_TAG in deployment.tags:
            return report(Change(resource=resource, action=Action.UNCHANGED, detail=detail))
        if not dry_run:
            client.update_deployment(
                deployment.id,
                DeploymentUpdate(paused=True, tags=sorted({*deployment.tags, UNAVAILABLE_TAG})),
            )
        return report(
            Change(
                resource=resource,
                action=Action.UPDATED,
                dry_run=dry_run,
                detail={**detail, "paused": True},
            )
        )


# --- schedules ------------------------------------------------------------------------------


def parse_interval(text: str) -> timedelta:
    """Parses an interval such as ``30m``, ``2h``, ``1d``, ``45s`` or ``90`` (seconds).

    Args:
        text: A number with an optional unit: s, m, h or d.

    Returns:
        The interval.

    Raises:
        InvalidInputError: It does not parse or is under 10 seconds.

    Example:
        >>> parse_interval("30m")
        datetime.timedelta(seconds=1800)
    """
    match = _INTERVAL.match(text)
    if not match:
        raise InvalidInputError(
            "schedule:interval", f"{text!r} is not an interval such as 30m, 2h, 1d or 45s"
        )
    seconds = float(match.group(1)) * _INTERVAL_UNITS[match.group(2).lower()]
    if seconds < 10:
        raise InvalidInputError("schedule:interval", f"{text!r} is shorter than 10 seconds")
    return timedelta(seconds=seconds)


def build_schedule(
    cron: str | None = None, interval: str | None = None, timezone: str | None = None
) -> Any:
    """A Prefect schedule from a cron expression or an interval, checked before anything is sent.

    Args:
        cron: A cron expression (five fields, or a ``@daily`` style alias).
        interval: An interval for `parse_interval`.
        timezone: An IANA timezone, e.g. ``Europe/Paris`` (default UTC).

    Returns:
        A ``CronSchedule`` or an ``IntervalSchedule``.

    Raises:
        InvalidInputError: Neither or both given, or the cron expression or the
            timezone does not parse; the resource names the field.

    Example:
        >>> build_schedule(cron="0 7 * * 1-5", timezone="Europe/Paris").timezone
        'Europe/Paris'
    """
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
    from pydantic import ValidationError

    if (cron is None) == (interval is None):
        raise InvalidInputError("schedule", "give either a cron expression or an interval")
    timezone = timezone or "UTC"
    try:
        if cron is not None:
            return CronSchedule(cron=cron, timezone=timezone)
        return IntervalSchedule(interval=parse_interval(interval or ""), timezone=timezone)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        field = str(problem["loc"][0]) if problem["loc"] else "schedule"
        message = str(problem["msg"]).removeprefix("Value error, ")
        raise InvalidInputError(f"schedule:{field}", message) from None


def add_langflow_schedule(
    client: SyncPrefectClient,
    deployment: DeploymentResponse,
    cron: str | None = None,
    interval: str | None = None,
    timezone: str | None = None,
    input_value: str | None = None,
    tweaks: dict[str, dict[str, Any]] | None = None,
) -> DeploymentSchedule:
    """Adds a schedule to a LangFlow flow's deployment (a Prefect deployment schedule).

    Args:
        client: A synchronous Prefect client.
        deployment: The flow's deployment (`find_langflow_deployment`).
        cron: A cron expression, or
        interval: an interval such as ``30m``.
        timezone: An IANA timezone (default UTC).
        input_value: The text its runs send to the flow (the deployment's default
            when None).
        tweaks: Tweaks of its runs (none when None).

    Returns:
        The created schedule (its ``id`` deletes it).

    Raises:
        InvalidInputError: A bad cron expression, interval or timezone.
    """
    from prefect.client.schemas.actions import DeploymentScheduleCreate

    schedule = build_schedule(cron=cron, interval=interval, timezone=timezone)
    parameters: dict[str, Any] = {"input_value": input_value} if input_value is not None else {}
    if tweaks:
        parameters["tweaks"] = tweaks
    created = client.create_deployment_schedules(
        deployment.id,
        [DeploymentScheduleCreate(schedule=schedule, active=True, parameters=parameters)],
    )
    return created[0]


def read_langflow_schedules(
    client: SyncPrefectClient,
) -> list[tuple[DeploymentResponse, DeploymentSchedule]]:
    """Every schedule of every LangFlow deployment.

    Args:
        client: A synchronous Prefect client.

    Returns:
        (deployment, schedule) pairs, by deployment name.
    """
    return [
        (deployment, schedule)
        for deployment in read_langflow_deployments(client)
        for schedule in client.read_deployment_schedules(deployment.id)
    ]


def delete_langflow_schedule(client: SyncPrefectClient, schedule_id: str) -> DeploymentResponse:
    """Deletes one schedule of a LangFlow deployment.

    Args:
        client: A synchronous Prefect client.
        schedule_id: The schedule's id, as ``schedules list`` shows it.

    Returns:
        The deployment it belonged to.

    Raises:
        InvalidInputError: The id is not a UUID.
        NotFoundError: No LangFlow deployment has this schedule.
    """
    resource = f"schedule:{schedule_id}"
    try:
        wanted = UUID(schedule_id)
    except ValueError:
        raise InvalidInputError(resource, "a schedule id is a UUID (see schedules list)") from None
    for deployment, schedule in read_langflow_schedules(client):
        if schedule.id == wanted:
            client.delete_deployment_schedule(deployment.id, schedule.id)
            return deployment
    raise NotFoundError(resource, "no LangFlow deployment has this schedule")

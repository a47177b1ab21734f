"""The Prefect side of dispatch: one flow run per request id, across every workflow.

Prefect deduplicates runs on (flow, idempotency key) only, so one request id sent
for two workflows would make two runs, and the same id with other parameters would
silently get the first run back. `RequestRuns` therefore looks a request id up
across all flows first (every run the listener starts is tagged with its request
id and its `magicflow.messages.request_hash`), and only creates a run when there
is none. The listener serialises deliveries of one id, and a request's Kafka key
is its id, so one replica sees all of an id's deliveries: the look-up cannot race
with a creation of the same id.

Example:
    ```python
    async with get_client() as client:
        runs = RequestRuns(client)
        existing = await runs.find(request.id)
        flow_run = existing or await runs.create(plan)
    ```
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.states import Scheduled

from flows.listener.requests import Dispatch
from magicflow.changes import Action
from magicflow.messages import (
    REQUEST_HASH_TAG_PREFIX,
    REQUEST_TAG_PREFIX,
    REQUESTED_BY_TAG_PREFIX,
    WorkflowStatus,
)
from magicflow.workflows import REPLY_TOPIC_TAG_PREFIX, run_status

RUN_TAG = "magicflow"
"""Tag on every flow run started from a request (next to the request-id tag)."""


def run_tags(plan: Dispatch) -> list[str]:
    """A request's flow-run tags: its id, its hash, `RUN_TAG` and its reply topic if any.

    The run's status hooks (`magicflow.workflows`) read them back.

    Args:
        plan: The checked request.

    Returns:
        The tags.
    """
    request = plan.request
    tags = [
        f"{REQUEST_TAG_PREFIX}{request.id}",
        f"{REQUEST_HASH_TAG_PREFIX}{request.request_hash}",
        RUN_TAG,
    ]
    if request.reply_topic:
        tags.append(f"{REPLY_TOPIC_TAG_PREFIX}{request.reply_topic}")
    if request.requested_by:
        tags.append(f"{REQUESTED_BY_TAG_PREFIX}{request.requested_by}")
    return tags


def deployment_name_of(deployment: str) -> str:
    """The deployment's own name in ``flow-name/deployment-name``: what ``--name`` takes.

    Example:
        >>> deployment_name_of("provision-tenant/tenant-provisioning")
        'tenant-provisioning'
    """
    return deployment.rpartition("/")[2]


def hash_of_run(flow_run: FlowRun) -> str | None:
    """The request hash a run was started with (None for runs not started by the listener)."""
    return next(
        (
            tag.removeprefix(REQUEST_HASH_TAG_PREFIX)
            for tag in flow_run.tags
            if tag.startswith(REQUEST_HASH_TAG_PREFIX)
        ),
        None,
    )


class RequestRuns:
    """Finds and creates the one flow run of each request id.

    Args:
        client: A Prefect client whose own retries are off (the listener retries).
    """

    def __init__(self, client: PrefectClient) -> None:
        self._client = client
        self._deployment_ids: dict[str, UUID] = {}

    async def find(self, request_id: str) -> FlowRun | None:
        """The run of a request id, whatever its workflow; the oldest if several.

        Args:
            request_id: The request id.

        Returns:
            The run, or None when the id has none yet.
        """
        runs = await self._client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[f"{REQUEST_TAG_PREFIX}{request_id}"])
            ),
            limit=10,
        )
        return min(runs, key=lambda run: (run.created is None, run.created)) if runs else None

    async def deployment_exists(self, deployment: str) -> bool:
        """True when the server has the deployment (``flow-name/deployment-name``).

        Args:
            deployment: The deployment's full name.

        Returns:
            Whether it exists; its id is kept for `create`.
        """
        try:
            found = await self._client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            self._deployment_ids.pop(deployment, None)
            return False
        self._deployment_ids[deployment] = found.id
        return True

    async def create(self, plan: Dispatch) -> FlowRun:
        """Creates the request's flow run from its workflow's deployment.

        The idempotency key is the request id, so a creation repeated after a lost
        answer returns the same run.

        Args:
            plan: The checked request.

        Returns:
            The new (or, for a repeated creation, the existing) flow run.

        Raises:
            prefect.exceptions.ObjectNotFound: The deployment does not exist (now).
        """
        deployment = plan.workflow.deployment
        deployment_id = self._deployment_ids.get(deployment)
        if deployment_id is None:
            deployment_id = (await self._client.read_deployment_by_name(deployment)).id
            self._deployment_ids[deployment] = deployment_id
        try:
            return await self._client.create_flow_run_from_deployment(
                deployment_id,
                parameters=dict(plan.parameters),
                state=Scheduled(),
                name=plan.flow_run_name,
                tags=run_tags(plan),
                idempotency_key=plan.request.id,
            )
        except (ObjectNotFound, httpx.HTTPStatusError) as error:
            if isinstance(error, ObjectNotFound) or error.response.status_code == 404:
                # Deleted (a redeploy in progress) or recreated under a new id: look again.
                self._deployment_ids.pop(deployment, None)
            raise

    async def status(self, flow_run: FlowRun, workflow: str) -> WorkflowStatus:
        """The status of an existing run now, to answer a duplicate of its request.

        Args:
            flow_run: The run.
            workflow: The request's workflow name.

        Returns:
            The run's current (or final) status, with its change counts once completed.
        """
        assert flow_run.state is not None  # noqa: S101 - every run has a state
        changes = await self._changes_of(flow_run.id) if flow_run.state.is_completed() else None
        return await run_status(workflow, flow_run, flow_run.state, changes=changes)

    async def _changes_of(self, flow_run_id: UUID) -> dict[str, int] | None:
        """Change counts from the run's changes table artifact (results may not be stored)."""
        artifacts = await self._client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                type=ArtifactFilterType(any_=["table"]),
            )
        )
        for artifact in artifacts:
            rows: Any = artifact.data
            if isinstance(rows, str):
                try:
                    rows = json.loads(rows)
                except ValueError:
                    continue
            if isinstance(rows, list) and all(isinstance(r, dict) and "action" in r for r in rows):
                counts = Counter(str(row["action"]) for row in rows)
                return {action.value: counts.get(action.value, 0) for action in Action}
        return None

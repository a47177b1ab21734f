"""The provisioning runbook as deployed: served runs, the tenant lock, and a Kafka request.

These runs execute in the ``served_workflows`` runner's child processes against the
session's Prefect server, with the blocks the test saved, like a worker would run them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from blocks import KafkaConnection
from flows.registry import magicflow_registry
from flows.tenant_spec import TenantSpec
from tests.fixtures.kafka import produce, read_topic, request_bytes, running_listener, statuses_of
from tests.fixtures.tenants import Reviewer, TenantSystems, everything_prefect_keeps
from tests.fixtures.waiting import wait_until as wait_for
from tests.fixtures.workflows import KAFKA_BLOCK_NAME, ServedWorkflows

PROVISIONING = "provision-tenant/tenant-provisioning"


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Polls every 0.3 s: the runs' states are read from the Prefect API."""
    return wait_for(condition, timeout_s, what, poll_s=0.3)


def read_runs(ids: list[UUID]) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
    return sorted(runs, key=lambda run: ids.index(run.id))


def work_interval(run_id: UUID) -> tuple[datetime, datetime]:
    """When a run's jobs ran: the first task run's start to the last one's end (Prefect's times)."""
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200
        )
    starts = [t.start_time for t in task_runs if t.start_time]
    ends = [t.end_time for t in task_runs if t.end_time]
    assert starts and ends, f"run {run_id} ran no job"
    return min(starts), max(ends)


def spec_parameters(spec: TenantSpec) -> dict[str, Any]:
    return {"spec": json.loads(spec.model_dump_json(by_alias=True))}


@pytest.mark.timeout(900)  # two waves of runbook runs on a loaded machine
def test_runs_of_one_tenant_serialize_and_runs_of_two_tenants_overlap(
    served_workflows: ServedWorkflows, tenant_systems: TenantSystems, reviewer: Reviewer
) -> None:
    # Kubernetes and GitOps are enough to show the lock; the other systems only add time.
    small = {"vault": None, "aws": None, "gcp": None, "secrets": []}
    first_tenant, second_tenant = tenant_systems.spec(**small), tenant_systems.spec(**small)
    reviewer.hold.set()  # nobody approves until every run is under way
    with reviewer.approving():
        ids = [
            run_deployment(PROVISIONING, parameters=spec_parameters(spec), timeout=0).id
            for spec in (first_tenant, first_tenant, second_tenant)
        ]

        def all_running_and_both_tenants_at_their_gate() -> bool:
            runs = read_runs(ids)
            running = all(run.state is not None and run.state.is_running() for run in runs)
            opened = {
                mr.source_branch
                for mr in tenant_systems.gitlab().mergerequests.list(state="opened", get_all=True)
            }
            return (
                running
                and {f"tenant/{first_tenant.name}", f"tenant/{second_tenant.name}"} <= opened
            )

        wait_until(
            all_running_and_both_tenants_at_their_gate,
            240,
            f"both tenants' merge requests while all runs run\n{served_workflows.log_tail()}",
        )
        # One run of the first tenant holds its lock at the gate; the other waits for it.
        reviewer.hold.clear()
        wait_until(
            lambda: all(r.state is not None and r.state.is_final() for r in read_runs(ids)),
            240,
            f"the runs to finish\n{served_workflows.log_tail()}",
        )

    runs = read_runs(ids)
    assert all(run.state is not None and run.state.is_completed() for run in runs), [
        (run.name, run.state) for run in runs
    ]
    one, other, second = (work_interval(run.id) for run in runs)
    earlier, later = sorted([one, other])
    assert earlier[1] <= later[0], "two runs of one tenant interleaved"
    later_run = runs[0] if one == later else runs[1]
    assert later_run.start_time is not None and later_run.start_time < earlier[1], (
        "the second run of the tenant did not start while the first worked: nothing was proved"
    )
    assert second[0] < earlier[1] and earlier[0] < second[1], "two tenants did not overlap"
    assert len(reviewer.acted_on) == 2  # the later run found the config merged: no merge request


async def test_a_tenant_request_on_kafka_runs_to_completed_and_reports_its_statuses(
    served_workflows: ServedWorkflows,
    tenant_systems: TenantSystems,
    reviewer: Reviewer,
    kafka: KafkaConnection,
) -> None:
    await kafka.asave(KAFKA_BLOCK_NAME, overwrite=True)
    spec = tenant_systems.spec(aws=None, gcp=None)
    request_id = f"tenant-{uuid.uuid4().hex[:8]}"
    value = request_bytes(
        request_id, workflow="tenant-provisioning", parameters=spec_parameters(spec)
    )
    await produce(kafka, [(request_id.encode(), value, [])])

    def mine(records: Any) -> list[dict[str, Any]]:
        return [s for s in statuses_of(records) if s["request_id"] == request_id]

    with reviewer.approving():
        async with running_listener(kafka, registry=magicflow_registry()):
            records = await read_topic(
                kafka,
                kafka.status_topic,
                lambda r: any(s["state"] in ("completed", "failed") for s in mine(r)),
                timeout_s=240,
            )

    statuses = mine(records)
    assert [s["state"] for s in statuses] == ["accepted", "scheduled", "running", "completed"], (
        statuses,
        served_workflows.log_tail(),
    )
    assert [s["dry_run"] for s in statuses] == [False] * 4
    assert [s["seq"] for s in statuses] == sorted(s["seq"] for s in statuses)
    final = statuses[-1]
    assert final["workflow"] == "provision-tenant"
    changes = final["changes"]
    assert (changes["created"], changes["updated"], changes["skipped"]) == (10, 1, 5), changes
    run_id = UUID(final["flow_run_id"])
    (run,) = read_runs([run_id])
    assert run.name == f"provision-tenant/{spec.name}"
    assert f"tenant:{spec.name}" in run.tags
    # The credentials it generated appear in no status and nowhere in Prefect.
    raw = b"".join(record.value or b"" for record in records).decode()
    kept = everything_prefect_keeps([run_id])
    for secret in spec.secrets:
        data = tenant_systems.vault_secret(f"tenants/{spec.name}/{secret.name}")
        assert data is not None
        assert data[secret.key] not in raw and data[secret.key] not in kept

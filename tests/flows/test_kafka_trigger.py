"""The request listener against the real Tansu broker and the session's Prefect server."""

import asyncio
import uuid
from typing import Any
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from blocks import KafkaConnection
from magicflow.messages import REQUEST_TAG_PREFIX, REQUESTED_BY_TAG_PREFIX
from tests.fixtures.kafka import (
    committed_total,
    flow_runs_named,
    produce,
    read_topic,
    request_bytes,
    running_listener,
    statuses_of,
    wait_for_committed,
    wait_for_runs,
)
from tests.fixtures.workflows import KAFKA_BLOCK_NAME


def _for(request_id: str):
    def matching(records):
        return [s for s in statuses_of(records) if s["request_id"] == request_id]

    return matching


async def test_a_request_becomes_one_flow_run_with_its_parameters_tags_and_statuses(
    kafka: KafkaConnection, kafka_test_deployments: list[str]
) -> None:
    request_id = f"happy-{uuid.uuid4().hex[:8]}"
    await produce(
        kafka,
        [
            (
                request_id.encode(),
                request_bytes(
                    request_id, parameters={"name": "ada", "times": 3}, requested_by="portal:ada"
                ),
                [],
            )
        ],
    )
    async with running_listener(kafka):
        records = await read_topic(
            kafka, kafka.status_topic, lambda r: len(_for(request_id)(r)) >= 2
        )

    statuses = _for(request_id)(records)
    assert [s["state"] for s in statuses] == ["accepted", "scheduled"]
    assert [r.key for r in records] == [request_id.encode()] * 2
    flow_run_id = UUID(statuses[1]["flow_run_id"])
    assert statuses[1]["ui_url"].endswith(f"/runs/flow-run/{flow_run_id}")
    runs = await flow_runs_named(request_id)
    assert [run.id for run in runs] == [flow_run_id]
    run = runs[0]
    assert run.parameters == {"name": "ada", "times": 3}
    assert set(run.tags) >= {
        f"{REQUEST_TAG_PREFIX}{request_id}",
        f"{REQUESTED_BY_TAG_PREFIX}portal:ada",  # who asked: a DR invocation refuses them
        "magicflow",
    }
    assert run.name == f"greet-{request_id}"
    assert run.idempotency_key == request_id
    assert await committed_total(kafka) == 1


async def _served_statuses(kafka: KafkaConnection, request_id: str, **fields: Any) -> list[dict]:
    """Sends a test-changes request through a listener; its statuses until completed."""
    await kafka.asave(KAFKA_BLOCK_NAME, overwrite=True)
    value = request_bytes(request_id, workflow="test-changes", **fields)
    await produce(kafka, [(request_id.encode(), value, [])])
    async with running_listener(kafka):
        records = await read_topic(
            kafka,
            kafka.status_topic,
            lambda r: any(s["state"] == "completed" for s in _for(request_id)(r)),
            timeout_s=90,
        )
    return _for(request_id)(records)


async def test_served_request_reports_accepted_scheduled_running_completed_in_order(
    kafka: KafkaConnection, served_workflows, kafka_test_deployments: list[str]
) -> None:
    request_id = f"served-{uuid.uuid4().hex[:8]}"
    statuses = await _served_statuses(kafka, request_id, parameters={"tenant": "t1"})
    assert [s["state"] for s in statuses] == ["accepted", "scheduled", "running", "completed"], (
        served_workflows.log_tail()
    )
    assert len({s["flow_run_id"] for s in statuses[1:]}) == 1
    changes = statuses[-1]["changes"]
    assert (changes["created"], changes["unchanged"], changes["updated"]) == (1, 1, 0)
    # Consumers order by seq: the listener's statuses first, then the run's, increasing.
    seqs = [s["seq"] for s in statuses]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4, seqs
    assert {s["dry_run"] for s in statuses} == {False}


async def test_a_dry_run_says_so_in_every_status_and_in_the_changes_artifact(
    kafka: KafkaConnection, served_workflows, kafka_test_deployments: list[str]
) -> None:
    request_id = f"plan-{uuid.uuid4().hex[:8]}"
    statuses = await _served_statuses(kafka, request_id, parameters={"tenant": "t3"}, dry_run=True)
    assert [s["state"] for s in statuses] == ["accepted", "scheduled", "running", "completed"], (
        served_workflows.log_tail()
    )
    assert {s["dry_run"] for s in statuses} == {True}
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(statuses[-1]["flow_run_id"])])
            )
        )
    [artifact] = artifacts
    assert artifact.description is not None and "Dry run" in artifact.description


async def test_the_same_request_delivered_five_times_yields_one_flow_run(
    kafka: KafkaConnection, kafka_test_deployments: list[str]
) -> None:
    request_id = f"dup-{uuid.uuid4().hex[:8]}"
    value = request_bytes(request_id)
    await produce(kafka, [(request_id.encode(), value, [])] * 5)
    async with running_listener(kafka) as listener:
        records = await read_topic(
            kafka,
            kafka.status_topic,
            lambda r: sum(s["state"] == "scheduled" for s in _for(request_id)(r)) >= 5,
        )
    statuses = _for(request_id)(records)
    # The first delivery is accepted and scheduled; each later one is answered with the
    # run's state now (still scheduled: nobody runs it), which carries the same seq.
    assert [s["state"] for s in statuses] == ["accepted"] + ["scheduled"] * 5
    scheduled = statuses[1:]
    assert len({s["flow_run_id"] for s in scheduled}) == 1
    assert len({s["seq"] for s in scheduled}) == 1
    assert len(await flow_runs_named(request_id)) == 1
    assert listener.counts.received == 5
    assert (listener.counts.dispatched, listener.counts.duplicates) == (1, 4)
    assert listener.counts.rejected == 0
    assert await wait_for_committed(kafka, 5) == 5


async def test_dry_run_request_sets_the_workflows_dry_run_parameter(
    kafka: KafkaConnection, kafka_test_deployments: list[str]
) -> None:
    request_id = f"dry-{uuid.uuid4().hex[:8]}"
    await produce(kafka, [(request_id.encode(), request_bytes(request_id, dry_run=True), [])])
    async with running_listener(kafka):
        await read_topic(kafka, kafka.status_topic, lambda r: len(_for(request_id)(r)) >= 2)
    (run,) = await flow_runs_named(request_id)
    assert run.parameters == {"name": "ada", "dry_run": True}


async def test_prefect_api_errors_are_retried_until_the_run_exists(
    kafka: KafkaConnection, kafka_test_deployments: list[str], fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(str(PREFECT_API_URL.value()).removesuffix("/api"))
    injected_before = proxy.injected  # the proxy is shared by the session's tests
    proxy.fail(status=500, count=3, method="POST", path=r"/create_flow_run$")
    request_id = f"outage-{uuid.uuid4().hex[:8]}"
    await produce(kafka, [(request_id.encode(), request_bytes(request_id), [])])
    # Our own retry layer only: Prefect's client would otherwise retry too, more slowly.
    with temporary_settings({PREFECT_API_URL: f"{proxy.url}/api", PREFECT_CLIENT_MAX_RETRIES: 0}):
        async with running_listener(kafka) as listener:
            records = await read_topic(
                kafka, kafka.status_topic, lambda r: len(_for(request_id)(r)) >= 2
            )
    assert [s["state"] for s in _for(request_id)(records)] == ["accepted", "scheduled"]
    assert proxy.injected - injected_before == 3
    assert listener.counts.retries >= 3
    assert len(await flow_runs_named(request_id)) == 1
    dead = await read_topic(kafka, kafka.dead_letter_topic, lambda r: False, timeout_s=1)
    assert dead == []


async def test_two_replicas_in_one_group_share_the_work_without_duplicates(
    kafka: KafkaConnection, kafka_test_deployments: list[str]
) -> None:
    prefix = f"pair{uuid.uuid4().hex[:6]}"
    before = [f"{prefix}-a{n:02d}" for n in range(40)]
    after = [f"{prefix}-b{n:02d}" for n in range(40)]
    await produce(kafka, [(rid.encode(), request_bytes(rid), []) for rid in before])
    async with running_listener(kafka) as first:
        await wait_for_runs(prefix, 5)
        # A second replica joins mid-stream: the first commits what it gives up.
        async with running_listener(kafka) as second:
            deadline = asyncio.get_running_loop().time() + 30
            while not second.assigned_partitions:
                assert asyncio.get_running_loop().time() < deadline, "second replica never joined"
                await asyncio.sleep(0.2)
            # Keys spread over the topic's partitions, so both replicas get some of these.
            await produce(kafka, [(rid.encode(), request_bytes(rid), []) for rid in after])
            runs = await wait_for_runs(prefix, len(before) + len(after))
    assert sorted(run.idempotency_key for run in runs) == sorted(before + after)
    assert first.counts.dispatched + second.counts.dispatched >= len(before) + len(after)
    assert second.counts.received > 0
    assert await committed_total(kafka) == len(before) + len(after)

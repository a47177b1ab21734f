"""Crash safety: a listener subprocess SIGKILLed at random points loses and duplicates nothing."""

import asyncio
import random
import time
import uuid

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

from blocks import KafkaConnection
from tests.fixtures.kafka import committed_total, flow_runs_named, produce, request_bytes

REQUESTS = 200
KILLS = 3
# Each phase waits on a condition (runs created, offsets committed); the deadlines
# only guard against a hang, and the module's timeout is sized for a loaded machine.
pytestmark = pytest.mark.timeout(1500)


async def _count_runs(fragment: str) -> int:
    async with get_client() as client:
        return await client.count_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=fragment))
        )


async def test_sigkilled_listener_yields_exactly_one_run_per_request(
    kafka: KafkaConnection, kafka_test_deployments: list[str], listener_processes
) -> None:
    prefix = f"crash{uuid.uuid4().hex[:6]}"
    block_name = f"kafka-{prefix}"
    await kafka.asave(block_name, overwrite=True)
    ids = [f"{prefix}-{n:03d}" for n in range(REQUESTS)]
    await produce(
        kafka, [(rid.encode(), request_bytes(rid, parameters={"name": rid}), []) for rid in ids]
    )

    rng = random.Random()
    kills = 0
    # The crash follower is not what this test is about (it has tests of its own).
    options = ("--max-in-flight", "4", "--no-crash-follower")
    listener = listener_processes(block_name, *options)
    while kills < KILLS:
        await listener.wait_until_consuming()
        # Kill after a random number of new runs, i.e. at a random point mid-stream.
        start = await _count_runs(prefix)
        target = min(REQUESTS - 1, start + rng.randint(5, 35))
        # Deadlines here only guard against a hang: a loaded machine may be slow.
        deadline = time.monotonic() + 300
        while await _count_runs(prefix) < target:
            assert listener.process.poll() is None, listener.log_tail()
            assert time.monotonic() < deadline, listener.log_tail()
            await asyncio.sleep(rng.uniform(0.05, 0.3))
        listener.kill()
        kills += 1
        listener = listener_processes(block_name, *options)

    # Runs can all exist before every offset is committed: a killed listener created some
    # runs without committing them, and the survivor commits them only once redelivery
    # reaches those messages (finding the same runs by their request id). Wait for both.
    await listener.wait_until_consuming()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and (
        await _count_runs(prefix) < REQUESTS or await committed_total(kafka) < REQUESTS
    ):
        assert listener.process.poll() is None, listener.log_tail()
        await asyncio.sleep(0.5)
    # Then stop gracefully (drain + commit + leave).
    assert listener.terminate(timeout=180) == 0, listener.log_tail()

    runs = await flow_runs_named(prefix)
    assert kills >= KILLS
    assert len(runs) == REQUESTS, listener.log_tail()
    assert sorted(run.idempotency_key for run in runs) == ids
    assert sorted(run.parameters["name"] for run in runs) == ids
    assert await committed_total(kafka) == REQUESTS

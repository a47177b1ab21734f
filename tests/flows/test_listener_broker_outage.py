"""Broker outage: a running listener rides out a killed and restarted Kafka broker.

The test owns its Tansu broker (the session's ``kafka_broker`` is shared), kills it
with SIGKILL while the listener runs, and restarts it on the same port. Tansu's
memory storage comes back empty: the requests topic, the consumer group and its
committed offsets are gone, as after losing a whole single-node cluster.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocks import KafkaConnection
from flows.listener.loop import RequestListener
from tests.backends import BackendProcess, free_port, tansu_broker_argv, tcp_ready
from tests.fixtures.kafka import (
    committed_total,
    flow_runs_named,
    request_bytes,
    test_registry,
    wait_for_committed,
)
from tests.fixtures.prefect import CapturedLogs

OUTAGE_SECONDS = 4.0
REQUESTS_PER_PHASE = 3


class RestartableBroker:
    """An in-memory Tansu broker on a fixed port, killed and restarted by its PID."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.log_dir = log_dir
        self.starts = 0
        self.process: BackendProcess | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts the broker on the same port as before, with empty storage."""
        assert self.process is None or self.process.process.poll() is not None
        self.starts += 1
        self.process = BackendProcess(
            f"tansu-outage-{self.starts}",
            tansu_broker_argv(self.port),
            tcp_ready(self.port),
            self.log_dir,
        )

    def kill(self) -> None:
        """SIGKILL: the broker vanishes mid-conversation, as in a crash."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def outage_broker(tmp_path: Path) -> Iterator[RestartableBroker]:
    """A broker this test alone uses, stopped by PID at teardown whatever happened."""
    broker = RestartableBroker(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _connection(broker: RestartableBroker, suffix: str) -> KafkaConnection:
    """A connection to ``broker`` with topics and a consumer group of this test's own."""
    return KafkaConnection(
        bootstrap_servers=broker.bootstrap_servers,
        requests_topic=f"magicflow.requests.{suffix}",
        status_topic=f"magicflow.status.{suffix}",
        dead_letter_topic=f"magicflow.requests.dlq.{suffix}",
        consumer_group=f"magicflow-listener-{suffix}",
    )


async def _produce_requests(kafka: KafkaConnection, ids: list[str], partitions: list[int]) -> None:
    """Sends the requests to the given partitions (one each, in turn)."""
    producer = kafka.get_producer()
    await producer.start()
    try:
        for n, rid in enumerate(ids):
            value = request_bytes(rid, parameters={"name": rid})
            partition = partitions[n % len(partitions)]
            await producer.send_and_wait(
                kafka.requests_topic, value, key=rid.encode(), partition=partition
            )
    finally:
        await producer.stop()


# The restarted broker comes back empty, so a partition's offsets start again at 0
# while the listener may still hold its old position there, which is an artifact of
# memory storage (a real broker keeps its logs). Requests before and after the outage
# therefore go to different partitions of the (4-partition, auto-created) topic.
BEFORE_PARTITIONS = [0, 1, 2]
AFTER_PARTITIONS = [3]


async def _wait_for_one_run_each(
    prefix: str, ids: list[str], listener_task: asyncio.Task[object], timeout_s: float
) -> list[str]:
    """Polls the flow runs named with ``prefix`` until each id has one (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert not listener_task.done(), "the listener exited"
        keys = sorted(run.idempotency_key or "" for run in await flow_runs_named(prefix))
        if set(keys) >= set(ids) or time.monotonic() > deadline:
            return keys
        await asyncio.sleep(0.5)


async def test_listener_survives_a_broker_outage_and_dispatches_after_it(
    outage_broker: RestartableBroker,
    kafka_test_deployments: list[str],
    captured_logs: CapturedLogs,
    kafka_client_logs: CapturedLogs,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    kafka = _connection(outage_broker, suffix)
    before = f"pre{suffix}"
    after = f"post{suffix}"
    before_ids = [f"{before}-{n}" for n in range(REQUESTS_PER_PHASE)]
    after_ids = [f"{after}-{n}" for n in range(REQUESTS_PER_PHASE)]

    await _produce_requests(kafka, before_ids, BEFORE_PARTITIONS)
    listener = RequestListener(kafka, test_registry, max_in_flight=4)
    task = asyncio.create_task(listener.run())
    try:
        assert await _wait_for_one_run_each(before, before_ids, task, 180) == before_ids
        # Killed once all is committed: a commit landing on the restarted (empty)
        # broker would be an artifact of memory storage, not of a real outage.
        assert await wait_for_committed(kafka, len(before_ids), 180) == len(before_ids)

        outage_broker.kill()
        logged_before_outage = len(kafka_client_logs.records)
        # The broker stays down for the outage and until the client has said it failed
        # to reach it (a loaded machine may take longer to notice); the deadline only
        # guards against a client that never says so.
        outage_end = time.monotonic() + OUTAGE_SECONDS
        deadline = outage_end + 120

        def failures() -> list[logging.LogRecord]:
            return [
                record
                for record in kafka_client_logs.records[logged_before_outage:]
                if record.levelno >= logging.WARNING
            ]

        while time.monotonic() < outage_end or (not failures() and time.monotonic() < deadline):
            assert not task.done(), f"the listener exited during the outage:\n{captured_logs.text}"
            await asyncio.sleep(0.2)
        assert failures(), "no failed Kafka connection was logged during the outage"

        outage_broker.start()
        await _produce_requests(kafka, after_ids, AFTER_PARTITIONS)
        # The deadlines only guard against a hang: a loaded machine's Prefect may be slow.
        keys = await _wait_for_one_run_each(after, after_ids, task, 180)
        assert keys == after_ids, captured_logs.text
        assert not task.done(), "the listener exited"
    finally:
        listener.stop()
        counts = await asyncio.wait_for(task, 120)

    # The same listener did it all, once per request: nothing lost, nothing doubled.
    assert sorted(run.idempotency_key or "" for run in await flow_runs_named(before)) == before_ids
    assert sorted(run.idempotency_key or "" for run in await flow_runs_named(after)) == after_ids
    assert counts.dispatched >= 2 * REQUESTS_PER_PHASE
    assert counts.rejected == 0
    # The restarted broker starts empty: what the group committed there is exactly
    # the post-outage requests, each committed once its flow run existed.
    assert await committed_total(kafka) == len(after_ids)


async def test_a_listener_stopped_while_its_broker_is_down_stops_cleanly(
    outage_broker: RestartableBroker,
    kafka_test_deployments: list[str],
    kafka_client_logs: CapturedLogs,
) -> None:
    # A pod is told to stop during an outage: it must return, not die with the Kafka
    # client's own cancellation (which it raised from stop() while retrying a fetch).
    suffix = uuid.uuid4().hex[:8]
    kafka = _connection(outage_broker, suffix)
    ids = [f"stop{suffix}-{n}" for n in range(REQUESTS_PER_PHASE)]
    await _produce_requests(kafka, ids, BEFORE_PARTITIONS)
    listener = RequestListener(kafka, test_registry, max_in_flight=4)
    task = asyncio.create_task(listener.run())
    try:
        assert await _wait_for_one_run_each(f"stop{suffix}", ids, task, 180) == ids
        outage_broker.kill()
        logged_before_outage = len(kafka_client_logs.records)
        deadline = time.monotonic() + 120
        # Stopped once the client is retrying against the dead broker.
        while len(kafka_client_logs.records) == logged_before_outage:
            assert time.monotonic() < deadline, "the Kafka client never noticed the outage"
            await asyncio.sleep(0.2)
    finally:
        listener.stop()
    counts = await asyncio.wait_for(task, 120)
    assert counts.dispatched == len(ids)

"""The `workflow` decorator publishes a status for every run, against real Tansu and Prefect."""

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiokafka import AIOKafkaConsumer
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.deployments import run_deployment
from prefect.states import Cancelling, Crashed, Running

from blocks import KafkaConnection
from flows.listener.crashes import follow_crashed_runs, supervise_crash_follower
from magicflow import Change, ConflictError
from magicflow.messages import REQUEST_TAG_PREFIX, RunState, WorkflowStatus
from magicflow.workflows import (
    KAFKA_BLOCK_ENV,
    REPLY_TOPIC_TAG_PREFIX,
    workflow,
)
from tests.backends import BackendProcess, free_port, tansu_broker_argv, tcp_ready
from tests.fixtures.kafka import create_topic
from tests.fixtures.workflows import (
    CHANGES_DEPLOYMENT,
    FAILURE_DEPLOYMENT,
    KAFKA_BLOCK_NAME,
    SECRET_DEPLOYMENT,
    SLEEP_DEPLOYMENT,
    ServedWorkflows,
)


@workflow
def provision_tenant(tenant: str) -> list[Change]:
    return [
        Change(resource=f"test:namespace/{tenant}", action="created"),
        Change(resource=f"test:quota/{tenant}", action="updated"),
        Change(resource=f"test:role/{tenant}", action="unchanged"),
    ]


@workflow(name="break-tenant", retries=0)
def break_tenant(tenant: str) -> list[Change]:
    raise ConflictError(f"test:namespace/{tenant}", "changed by someone else")


@workflow(name="provision-tenant-async")
async def provision_tenant_async(tenant: str) -> list[Change]:
    return [Change(resource=f"test:namespace/{tenant}", action="deleted")]


Message = tuple[bytes, WorkflowStatus]


async def _read_statuses(
    kafka: KafkaConnection, topic: str, done: Callable[[list[Message]], bool], seconds: float
) -> list[Message]:
    consumer = AIOKafkaConsumer(
        topic, group_id=None, auto_offset_reset="earliest", **kafka.client_options()
    )
    await consumer.start()
    messages: list[Message] = []
    try:
        deadline = time.monotonic() + seconds
        while not done(messages) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    messages.append(
                        (record.value, WorkflowStatus.model_validate_json(record.value))
                    )
    finally:
        await consumer.stop()
    return messages


def statuses_of(
    kafka: KafkaConnection,
    flow_run_id: UUID,
    until: RunState,
    topic: str | None = None,
    timeout: float = 60,
) -> list[WorkflowStatus]:
    """The statuses of one run, read from the topic until `until` arrives (or timeout)."""

    def mine(messages: list[Message]) -> list[WorkflowStatus]:
        return [status for _, status in messages if status.flow_run_id == flow_run_id]

    messages = asyncio.run(
        _read_statuses(
            kafka,
            topic or kafka.status_topic,
            lambda messages: any(s.state is until for s in mine(messages)),
            timeout,
        )
    )
    return mine(messages)


def artifacts_of(flow_run_id: UUID) -> list[Any]:
    async def read() -> list[Any]:
        async with get_client() as client:
            return list(
                await client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                    )
                )
            )

    return asyncio.run(read())


@pytest.fixture
def status_kafka(kafka: KafkaConnection) -> KafkaConnection:
    """The test's Kafka connection, saved as the block every run publishes through."""
    kafka.save(KAFKA_BLOCK_NAME, overwrite=True)
    return kafka


def wait_for_file(path: Path, served: ServedWorkflows, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} never written; runner log:\n{served.log_tail()}")


def test_a_direct_call_publishes_running_then_completed_with_the_change_summary(
    status_kafka: KafkaConnection,
) -> None:
    state = provision_tenant("acme", return_state=True)
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None

    statuses = statuses_of(status_kafka, flow_run_id, until=RunState.COMPLETED)

    assert [s.state for s in statuses] == [RunState.RUNNING, RunState.COMPLETED]
    completed = statuses[-1]
    assert completed.workflow == "provision-tenant"
    assert completed.request_id is None
    assert completed.changes == {
        "created": 1,
        "updated": 1,
        "unchanged": 1,
        "deleted": 0,
        "skipped": 0,
    }
    assert completed.ui_url is not None and str(flow_run_id) in completed.ui_url
    assert completed.reason is None

    [artifact] = artifacts_of(flow_run_id)
    assert "test:namespace/acme" in str(artifact.data)


async def test_an_async_workflow_publishes_its_statuses_too(status_kafka: KafkaConnection) -> None:
    state = await provision_tenant_async("acme", return_state=True)
    flow_run_id = state.state_details.flow_run_id

    def completed(messages: list[Message]) -> bool:
        return any(
            s.flow_run_id == flow_run_id and s.state is RunState.COMPLETED for _, s in messages
        )

    messages = await _read_statuses(status_kafka, status_kafka.status_topic, completed, seconds=30)

    statuses = [s for _, s in messages if s.flow_run_id == flow_run_id]
    assert [s.state for s in statuses] == [RunState.RUNNING, RunState.COMPLETED]
    assert statuses[-1].changes == {
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "deleted": 1,
        "skipped": 0,
    }


def test_a_failing_flow_publishes_failed_with_a_short_reason(
    status_kafka: KafkaConnection,
) -> None:
    state = break_tenant("acme", return_state=True)
    assert state.is_failed()

    statuses = statuses_of(status_kafka, state.state_details.flow_run_id, until=RunState.FAILED)

    assert [s.state for s in statuses] == [RunState.RUNNING, RunState.FAILED]
    assert statuses[-1].reason == "ConflictError: test:namespace/acme: changed by someone else"
    assert statuses[-1].changes is None


def test_without_a_kafka_block_statuses_are_off_and_runs_unaffected(
    monkeypatch: pytest.MonkeyPatch, captured_logs
) -> None:
    monkeypatch.setenv(KAFKA_BLOCK_ENV, f"missing-{uuid.uuid4().hex[:8]}")

    state = provision_tenant("acme", return_state=True)

    assert state.is_completed()
    assert "run statuses are not published" in captured_logs.text
    assert len(artifacts_of(state.state_details.flow_run_id)) == 1  # the table still is


def test_an_unreachable_broker_only_costs_a_warning(
    monkeypatch: pytest.MonkeyPatch, captured_logs, kafka: KafkaConnection
) -> None:
    name = f"down-{uuid.uuid4().hex[:8]}"
    kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"}).save(name)
    monkeypatch.setenv(KAFKA_BLOCK_ENV, name)

    started = time.monotonic()
    assert len(provision_tenant("acme")) == 3

    assert time.monotonic() - started < 40
    assert "Could not publish the RUNNING status" in captured_logs.text
    assert "Could not publish the COMPLETED status" in captured_logs.text


def test_a_served_run_publishes_running_then_completed_with_its_request_id(
    served_workflows: ServedWorkflows, status_kafka: KafkaConnection
) -> None:
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    run = run_deployment(
        CHANGES_DEPLOYMENT,
        parameters={"tenant": "served"},
        timeout=0,
        tags=[REQUEST_TAG_PREFIX + request_id, "magicflow"],
    )

    statuses = statuses_of(status_kafka, run.id, until=RunState.COMPLETED)

    assert [s.state for s in statuses] == [RunState.RUNNING, RunState.COMPLETED], (
        served_workflows.log_tail()
    )
    assert {s.request_id for s in statuses} == {request_id}
    assert statuses[-1].changes == {
        "created": 1,
        "updated": 0,
        "unchanged": 1,
        "deleted": 0,
        "skipped": 0,
    }
    assert statuses[-1].workflow == "test-changes"


def test_a_reply_topic_tag_sends_the_statuses_there(
    served_workflows: ServedWorkflows, status_kafka: KafkaConnection
) -> None:
    reply_topic = f"magicflow.replies.{uuid.uuid4().hex[:8]}"
    run = run_deployment(FAILURE_DEPLOYMENT, timeout=0, tags=[REPLY_TOPIC_TAG_PREFIX + reply_topic])

    statuses = statuses_of(status_kafka, run.id, until=RunState.FAILED, topic=reply_topic)

    assert [s.state for s in statuses] == [RunState.RUNNING, RunState.FAILED]
    assert statuses[-1].reason == "ConflictError: test:namespace/acme: changed by someone else"


def test_a_reply_topic_tag_outside_the_prefix_is_ignored(
    served_workflows: ServedWorkflows, status_kafka: KafkaConnection
) -> None:
    foreign = f"payments.{uuid.uuid4().hex[:8]}"
    run = run_deployment(FAILURE_DEPLOYMENT, timeout=0, tags=[REPLY_TOPIC_TAG_PREFIX + foreign])

    statuses = statuses_of(status_kafka, run.id, until=RunState.FAILED)

    assert [s.state for s in statuses] == [RunState.RUNNING, RunState.FAILED]


def test_a_flow_run_process_killed_with_sigkill_yields_crashed(
    served_workflows: ServedWorkflows, status_kafka: KafkaConnection, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    run = run_deployment(
        SLEEP_DEPLOYMENT, parameters={"pid_file": str(pid_file), "seconds": 120}, timeout=0
    )
    pid = int(wait_for_file(pid_file, served_workflows))
    assert pid != served_workflows.pid

    os.kill(pid, signal.SIGKILL)

    statuses = statuses_of(status_kafka, run.id, until=RunState.CRASHED)
    assert [s.state for s in statuses] == [RunState.RUNNING, RunState.CRASHED], (
        served_workflows.log_tail()
    )
    assert statuses[-1].reason and "-9" in statuses[-1].reason


def test_a_cancelled_run_yields_cancelled(
    served_workflows: ServedWorkflows, status_kafka: KafkaConnection, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    run = run_deployment(
        SLEEP_DEPLOYMENT, parameters={"pid_file": str(pid_file), "seconds": 120}, timeout=0
    )
    wait_for_file(pid_file, served_workflows)

    async def cancel() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(run.id, Cancelling())

    asyncio.run(cancel())

    statuses = statuses_of(status_kafka, run.id, until=RunState.CANCELLED)
    assert [s.state for s in statuses] == [RunState.RUNNING, RunState.CANCELLED], (
        served_workflows.log_tail()
    )


def test_no_secret_parameter_value_appears_in_any_status(
    served_workflows: ServedWorkflows, status_kafka: KafkaConnection
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    succeeded = run_deployment(SECRET_DEPLOYMENT, parameters={"token": secret}, timeout=0)
    failed = run_deployment(
        SECRET_DEPLOYMENT, parameters={"token": secret, "fail": True}, timeout=0
    )
    finals = {succeeded.id: RunState.COMPLETED, failed.id: RunState.FAILED}

    def both_finished(messages: list[Message]) -> bool:
        return all(
            any(s.flow_run_id == i and s.state is f for _, s in messages) for i, f in finals.items()
        )

    messages = asyncio.run(
        _read_statuses(status_kafka, status_kafka.status_topic, both_finished, seconds=60)
    )

    assert both_finished(messages), served_workflows.log_tail()
    assert len(messages) == 4
    assert not [raw for raw, _ in messages if secret.encode() in raw]
    assert [s.reason for _, s in messages if s.state is RunState.FAILED] == [
        "InvalidInputError: test:token/api: token ********** is not accepted"
    ]


def test_a_foreign_error_is_reported_by_its_type_alone(
    served_workflows: ServedWorkflows, status_kafka: KafkaConnection
) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    run = run_deployment(SECRET_DEPLOYMENT, parameters={"token": secret, "leak": True}, timeout=0)

    statuses = statuses_of(status_kafka, run.id, until=RunState.FAILED)

    assert [s.state for s in statuses] == [RunState.RUNNING, RunState.FAILED], (
        served_workflows.log_tail()
    )
    assert statuses[-1].reason == "RuntimeError"
    assert all(secret not in s.model_dump_json() for s in statuses)


async def test_a_run_marked_crashed_by_the_server_gets_a_status_from_the_crash_follower(
    status_kafka: KafkaConnection,
) -> None:
    # A run whose runner died with it: no hook can run; the server marks it Crashed
    # (here by hand, as Prefect's zombie-detecting automation would).
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    follower = asyncio.create_task(follow_crashed_runs(status_kafka, stop=stop))
    try:
        await asyncio.sleep(1)  # subscribed
        async with get_client() as client:
            flow_run = await client.create_flow_run(
                provision_tenant,
                parameters={"tenant": "zombie"},
                tags=[REQUEST_TAG_PREFIX + request_id],
            )
            await client.set_flow_run_state(flow_run.id, Running(), force=True)
            await client.set_flow_run_state(
                flow_run.id, Crashed(message="no heartbeat for 90s"), force=True
            )

        def crashed(messages: list[Message]) -> bool:
            return any(s.flow_run_id == flow_run.id for _, s in messages)

        messages = await _read_statuses(
            status_kafka, status_kafka.status_topic, crashed, seconds=30
        )
    finally:
        stop.set()
        await asyncio.wait_for(follower, 10)

    [status] = [s for _, s in messages if s.flow_run_id == flow_run.id]
    assert status.state is RunState.CRASHED
    assert status.request_id == request_id
    assert status.workflow == "provision-tenant"
    assert status.reason == "no heartbeat for 90s"


async def test_the_crash_follower_is_restarted_until_the_broker_answers(
    kafka: KafkaConnection, backend_logs: Path, captured_logs
) -> None:
    port = free_port()
    later = kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{port}"})
    stop = asyncio.Event()
    supervisor = asyncio.create_task(
        supervise_crash_follower(later, stop, max_backoff=1, backfill=timedelta(seconds=5))
    )
    broker = None
    try:
        deadline = time.monotonic() + 60
        while captured_logs.text.count("The crash follower failed") < 2:
            assert not supervisor.done(), captured_logs.text
            assert time.monotonic() < deadline, captured_logs.text
            await asyncio.sleep(0.1)
        # The broker comes up: the restarted follower reports the next crash.
        broker = BackendProcess(
            "tansu-late", tansu_broker_argv(port), tcp_ready(port), backend_logs
        )
        await create_topic(later, later.status_topic)  # so that the reader below sees it
        while "Following crashed flow runs" not in captured_logs.text:
            assert not supervisor.done(), captured_logs.text
            assert time.monotonic() < deadline + 60, captured_logs.text
            await asyncio.sleep(0.1)
        # A crash that happens while Prefect's server is still setting up the event
        # stream can fall between backfill and live events: crash runs until one of
        # them is reported (the deadline only guards against a hang).
        request_id = f"req-{uuid.uuid4().hex[:8]}"
        crashed_ids: set[UUID] = set()

        def reported(messages: list[Message]) -> bool:
            return any(s.flow_run_id in crashed_ids for _, s in messages)

        messages: list[Message] = []
        while not reported(messages):
            assert time.monotonic() < deadline + 240, captured_logs.text
            async with get_client() as client:
                flow_run = await client.create_flow_run(
                    provision_tenant, tags=[REQUEST_TAG_PREFIX + request_id]
                )
                await client.set_flow_run_state(flow_run.id, Running(), force=True)
                await client.set_flow_run_state(flow_run.id, Crashed(message="lost"), force=True)
            crashed_ids.add(flow_run.id)
            messages = await _read_statuses(later, later.status_topic, reported, seconds=15)
        [status, *_] = [s for _, s in messages if s.flow_run_id in crashed_ids]
        assert (status.state, status.request_id) == (RunState.CRASHED, request_id)
    finally:
        stop.set()
        restarts = await asyncio.wait_for(supervisor, 30)
        if broker is not None:
            broker.stop()
    assert restarts >= 2
    assert "Unclosed" not in captured_logs.text

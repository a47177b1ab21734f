"""Submitting a workflow request to Kafka and, optionally, following its statuses.

This is the client side of the request listener (``flows/kafka_trigger.py``), for
CI/CD pipelines and scripts: it builds a `WorkflowRequest`, signs it when the
connection has a signing secret, publishes it keyed by its id, and with
``wait=True`` reads the status topic (or the reply topic) until the request
reaches a final state or the timeout passes.

Example:
    ```python
    from magicflow.submit import submit

    result = submit("tenant-provisioning", {"tenant": "acme"}, kafka="magicflow", wait=True)
    print(result.final.state, result.ui_url)
    raise SystemExit(result.exit_code)
    ```
"""

import asyncio
import functools
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ParamSpec, TypeVar

from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel, JsonValue, ValidationError

from blocks.kafka import KafkaConnection, stop_consumer
from magicflow.cli import ExitCode
from magicflow.jobs import connection
from magicflow.messages import SIGNATURE_HEADER, RunState, WorkflowRequest, WorkflowStatus, sign
from magicflow.workflows import DEFAULT_KAFKA_BLOCK

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_TIMEOUT_SECONDS = 600.0
"""How long ``wait=True`` follows statuses before giving up."""


class SubmitResult(BaseModel):
    """What happened to a submitted request.

    Attributes:
        request_id: The request's id (its idempotency key).
        statuses: Statuses seen for it, in the order they arrived (empty without
            ``wait``); order them by ``seq`` for the order of the states.
        waited: True when statuses were followed.
    """

    request_id: str
    statuses: list[WorkflowStatus] = []
    waited: bool = False

    @property
    def final(self) -> WorkflowStatus | None:
        """The final status, if one arrived."""
        return next((s for s in reversed(self.statuses) if s.state.is_final), None)

    @property
    def ui_url(self) -> str | None:
        """The run's link in the Prefect UI, once a status carried it."""
        return next((s.ui_url for s in reversed(self.statuses) if s.ui_url), None)

    @property
    def exit_code(self) -> ExitCode:
        """`ExitCode.OK` when not waiting or completed; otherwise why not."""
        if not self.waited:
            return ExitCode.OK
        final = self.final
        if final is None:
            return ExitCode.TIMED_OUT
        if final.state is RunState.COMPLETED:
            return ExitCode.OK
        if final.state is RunState.REJECTED:
            return ExitCode.REJECTED
        return ExitCode.RUN_FAILED


async def _start_following(kafka: KafkaConnection, topic: str) -> AIOKafkaConsumer:
    """A group-less consumer of the status topic, positioned after what exists now."""
    consumer = AIOKafkaConsumer(
        topic,
        group_id=None,
        enable_auto_commit=False,
        # Partitions that appear later (an auto-created topic) are read from their start.
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
        **kafka.client_options(),
    )
    await consumer.start()
    partitions = list(consumer.assignment())
    if partitions:
        for partition, offset in (await consumer.end_offsets(partitions)).items():
            consumer.seek(partition, offset)
    return consumer


async def _follow(
    consumer: AIOKafkaConsumer,
    request: WorkflowRequest,
    deadline: float,
    on_status: Callable[[WorkflowStatus], None] | None,
) -> list[WorkflowStatus]:
    """Statuses of one request until a final one or the deadline (`time.monotonic`).

    A status about another request with the same id (another hash: a conflicting
    resubmission by someone else) is not this request's, and is skipped; so is a
    status that was already seen (same state and ``seq``).
    """
    statuses: list[WorkflowStatus] = []
    seen: set[tuple[str, int]] = set()
    request_id, key = request.id, request.id.encode()
    while (remaining := deadline - time.monotonic()) > 0:
        batch = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
        for records in batch.values():
            for record in records:
                if record.key != key or not record.value:
                    continue
                try:
                    status = WorkflowStatus.model_validate_json(record.value)
                except ValidationError:
                    continue
                if status.request_id != request_id or status.request_hash not in (
                    None,
                    request.request_hash,
                ):
                    continue
                if (status.state.value, status.seq) in seen:
                    continue
                seen.add((status.state.value, status.seq))
                statuses.append(status)
                if on_status:
                    on_status(status)
                if status.state.is_final:
                    return statuses
    return statuses


async def asubmit(
    workflow: str,
    parameters: Mapping[str, JsonValue] | None = None,
    *,
    kafka: KafkaConnection | str = DEFAULT_KAFKA_BLOCK,
    request_id: str | None = None,
    dry_run: bool = False,
    requested_by: str | None = None,
    reply_topic: str | None = None,
    wait: bool = False,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    on_status: Callable[[WorkflowStatus], None] | None = None,
) -> SubmitResult:
    """Publishes a workflow request; with ``wait``, follows its statuses.

    Resubmitting the id of a request whose run has finished makes the listener
    answer with the run's final status, so ``wait`` then returns it at once.

    Args:
        workflow: A registered workflow name.
        parameters: The workflow's parameters (JSON values).
        kafka: The Kafka connection block, or its saved name (default ``magicflow``).
        request_id: The idempotency key; a new UUID when None.
        dry_run: Ask the workflow to plan without writing.
        requested_by: Who asks, e.g. ``ci:pipeline-42``.
        reply_topic: Where statuses should go instead of the status topic.
        wait: Follow statuses until a final one or ``timeout_seconds``.
        timeout_seconds: Seconds to wait for a final status.
        on_status: Called with each status as it arrives.

    Returns:
        The request id and the statuses seen; ``exit_code`` tells success.

    Raises:
        pydantic.ValidationError: The request is malformed (bad id, workflow name...).
        aiokafka.errors.KafkaError: The broker could not be reached.

    Example:
        ```python
        result = await asubmit("tenant-provisioning", {"tenant": "acme"}, wait=True)
        assert result.exit_code == 0, result.final
        ```
    """
    kafka = connection(
        await KafkaConnection.aload(kafka) if isinstance(kafka, str) else kafka, KafkaConnection
    )
    request = WorkflowRequest(
        id=request_id or str(uuid.uuid4()),
        workflow=workflow,
        parameters=dict(parameters or {}),
        dry_run=dry_run,
        requested_by=requested_by,
        reply_topic=reply_topic,
    )
    value = request.model_dump_json().encode()
    headers = (
        [(SIGNATURE_HEADER, sign(value, kafka.signing_secret).encode())]
        if kafka.signing_secret
        else []
    )
    consumer = await _start_following(kafka, reply_topic or kafka.status_topic) if wait else None
    try:
        producer = kafka.get_producer()
        try:
            await producer.start()
            await producer.send_and_wait(
                kafka.requests_topic, value, key=request.id.encode(), headers=headers
            )
        finally:
            await producer.stop()
        if consumer is None:
            return SubmitResult(request_id=request.id)
        statuses = await _follow(consumer, request, time.monotonic() + timeout_seconds, on_status)
        return SubmitResult(request_id=request.id, statuses=statuses, waited=True)
    finally:
        if consumer is not None:
            await stop_consumer(consumer)


def _blocking(function: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    """The same function for callers without an event loop (scripts, notebooks, the CLI)."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return asyncio.run(function(*args, **kwargs))

    return run


submit = _blocking(asubmit)
"""`asubmit` for callers without a running event loop: same arguments, same result.

Example:
    ```python
    result = submit("tenant-provisioning", {"tenant": "acme"}, wait=True, timeout_seconds=300)
    assert result.exit_code == 0, result.final
    ```
"""

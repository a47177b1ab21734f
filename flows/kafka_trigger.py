"""The Kafka request listener: turns requests into flow runs, effectively once.

`RequestListener` consumes the requests topic in a consumer group. Each message is
checked (size, JSON, schema, HMAC signature, allow-list, the workflow's own
parameter signature) by `check_request`; a good one is dispatched with
``run_deployment(..., idempotency_key=<request id>, timeout=0)`` and answered with
``accepted`` then ``scheduled`` statuses; a bad one goes to the dead-letter topic
with its original bytes and the reason, plus a ``rejected`` status when its id is
readable. An offset is committed only once every message up to it has its flow run
(or is dead-lettered), so a crash means redelivery, and the idempotency key turns
redelivery into the same flow run.

`kafka_trigger` is the same listener as a long-running Prefect flow to deploy; it
drains and stops on SIGTERM/SIGINT and resumes from the committed offsets when
restarted. ``python -m flows.kafka_trigger --kafka-block NAME`` runs the listener
from a shell.

Example:
    ```python
    import asyncio

    from flows.kafka_trigger import kafka_trigger

    asyncio.run(kafka_trigger(kafka="production", max_in_flight=8))
    ```
"""

import argparse
import asyncio
import importlib
import json
import logging
import math
import random
import signal
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.structs import ConsumerRecord
from prefect import flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import arun_deployment
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.logging import get_run_logger
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
from pydantic import BaseModel, JsonValue, SecretStr, TypeAdapter, ValidationError

from blocks.kafka import KafkaConnection
from flows.registry import (
    InvalidParametersError,
    RegisteredWorkflow,
    Registry,
    UnknownWorkflowError,
)
from magicflow.jobs import connection
from magicflow.messages import (
    REQUEST_TAG_PREFIX,
    SIGNATURE_HEADER,
    RequestId,
    RunState,
    WorkflowName,
    WorkflowRequest,
    WorkflowStatus,
    publish_status,
    signature_is_valid,
)
from magicflow.workflows import (
    DEFAULT_KAFKA_BLOCK,
    REPLY_TOPIC_TAG_PREFIX,
    flow_run_ui_url,
    follow_crashed_runs,
)

T = TypeVar("T")

REASON_HEADER = "x-magicflow-reason"
"""Dead-letter header: why the message was rejected (never holds a secret)."""
SOURCE_TOPIC_HEADER = "x-magicflow-source-topic"
"""Dead-letter header: the topic the message was consumed from."""
SOURCE_PARTITION_HEADER = "x-magicflow-source-partition"
"""Dead-letter header: its partition."""
SOURCE_OFFSET_HEADER = "x-magicflow-source-offset"
"""Dead-letter header: its offset."""
REDACTED_HEADER = "x-magicflow-redacted"
"""Dead-letter header: the fields whose secret values were masked in the copy."""

RUN_TAG = "magicflow"
"""Tag on every flow run started from a request (next to the request-id tag)."""

DEFAULT_MAX_IN_FLIGHT = 8
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
MAX_JSON_DEPTH = 32
"""Deepest nesting of objects/arrays a request may have."""
MAX_INTEGER_DIGITS = 40
"""Longest integer literal a request may hold; longer ones are rejected unparsed."""


@dataclass(frozen=True)
class Rejection:
    """Why a message is dead-lettered, and what of it could be read.

    Attributes:
        reason: Why, in words; never holds parameter values or secrets.
        request_id: The request's id when one could be read.
        workflow: The workflow name when one could be read.
        reply_topic: Where its statuses go when the request parsed fully.
    """

    reason: str
    request_id: str | None = None
    workflow: str | None = None
    reply_topic: str | None = None


@dataclass(frozen=True)
class Dispatch:
    """A checked request, ready to be turned into a flow run.

    Attributes:
        request: The request.
        workflow: Its registered workflow.
        parameters: The parameters to start the deployment with.
    """

    request: WorkflowRequest
    workflow: RegisteredWorkflow
    parameters: dict[str, JsonValue]

    @property
    def flow_run_name(self) -> str:
        """A readable flow-run name: the workflow and the request id."""
        return f"{self.workflow.name}-{self.request.id}"

    @property
    def tags(self) -> list[str]:
        """The flow run's tags: `RUN_TAG`, the request id and the reply topic if any.

        The run's status hooks (`magicflow.workflows`) read the request id and
        reply topic back from these tags.
        """
        tags = [f"{REQUEST_TAG_PREFIX}{self.request.id}", RUN_TAG]
        if self.request.reply_topic:
            tags.append(f"{REPLY_TOPIC_TAG_PREFIX}{self.request.reply_topic}")
        return tags


class ListenerCounts(BaseModel):
    """What a listener did since it started; logged as it goes and returned at the end.

    Attributes:
        received: Messages consumed.
        dispatched: Requests that got a flow run (redeliveries count again).
        rejected: Messages dead-lettered.
        retries: Retried calls to Prefect or Kafka after a transient failure.
    """

    received: int = 0
    dispatched: int = 0
    rejected: int = 0
    retries: int = 0


class _UnsafeJsonError(ValueError):
    """A JSON text uses a construct the listener refuses to process."""


def _refuse_constant(name: str) -> Any:
    raise _UnsafeJsonError(f"JSON constant {name} is not allowed")


def _parse_bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _UnsafeJsonError(f"integer longer than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _parse_finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _UnsafeJsonError("number out of range")
    return value


def _check_json_value(value: Any) -> None:
    """Refuses nesting deeper than `MAX_JSON_DEPTH` and strings Prefect cannot store."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _UnsafeJsonError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            if "\x00" in item:
                raise _UnsafeJsonError("string contains a NUL character")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _UnsafeJsonError("string contains an unpaired surrogate") from None


def _parse_json(value: bytes) -> Any:
    """Parses a message value as JSON, refusing non-UTF-8, huge numbers and NaN/Infinity."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise _UnsafeJsonError("not UTF-8") from None
    try:
        parsed = json.loads(
            text,
            parse_int=_parse_bounded_int,
            parse_float=_parse_finite_float,
            parse_constant=_refuse_constant,
        )
    except _UnsafeJsonError:
        raise
    except RecursionError:
        raise _UnsafeJsonError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:
        raise _UnsafeJsonError(f"not JSON ({type(error).__name__})") from None
    return parsed


_REQUEST_ID = TypeAdapter(RequestId)
_WORKFLOW_NAME = TypeAdapter(WorkflowName)


def _readable(document: Any, field: str, adapter: TypeAdapter[str]) -> str | None:
    """One field of a possibly invalid request, when that field alone is valid."""
    if not isinstance(document, dict):
        return None
    try:
        return adapter.validate_python(document.get(field), strict=True)
    except ValidationError:
        return None


def _schema_problems(error: ValidationError) -> str:
    """Which request fields are wrong, without their values."""
    problems = [
        f"{'.'.join(str(part) for part in problem['loc']) or '(request)'}: {problem['msg']}"
        for problem in error.errors(include_url=False, include_input=False, include_context=False)
    ]
    return "; ".join(problems[:5]) + (
        f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    )


def check_request(
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    registry: Registry,
    *,
    signing_secret: SecretStr | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    reserved_topics: frozenset[str] = frozenset(),
) -> Dispatch | Rejection:
    """Decides what to do with one request message, without side effects.

    Args:
        value: The message value, as received.
        headers: The message headers.
        registry: The allow-list of workflows.
        signing_secret: When set, the message must carry a valid `SIGNATURE_HEADER`.
        max_message_bytes: Larger messages are rejected unparsed.
        reserved_topics: Topics a request may not name as its reply topic (the
            listener's own requests and dead-letter topics).

    Returns:
        A `Dispatch` for a good request, a `Rejection` with the reason otherwise.

    Example:
        >>> check_request(b"not json", [], Registry()).reason
        'not JSON (JSONDecodeError)'
    """
    if value is None:
        return Rejection("empty message")
    if len(value) > max_message_bytes:
        return Rejection(
            f"message of {len(value)} bytes exceeds the {max_message_bytes}-byte limit"
        )
    try:
        document = _parse_json(value)
    except _UnsafeJsonError as error:
        return Rejection(str(error))
    request_id = _readable(document, "id", _REQUEST_ID)
    workflow_name = _readable(document, "workflow", _WORKFLOW_NAME)
    try:
        _check_json_value(document)
    except _UnsafeJsonError as error:
        return Rejection(str(error), request_id, workflow_name)
    if not isinstance(document, dict):
        return Rejection(f"request must be a JSON object, not {type(document).__name__}")
    try:
        request = WorkflowRequest.model_validate(document)
    except ValidationError as error:
        return Rejection(f"invalid request: {_schema_problems(error)}", request_id, workflow_name)
    if signing_secret is not None:
        signature = next((v for k, v in headers if k == SIGNATURE_HEADER), None)
        if signature is None:
            return Rejection("missing signature", request.id, request.workflow)
        if not signature_is_valid(value, signature, signing_secret):
            return Rejection("bad signature", request.id, request.workflow)
    if request.reply_topic in reserved_topics:
        return Rejection("reply_topic names one of the listener's own topics", request.id)
    try:
        workflow = registry.get(request.workflow)
        parameters = workflow.validate_parameters(request.parameters, dry_run=request.dry_run)
    except (UnknownWorkflowError, InvalidParametersError) as error:
        return Rejection(str(error), request.id, request.workflow, request.reply_topic)
    return Dispatch(request, workflow, parameters)


def _is_transient(error: BaseException) -> bool:
    """True for failures worth retrying: outages, overload, timeouts. The one place deciding it."""
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status in (408, 429) or status >= 500
    if isinstance(error, KafkaError):
        return bool(error.retriable) or isinstance(error, KafkaConnectionError | KafkaTimeoutError)
    return isinstance(error, httpx.TransportError | OSError | asyncio.TimeoutError)


def _refusal_reason(deployment: str, error: BaseException) -> str:
    """Why Prefect permanently refused a run, without echoing the request back."""
    if isinstance(error, ObjectNotFound):
        return f"deployment {deployment} not found"
    if isinstance(error, httpx.HTTPStatusError):
        return f"Prefect refused the run of {deployment}: HTTP {error.response.status_code}"
    return f"could not dispatch {deployment}: {type(error).__name__}"


class _PartitionProgress:
    """Offsets of one partition in flight, and the next offset safe to commit."""

    def __init__(self) -> None:
        self._offsets: OrderedDict[int, bool] = OrderedDict()
        self.committable: int | None = None
        self.committed: int | None = None

    def started(self, offset: int) -> None:
        self._offsets[offset] = False

    def finished(self, offset: int) -> None:
        if offset in self._offsets:
            self._offsets[offset] = True
        # Dispatch completes out of order: only a done prefix is safe to commit.
        while self._offsets:
            first = next(iter(self._offsets))
            if not self._offsets[first]:
                break
            del self._offsets[first]
            self.committable = first + 1


class _CommitOnRevoke(ConsumerRebalanceListener):
    """Lets a listener finish and commit a partition's in-flight work before giving it up."""

    def __init__(self, listener: "RequestListener") -> None:
        self._listener = listener

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._listener._release(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


class RequestListener:
    """Consumes requests and turns each into exactly one flow run (or a dead letter).

    Usable without a Prefect flow (tests, benchmarks, ``python -m flows.kafka_trigger``).

    Args:
        kafka: The Kafka connection (topics, consumer group, signing secret).
        registry: The allow-list of workflows.
        max_in_flight: How many messages are checked and dispatched at once.
        max_message_bytes: Larger messages are dead-lettered unparsed.
        logger: Where progress goes (counts, never payloads).
        drain_timeout: Seconds a stop waits for in-flight dispatches before
            abandoning them (uncommitted, so they are redelivered).
        max_backoff: Longest wait between retries of a failing Prefect or Kafka call.
        consumer_options: Further ``AIOKafkaConsumer`` arguments.

    Example:
        ```python
        listener = RequestListener(KafkaConnection.load("production"), default_registry)
        counts = await listener.run()  # until listener.stop() is called
        ```
    """

    def __init__(
        self,
        kafka: KafkaConnection,
        registry: Registry,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        drain_timeout: float = 30.0,
        max_backoff: float = 30.0,
        consumer_options: dict[str, Any] | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.kafka = kafka
        self.registry = registry
        self.max_in_flight = max_in_flight
        self.max_message_bytes = max_message_bytes
        self.logger = logger or logging.getLogger("magicflow.kafka_trigger")
        self.drain_timeout = drain_timeout
        self.max_backoff = max_backoff
        self.consumer_options = {
            # Short enough that a killed replica's partitions move on quickly.
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1500,
            # An idle fetch waits this long for a new request; the broker default
            # (500 ms) is most of a request's produce-to-run latency.
            "fetch_max_wait_ms": 100,
            **(consumer_options or {}),
        }
        self.counts = ListenerCounts()
        self._stopping = asyncio.Event()
        self._progress: dict[TopicPartition, _PartitionProgress] = {}
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._prefect: PrefectClient | None = None
        self._reserved_topics = frozenset({kafka.requests_topic, kafka.dead_letter_topic})

    def stop(self) -> None:
        """Asks the listener to stop fetching, drain, commit and leave the group."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once `stop` was called."""
        return self._stopping.is_set()

    @property
    def assigned_partitions(self) -> frozenset[TopicPartition]:
        """The request-topic partitions this replica owns now (empty until it joined)."""
        return frozenset(self._consumer.assignment()) if self._consumer is not None else frozenset()

    async def run(self) -> ListenerCounts:
        """Consumes until `stop` is called, then drains in-flight work and commits.

        Returns:
            What the listener did.
        """
        self._producer = self.kafka.get_producer()
        self._consumer = self.kafka.get_consumer(**self.consumer_options)
        self._consumer.subscribe([self.kafka.requests_topic], listener=_CommitOnRevoke(self))
        # `_with_retries` is the one retry layer for dispatches: the Prefect client's own
        # (2, 4, 8... s on 503) would stall a partition's commits behind one slow call.
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
            async with get_client() as prefect:
                self._prefect = prefect
                await self._with_retries("starting the Kafka producer", self._producer.start)
                try:
                    await self._with_retries("starting the Kafka consumer", self._consumer.start)
                    try:
                        await self._consume(self._consumer)
                    finally:
                        await self._drain()
                        await self._consumer.stop()  # leaves the group
                finally:
                    await self._producer.stop()
        self.logger.info("Kafka listener stopped: %s", self._describe_counts())
        return self.counts

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        last_logged = 0
        while not self.stopping:
            free = self.max_in_flight - len(self._tasks)
            if free <= 0:
                await asyncio.wait(self._tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            else:
                try:
                    batch = await consumer.getmany(timeout_ms=200, max_records=free)
                except KafkaError as error:
                    if not _is_transient(error):
                        raise
                    self.logger.warning(
                        "Fetching requests failed (%s); retrying", type(error).__name__
                    )
                    await asyncio.sleep(1)
                    continue
                for partition, records in batch.items():
                    for record in records:
                        self._start(partition, record)
            await self._commit()
            if self.counts.received - last_logged >= 100:
                last_logged = self.counts.received
                self.logger.info("Kafka listener progress: %s", self._describe_counts())

    def _start(self, partition: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        self.counts.received += 1
        progress = self._progress.setdefault(partition, _PartitionProgress())
        progress.started(record.offset)
        task = asyncio.create_task(self._process(record))
        self._tasks[task] = partition

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.pop(done, None)
            if not done.cancelled() and done.exception() is None:
                progress.finished(record.offset)

        task.add_done_callback(finished)

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        outcome: Dispatch | Rejection | None = None
        try:
            outcome = check_request(
                record.value,
                list(record.headers or ()),
                self.registry,
                signing_secret=self.kafka.signing_secret,
                max_message_bytes=self.max_message_bytes,
                reserved_topics=self._reserved_topics,
            )
            if isinstance(outcome, Rejection):
                await self._dead_letter(record, outcome)
            else:
                await self._dispatch(record, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if self.stopping and _is_transient(error):
                raise  # abandoned on stop: not committed, so redelivered
            # A bug must not block the partition forever: park the message for a replay.
            self.logger.error("Unexpected %s on offset %s", type(error).__name__, record.offset)
            ids = _ids(outcome) if outcome is not None else (None, None, None)
            await self._dead_letter(
                record, Rejection(f"internal error: {type(error).__name__}", *ids)
            )

    async def _dispatch(self, record: ConsumerRecord[bytes, bytes], plan: Dispatch) -> None:
        request = plan.request
        topic = request.reply_topic or self.kafka.status_topic
        await self._publish(WorkflowStatus.for_request(request, RunState.ACCEPTED), topic)
        try:
            flow_run = await self._with_retries(
                f"dispatching {plan.workflow.deployment}",
                lambda: arun_deployment(
                    plan.workflow.deployment,
                    client=self._prefect,
                    parameters=dict(plan.parameters),
                    flow_run_name=plan.flow_run_name,
                    timeout=0,
                    tags=plan.tags,
                    idempotency_key=request.id,
                    as_subflow=False,
                    job_variables=None,
                ),
            )
        except Exception as error:
            if _is_transient(error):
                raise
            reason = _refusal_reason(plan.workflow.deployment, error)
            await self._dead_letter(
                record, Rejection(reason, request.id, request.workflow, request.reply_topic)
            )
            return
        self.counts.dispatched += 1
        await self._publish(self._scheduled(plan, flow_run), topic)

    @staticmethod
    def _scheduled(plan: Dispatch, flow_run: FlowRun) -> WorkflowStatus:
        return WorkflowStatus.for_request(
            plan.request,
            RunState.SCHEDULED,
            flow_run_id=flow_run.id,
            ui_url=flow_run_ui_url(flow_run.id),
        )

    def _without_secrets(self, value: bytes | None) -> tuple[bytes | None, list[str]]:
        """The original bytes, unless they carry a known secret parameter: then a masked copy.

        The request topic still holds the original; the dead-letter topic never
        gets a secret value.
        """
        try:
            document = _parse_json(value) if value else None
        except _UnsafeJsonError:
            return value, []
        redacted = self.registry.redact_secret_parameters(document)
        return (json.dumps(document).encode(), redacted) if redacted else (value, [])

    async def _dead_letter(
        self, record: ConsumerRecord[bytes, bytes], rejection: Rejection
    ) -> None:
        headers = [
            (REASON_HEADER, rejection.reason.encode()),
            (SOURCE_TOPIC_HEADER, record.topic.encode()),
            (SOURCE_PARTITION_HEADER, str(record.partition).encode()),
            (SOURCE_OFFSET_HEADER, str(record.offset).encode()),
        ]
        producer = self._require(self._producer)

        # Kafka clients refuse a record with neither key nor value; keep it an empty value.
        value = b"" if record.value is None and record.key is None else record.value
        value, redacted = self._without_secrets(value)
        if redacted:
            headers.append((REDACTED_HEADER, ",".join(redacted).encode()))

        async def send() -> None:
            await producer.send_and_wait(
                self.kafka.dead_letter_topic, value, key=record.key, headers=headers
            )

        await self._with_retries("dead-lettering a request", send)
        self.counts.rejected += 1
        self.logger.warning(
            "Dead-lettered offset %s of partition %s: %s",
            record.offset,
            record.partition,
            rejection.reason,
        )
        if rejection.request_id is not None:
            status = WorkflowStatus(
                request_id=rejection.request_id,
                workflow=rejection.workflow,
                state=RunState.REJECTED,
                reason=rejection.reason,
            )
            await self._publish(status, rejection.reply_topic or self.kafka.status_topic)

    async def _publish(self, status: WorkflowStatus, topic: str) -> None:
        producer = self._require(self._producer)
        await self._with_retries(
            f"publishing a {status.state} status", lambda: publish_status(producer, status, topic)
        )

    async def _with_retries(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Calls until it succeeds or fails permanently, backing off with jitter."""
        delay = 0.25
        while True:
            try:
                return await call()
            except Exception as error:
                if not _is_transient(error) or self.stopping:
                    raise
                self.counts.retries += 1
                self.logger.warning(
                    "%s failed (%s); retrying in %.1fs", what, type(error).__name__, delay
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(delay * 2, self.max_backoff)

    async def _commit(self, partitions: set[TopicPartition] | None = None) -> None:
        offsets = {
            partition: progress.committable
            for partition, progress in self._progress.items()
            if progress.committable is not None
            and progress.committable != progress.committed
            and (partitions is None or partition in partitions)
        }
        if not offsets:
            return
        try:
            await self._require(self._consumer).commit(offsets)
        except KafkaError as error:
            # Not fatal: uncommitted messages are redelivered and deduplicated by request id.
            self.logger.warning("Committing offsets failed (%s)", type(error).__name__)
            return
        for partition, offset in offsets.items():
            self._progress[partition].committed = offset

    async def _release(self, partitions: set[TopicPartition]) -> None:
        """Finishes the in-flight work of partitions being taken away, then commits them."""
        leaving = [task for task, partition in self._tasks.items() if partition in partitions]
        if leaving:
            await asyncio.wait(leaving, timeout=self.drain_timeout)
        await self._commit(partitions)
        for partition in partitions:
            self._progress.pop(partition, None)

    async def _drain(self) -> None:
        if self._tasks:
            self.logger.info("Draining %s in-flight requests", len(self._tasks))
            _, pending = await asyncio.wait(list(self._tasks), timeout=self.drain_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        await self._commit()

    @staticmethod
    def _require(client: T | None) -> T:
        if client is None:
            raise RuntimeError("the listener is not running")
        return client

    def _describe_counts(self) -> str:
        counts = self.counts
        return (
            f"received={counts.received} dispatched={counts.dispatched} "
            f"rejected={counts.rejected} retries={counts.retries} in_flight={len(self._tasks)}"
        )


def _ids(outcome: Dispatch | Rejection) -> tuple[str | None, str | None, str | None]:
    """Request id, workflow and reply topic of an outcome, for a rejected status."""
    if isinstance(outcome, Rejection):
        return outcome.request_id, outcome.workflow, outcome.reply_topic
    return outcome.request.id, outcome.request.workflow, outcome.request.reply_topic


def load_registry(path: str) -> Registry:
    """Imports a registry from ``module:attribute``.

    Args:
        path: e.g. ``flows.registry:default_registry``.

    Returns:
        The registry.

    Raises:
        ValueError: The path is malformed or does not name a `Registry`.
    """
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"registry path {path!r} is not module:attribute")
    registry = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(registry, Registry):
        raise ValueError(f"{path} is not a Registry")
    return registry


@contextmanager
def _stop_on_signals(listener: RequestListener) -> Iterator[None]:
    """Turns SIGTERM/SIGINT into a graceful stop while the listener runs (main thread only)."""
    loop = asyncio.get_running_loop()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(listener.stop)

    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, request_stop)
    except ValueError:
        listener.logger.warning("Not in the main thread: SIGTERM will not drain the listener")
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("magicflow.kafka_trigger")


@flow(name="kafka-trigger", retries=0)
async def kafka_trigger(
    kafka: KafkaConnection | str = DEFAULT_KAFKA_BLOCK,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    registry: str = "flows.registry:default_registry",
    follow_crashes: bool = True,
) -> ListenerCounts:
    """Listens for workflow requests on Kafka until SIGTERM/SIGINT, dispatching each once.

    Args:
        kafka: The Kafka connection block, or its saved name.
        max_in_flight: How many requests are dispatched at once.
        max_message_bytes: Larger messages are dead-lettered unparsed.
        registry: ``module:attribute`` of the workflow allow-list.
        follow_crashes: Also publish a ``crashed`` status for runs Prefect marks
            crashed when no runner was left to run their hooks
            (see `magicflow.workflows.follow_crashed_runs`).

    Returns:
        What the listener did.

    Example:
        ```python
        kafka_trigger.from_source(".", "flows/kafka_trigger.py:kafka_trigger").deploy(
            name="listener", work_pool_name="process", parameters={"kafka": "production"}
        )
        ```
    """
    connection_block = await _load_connection(kafka)
    listener = RequestListener(
        connection_block,
        load_registry(registry),
        max_in_flight=max_in_flight,
        max_message_bytes=max_message_bytes,
        logger=_run_logger(),
    )
    stop_following = asyncio.Event()
    follower = (
        asyncio.create_task(follow_crashed_runs(connection_block, stop=stop_following))
        if follow_crashes
        else None
    )
    try:
        with _stop_on_signals(listener):
            return await listener.run()
    finally:
        stop_following.set()
        if follower is not None:
            await asyncio.gather(follower, return_exceptions=True)


async def _load_connection(kafka: KafkaConnection | str) -> KafkaConnection:
    if isinstance(kafka, KafkaConnection):
        return kafka
    loaded = await KafkaConnection.aload(kafka)
    return connection(loaded, KafkaConnection)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the listener from a shell until SIGTERM/SIGINT.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m flows.kafka_trigger", description=__doc__)
    parser.add_argument(
        "--kafka-block", default=DEFAULT_KAFKA_BLOCK, help="saved KafkaConnection name"
    )
    parser.add_argument("--registry", default="flows.registry:default_registry")
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT)
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES)
    parser.add_argument(
        "--as-flow", action="store_true", help="run as the kafka-trigger Prefect flow"
    )
    args = parser.parse_args(argv)
    # Prefect configures the root logger on import; give our own logger its own handler.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    own_logger = logging.getLogger("magicflow")
    own_logger.addHandler(handler)
    own_logger.setLevel(logging.INFO)
    own_logger.propagate = False

    async def listen() -> ListenerCounts:
        if args.as_flow:
            return await kafka_trigger(
                kafka=args.kafka_block,
                max_in_flight=args.max_in_flight,
                max_message_bytes=args.max_message_bytes,
                registry=args.registry,
            )
        listener = RequestListener(
            await _load_connection(args.kafka_block),
            load_registry(args.registry),
            max_in_flight=args.max_in_flight,
            max_message_bytes=args.max_message_bytes,
        )
        with _stop_on_signals(listener):
            return await listener.run()

    counts = asyncio.run(listen())
    print(counts.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())

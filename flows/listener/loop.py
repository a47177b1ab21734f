"""The listener loop: consume requests, dispatch each once, dead-letter the rest, commit.

`RequestListener` consumes the requests topic in a consumer group. Each message
is checked (`flows.listener.requests`); a good request becomes one flow run
(`flows.listener.runs`) and is answered with ``accepted`` then ``scheduled``; a
duplicate of a request id is answered with its run's current (or final) status; a
redelivered id with another workflow or other parameters is a conflict; a bad
message goes to the dead-letter topic (`flows.listener.dead_letters`), with a
``rejected`` status only when it is authenticated and its id readable.

Offsets (`flows.listener.offsets`) are committed only up to the last message that
is finished, and every message finishes whatever fails while handling it, except
one abandoned by a stop mid-retry, which is redelivered. Statuses are best-effort
(a bounded retry) and never hold an offset back. While Prefect is out (see
`flows.listener.failures`), the listener pauses its partitions, keeps its group
membership, and retries with backoff until Prefect answers.

Example:
    ```python
    listener = RequestListener(KafkaConnection.load("production"), default_registry)
    with stop_on_signals(listener):
        counts = await listener.run()  # until SIGTERM/SIGINT or listener.stop()
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from types import FrameType
from typing import Any, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from blocks.kafka import KafkaConnection, stop_consumer
from flows.listener.dead_letters import CONTENT_HEADER, HEADROOM_BYTES, dead_letter
from flows.listener.failures import is_transient
from flows.listener.metrics import (
    DEFAULT_HEALTHY_POLL_AGE_SECONDS,
    DeadLetterReason,
    Health,
    ListenerCounts,
    ListenerMetrics,
    MetricsServer,
    consumer_lags,
    judge_health,
    serve_metrics,
)
from flows.listener.offsets import PartitionProgress
from flows.listener.requests import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Dispatch,
    Rejection,
    check_request,
)
from flows.listener.retries import Abandoned, ListenerRetries, Refused
from flows.listener.runs import RequestRuns, deployment_name_of, hash_of_run
from flows.registry import Registry
from magicflow.messages import (
    ACCEPTED_SEQ,
    RunState,
    WorkflowStatus,
    publish_status,
)

T = TypeVar("T")
Record: TypeAlias = ConsumerRecord[bytes, bytes]
Logger: TypeAlias = logging.Logger | logging.LoggerAdapter[logging.Logger]

DEFAULT_MAX_IN_FLIGHT = 8
PUBLISH_ATTEMPTS = 3
"""Tries of one status publish before it is given up (statuses are best-effort)."""
PUBLISH_ATTEMPT_SECONDS = 10.0
"""Longest one status publish may take (a missing topic would wait on metadata)."""
KAFKA_DEFAULT_MAX_REQUEST_BYTES = 1_048_576
TOPIC_LIST_MAX_AGE_SECONDS = 2.0
"""How stale the list of existing topics may be when a reply topic is not on it."""


class _CommitOnRevoke(ConsumerRebalanceListener):
    """Lets a listener finish and commit a partition's in-flight work before giving it up."""

    def __init__(self, listener: RequestListener) -> None:
        self._listener = listener

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._listener._release(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


class RequestListener:
    """Consumes requests and turns each into exactly one flow run (or a dead letter).

    Usable without a Prefect flow (tests, benchmarks, ``python -m flows.kafka_trigger``).

    Args:
        kafka: The Kafka connection (topics, consumer group, signing secret, reply prefix).
        registry: The allow-list of workflows.
        max_in_flight: How many messages are checked and dispatched at once.
        max_message_bytes: Larger messages are dead-lettered unread (metadata only).
        logger: Where progress goes (ids, workflows, reasons; never payloads).
        drain_timeout: Seconds a stop waits for in-flight dispatches before
            abandoning them (uncommitted, so they are redelivered).
        max_backoff: Longest wait between retries of a failing Prefect or Kafka call.
        consumer_options: Further ``AIOKafkaConsumer`` arguments.
        metrics_port: Serve ``/metrics`` and ``/healthz`` on 127.0.0.1 at this port
            while running (0: a free port, logged and in `metrics_url`); None: off.
        healthy_poll_age: Oldest last poll that ``/healthz`` still calls healthy.

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
        logger: Logger | None = None,
        drain_timeout: float = 30.0,
        max_backoff: float = 30.0,
        consumer_options: dict[str, Any] | None = None,
        metrics_port: int | None = None,
        healthy_poll_age: float = DEFAULT_HEALTHY_POLL_AGE_SECONDS,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.kafka = kafka
        self.registry = registry
        self.max_in_flight = max_in_flight
        self.max_message_bytes = max_message_bytes
        self.logger: Logger = logger or logging.getLogger("magicflow.listener")
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
        # The producer must carry any dead letter: the largest accepted request plus headers.
        self.max_request_bytes = max(
            KAFKA_DEFAULT_MAX_REQUEST_BYTES, max_message_bytes + 2 * HEADROOM_BYTES
        )
        self._stopping = asyncio.Event()
        self.metrics = ListenerMetrics()
        self._retries = ListenerRetries(self.metrics, self.logger, self._stopping, max_backoff)
        self.metrics.in_flight.set_function(lambda: len(self._tasks))
        self.metrics_port = metrics_port
        self.healthy_poll_age = healthy_poll_age
        self._metrics_server: MetricsServer | None = None
        self._last_poll: float | None = None
        self._undeployed: set[str] = set()
        self._progress: dict[TopicPartition, PartitionProgress] = {}
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._runs: RequestRuns | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._topics: set[str] = set()
        self._topics_listed_at = -TOPIC_LIST_MAX_AGE_SECONDS

    @property
    def counts(self) -> ListenerCounts:
        """What the listener did so far, read from its metrics."""
        return self.metrics.counts()

    @property
    def metrics_url(self) -> str | None:
        """``http://127.0.0.1:PORT`` of ``/metrics`` and ``/healthz`` while served."""
        return self._metrics_server.url if self._metrics_server is not None else None

    def health(self) -> Health:
        """What ``/healthz`` answers now: partitions assigned and a recent poll."""
        return judge_health(
            len(self.assigned_partitions),
            self._last_poll,
            self.paused,
            len(self._tasks),
            self.healthy_poll_age,
        )

    def stop(self) -> None:
        """Asks the listener to stop fetching, drain, commit and leave the group."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once `stop` was called."""
        return self._stopping.is_set()

    @property
    def paused(self) -> bool:
        """True while Prefect is out and no new request is fetched."""
        return self._retries.paused

    @property
    def assigned_partitions(self) -> frozenset[TopicPartition]:
        """The request-topic partitions this replica owns now (empty until it joined)."""
        return frozenset(self._consumer.assignment()) if self._consumer is not None else frozenset()

    async def run(self) -> ListenerCounts:
        """Consumes until `stop` is called, then drains in-flight work and commits.

        Returns:
            What the listener did.
        """
        self._log_configuration()
        if self.metrics_port is not None:
            self._metrics_server = serve_metrics(self.metrics, self.health, self.metrics_port)
            self.logger.info(
                "Kafka listener metrics at %s/metrics, health at %s/healthz",
                self._metrics_server.url,
                self._metrics_server.url,
            )
        try:
            await self._run_clients()
        finally:
            if self._metrics_server is not None:
                self._metrics_server.close()
                self._metrics_server = None
        self.logger.info("Kafka listener stopped: %s", self._describe_counts())
        return self.counts

    async def _run_clients(self) -> None:
        self._producer = self.kafka.get_producer(max_request_size=self.max_request_bytes)
        self._consumer = self.kafka.get_consumer(**self.consumer_options)
        self._consumer.subscribe([self.kafka.requests_topic], listener=_CommitOnRevoke(self))
        # The listener's retries are the only ones: the Prefect client's own (2, 4, 8... s
        # on 503) would stall a partition's commits behind one slow call.
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
            async with get_client() as prefect:
                self._runs = RequestRuns(prefect)
                try:
                    await self._check_deployments()
                    await self._start("the Kafka producer", self._producer.start)
                    await self._start("the Kafka consumer", self._consumer.start)
                    self.logger.info("Kafka listener consuming %s", self.kafka.requests_topic)
                    await self._consume(self._consumer)
                except Abandoned:
                    pass  # stopped before it could start
                finally:
                    await self._drain()
                    await stop_consumer(self._consumer)  # leaves the group
                    await self._producer.stop()
                    if self._admin is not None:
                        await self._admin.close()

    async def _check_deployments(self) -> None:
        """Notes the registered workflows without a deployment, one warning each.

        A request for one is rejected (``not deployed``) instead of pausing
        consumption; it is looked up again on each such request, so deploying it
        later needs no restart.
        """
        runs = self._require(self._runs)
        for workflow in self.registry:
            if await self._retries.prefect(
                f"looking up deployment {workflow.deployment}",
                functools.partial(runs.deployment_exists, workflow.deployment),
            ):
                continue
            self._undeployed.add(workflow.name)
            self.logger.warning(
                "Workflow %r is registered but not deployed (no deployment %s): its requests "
                "are rejected until it is; deploy it with `prefect deploy --name %s`",
                workflow.name,
                workflow.deployment,
                deployment_name_of(workflow.deployment),
            )

    def _log_configuration(self) -> None:
        kafka = self.kafka
        workflows = ", ".join(f"{w.name} -> {w.deployment}" for w in self.registry) or "none"
        self.logger.info(
            "Kafka listener starting: requests %s, consumer group %s, statuses %s, "
            "dead letters %s, reply topics under %r, signatures %s, at most %s in flight; "
            "workflows: %s",
            kafka.requests_topic,
            kafka.consumer_group,
            kafka.status_topic,
            kafka.dead_letter_topic,
            kafka.reply_topic_prefix,
            "required" if kafka.signing_secret else "not required",
            self.max_in_flight,
            workflows,
        )

    async def _start(self, what: str, start: Callable[[], Awaitable[None]]) -> None:
        await self._retries.kafka(f"starting {what}", start)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        last_logged = 0
        while not self.stopping:
            self._pause_or_resume(consumer)
            free = self.max_in_flight - len(self._tasks)
            if free <= 0:
                await asyncio.wait(self._tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                self._polled()
            else:
                try:
                    # Also while paused: fetching nothing keeps the group membership alive.
                    batch = await consumer.getmany(timeout_ms=200, max_records=free)
                except KafkaError as error:
                    self.metrics.errors.labels(system="kafka").inc()
                    if not is_transient(error):
                        raise
                    self.logger.warning(
                        "Fetching requests failed (%s); retrying", type(error).__name__
                    )
                    await self._retries.backoff(1.0)
                    continue
                self._polled()
                for partition, records in batch.items():
                    for record in records:
                        self._begin(partition, record)
            await self._commit()
            self._measure_lag(consumer)
            received = int(self.metrics.value("magicflow_listener_requests_received_total"))
            if received - last_logged >= 100:
                last_logged = received
                self.logger.info("Kafka listener progress: %s", self._describe_counts())

    def _polled(self) -> None:
        """Notes a turn of the consume loop (what ``/healthz`` calls a recent poll)."""
        self._last_poll = time.time()
        self.metrics.last_poll.set(self._last_poll)

    def _measure_lag(self, consumer: AIOKafkaConsumer) -> None:
        assignment = consumer.assignment()
        self.metrics.set_lag(
            consumer_lags(assignment, consumer.highwater, self._progress), len(assignment)
        )

    def _pause_or_resume(self, consumer: AIOKafkaConsumer) -> None:
        if self.paused:
            consumer.pause(*consumer.assignment())  # again after a rebalance: new partitions
        elif paused := consumer.paused():
            consumer.resume(*paused)

    def _begin(self, partition: TopicPartition, record: Record) -> None:
        self.metrics.received.inc()
        progress = self._progress.setdefault(partition, PartitionProgress())
        progress.started(record.offset)
        task = asyncio.create_task(self._process(record))
        self._tasks[task] = partition

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.pop(done, None)
            # Only a stop abandons a message (redelivered); anything else finished it.
            if not done.cancelled() and done.exception() is None:
                progress.finished(record.offset)

        task.add_done_callback(finished)

    async def _process(self, record: Record) -> None:
        outcome: Dispatch | Rejection | None = None
        received_at = time.monotonic()
        try:
            outcome = check_request(
                record.value,
                record.key,
                list(record.headers or ()),
                self.registry,
                self.kafka,
                max_message_bytes=self.max_message_bytes,
            )
            if isinstance(outcome, Rejection):
                await self._dead_letter(record, outcome)
            else:
                async with self._one_at_a_time(outcome.request.id):
                    await self._dispatch(record, outcome, received_at)
        except (asyncio.CancelledError, Abandoned):
            raise
        except Exception as error:
            # A bug must not block the partition: park the message for a replay.
            self.logger.error(
                "Unexpected %s on offset %s of partition %s",
                type(error).__name__,
                record.offset,
                record.partition,
            )
            reason = f"internal error: {type(error).__name__}"
            rejection = (
                outcome.rejection(reason, DeadLetterReason.INTERNAL_ERROR)
                if isinstance(outcome, Dispatch)
                else Rejection(reason, kind=DeadLetterReason.INTERNAL_ERROR)
            )
            try:
                await self._dead_letter(record, rejection)
            except Abandoned:
                raise
            except Exception as second:
                # Never leave the offset unfinished: the partition's commits would stop here.
                self.logger.error(
                    "Could not dead-letter offset %s of partition %s (%s); it is marked done",
                    record.offset,
                    record.partition,
                    type(second).__name__,
                )

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, request_id: str) -> AsyncIterator[None]:
        """Serialises the deliveries of one request id (they are all on this replica)."""
        lock, users = self._locks.setdefault(request_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[request_id]

    async def _dispatch(self, record: Record, plan: Dispatch, received_at: float) -> None:
        try:
            await self._dispatch_once(record, plan, received_at)
        except Refused as refused:
            await self._dead_letter(record, plan.rejection(refused.reason, refused.kind))

    async def _reply_topic_exists(self, topic: str) -> bool:
        """True when the broker has the topic (asked without creating it)."""
        loop = asyncio.get_running_loop()
        if topic not in self._topics and (
            loop.time() - self._topics_listed_at > TOPIC_LIST_MAX_AGE_SECONDS
        ):
            if self._admin is None:
                self._admin = AIOKafkaAdminClient(**self.kafka.client_options())
                await self._retries.kafka("starting the Kafka admin client", self._admin.start)
            admin = self._admin
            self._topics = set(await self._retries.kafka("listing topics", admin.list_topics))
            self._topics_listed_at = loop.time()
        return topic in self._topics

    async def _dispatch_once(self, record: Record, plan: Dispatch, received_at: float) -> None:
        request = plan.request
        runs = self._require(self._runs)
        if request.reply_topic and not await self._reply_topic_exists(request.reply_topic):
            # Publishing would create it (or wait on it): refuse, and answer on the status topic.
            rejection = replace(
                plan.rejection(
                    f"reply_topic {request.reply_topic} does not exist",
                    DeadLetterReason.REPLY_TOPIC,
                ),
                reply_topic=None,
            )
            await self._dead_letter(record, rejection)
            return
        topic = request.reply_topic or self.kafka.status_topic
        existing = await self._retries.prefect(
            f"looking up request {request.id}", lambda: runs.find(request.id)
        )
        if existing is not None:
            await self._answer_existing(record, plan, existing, topic)
            return
        await self._require_deployed(plan)
        accepted = WorkflowStatus.for_request(request, RunState.ACCEPTED, seq=ACCEPTED_SEQ)
        await self._publish(accepted, topic)
        flow_run = await self._retries.prefect(
            f"dispatching {plan.workflow.deployment}", lambda: runs.create(plan)
        )
        if hash_of_run(flow_run) != request.request_hash:
            # Prefect handed back an older run of the same flow and key (one the look-up
            # could not see): answer as for any existing run.
            await self._answer_existing(record, plan, flow_run, topic)
            return
        self.metrics.dispatched.inc()
        self.metrics.dispatch_latency.observe(time.monotonic() - received_at)
        self.metrics.last_dispatch.set_to_current_time()
        self.logger.info(
            "Dispatched request %s (%s) as flow run %s", request.id, request.workflow, flow_run.id
        )
        await self._publish(await runs.status(flow_run, request.workflow), topic)

    async def _require_deployed(self, plan: Dispatch) -> None:
        """Refuses a request for a workflow that was not deployed when the listener started.

        Its deployment is looked up again first, so one deployed since is dispatched. (A
        deployment that vanishes after the start is a redeploy in progress: an outage.)

        Raises:
            Refused: The deployment still does not exist.
        """
        workflow = plan.workflow
        if workflow.name not in self._undeployed:
            return
        runs = self._require(self._runs)
        if await self._retries.prefect(
            f"looking up deployment {workflow.deployment}",
            lambda: runs.deployment_exists(workflow.deployment),
        ):
            self._undeployed.discard(workflow.name)
            self.logger.info("Workflow %r is deployed now (%s)", workflow.name, workflow.deployment)
            return
        raise Refused(
            f"not deployed: workflow {workflow.name} has no deployment {workflow.deployment}; "
            f"deploy it with `prefect deploy --name {deployment_name_of(workflow.deployment)}`",
            DeadLetterReason.NOT_DEPLOYED,
        )

    async def _answer_existing(
        self, record: Record, plan: Dispatch, flow_run: FlowRun, topic: str
    ) -> None:
        request = plan.request
        existing_hash = hash_of_run(flow_run)
        if existing_hash != request.request_hash:
            reason = (
                f"conflict: request id {request.id} already has flow run {flow_run.id} "
                f"for another request (hash {existing_hash or 'unknown'}); this request's "
                f"hash is {request.request_hash}"
            )
            await self._dead_letter(record, plan.rejection(reason, DeadLetterReason.CONFLICT))
            return
        self.metrics.duplicates.inc()
        runs = self._require(self._runs)
        status = await self._retries.prefect(
            f"reading flow run {flow_run.id}", lambda: runs.status(flow_run, request.workflow)
        )
        self.logger.info(
            "Duplicate of request %s (%s): flow run %s is %s",
            request.id,
            request.workflow,
            flow_run.id,
            status.state.value,
        )
        await self._publish(status, topic)

    async def _dead_letter(self, record: Record, rejection: Rejection) -> None:
        """Sends the dead letter (metadata only when the copy is refused), then the status.

        Whatever fails, the message counts as finished afterwards, except when a stop
        abandons it mid-retry.
        """
        producer = self._require(self._producer)
        max_bytes = self.max_request_bytes - HEADROOM_BYTES
        sent = "metadata"
        for metadata_only in (False, True):
            key, value, headers = dead_letter(record, rejection, max_bytes, metadata_only)

            async def send(key: Any = key, value: Any = value, headers: Any = headers) -> None:
                await producer.send_and_wait(
                    self.kafka.dead_letter_topic, value, key=key, headers=headers
                )

            try:
                await self._retries.kafka("dead-lettering a request", send)
                sent = dict(headers)[CONTENT_HEADER].decode()
                break
            except Abandoned:
                raise
            except Exception as error:
                self.logger.error(
                    "The dead letter of offset %s of partition %s was refused (%s)%s",
                    record.offset,
                    record.partition,
                    type(error).__name__,
                    "; sending metadata only" if not metadata_only else "; offset marked done",
                )
                sent = "nothing"
        self.metrics.dead_lettered.labels(reason=rejection.kind).inc()
        self.logger.warning(
            "Dead-lettered offset %s of partition %s (request %s, workflow %s, %s): %s",
            record.offset,
            record.partition,
            rejection.request_id or "-",
            rejection.workflow or "-",
            sent,
            rejection.reason,
        )
        if rejection.request_id is not None:
            status = WorkflowStatus(
                request_id=rejection.request_id,
                workflow=rejection.workflow,
                state=RunState.REJECTED,
                reason=rejection.reason,
                dry_run=rejection.dry_run,
                request_hash=rejection.request_hash,
            )
            self.metrics.rejected.inc()
            await self._publish(status, rejection.reply_topic or self.kafka.status_topic)

    async def _publish(self, status: WorkflowStatus, topic: str) -> bool:
        """Publishes a status, best-effort: a bounded retry, then a warning. Never raises."""
        producer = self._require(self._producer)
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                await asyncio.wait_for(
                    publish_status(producer, status, topic), PUBLISH_ATTEMPT_SECONDS
                )
                return True
            except Exception as error:
                self.metrics.errors.labels(system="kafka").inc()
                if attempt == PUBLISH_ATTEMPTS or not is_transient(error) or self.stopping:
                    self.logger.warning(
                        "Could not publish the %s status of request %s to %s (%s); going on",
                        status.state.value,
                        status.request_id,
                        topic,
                        type(error).__name__,
                    )
                    return False
                self.metrics.retries.labels(system="kafka").inc()
                with contextlib.suppress(Abandoned):
                    await self._retries.backoff(0.25 * 2**attempt)
        return False

    async def _commit(self, partitions: set[TopicPartition] | None = None) -> None:
        offsets = {
            partition: offset
            for partition, progress in self._progress.items()
            if (offset := progress.to_commit) is not None
            and (partitions is None or partition in partitions)
        }
        if not offsets:
            return
        try:
            await self._require(self._consumer).commit(offsets)
        except KafkaError as error:
            self.metrics.errors.labels(system="kafka").inc()
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
        if self._consumer is not None and self._consumer.assignment():
            await self._commit()

    @staticmethod
    def _require(client: T | None) -> T:
        if client is None:
            raise RuntimeError("the listener is not running")
        return client

    def _describe_counts(self) -> str:
        counts = " ".join(f"{name}={n}" for name, n in self.counts.model_dump().items())
        return f"{counts} in_flight={len(self._tasks)}"


@contextlib.contextmanager
def stop_on_signals(listener: RequestListener) -> Iterator[None]:
    """Turns SIGTERM/SIGINT into a graceful stop while the listener runs (main thread only).

    Args:
        listener: The listener to stop.
    """
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

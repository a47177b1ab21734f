"""The listener's Prometheus metrics and its health endpoint.

Each `RequestListener` owns one `ListenerMetrics`, with a registry of its own (not
prometheus_client's global one), so two listeners in one process never share a
counter. The listener increments each counter at the one place the outcome is
decided; `ListenerCounts` (what ``RequestListener.counts`` returns) is read back
from these counters, never counted twice.

`serve_metrics` exposes them over HTTP on 127.0.0.1:

- ``GET /metrics``: the Prometheus text exposition of this listener's registry;
- ``GET /healthz``: 200 when the consumer has partitions assigned and its last poll
  is recent, 503 otherwise, with a small JSON body saying which.

Example:
    ```python
    metrics = ListenerMetrics()
    server = serve_metrics(metrics, port=0)  # a free port
    print(server.url)  # http://127.0.0.1:PORT
    metrics.received.inc()
    server.close()
    ```
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from pydantic import BaseModel

from flows.listener.offsets import PartitionProgress

if TYPE_CHECKING:
    from aiokafka import TopicPartition

METRICS_HOST = "127.0.0.1"
"""The address the metrics and health endpoint binds to (scraped by a local agent)."""

DEFAULT_HEALTHY_POLL_AGE_SECONDS = 30.0
"""How old the consumer's last poll may be before ``/healthz`` answers 503."""

DISPATCH_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds from a request's arrival at the listener to its flow run's creation."""


class DeadLetterReason:
    """The ``reason`` label of ``magicflow_listener_requests_dead_lettered_total``.

    A small fixed set (a label must not take a request's own words): each names the
    check that refused the message.
    """

    TOO_LARGE = "too_large"
    EMPTY = "empty"
    UNAUTHENTICATED = "unauthenticated"
    NOT_JSON = "not_json"
    INVALID_REQUEST = "invalid_request"
    KEY_MISMATCH = "key_mismatch"
    REPLY_TOPIC = "reply_topic"
    UNKNOWN_WORKFLOW = "unknown_workflow"
    INVALID_PARAMETERS = "invalid_parameters"
    NOT_DEPLOYED = "not_deployed"
    CONFLICT = "conflict"
    REFUSED_BY_PREFECT = "refused_by_prefect"
    INTERNAL_ERROR = "internal_error"

    ALL = (
        TOO_LARGE,
        EMPTY,
        UNAUTHENTICATED,
        NOT_JSON,
        INVALID_REQUEST,
        KEY_MISMATCH,
        REPLY_TOPIC,
        UNKNOWN_WORKFLOW,
        INVALID_PARAMETERS,
        NOT_DEPLOYED,
        CONFLICT,
        REFUSED_BY_PREFECT,
        INTERNAL_ERROR,
    )


class ListenerCounts(BaseModel):
    """What a listener did since it started; logged as it goes and returned at the end.

    Attributes:
        received: Messages consumed.
        dispatched: Requests that got a new flow run.
        duplicates: Deliveries of a request id that already had its run (answered
            with the run's status).
        rejected: Messages dead-lettered (conflicts included).
        retries: Retried calls to Prefect or Kafka after a transient failure or
            during a Prefect outage.
    """

    received: int = 0
    dispatched: int = 0
    duplicates: int = 0
    rejected: int = 0
    retries: int = 0


class ListenerMetrics:
    """One listener's Prometheus metrics, in a registry of their own.

    Args:
        registry: Where the metrics live; a new `CollectorRegistry` by default.

    Attributes:
        received: ``magicflow_listener_requests_received_total``: messages consumed.
        dispatched: ``..._requests_dispatched_total``: requests that got a new flow run.
        duplicates: ``..._requests_duplicate_total``: deliveries of an id that had its run.
        rejected: ``..._requests_rejected_total``: ``rejected`` statuses published
            (a dead letter whose id was authenticated and readable).
        dead_lettered: ``..._requests_dead_lettered_total{reason}``: every dead letter,
            by `DeadLetterReason`.
        in_flight: ``..._requests_in_flight``: messages being checked or dispatched.
        dispatch_latency: ``..._dispatch_latency_seconds``: arrival to flow-run creation.
        consumer_lag: ``..._consumer_lag{topic,partition}``: messages of an assigned
            partition not finished yet (high watermark minus the commit point).
        assigned_partitions: ``..._assigned_partitions``: partitions this replica owns.
        last_poll: ``..._last_poll_timestamp_seconds``: the consumer's last fetch.
        last_dispatch: ``..._last_dispatch_timestamp_seconds``: the last new flow run.
        errors: ``..._errors_total{system}``: failed calls to ``prefect`` or ``kafka``.
        retries: ``..._retries_total{system}``: those calls tried again.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        prefix = "magicflow_listener"
        r = self.registry
        self.received = Counter(
            f"{prefix}_requests_received", "Request messages consumed.", registry=r
        )
        self.dispatched = Counter(
            f"{prefix}_requests_dispatched", "Requests that got a new flow run.", registry=r
        )
        self.duplicates = Counter(
            f"{prefix}_requests_duplicate",
            "Deliveries of a request id that already had its flow run.",
            registry=r,
        )
        self.rejected = Counter(
            f"{prefix}_requests_rejected",
            "Requests answered with a rejected status (authenticated, id readable).",
            registry=r,
        )
        self.dead_lettered = Counter(
            f"{prefix}_requests_dead_lettered",
            "Messages sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in DeadLetterReason.ALL:
            self.dead_lettered.labels(reason=reason)  # every reason shows, at 0
        self.in_flight = Gauge(
            f"{prefix}_requests_in_flight", "Messages being checked or dispatched.", registry=r
        )
        self.dispatch_latency = Histogram(
            f"{prefix}_dispatch_latency_seconds",
            "Seconds from a request's arrival at the listener to its flow run's creation.",
            buckets=DISPATCH_LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            f"{prefix}_consumer_lag",
            "Messages of an assigned partition not finished yet.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            f"{prefix}_assigned_partitions", "Request partitions this replica owns.", registry=r
        )
        self.last_poll = Gauge(
            f"{prefix}_last_poll_timestamp_seconds",
            "Unix time of the consumer's last fetch.",
            registry=r,
        )
        self.last_dispatch = Gauge(
            f"{prefix}_last_dispatch_timestamp_seconds",
            "Unix time of the last new flow run.",
            registry=r,
        )
        self.errors = Counter(
            f"{prefix}_errors",
            "Failed calls to Prefect or Kafka, by system.",
            ["system"],
            registry=r,
        )
        self.retries = Counter(
            f"{prefix}_retries", "Failed calls tried again, by system.", ["system"], registry=r
        )
        for system in ("prefect", "kafka"):
            self.errors.labels(system=system)
            self.retries.labels(system=system)

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0 when absent), e.g. ``value("..._received_total")``."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def total(self, family: str) -> float:
        """The sum of a labelled counter over all its labels (``_total`` samples)."""
        return sum(
            sample.value
            for metric in self.registry.collect()
            if metric.name == family
            for sample in metric.samples
            if sample.name == f"{family}_total"
        )

    def counts(self) -> ListenerCounts:
        """What the listener did, read from the counters."""
        prefix = "magicflow_listener"
        return ListenerCounts(
            received=int(self.value(f"{prefix}_requests_received_total")),
            dispatched=int(self.value(f"{prefix}_requests_dispatched_total")),
            duplicates=int(self.value(f"{prefix}_requests_duplicate_total")),
            rejected=int(self.total(f"{prefix}_requests_dead_lettered")),
            retries=int(self.total(f"{prefix}_retries")),
        )

    def set_lag(self, lags: Iterable[tuple[str, int, int]], assigned: int) -> None:
        """Replaces the lag of every partition: ``(topic, partition, lag)`` triples.

        Args:
            lags: The lag of each assigned partition fetched from so far.
            assigned: How many partitions the replica owns.

        Partitions no longer assigned disappear from the exposition.
        """
        self.consumer_lag.clear()
        for topic, partition, lag in lags:
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)
        self.assigned_partitions.set(assigned)


def consumer_lags(
    assignment: Iterable[TopicPartition],
    highwater: Callable[[TopicPartition], int | None],
    progress: Mapping[TopicPartition, PartitionProgress],
) -> list[tuple[str, int, int]]:
    """Consumer lag per assigned partition: its high watermark minus what is finished.

    The high watermark comes with each fetch (Tansu's ListOffsets answer is wrong, so
    it is not asked for); a partition not fetched from yet is left out.

    Args:
        assignment: The partitions the replica owns.
        highwater: The consumer's high watermark of a partition (None before a fetch).
        progress: The listener's offsets in flight, per partition.

    Returns:
        ``(topic, partition, lag)`` triples.
    """
    lags = []
    for partition in assignment:
        end = highwater(partition)
        if end is None:
            continue
        started = progress.get(partition)
        unfinished = started.unfinished_from if started is not None else None
        lag = 0 if unfinished is None else max(0, end - unfinished)
        lags.append((partition.topic, partition.partition, lag))
    return lags


@dataclass(frozen=True)
class Health:
    """What ``/healthz`` answers.

    Attributes:
        healthy: Partitions assigned and a recent poll.
        partitions: How many request partitions this replica owns.
        last_poll_age_seconds: Seconds since the last fetch (None before the first).
        paused: True while a Prefect outage pauses consumption.
        in_flight: Messages being handled.
        reason: Why it is unhealthy, or ``ok``.
    """

    healthy: bool
    partitions: int
    last_poll_age_seconds: float | None
    paused: bool
    in_flight: int
    reason: str

    def as_json(self) -> bytes:
        """The response body."""
        body = {
            "status": "ok" if self.healthy else "unhealthy",
            "reason": self.reason,
            "partitions": self.partitions,
            "last_poll_age_seconds": self.last_poll_age_seconds,
            "paused": self.paused,
            "in_flight": self.in_flight,
        }
        return json.dumps(body).encode()


def judge_health(
    partitions: int,
    last_poll: float | None,
    paused: bool,
    in_flight: int,
    max_poll_age: float = DEFAULT_HEALTHY_POLL_AGE_SECONDS,
    now: float | None = None,
) -> Health:
    """Decides what ``/healthz`` says.

    Args:
        partitions: Request partitions assigned to this replica.
        last_poll: Unix time of the last fetch, None before the first.
        paused: Consumption paused by a Prefect outage (still healthy: polls go on).
        in_flight: Messages being handled.
        max_poll_age: Oldest last poll that is still healthy.
        now: Unix time now (default: the clock).

    Returns:
        The verdict.

    Example:
        >>> judge_health(2, 100.0, False, 0, now=105.0).healthy
        True
        >>> judge_health(0, 100.0, False, 0, now=105.0).reason
        'no partitions assigned'
    """
    now = time.time() if now is None else now
    age = None if last_poll is None else round(now - last_poll, 3)
    if age is None:
        reason = "not polled yet"
    elif age > max_poll_age:
        reason = f"last poll {age:.0f} s ago (limit {max_poll_age:.0f} s)"
    elif partitions == 0:
        reason = "no partitions assigned"
    else:
        reason = "ok"
    return Health(reason == "ok", partitions, age, paused, in_flight, reason)


class _QuietHandler(WSGIRequestHandler):
    """Serves requests without logging each one to stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        return None


class MetricsServer:
    """``/metrics`` and ``/healthz`` on 127.0.0.1, served from a thread of its own.

    The thread keeps answering while the listener's event loop is busy; the health
    verdict still notices a stalled loop through the age of its last poll.

    Args:
        metrics: The listener's metrics.
        health: Returns the current verdict.
        port: The port; 0 picks a free one (see `port`).
    """

    def __init__(self, metrics: ListenerMetrics, health: Callable[[], Health], port: int) -> None:
        metrics_app = make_wsgi_app(metrics.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            if environ.get("PATH_INFO") == "/healthz":
                verdict = health()
                status = "200 OK" if verdict.healthy else "503 Service Unavailable"
                start_response(status, [("Content-Type", "application/json")])
                return [verdict.as_json()]
            if environ.get("PATH_INFO") in ("/metrics", "/"):
                return list(metrics_app(environ, start_response))
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics or /healthz\n"]

        self._server = make_server(
            METRICS_HOST, port, app, ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"listener-metrics-{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{METRICS_HOST}:{self.port}"

    def close(self) -> None:
        """Stops serving and frees the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def serve_metrics(
    metrics: ListenerMetrics, health: Callable[[], Health], port: int
) -> MetricsServer:
    """Starts serving ``/metrics`` and ``/healthz`` on 127.0.0.1:port.

    Args:
        metrics: The listener's metrics.
        health: Returns the current health verdict.
        port: The port; 0 picks a free one.

    Returns:
        The running server (`MetricsServer.port` is the bound port).

    Raises:
        OSError: The port is taken (the message names it).
    """
    try:
        return MetricsServer(metrics, health, port)
    except OSError as error:
        raise OSError(
            error.errno,
            f"cannot serve listener metrics on {METRICS_HOST}:{port} ({error.strerror}); "
            "pass another metrics port, or 0 for a free one",
        ) from None

"""The ``kafka-trigger`` flow: the Kafka request listener as a long-running Prefect flow.

It runs `flows.listener.loop.RequestListener` (each request becomes exactly one
flow run; see `flows.listener` for its parts) and, unless ``follow_crashes`` is
off, the supervised crash follower (`flows.listener.crashes`; deployed, it runs as
its own ``crash-follower`` deployment instead, `flows.crash_follower`). With a
``metrics_port`` it serves Prometheus metrics and a health check on 127.0.0.1
(`flows.listener.metrics`). It drains and stops on SIGTERM/SIGINT and resumes from
the committed offsets when restarted.
``python -m flows.kafka_trigger --kafka-block NAME`` runs the listener from a shell.

Example:
    ```python
    import asyncio

    from flows.kafka_trigger import kafka_trigger

    asyncio.run(kafka_trigger(kafka="production", max_in_flight=8))
    ```
"""

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from prefect import flow

from blocks.kafka import KafkaConnection
from flows.listener.crashes import supervise_crash_follower
from flows.listener.loop import DEFAULT_MAX_IN_FLIGHT, RequestListener, stop_on_signals
from flows.listener.metrics import ListenerCounts
from flows.listener.requests import DEFAULT_MAX_MESSAGE_BYTES
from flows.registry import DEFAULT_REGISTRY, Registry, load_registry
from magicflow.jobs import connection, job_logger
from magicflow.workflows import DEFAULT_KAFKA_BLOCK

LOGGER_NAME = "magicflow.listener"


async def _load_connection(kafka: KafkaConnection | str) -> KafkaConnection:
    if isinstance(kafka, KafkaConnection):
        return kafka
    loaded = await KafkaConnection.aload(kafka)
    return connection(loaded, KafkaConnection)


async def listen(
    kafka: KafkaConnection,
    registry: Registry,
    *,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_backoff: float = 30.0,
    follow_crashes: bool = True,
    metrics_port: int | None = None,
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
) -> ListenerCounts:
    """Runs the listener (and the crash follower) until SIGTERM/SIGINT.

    Args:
        kafka: The Kafka connection.
        registry: The allow-list of workflows.
        max_in_flight: How many requests are dispatched at once.
        max_message_bytes: Larger messages are dead-lettered unread.
        max_backoff: Longest wait between retries of a failing call.
        follow_crashes: Also run the supervised crash follower.
        metrics_port: Serve ``/metrics`` and ``/healthz`` on 127.0.0.1 at this port
            (0: a free one, logged); None: off.
        logger: Where the listener logs.

    Returns:
        What the listener did.
    """
    listener = RequestListener(
        kafka,
        registry,
        max_in_flight=max_in_flight,
        max_message_bytes=max_message_bytes,
        max_backoff=max_backoff,
        logger=logger,
        metrics_port=metrics_port,
    )
    stop_following = asyncio.Event()
    follower = (
        asyncio.create_task(supervise_crash_follower(kafka, stop_following, listener.logger))
        if follow_crashes
        else None
    )
    try:
        with stop_on_signals(listener):
            return await listener.run()
    finally:
        stop_following.set()
        if follower is not None:
            await asyncio.gather(follower, return_exceptions=True)


@flow(name="kafka-trigger", retries=0)
async def kafka_trigger(
    kafka: KafkaConnection | str = DEFAULT_KAFKA_BLOCK,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    registry: str = DEFAULT_REGISTRY,
    follow_crashes: bool = True,
    metrics_port: int | None = None,
) -> ListenerCounts:
    """Listens for workflow requests on Kafka until SIGTERM/SIGINT, dispatching each once.

    Args:
        kafka: The Kafka connection block, or its saved name.
        max_in_flight: How many requests are dispatched at once.
        max_message_bytes: Larger messages are dead-lettered unread.
        registry: ``module:attribute`` of the workflow allow-list.
        follow_crashes: Also publish a ``crashed`` status for runs Prefect marks
            crashed when no runner was left to run their hooks
            (`flows.listener.crashes`). The ``listener`` deployment turns it off:
            the ``crash-follower`` deployment does it once for all replicas.
        metrics_port: Serve Prometheus ``/metrics`` and ``/healthz`` on 127.0.0.1 at
            this port (0: a free one, logged); None: off.

    Returns:
        What the listener did.

    Example:
        ```python
        kafka_trigger.from_source(".", "flows/kafka_trigger.py:kafka_trigger").deploy(
            name="listener", work_pool_name="process", parameters={"kafka": "production"}
        )
        ```
    """
    return await listen(
        await _load_connection(kafka),
        load_registry(registry),
        max_in_flight=max_in_flight,
        max_message_bytes=max_message_bytes,
        follow_crashes=follow_crashes,
        metrics_port=metrics_port,
        logger=job_logger(LOGGER_NAME),
    )


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
    parser.add_argument("--registry", default=DEFAULT_REGISTRY)
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT)
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES)
    parser.add_argument(
        "--max-backoff", type=float, default=30.0, help="longest wait between retries (s)"
    )
    parser.add_argument(
        "--no-crash-follower", action="store_true", help="do not follow crashed runs"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve /metrics and /healthz on 127.0.0.1:PORT (0: a free port, logged); off if unset",
    )
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

    async def run() -> ListenerCounts:
        if args.as_flow:
            return await kafka_trigger(
                kafka=args.kafka_block,
                max_in_flight=args.max_in_flight,
                max_message_bytes=args.max_message_bytes,
                registry=args.registry,
                follow_crashes=not args.no_crash_follower,
                metrics_port=args.metrics_port,
            )
        return await listen(
            await _load_connection(args.kafka_block),
            load_registry(args.registry),
            max_in_flight=args.max_in_flight,
            max_message_bytes=args.max_message_bytes,
            max_backoff=args.max_backoff,
            follow_crashes=not args.no_crash_follower,
            metrics_port=args.metrics_port,
        )

    counts = asyncio.run(run())
    print(counts.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())

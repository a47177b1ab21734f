"""The crash follower: a ``crashed`` status for runs no hook could report, kept alive.

The ``on_crashed`` hook cannot run when nobody is left to run it: when the runner
or worker that supervised the flow-run process dies too (lost host, SIGKILL of the
whole process group), it is Prefect's server that later marks the run ``Crashed``
(flow-run heartbeats and a zombie-detecting automation). `follow_crashed_runs`
turns every ``prefect.flow-run.Crashed`` event into a status, so such runs are
reported as well; `supervise_crash_follower` restarts it with backoff whenever it
fails (a lost events connection, a broker away), and says so in the log.

A run whose hook did run is reported twice, with the same key, state and ``seq``;
status consumers treat a repeated status as one.

Example:
    ```python
    stop = asyncio.Event()
    follower = asyncio.create_task(supervise_crash_follower(kafka, stop, logger))
    ...
    stop.set()
    await follower
    ```
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TypeAlias
from uuid import UUID

from aiokafka import AIOKafkaProducer
from prefect import get_client
from prefect.client.orchestration import PrefectClient
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

from blocks.kafka import KafkaConnection
from magicflow.messages import publish_status, reason_for
from magicflow.workflows import run_status, status_topic_for

CRASHED_EVENT = "prefect.flow-run.Crashed"
"""The Prefect event of a flow run entering the ``Crashed`` state."""

Logger: TypeAlias = logging.Logger | logging.LoggerAdapter[logging.Logger]


async def follow_crashed_runs(
    kafka: KafkaConnection,
    stop: asyncio.Event | None = None,
    backfill: timedelta = timedelta(minutes=10),
    logger: Logger | None = None,
) -> None:
    """Publishes a ``crashed`` status for every flow run Prefect marks ``Crashed``.

    Args:
        kafka: The connection to publish through.
        stop: Set it to stop following; otherwise follows until cancelled.
        backfill: How far back crashes are reported at start, to cover a restart.
        logger: Where failures to publish one crash go.

    Raises:
        Exception: Whatever breaks the events subscription or the producer; the
            supervisor restarts the follower.

    Example:
        ```python
        asyncio.run(follow_crashed_runs(KafkaConnection.load("magicflow")))
        ```
    """
    log = logger or logging.getLogger("magicflow.listener")
    stop = stop or asyncio.Event()
    crashed = EventFilter(
        # Prefect types `since` as its own DateTime alias; pydantic takes a datetime.
        occurred=EventOccurredFilter(since=datetime.now(UTC) - backfill),  # type: ignore[arg-type]
        event=EventNameFilter(name=[CRASHED_EVENT]),
    )
    producer = kafka.get_producer()
    try:
        await producer.start()
        async with (
            get_events_subscriber(filter=crashed, reconnect_on_clean_close=True) as events,
            get_client() as client,
        ):
            log.info("Following crashed flow runs (statuses to %s)", kafka.status_topic)
            iterator = aiter(events)
            while not stop.is_set():
                stopped = asyncio.create_task(stop.wait())
                received = asyncio.create_task(anext(iterator))
                await asyncio.wait({stopped, received}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if not received.done():
                    received.cancel()
                    break
                event = received.result()
                await _publish_crash(client, producer, kafka, event.resource.id, log)
    finally:
        await producer.stop()


async def _publish_crash(
    client: PrefectClient,
    producer: AIOKafkaProducer,
    kafka: KafkaConnection,
    resource_id: str,
    log: Logger,
) -> None:
    try:
        flow_run = await client.read_flow_run(UUID(resource_id.rpartition(".")[2]))
        if flow_run.state is None or not flow_run.state.is_crashed():
            return
        workflow_name = (await client.read_flow(flow_run.flow_id)).name
        status = await run_status(workflow_name, flow_run, flow_run.state)
        await publish_status(producer, status, status_topic_for(flow_run, kafka))
    except Exception as error:
        log.warning("Could not publish the crash of %s: %s", resource_id, reason_for(error))


async def supervise_crash_follower(
    kafka: KafkaConnection,
    stop: asyncio.Event,
    logger: Logger | None = None,
    max_backoff: float = 60.0,
    backfill: timedelta = timedelta(minutes=10),
) -> int:
    """Runs `follow_crashed_runs` until ``stop`` is set, restarting it whenever it fails.

    Args:
        kafka: The connection to publish through.
        stop: Set it to stop the follower (and its supervision).
        logger: Where restarts are logged.
        max_backoff: Longest wait before a restart (the wait doubles from 1 s, and
            starts over after a follower that ran for a minute).
        backfill: How far back each (re)start reports crashes, covering the gap.

    Returns:
        How many times the follower was restarted.
    """
    log = logger or logging.getLogger("magicflow.listener")
    delay = 1.0
    restarts = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await follow_crashed_runs(kafka, stop=stop, backfill=backfill, logger=log)
            if stop.is_set():
                break
            log.warning("The crash follower ended by itself; restarting it in %.0fs", delay)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.error(
                "The crash follower failed (%s); restarting it in %.0fs", reason_for(error), delay
            )
        if time.monotonic() - started > 60:
            delay = 1.0
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            restarts += 1
            delay = min(delay * 2, max_backoff)
    return restarts

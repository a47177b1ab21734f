"""The ``crash-follower`` flow: one service that publishes a ``crashed`` status per crashed run.

When a flow run's host dies with its worker, no hook is left to report it: Prefect's
server marks the run ``Crashed`` later (heartbeats and the zombie automation), and the
crash follower (`flows.listener.crashes`) turns that event into a status on Kafka.

Deployed on its own (``crash-follower`` in ``prefect.yaml``, one run at a time), it is
independent of how many listener replicas run, and the listener deployment leaves its
embedded follower off (``follow_crashes: false``). A second follower (or the
embedded one left on) would publish each crash again, byte for byte the same status
(same key, state, ``seq`` and time), which status consumers already drop as a repeat.
``python -m flows.crash_follower --kafka-block NAME`` runs it from a shell.

Example:
    ```python
    import asyncio

    from flows.crash_follower import follow_crashes

    asyncio.run(follow_crashes(kafka="production"))  # until SIGTERM/SIGINT
    ```
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator, Sequence
from datetime import timedelta

from prefect import flow

from blocks.kafka import KafkaConnection
from flows.listener.crashes import supervise_crash_follower
from magicflow.jobs import connection, job_logger
from magicflow.workflows import DEFAULT_KAFKA_BLOCK

LOGGER_NAME = "magicflow.crash_follower"


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """Sets ``stop`` on SIGTERM/SIGINT while inside (main thread only; elsewhere a no-op)."""
    loop = asyncio.get_running_loop()
    previous = {}
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
    except ValueError:
        pass  # not the main thread: cancellation still stops the flow
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@flow(name="crash-follower", retries=0)
async def follow_crashes(
    kafka: KafkaConnection | str = DEFAULT_KAFKA_BLOCK, backfill_minutes: float = 10.0
) -> int:
    """Publishes a ``crashed`` status for every run Prefect marks Crashed, until SIGTERM.

    Args:
        kafka: The Kafka connection block, or its saved name.
        backfill_minutes: How far back crashes are reported at each (re)start, so a
            follower restarted after a gap misses none.

    Returns:
        How many times the follower was restarted after a failure.

    Example:
        ```python
        follow_crashes.from_source(".", "flows/crash_follower.py:follow_crashes").deploy(
            name="crash-follower", work_pool_name="magicflow"
        )
        ```
    """
    if isinstance(kafka, str):
        kafka = connection(await KafkaConnection.aload(kafka), KafkaConnection)
    stop = asyncio.Event()
    with _stop_on_signals(stop):
        return await supervise_crash_follower(
            kafka,
            stop,
            job_logger(LOGGER_NAME),
            backfill=timedelta(minutes=backfill_minutes),
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the crash follower from a shell until SIGTERM/SIGINT.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m flows.crash_follower", description=__doc__)
    parser.add_argument(
        "--kafka-block", default=DEFAULT_KAFKA_BLOCK, help="saved KafkaConnection name"
    )
    parser.add_argument("--backfill-minutes", type=float, default=10.0)
    args = parser.parse_args(argv)
    asyncio.run(follow_crashes(kafka=args.kafka_block, backfill_minutes=args.backfill_minutes))
    return 0


if __name__ == "__main__":
    sys.exit(main())

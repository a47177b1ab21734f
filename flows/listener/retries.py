"""Retrying the listener's calls: Kafka's with backoff, Prefect's until Prefect answers.

`flows.listener.failures` says what kind of failure an error is; this module acts
on it. A transient failure is retried with jittered, doubling backoff; a Prefect
outage pauses consumption (`ListenerRetries.paused`) and is logged once, loudly,
until Prefect answers again; a request Prefect refuses raises `Refused` (it is
dead-lettered). A stop interrupts any wait: the message being retried is
`Abandoned` (left uncommitted, so it is redelivered).

Example:
    ```python
    retries = ListenerRetries(ListenerMetrics(), logger, stopping, max_backoff=30.0)
    run = await retries.prefect("creating a flow run", create_run)
    await retries.kafka("starting the Kafka producer", producer.start)
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

from flows.listener.failures import PrefectFailure, is_transient, prefect_failure
from flows.listener.metrics import DeadLetterReason, ListenerMetrics
from magicflow.messages import reason_for

T = TypeVar("T")
Logger: TypeAlias = logging.Logger | logging.LoggerAdapter[logging.Logger]


class Abandoned(Exception):
    """A message given up because the listener stops mid-retry: not committed, redelivered."""


class Refused(Exception):
    """Prefect refused a run because of the request itself, or its workflow is not deployed.

    Args:
        reason: Why, without echoing the request back.
        kind: The dead-letter reason it is filed under.
    """

    def __init__(self, reason: str, kind: str = DeadLetterReason.REFUSED_BY_PREFECT) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def refusal_reason(what: str, error: BaseException) -> str:
    """Why a Prefect call failed, without echoing the request back.

    Args:
        what: The call, e.g. ``creating a flow run``.
        error: What the Prefect client raised.

    Returns:
        ``<what>: Prefect answered HTTP <status>``, ``<what>: not found`` or the
        error's class name.
    """
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status is not None:
        return f"{what}: Prefect answered HTTP {status}"
    if type(error).__name__ == "ObjectNotFound":
        return f"{what}: not found"
    return f"{what}: {type(error).__name__}"


class ListenerRetries:
    """How one listener retries its Kafka and Prefect calls, and whether it is paused.

    Args:
        metrics: The listener's metrics (errors and retries, by system).
        logger: The listener's logger.
        stopping: Set when the listener stops; it ends every wait.
        max_backoff: Longest wait between two tries.
    """

    def __init__(
        self,
        metrics: ListenerMetrics,
        logger: Logger,
        stopping: asyncio.Event,
        max_backoff: float,
    ) -> None:
        self.metrics = metrics
        self.logger = logger
        self.max_backoff = max_backoff
        self._stopping = stopping
        self._outages = 0

    @property
    def paused(self) -> bool:
        """True while Prefect is out and no new request is fetched."""
        return self._outages > 0

    async def prefect(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Calls Prefect until it answers; an outage pauses consumption meanwhile.

        Args:
            what: The call, for the log and the refusal reason.
            call: The Prefect client call.

        Returns:
            What the call returned.

        Raises:
            Refused: Prefect refused the request itself (it is dead-lettered).
            Abandoned: The listener stops while the call is being retried.
        """
        delay = 0.25
        in_outage = False
        try:
            while True:
                try:
                    return await call()
                except Exception as error:
                    self.metrics.errors.labels(system="prefect").inc()
                    failure = prefect_failure(error)
                    if failure is PrefectFailure.REFUSED:
                        raise Refused(refusal_reason(what, error)) from None
                    self.metrics.retries.labels(system="prefect").inc()
                    if failure is PrefectFailure.OUTAGE and not in_outage:
                        in_outage = True
                        self._outage_began(what, error)
                    elif failure is PrefectFailure.TRANSIENT:
                        self.logger.warning(
                            "%s failed (%s); retrying in %.1fs", what, reason_for(error), delay
                        )
                    await self.backoff(delay)
                    delay = min(delay * 2, self.max_backoff)
        finally:
            if in_outage:
                self._outage_ended(what)

    def _outage_began(self, what: str, error: BaseException) -> None:
        self._outages += 1
        if self._outages == 1:
            self.logger.error(
                "PREFECT OUTAGE: %s failed (%s). Consumption is paused and retried with "
                "backoff until Prefect answers: check the API key, the API URL and that the "
                "registered workflows are deployed. No request is dead-lettered for it.",
                what,
                refusal_reason(what, error),
            )

    def _outage_ended(self, what: str) -> None:
        self._outages -= 1
        if self._outages == 0 and not self._stopping.is_set():
            self.logger.warning("Prefect answers again (%s): consumption resumed", what)

    async def kafka(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Calls until it succeeds or fails permanently, backing off with jitter.

        Args:
            what: The call, for the log.
            call: The Kafka client call.

        Returns:
            What the call returned.

        Raises:
            Abandoned: The listener stops while the call is being retried.
        """
        delay = 0.25
        while True:
            try:
                return await call()
            except Exception as error:
                self.metrics.errors.labels(system="kafka").inc()
                if not is_transient(error):
                    raise
                self.metrics.retries.labels(system="kafka").inc()
                self.logger.warning(
                    "%s failed (%s); retrying in %.1fs", what, type(error).__name__, delay
                )
                await self.backoff(delay)
                delay = min(delay * 2, self.max_backoff)

    async def backoff(self, delay: float) -> None:
        """Waits ``delay`` (with jitter), or less when the listener is stopped meanwhile.

        Args:
            delay: Seconds to wait at most; half to all of it is waited.

        Raises:
            Abandoned: The listener is stopping.
        """
        if not self._stopping.is_set():
            jittered = delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), jittered)
        if self._stopping.is_set():
            raise Abandoned

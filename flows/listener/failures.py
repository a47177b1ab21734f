"""What kind of failure an error is, for the listener: retry it, wait out an outage, or refuse.

HTTP statuses and transport exceptions follow MagicFlow's one error table
(`magicflow.errors`); only Kafka's own rules (an aiokafka error's ``retriable``
flag) are decided here, where only Kafka knows them.

- *transient*: may pass by itself (5xx, 429, timeouts, refused or reset
  connections, a broker that is away): retried with backoff and jitter.
- *outage*: Prefect cannot take any request now (401/403, an expired API key; a
  deployment of a registered workflow missing while a redeploy is in progress):
  the listener stops consuming, backs off, logs loudly and resumes when Prefect
  answers. Nothing is dead-lettered for it.
- *refused*: the request's own fault (Prefect answered 400/422 for this run):
  the request is dead-lettered.

Example:
    >>> prefect_failure(ConnectionRefusedError()), prefect_failure(KeyError("x"))
    (<PrefectFailure.TRANSIENT: 'transient'>, <PrefectFailure.REFUSED: 'refused'>)
"""

from __future__ import annotations

from enum import StrEnum

import httpx
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from prefect.exceptions import ObjectNotFound

from magicflow.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    error_for_exception,
    error_type_for_status,
)


class PrefectFailure(StrEnum):
    """How the listener treats a failed call to Prefect."""

    TRANSIENT = "transient"
    OUTAGE = "outage"
    REFUSED = "refused"


def is_transient(error: BaseException) -> bool:
    """True for failures worth retrying: outages of a server, overload, timeouts.

    Args:
        error: What a Kafka or Prefect call raised.

    Returns:
        True for a retriable Kafka error, an HTTP status the error table calls
        transient, or a transport failure it calls transient.
    """
    if isinstance(error, KafkaError):
        return bool(error.retriable) or isinstance(error, KafkaConnectionError | KafkaTimeoutError)
    if isinstance(error, httpx.HTTPStatusError):
        return error_type_for_status(error.response.status_code).retryable
    typed = error_for_exception("listener", error, "calling")
    return typed is not None and typed.retryable


def prefect_failure(error: BaseException) -> PrefectFailure:
    """Classifies a failed call to Prefect while dispatching a request.

    Args:
        error: What the Prefect client raised.

    Returns:
        `PrefectFailure.OUTAGE` for a refused authorization or a missing deployment,
        `PrefectFailure.TRANSIENT` for what the error table calls transient (and for a
        409 from a concurrent creation, which the next attempt finds),
        `PrefectFailure.REFUSED` otherwise.
    """
    if isinstance(error, ObjectNotFound):
        return PrefectFailure.OUTAGE  # a registered workflow's deployment: being redeployed
    if isinstance(error, httpx.HTTPStatusError):
        error_type = error_type_for_status(error.response.status_code)
        if error_type in (PermissionDeniedError, NotFoundError):
            return PrefectFailure.OUTAGE
        if error_type.retryable or error_type is ConflictError:
            return PrefectFailure.TRANSIENT
        return PrefectFailure.REFUSED
    return PrefectFailure.TRANSIENT if is_transient(error) else PrefectFailure.REFUSED

"""What every GCP job shares: calls that raise typed errors, project and label rules.

Backend failures go through the one error table (`magicflow.errors`) via
`calling`; the Google clients' own retries are switched off on every call
(``retry=None``) so that Prefect's retries are the only retry layer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

from google.api_core import exceptions as google_errors
from google.auth import exceptions as auth_errors

from blocks.gcp import GcpConnection
from magicflow import InvalidInputError
from magicflow.errors import HttpAnswer, typed_errors

REQUEST_TIMEOUT_SECONDS = 30.0
"""Timeout of every single call to a Google API; Prefect retries the job on expiry."""

_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_MAX_LABELS = 64
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,127}")


def validate_labels(resource: str, labels: Mapping[str, str]) -> dict[str, str]:
    """Returns the labels as a plain dict, or raises `InvalidInputError` naming the bad one.

    Cloud Storage and Secret Manager share these rules (ASCII subset): at most 64
    labels; keys 1-63 of ``a-z0-9_-`` starting with a letter; values 0-63 of ``a-z0-9_-``.
    """
    if len(labels) > _MAX_LABELS:
        raise InvalidInputError(resource, f"at most {_MAX_LABELS} labels are allowed")
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise InvalidInputError(
                resource,
                f"label key {key!r} must be 1-63 lowercase letters, digits, '_' or '-', "
                "starting with a letter",
            )
        if not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value):
            raise InvalidInputError(
                resource,
                f"label {key!r} must have a value of 0-63 lowercase letters, digits, '_' or '-'",
            )
    return dict(labels)


def require(pattern: re.Pattern[str], value: str, resource: str, what: str) -> None:
    """Raises `InvalidInputError` naming `what` unless `value` is a string matching `pattern`."""
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInputError(resource, f"{what} {value!r} is not valid")


def project_of(gcp: GcpConnection, project: str | None, resource: str) -> str:
    """The project a call is for: the one given, else the connection's; checked."""
    chosen = project or gcp.project
    if not chosen:
        raise InvalidInputError(resource, "no GCP project: set it on the connection or pass one")
    require(_PROJECT, chosen, resource, "project")
    return chosen


def _google_answer(doing: str) -> Callable[[Exception], HttpAnswer | None]:
    """Reads Google client and auth errors into (status, cause) for the one error table.

    Google-specific meanings: FAILED_PRECONDITION and ABORTED (a stale etag or
    metageneration) mean the resource changed under us (409), and credentials
    Google refuses to refresh are a permission problem (401).
    """

    def read_answer(error: Exception) -> HttpAnswer | None:
        if isinstance(error, google_errors.GoogleAPICallError):
            cause = f"could not {doing}: HTTP {error.code} {error.message}"[:400]
            if isinstance(error, google_errors.FailedPrecondition | google_errors.Aborted):
                return 409, cause
            # No status: the answer could not be read; it may come whole next time.
            return int(error.code or 503), cause
        if isinstance(error, auth_errors.GoogleAuthError) and not isinstance(
            error, auth_errors.TransportError
        ):
            return 401, f"could not {doing}: credentials rejected"
        return None

    return read_answer


def calling(resource: str, doing: str) -> AbstractContextManager[None]:
    """Raises Google client, auth and transport errors inside the block as typed errors.

    The Google clients' own retries are off on every call (``retry=None``), so a
    failure reaches the table (`magicflow.errors`) at once: 429, 5xx, timeouts,
    refused or reset connections and truncated answers are retried by Prefect;
    TLS failures, invalid URLs and other 4xx are not.
    """
    return typed_errors(resource, f"trying to {doing}", _google_answer(doing))

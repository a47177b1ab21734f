"""The one error table: every HTTP status and every transport failure, row by row.

The expectations here are written out independently of `magicflow.errors`: a row
that changes there without changing here fails.
"""

import http.client
import json
import socket
import ssl

import botocore.exceptions
import botocore.parsers
import google.auth.exceptions
import httpx
import pytest
import requests
import urllib3.exceptions

from magicflow.errors import (
    ERROR_FOR_STATUS,
    EXCEPTION_RULES,
    ConflictError,
    InvalidInputError,
    MagicFlowError,
    NotFoundError,
    PermissionDeniedError,
    TransientError,
    error_for_exception,
    error_for_status,
    error_type_for_status,
    typed_errors,
)

TRANSIENT_STATUSES = {408, 421, 425, 429, 500, 502, 503, 504, 507, 509, 599}
PERMISSION_STATUSES = {401, 403, 407, 451, 511}
NOT_FOUND_STATUSES = {404, 410}
CONFLICT_STATUSES = {409, 412, 423, 424, 428}


def expected_type(status: int) -> type[MagicFlowError]:
    if status in TRANSIENT_STATUSES:
        return TransientError
    if status in PERMISSION_STATUSES:
        return PermissionDeniedError
    if status in NOT_FOUND_STATUSES:
        return NotFoundError
    if status in CONFLICT_STATUSES:
        return ConflictError
    # Every other 4xx, and the 5xx that say the request itself can never work
    # (501 Not Implemented, 505 HTTP Version, 508 Loop Detected), are permanent.
    return InvalidInputError


STATUSES = sorted(set(range(400, 505)) | set(ERROR_FOR_STATUS) | {599})


@pytest.mark.parametrize("status", STATUSES)
def test_every_status_maps_to_its_type(status: int) -> None:
    error = error_for_status("demo:thing/a", status, f"answered {status}")
    assert type(error) is expected_type(status)
    assert str(error) == f"demo:thing/a: answered {status}"
    assert error.retryable is (status in TRANSIENT_STATUSES)
    assert error_type_for_status(status) is type(error)


def test_unlisted_statuses_fall_back_by_class() -> None:
    assert error_type_for_status(499) is InvalidInputError
    assert error_type_for_status(599) is TransientError


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


def max_retry(reason: Exception) -> urllib3.exceptions.MaxRetryError:
    return urllib3.exceptions.MaxRetryError(None, "/", reason)  # type: ignore[arg-type]


TLS_ERROR = ssl.SSLCertVerificationError(1, "certificate verify failed")

# (failure, expected type or None for "not a known transport failure")
FAILURES: dict[str, tuple[BaseException, type[MagicFlowError] | None]] = {
    # timeouts
    "builtin timeout": (TimeoutError("timed out"), TransientError),
    "requests connect timeout": (requests.exceptions.ConnectTimeout(), TransientError),
    "requests read timeout": (requests.exceptions.ReadTimeout(), TransientError),
    "urllib3 read timeout": (
        urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"),  # type: ignore[arg-type]
        TransientError,
    ),
    "botocore read timeout": (
        botocore.exceptions.ReadTimeoutError(endpoint_url="http://aws"),
        TransientError,
    ),
    "botocore connect timeout": (
        botocore.exceptions.ConnectTimeoutError(endpoint_url="http://aws"),
        TransientError,
    ),
    "httpx read timeout": (httpx.ReadTimeout("timed out"), TransientError),
    # refused connections, unreachable hosts
    "refused": (ConnectionRefusedError(111, "Connection refused"), TransientError),
    "requests refused": (
        requests.exceptions.ConnectionError(
            max_retry(urllib3.exceptions.NewConnectionError(None, "refused"))  # type: ignore[arg-type]
        ),
        TransientError,
    ),
    "botocore endpoint unreachable": (
        botocore.exceptions.EndpointConnectionError(endpoint_url="http://aws"),
        TransientError,
    ),
    "httpx connect": (httpx.ConnectError("refused"), TransientError),
    "urllib3 new connection": (
        urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
        TransientError,
    ),
    "dns failure": (socket.gaierror(-2, "Name or service not known"), TransientError),
    "google auth transport": (google.auth.exceptions.TransportError("refresh"), TransientError),
    # reset and dropped connections
    "reset": (ConnectionResetError(104, "Connection reset by peer"), TransientError),
    "broken pipe": (BrokenPipeError(32, "Broken pipe"), TransientError),
    "remote disconnected": (http.client.RemoteDisconnected("closed"), TransientError),
    "botocore connection closed": (
        botocore.exceptions.ConnectionClosedError(endpoint_url="http://aws"),
        TransientError,
    ),
    "tls session dropped": (ssl.SSLEOFError(8, "EOF occurred in violation"), TransientError),
    "requests tls session dropped": (
        chained(requests.exceptions.SSLError("EOF"), ssl.SSLEOFError(8, "EOF")),
        TransientError,
    ),
    # truncated or garbled bodies
    "incomplete read": (http.client.IncompleteRead(b"par", 10), TransientError),
    "chunked encoding": (requests.exceptions.ChunkedEncodingError(), TransientError),
    "urllib3 protocol": (urllib3.exceptions.ProtocolError("Connection broken"), TransientError),
    "httpx remote protocol": (httpx.RemoteProtocolError("peer closed"), TransientError),
    "requests content decoding": (requests.exceptions.ContentDecodingError(), TransientError),
    "urllib3 decoding": (urllib3.exceptions.DecodeError("bad gzip"), TransientError),
    "httpx decoding": (httpx.DecodingError("bad gzip"), TransientError),
    "botocore incomplete": (
        botocore.exceptions.IncompleteReadError(actual_bytes=3, expected_bytes=9),
        TransientError,
    ),
    "botocore unparsable": (botocore.parsers.ResponseParserError("bad xml"), TransientError),
    "garbled json": (json.JSONDecodeError("Expecting value", "{", 1), TransientError),
    "requests garbled json": (
        requests.exceptions.JSONDecodeError("Expecting value", "{", 1),
        TransientError,
    ),
    # TLS failures: a certificate or protocol mismatch does not pass by retrying
    "certificate": (TLS_ERROR, InvalidInputError),
    "ssl protocol": (ssl.SSLError(1, "WRONG_VERSION_NUMBER"), InvalidInputError),
    "requests tls": (requests.exceptions.SSLError("certificate verify failed"), InvalidInputError),
    "urllib3 tls behind retries": (
        max_retry(urllib3.exceptions.SSLError("certificate verify failed")),
        InvalidInputError,
    ),
    "requests tls behind retries": (
        requests.exceptions.ConnectionError(max_retry(urllib3.exceptions.SSLError("bad cert"))),
        InvalidInputError,
    ),
    "botocore tls": (
        botocore.exceptions.SSLError(endpoint_url="https://aws", error=TLS_ERROR),
        InvalidInputError,
    ),
    "httpx tls under connect": (chained(httpx.ConnectError("tls"), TLS_ERROR), InvalidInputError),
    # invalid URLs and endpoints
    "missing schema": (requests.exceptions.MissingSchema("No scheme"), InvalidInputError),
    "invalid schema": (requests.exceptions.InvalidSchema("No adapter"), InvalidInputError),
    "invalid url": (requests.exceptions.InvalidURL("Invalid URL"), InvalidInputError),
    "too many redirects": (requests.exceptions.TooManyRedirects(), InvalidInputError),
    "urllib3 location": (urllib3.exceptions.LocationParseError("http://[::1"), InvalidInputError),
    "httpx unsupported protocol": (httpx.UnsupportedProtocol("ftp://"), InvalidInputError),
    "httpx invalid url": (httpx.InvalidURL("bad"), InvalidInputError),
    "botocore endpoint": (
        botocore.exceptions.InvalidEndpointConfigurationError(msg="bad endpoint"),
        InvalidInputError,
    ),
    # not transport failures: left to propagate, never retried
    "a bug": (KeyError("x"), None),
    "a value error": (ValueError("x"), None),
}


@pytest.mark.parametrize("name", FAILURES)
def test_every_transport_failure_maps_to_its_type(name: str) -> None:
    failure, expected = FAILURES[name]
    error = error_for_exception("demo:thing/a", failure, "reading")
    if expected is None:
        assert error is None
        return
    assert type(error) is expected
    assert str(error).startswith("demo:thing/a: reading failed: ")
    assert type(failure).__name__ in str(error)


def test_every_exception_rule_is_exercised() -> None:
    names = {
        f"{cls.__module__}.{cls.__qualname__}"
        for failure, _ in FAILURES.values()
        for cls in type(failure).__mro__
    }
    for failure, _ in FAILURES.values():
        first = failure.args[0] if failure.args else None
        for link in (failure.__cause__, getattr(failure, "reason", None), first):
            if isinstance(link, BaseException):
                names |= {f"{c.__module__}.{c.__qualname__}" for c in type(link).__mro__}
    missing = [rule for rule, _ in EXCEPTION_RULES if rule not in names]
    assert not missing, f"rules without a case in FAILURES: {missing}"


class ClientHttpError(Exception):
    """What a client library raises for an HTTP error answer: status, body."""


def test_typed_errors_uses_the_module_reader_then_the_table_and_chains_nothing() -> None:
    secret = "s3cr3t-body"

    def read_answer(error: Exception) -> tuple[int, str] | None:
        return (error.args[0], "answered") if isinstance(error, ClientHttpError) else None

    with pytest.raises(ConflictError) as raised:
        with typed_errors("demo:thing/a", "writing", read_answer):
            raise ClientHttpError(409, secret)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert secret not in str(raised.value)

    with pytest.raises(TransientError, match="writing failed: unreachable"):
        with typed_errors("demo:thing/a", "writing", read_answer):
            raise ConnectionResetError(secret)

    with pytest.raises(KeyError):  # unknown: propagates as it is, not retried
        with typed_errors("demo:thing/a", "writing", read_answer):
            raise KeyError("bug")

    own = NotFoundError("demo:thing/a", "missing")
    with pytest.raises(NotFoundError) as raised_own:
        with typed_errors("demo:thing/a", "writing", read_answer):
            raise own
    assert raised_own.value is own

"""Typed errors shared by every job, and the rule for which of them Prefect retries.

Every error names the resource it is about and the cause, so that a failed run in
the Prefect UI reads like a sentence: ``vault:kv/secret/acme/db: check-and-set
conflict, version 3 was written by someone else``.

Only `TransientError` is retried (see `magicflow.jobs.retry_on_transient`); all
other errors are permanent: retrying a bad input or a missing permission cannot
succeed and only delays the failure.

Which failure is which is decided in one table, below: `ERROR_FOR_STATUS` for HTTP
answers and `EXCEPTION_RULES` for transport failures. A job module only reads the
HTTP status (and a short message) out of its client library's error, handles the
few answers its system gives a special meaning, and lets `typed_errors` do the rest.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager


class MagicFlowError(Exception):
    """Base class of every error a MagicFlow job raises on purpose.

    Args:
        resource: The resource the error is about, in the same form as
            `Change.resource` (for example ``aws:s3:bucket/acme-prod``).
        cause: What went wrong, in words an operator can act on. Never a secret.

    Example:
        >>> str(NotFoundError("gitlab:project/acme/infra", "project does not exist"))
        'gitlab:project/acme/infra: project does not exist'
    """

    retryable: bool = False

    def __init__(self, resource: str, cause: str) -> None:
        self.resource = resource
        self.cause = cause
        super().__init__(f"{resource}: {cause}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Keeps errors picklable (Prefect persists failed task states).
        return (type(self), (self.resource, self.cause))


class InvalidInputError(MagicFlowError, ValueError):
    """The input is malformed or violates a rule; nothing was written."""


class NotFoundError(MagicFlowError, LookupError):
    """A resource the job needs does not exist."""


class ConflictError(MagicFlowError):
    """The resource changed under us, or is in a state that forbids the change."""


class PermissionDeniedError(MagicFlowError, PermissionError):
    """The connection's identity may not read or change the resource."""


class TransientError(MagicFlowError):
    """A failure that may pass on its own: 5xx, throttling, timeouts, refused connections.

    Jobs raise it for such failures so that Prefect retries them with backoff.
    """

    retryable = True


class DeadlineExceededError(MagicFlowError, TimeoutError):
    """A wait (for an approval, a backup, a run) passed its deadline; not retried."""


# --- the one error table ------------------------------------------------------------
#
# Every job module turns its backend's failures into the types above through the two
# functions below, so that "what is transient" is decided here and nowhere else.
# Exception classes are matched by their qualified names along the MRO, so this
# module imports no client library (``import magicflow`` must stay light).

ERROR_FOR_STATUS: dict[int, type[MagicFlowError]] = {
    400: InvalidInputError,
    401: PermissionDeniedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: InvalidInputError,
    406: InvalidInputError,
    407: PermissionDeniedError,
    408: TransientError,
    409: ConflictError,
    410: NotFoundError,
    411: InvalidInputError,
    412: ConflictError,
    413: InvalidInputError,
    414: InvalidInputError,
    415: InvalidInputError,
    416: InvalidInputError,
    417: InvalidInputError,
    418: InvalidInputError,
    421: TransientError,
    422: InvalidInputError,
    423: ConflictError,
    424: ConflictError,
    425: TransientError,
    426: InvalidInputError,
    428: ConflictError,
    429: TransientError,
    431: InvalidInputError,
    451: PermissionDeniedError,
    500: TransientError,
    501: InvalidInputError,
    502: TransientError,
    503: TransientError,
    504: TransientError,
    505: InvalidInputError,
    507: TransientError,
    508: InvalidInputError,
    509: TransientError,
    511: PermissionDeniedError,
}
"""HTTP status -> error type. Unlisted 4xx are `InvalidInputError`, unlisted 5xx transient."""

TLS_FAILURE = "tls"
TRANSPORT_FAILURE = "transport"
TRUNCATED_ANSWER = "truncated"
INVALID_ENDPOINT = "endpoint"

EXCEPTION_RULES: tuple[tuple[str, str], ...] = (
    # A TLS session the peer dropped mid-way is a dropped connection, not a TLS mismatch.
    ("ssl.SSLEOFError", TRANSPORT_FAILURE),
    # TLS first: most libraries derive their TLS error from their connection error.
    # A certificate or protocol mismatch does not pass by retrying: permanent.
    ("ssl.SSLError", TLS_FAILURE),
    ("requests.exceptions.SSLError", TLS_FAILURE),
    ("urllib3.exceptions.SSLError", TLS_FAILURE),
    ("botocore.exceptions.SSLError", TLS_FAILURE),
    # A malformed or unsupported URL is a configuration error: permanent.
    ("requests.exceptions.MissingSchema", INVALID_ENDPOINT),
    ("requests.exceptions.InvalidSchema", INVALID_ENDPOINT),
    ("requests.exceptions.InvalidURL", INVALID_ENDPOINT),
    ("requests.exceptions.TooManyRedirects", INVALID_ENDPOINT),
    ("urllib3.exceptions.LocationValueError", INVALID_ENDPOINT),
    ("httpx.UnsupportedProtocol", INVALID_ENDPOINT),
    ("httpx.InvalidURL", INVALID_ENDPOINT),
    ("botocore.exceptions.InvalidEndpointConfigurationError", INVALID_ENDPOINT),
    # An answer cut short or garbled on the way: the next attempt may get it whole.
    ("requests.exceptions.ChunkedEncodingError", TRUNCATED_ANSWER),
    ("requests.exceptions.ContentDecodingError", TRUNCATED_ANSWER),
    ("http.client.IncompleteRead", TRUNCATED_ANSWER),
    ("http.client.RemoteDisconnected", TRUNCATED_ANSWER),
    ("urllib3.exceptions.ProtocolError", TRUNCATED_ANSWER),
    ("urllib3.exceptions.DecodeError", TRUNCATED_ANSWER),
    ("httpx.RemoteProtocolError", TRUNCATED_ANSWER),
    ("httpx.DecodingError", TRUNCATED_ANSWER),
    ("botocore.parsers.ResponseParserError", TRUNCATED_ANSWER),
    ("botocore.exceptions.IncompleteReadError", TRUNCATED_ANSWER),
    ("json.decoder.JSONDecodeError", TRUNCATED_ANSWER),
    # Timeouts, refused and reset connections, unreachable hosts: transient.
    ("builtins.TimeoutError", TRANSPORT_FAILURE),
    ("builtins.ConnectionError", TRANSPORT_FAILURE),
    ("requests.exceptions.ConnectionError", TRANSPORT_FAILURE),
    ("requests.exceptions.Timeout", TRANSPORT_FAILURE),
    ("urllib3.exceptions.TimeoutError", TRANSPORT_FAILURE),
    ("urllib3.exceptions.NewConnectionError", TRANSPORT_FAILURE),
    ("urllib3.exceptions.MaxRetryError", TRANSPORT_FAILURE),
    ("httpx.TransportError", TRANSPORT_FAILURE),
    ("botocore.exceptions.ConnectionError", TRANSPORT_FAILURE),
    ("botocore.exceptions.HTTPClientError", TRANSPORT_FAILURE),
    ("google.auth.exceptions.TransportError", TRANSPORT_FAILURE),
    ("socket.gaierror", TRANSPORT_FAILURE),
)
"""Exception class (qualified name, matched along the MRO) -> kind of failure, first match wins."""

_CAUSE_FOR_KIND = {
    TLS_FAILURE: "TLS failed (certificate or protocol); check the connection's URL and CA",
    INVALID_ENDPOINT: "the endpoint URL is not valid; check the connection's URL",
    TRUNCATED_ANSWER: "the answer was cut short or unreadable",
    TRANSPORT_FAILURE: "unreachable, timed out or the connection was dropped",
}
_ERROR_FOR_KIND: dict[str, type[MagicFlowError]] = {
    TLS_FAILURE: InvalidInputError,
    INVALID_ENDPOINT: InvalidInputError,
    TRUNCATED_ANSWER: TransientError,
    TRANSPORT_FAILURE: TransientError,
}
_MAX_CAUSE_CHAIN = 8


def error_type_for_status(status: int) -> type[MagicFlowError]:
    """The error type of an HTTP status (the one rule every job module follows).

    Args:
        status: An HTTP status code of 400 or more.

    Returns:
        The type from `ERROR_FOR_STATUS`; other 4xx are `InvalidInputError`, other
        5xx `TransientError`.

    Example:
        >>> error_type_for_status(503).__name__, error_type_for_status(404).__name__
        ('TransientError', 'NotFoundError')
    """
    if status in ERROR_FOR_STATUS:
        return ERROR_FOR_STATUS[status]
    return TransientError if status >= 500 else InvalidInputError


def error_for_status(resource: str, status: int, cause: str) -> MagicFlowError:
    """The typed error for an HTTP error answer.

    Args:
        resource: The resource the request was about.
        status: The HTTP status code.
        cause: What failed, with the server's short message; never a request body.

    Returns:
        The error to raise.

    Example:
        >>> str(error_for_status("k8s:namespace/acme", 409, "HTTP 409: already exists"))
        'k8s:namespace/acme: HTTP 409: already exists'
    """
    return error_type_for_status(status)(resource, cause)


def failure_kind(error: BaseException) -> str | None:
    """Which kind of transport failure an exception is, following its causes.

    Args:
        error: Any exception raised by a client library.

    Returns:
        One of `TLS_FAILURE`, `INVALID_ENDPOINT`, `TRUNCATED_ANSWER`,
        `TRANSPORT_FAILURE`, or None when no rule matches.

    Example:
        >>> failure_kind(ConnectionRefusedError()), failure_kind(KeyError())
        ('transport', None)
    """
    seen: list[BaseException] = []
    current: BaseException | None = error
    matches: list[tuple[int, str]] = []
    while current is not None and len(seen) < _MAX_CAUSE_CHAIN and current not in seen:
        seen.append(current)
        names = [f"{cls.__module__}.{cls.__qualname__}" for cls in type(current).__mro__]
        for rank, (name, kind) in enumerate(EXCEPTION_RULES):
            if name in names:
                matches.append((rank, kind))
                break
        # A wrapper (urllib3's MaxRetryError, requests' ConnectionError, httpx's
        # ConnectError) often hides the real cause, e.g. a TLS failure: the most
        # specific rule along the chain wins. Wrappers keep it in ``reason``, in their
        # first argument, or as the exception's cause or context.
        reason = getattr(current, "reason", None)
        first = current.args[0] if current.args else None
        current = (
            reason
            if isinstance(reason, BaseException)
            else first
            if isinstance(first, BaseException)
            else current.__cause__
            or (current.__context__ if not current.__suppress_context__ else None)
        )
    return min(matches)[1] if matches else None


def error_for_exception(resource: str, error: BaseException, doing: str) -> MagicFlowError | None:
    """The typed error for a client library's transport-level exception.

    Args:
        resource: The resource the call was about.
        error: The exception a client raised (not an HTTP error answer: use
            `error_for_status` for those).
        doing: What the job was doing, e.g. ``"reading the bucket"``.

    Returns:
        The error to raise, or None when the exception is not a known transport
        failure (let it propagate; it is not retried).

    Example:
        >>> type(error_for_exception("vault:kv/a", ConnectionResetError(), "reading")).__name__
        'TransientError'
    """
    if isinstance(error, MagicFlowError):
        return error
    kind = failure_kind(error)
    if kind is None:
        return None
    cause = f"{doing} failed: {_CAUSE_FOR_KIND[kind]} ({type(error).__name__})"
    return _ERROR_FOR_KIND[kind](resource, cause)


HttpAnswer = tuple[int, str]
"""What a job module reads out of its client's error for an HTTP error answer: the
status (after its system's special cases) and the cause to report, never a body."""


@contextmanager
def typed_errors(
    resource: str, doing: str, read_answer: Callable[[Exception], HttpAnswer | None]
) -> Iterator[None]:
    """Re-raises whatever a client library raises inside the block as the table's typed error.

    The one way every job module translates failures: ``read_answer`` turns the
    client's HTTP error into ``(status, cause)`` (or None when the exception is not
    an HTTP answer); `error_for_status` then decides the type. Other exceptions go
    through `error_for_exception` (TLS, timeouts, refused, reset, truncated,
    invalid URLs); one that no rule knows propagates unchanged and is not retried.
    The client's exception is never chained: its text may quote a request or
    response body, and with it a secret.

    Args:
        resource: The resource the calls are about.
        doing: What the job is doing, e.g. ``"reading the bucket"``.
        read_answer: The module's reader of its client's HTTP errors.

    Yields:
        Nothing; the block runs inside the translation.

    Example:
        >>> def read_answer(error):
        ...     return (error.args[0], f"answered {error.args[0]}") if error.args else None
        >>> try:
        ...     with typed_errors("demo:thing/a", "reading", read_answer):
        ...         raise RuntimeError(503)
        ... except TransientError as error:
        ...     print(error)
        demo:thing/a: answered 503
    """
    try:
        yield
    except MagicFlowError:
        raise
    except Exception as error:
        answer = read_answer(error)
        if answer is not None:
            status, cause = answer
            raise error_for_status(resource, status, cause) from None
        typed = error_for_exception(resource, error, doing)
        if typed is None:
            raise
        raise typed from None

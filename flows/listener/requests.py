"""Checking one request message: what the listener does with it, decided without side effects.

`check_request` runs the checks in the order that keeps an attacker's bytes away
from everything that matters:

1. size (`max_message_bytes`, key and headers included), before anything is parsed;
2. the HMAC signature, when the connection has a signing secret: an unauthenticated
   message is dead-lettered as metadata only and answered with no status, so it
   cannot speak for somebody else's request id;
3. safe JSON (UTF-8, no NaN/Infinity, no integer over 40 digits, no nesting over 32,
   no NUL or lone surrogate);
4. the request schema, strictly (a wrong type is a rejection, never coerced);
5. the Kafka key equals the request id, so every delivery of an id lands on one
   partition and so on one listener replica;
6. the reply topic (`KafkaConnection.reply_topic_problem`);
7. the registry (an allow-list) and the workflow's own parameter signature (for the
   ``compose`` workflow, every node of the composition against the registry too).

A `Rejection` also says what its dead letter may carry: the original bytes (or a
copy with secret parameters masked) only where the workflow's parameter schema
proves which values are secret; otherwise metadata only.

Example:
    >>> from flows.registry import Registry
    >>> check_request(b"not json", b"k", [], Registry(), KafkaConnection()).reason
    'not JSON (JSONDecodeError)'
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import JsonValue, TypeAdapter, ValidationError

from blocks.kafka import KafkaConnection
from flows.listener.metrics import DeadLetterReason
from flows.registry import (
    InvalidParametersError,
    RegisteredWorkflow,
    Registry,
    UnknownWorkflowError,
    describe_validation_errors,
)
from magicflow.messages import (
    SIGNATURE_HEADER,
    RequestId,
    TopicName,
    WorkflowName,
    WorkflowRequest,
    signature_is_valid,
)

DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
"""Largest request (value, key and headers) the listener reads; larger ones are refused unread."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of objects/arrays a request may have."""
MAX_INTEGER_DIGITS = 40
"""Longest integer literal a request may hold; longer ones are rejected unparsed."""


@dataclass(frozen=True)
class Rejection:
    """Why a message is dead-lettered, what of it may be told, and what its dead letter holds.

    Attributes:
        reason: Why, in words; never holds parameter values or secrets.
        request_id: The request's id, set only when a ``rejected`` status may be
            published for it (the message is authenticated and the id readable).
        workflow: The workflow name, when readable.
        reply_topic: Where the ``rejected`` status goes instead of the status
            topic (only an allowed reply topic).
        dry_run: The request's dry-run flag, when readable.
        request_hash: The request's `magicflow.messages.request_hash`, when it parsed.
        copy: What the dead letter may carry as its value: the original bytes, or
            a copy with secret parameters masked; None for metadata only.
        redacted: The masked fields of ``copy``, e.g. ``("parameters.token",)``.
        kind: Which check refused it, a `DeadLetterReason` (the metrics' label).
    """

    reason: str
    request_id: str | None = None
    workflow: str | None = None
    reply_topic: str | None = None
    dry_run: bool = False
    request_hash: str | None = None
    copy: bytes | None = None
    redacted: tuple[str, ...] = ()
    kind: str = DeadLetterReason.INVALID_REQUEST


@dataclass(frozen=True)
class Dispatch:
    """A checked request, ready to be turned into a flow run.

    Attributes:
        request: The request.
        workflow: Its registered workflow.
        parameters: The parameters to start the deployment with.
        copy: The request's dead-letter copy, should Prefect refuse the run.
        redacted: The masked fields of ``copy``.
    """

    request: WorkflowRequest
    workflow: RegisteredWorkflow
    parameters: dict[str, JsonValue]
    copy: bytes | None = None
    redacted: tuple[str, ...] = ()

    @property
    def flow_run_name(self) -> str:
        """A readable flow-run name: the workflow and the request id."""
        return f"{self.workflow.name}-{self.request.id}"

    def rejection(self, reason: str, kind: str) -> Rejection:
        """A rejection of this request (e.g. when Prefect refuses the run, or a conflict).

        Args:
            reason: Why, in words.
            kind: Which rule refused it, a `DeadLetterReason`.
        """
        request = self.request
        return Rejection(
            reason,
            request.id,
            request.workflow,
            request.reply_topic,
            request.dry_run,
            request.request_hash,
            self.copy,
            self.redacted,
            kind,
        )


class _UnsafeJsonError(ValueError):
    """A JSON text uses a construct the listener refuses to process."""


def _refuse_constant(name: str) -> Any:
    raise _UnsafeJsonError(f"JSON constant {name} is not allowed")


def _parse_bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _UnsafeJsonError(f"integer longer than {MAX_INTEGER_DIGITS} digits")
    return int(text)


def _parse_finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _UnsafeJsonError("number out of range")
    return value


def _check_json_value(value: Any) -> None:
    """Refuses nesting deeper than `MAX_JSON_DEPTH` and strings Prefect cannot store."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _UnsafeJsonError(f"nested deeper than {MAX_JSON_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            if "\x00" in item:
                raise _UnsafeJsonError("string contains a NUL character")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _UnsafeJsonError("string contains an unpaired surrogate") from None


def _parse_json(value: bytes) -> Any:
    """Parses a message value as JSON, refusing non-UTF-8, huge numbers and NaN/Infinity."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise _UnsafeJsonError("not UTF-8") from None
    try:
        return json.loads(
            text,
            parse_int=_parse_bounded_int,
            parse_float=_parse_finite_float,
            parse_constant=_refuse_constant,
        )
    except _UnsafeJsonError:
        raise
    except RecursionError:
        raise _UnsafeJsonError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:
        raise _UnsafeJsonError(f"not JSON ({type(error).__name__})") from None


_REQUEST_ID = TypeAdapter(RequestId)
_WORKFLOW_NAME = TypeAdapter(WorkflowName)
_TOPIC_NAME = TypeAdapter(TopicName)


def _readable(document: Any, field: str, adapter: TypeAdapter[str]) -> str | None:
    """One field of a possibly invalid request, when that field alone is valid."""
    if not isinstance(document, dict):
        return None
    try:
        return adapter.validate_python(document.get(field), strict=True)
    except ValidationError:
        return None


def message_size(
    value: bytes | None, key: bytes | None, headers: Sequence[tuple[str, bytes]]
) -> int:
    """Bytes of a record's value, key and headers: what the size limit counts."""
    return (
        len(value or b"")
        + len(key or b"")
        + sum(len(name.encode()) + len(data or b"") for name, data in headers)
    )


def _dead_letter_copy(
    value: bytes, document: dict[str, Any], registry: Registry
) -> tuple[bytes | None, tuple[str, ...]]:
    """The dead-letter value that provably holds no secret, or None (metadata only).

    Only a request whose every field is known can be vouched for: the envelope's
    fields carry no secret, and the registered workflow's signature tells which
    parameters may (those are masked). Anything else, an unknown workflow or a
    parameter outside the signature included, may hide a secret: metadata only.
    """
    if not document.keys() <= WorkflowRequest.model_fields.keys():
        return None, ()
    name, parameters = document.get("workflow"), document.get("parameters", {})
    if not isinstance(name, str) or name not in registry or not isinstance(parameters, dict):
        return None, ()
    masked_parameters = dict(parameters)
    masked = registry.get(name).mask_secrets(masked_parameters)
    if masked is None:
        return None, ()
    if not masked:
        return value, ()
    masked_document = {**document, "parameters": masked_parameters}
    return json.dumps(masked_document).encode(), tuple(masked)


def check_request(
    value: bytes | None,
    key: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    registry: Registry,
    kafka: KafkaConnection,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> Dispatch | Rejection:
    """Decides what to do with one request message, without side effects.

    Args:
        value: The message value, as received.
        key: The message key.
        headers: The message headers.
        registry: The allow-list of workflows.
        kafka: The connection: its signing secret, reply-topic rule and topics.
        max_message_bytes: Larger messages (value, key and headers) are refused unread.

    Returns:
        A `Dispatch` for a good request, a `Rejection` with the reason otherwise.

    Example:
        >>> check_request(None, None, [], Registry(), KafkaConnection()).reason
        'empty message'
    """
    size = message_size(value, key, headers)
    if size > max_message_bytes:
        return Rejection(
            f"message of {size} bytes exceeds the {max_message_bytes}-byte limit",
            kind=DeadLetterReason.TOO_LARGE,
        )
    if value is None:
        return Rejection("empty message", kind=DeadLetterReason.EMPTY)
    if kafka.signing_secret is not None:
        signature = next((data for name, data in headers if name == SIGNATURE_HEADER), None)
        if signature is None:
            return Rejection("missing signature", kind=DeadLetterReason.UNAUTHENTICATED)
        if not signature_is_valid(value, signature, kafka.signing_secret):
            return Rejection("bad signature", kind=DeadLetterReason.UNAUTHENTICATED)
    try:
        document = _parse_json(value)
    except _UnsafeJsonError as error:
        return Rejection(str(error), kind=DeadLetterReason.NOT_JSON)
    request_id = _readable(document, "id", _REQUEST_ID)
    workflow_name = _readable(document, "workflow", _WORKFLOW_NAME)
    reply_topic = _readable(document, "reply_topic", _TOPIC_NAME)
    if reply_topic is not None and kafka.reply_topic_problem(reply_topic) is not None:
        reply_topic = None
    dry_run = isinstance(document, dict) and document.get("dry_run") is True
    # What may be told about the message, filled in as more of it proves readable.
    known = Rejection("", request_id, workflow_name, reply_topic, dry_run)
    try:
        _check_json_value(document)
    except _UnsafeJsonError as error:
        return replace(known, reason=str(error), kind=DeadLetterReason.NOT_JSON)
    if not isinstance(document, dict):
        return Rejection(f"request must be a JSON object, not {type(document).__name__}")
    copy, redacted = _dead_letter_copy(value, document, registry)
    known = replace(known, copy=copy, redacted=redacted)
    try:
        request = WorkflowRequest.model_validate(document)
    except ValidationError as error:
        reason = f"invalid request: {describe_validation_errors(error, '(request)')}"
        return replace(known, reason=reason)
    known = replace(known, request_hash=request.request_hash)
    if key != request.id.encode():
        return replace(
            known,
            reason="the message key must be the request id",
            kind=DeadLetterReason.KEY_MISMATCH,
        )
    if request.reply_topic is not None:
        problem = kafka.reply_topic_problem(request.reply_topic)
        if problem is not None:
            return replace(known, reason=problem, kind=DeadLetterReason.REPLY_TOPIC)
    try:
        workflow = registry.get(request.workflow)
    except UnknownWorkflowError as error:
        return replace(known, reason=str(error), kind=DeadLetterReason.UNKNOWN_WORKFLOW)
    try:
        # The registry in the context lets a composition check every target in its tree.
        parameters = workflow.validate_parameters(
            request.parameters, dry_run=request.dry_run, context={"registry": registry}
        )
    except InvalidParametersError as error:
        return replace(known, reason=str(error), kind=DeadLetterReason.INVALID_PARAMETERS)
    return Dispatch(request, workflow, parameters, copy, redacted)

"""The Kafka message schemas (requests and statuses), their signing, and the status publisher.

A *request* asks for a workflow run; a *status* tells what happened to a request
or a run. Both are JSON, keyed by the request id (see the README, "Kafka").

Example:
    >>> request = WorkflowRequest(id="req-1", workflow="tenant-provisioning")
    >>> status = WorkflowStatus.for_request(request, RunState.ACCEPTED)
    >>> status.state, status.request_id
    (<RunState.ACCEPTED: 'accepted'>, 'req-1')
"""

import hashlib
import hmac
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Self
from uuid import UUID

from aiokafka import AIOKafkaProducer
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    StringConstraints,
    model_validator,
)

from magicflow.errors import MagicFlowError

SIGNATURE_HEADER = "x-magicflow-signature"
"""Kafka header carrying ``sha256=<hex HMAC-SHA256 of the message value>``."""

REQUEST_TAG_PREFIX = "magicflow-request:"
"""Flow-run tag that carries the request id, so any run can be traced to its request."""

REQUEST_HASH_TAG_PREFIX = "magicflow-request-hash:"
"""Flow-run tag that carries `request_hash` of the request that started the run."""

ACCEPTED_SEQ = 1
"""`WorkflowStatus.seq` of ``accepted``: before every other status of the request."""

REQUESTED_BY_TAG_PREFIX = "magicflow-requested-by:"
"""Flow-run tag that carries a request's ``requested_by``, for workflows that must know who
asked (a DR invocation refuses an approval by its requester)."""

RequestId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
WorkflowName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
TopicName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,249}$")]


class WorkflowRequest(BaseModel):
    """A request for one workflow run; ``id`` is its idempotency key.

    Attributes:
        id: Unique id chosen by the requester; the same id never yields two runs.
        workflow: Name of a registered workflow.
        parameters: The workflow's parameters, validated against its signature.
        dry_run: Ask the workflow to plan without writing.
        requested_by: Who asked, e.g. ``portal:alice`` or ``ci:pipeline-123``.
        reply_topic: Where to send statuses instead of the status topic.
    """

    # Strict: a wrong type is a rejection, never a guess ("false" is not False).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: RequestId
    workflow: WorkflowName
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    dry_run: bool = False
    requested_by: Annotated[str, StringConstraints(max_length=200)] | None = None
    reply_topic: TopicName | None = None

    @property
    def request_hash(self) -> str:
        """`request_hash` of this request's workflow, parameters and dry-run flag."""
        return request_hash(self.workflow, self.parameters, self.dry_run)


def request_hash(workflow: str, parameters: dict[str, JsonValue], dry_run: bool) -> str:
    """A short fingerprint of what a request asks for, to tell two requests apart.

    Two deliveries of one request id with the same fingerprint are duplicates; with
    different ones, a conflict. The fingerprint reveals nothing of the values.

    Args:
        workflow: The workflow name.
        parameters: The parameters, as sent.
        dry_run: The dry-run flag.

    Returns:
        16 hex digits of the SHA-256 of the canonical JSON of the three.

    Example:
        >>> request_hash("a", {"x": 1}, False) == request_hash("a", {"x": 1}, False)
        True
        >>> request_hash("a", {"x": 1}, False) == request_hash("a", {"x": 1}, True)
        False
    """
    canonical = json.dumps(
        {"workflow": workflow, "parameters": parameters, "dry_run": dry_run},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def seq_of(moment: datetime) -> int:
    """The `WorkflowStatus.seq` of a state reached at ``moment``: microseconds since 1970.

    Args:
        moment: A timezone-aware time, e.g. the Prefect state's timestamp.

    Returns:
        The sequence number.

    Example:
        >>> seq_of(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
        1000000
    """
    return int(moment.timestamp() * 1_000_000)


def reason_for(error: BaseException) -> str:
    """A status's ``reason`` for an exception: MagicFlow's own message, or the type alone.

    MagicFlow's errors are written not to hold secrets; any other exception's text
    may quote anything (a request body, a token in a URL), so only its type is told.

    Args:
        error: The exception.

    Returns:
        ``"<Type>: <message>"`` for a `MagicFlowError`, ``"<Type>"`` otherwise.

    Example:
        >>> reason_for(ValueError("token=abc")), reason_for(MagicFlowError("a:b/c", "gone"))
        ('ValueError', 'MagicFlowError: a:b/c: gone')
    """
    if isinstance(error, MagicFlowError):
        return f"{type(error).__name__}: {error}"
    return type(error).__name__


class RunState(StrEnum):
    """States a status can report, in the order a successful request goes through."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CRASHED = "crashed"

    @property
    def is_final(self) -> bool:
        """True for states after which nothing more happens to the run."""
        return self in _FINAL_STATES


_FINAL_STATES = {
    RunState.REJECTED,
    RunState.COMPLETED,
    RunState.FAILED,
    RunState.CANCELLED,
    RunState.CRASHED,
}


class WorkflowStatus(BaseModel):
    """What happened to a request or a run. Never holds a secret.

    Attributes:
        request_id: The request's id; None for runs not started by a request.
        workflow: The workflow's name, when known.
        flow_run_id: The Prefect flow run, once there is one.
        state: The state being reported.
        reason: Why a request was rejected or a run failed, in words.
        changes: Counts of the run's changes by action, once it finished.
        ui_url: Link to the run in the Prefect UI.
        at: When the state was reached (UTC).
        dry_run: True when the request or run only plans and writes nothing.
        seq: Orders the statuses of one request: a later state has a larger number.
            Run states use their Prefect state's time (`seq_of`); ``accepted`` is
            `ACCEPTED_SEQ`, before all of them. Two statuses with the same ``seq``
            report the same state (a status can arrive twice).
        request_hash: `request_hash` of the request the status answers, when known;
            a submitter ignores statuses about another request with its id.
    """

    model_config = ConfigDict(frozen=True)

    request_id: str | None = None
    workflow: str | None = None
    flow_run_id: UUID | None = None
    state: RunState
    reason: str | None = None
    changes: dict[str, int] | None = None
    ui_url: str | None = None
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    dry_run: bool = False
    seq: int = 0
    request_hash: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _sequence_from_time(cls, data: Any) -> Any:
        # A status without an explicit seq is ordered by the time it reports.
        if not isinstance(data, dict) or "seq" in data:
            return data
        at = data.get("at")
        if at is None:
            at = datetime.now(UTC)
            data = {**data, "at": at}
        elif isinstance(at, str):
            try:
                at = datetime.fromisoformat(at)
            except ValueError:
                return data  # the field's own validation reports it
        if isinstance(at, datetime) and at.tzinfo is not None:
            data = {**data, "seq": seq_of(at)}
        return data

    @classmethod
    def for_request(cls, request: WorkflowRequest, state: RunState, **fields: object) -> Self:
        """A status about a parsed request.

        Args:
            request: The request.
            state: Its new state.
            **fields: Any other status fields (flow_run_id, reason, ...).

        Returns:
            The status.
        """
        return cls(
            request_id=request.id,
            workflow=request.workflow,
            state=state,
            dry_run=request.dry_run,
            request_hash=request.request_hash,
            **fields,  # type: ignore[arg-type]
        )

    def to_kafka(self) -> tuple[bytes | None, bytes]:
        """The Kafka key (the request id, or the flow-run id) and JSON value."""
        key = self.request_id or (str(self.flow_run_id) if self.flow_run_id else None)
        return (key.encode() if key else None, self.model_dump_json().encode())


def sign(value: bytes, secret: SecretStr) -> str:
    """Signs a message value for the `SIGNATURE_HEADER` header.

    Args:
        value: The exact bytes of the Kafka message value.
        secret: The shared secret of the `KafkaConnection`.

    Returns:
        ``sha256=<hex digest>``.

    Example:
        >>> sign(b"{}", SecretStr("k"))[:7]
        'sha256='
    """
    digest = hmac.new(secret.get_secret_value().encode(), value, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_is_valid(value: bytes, signature: bytes | str | None, secret: SecretStr) -> bool:
    """Checks a message's signature in constant time.

    Args:
        value: The exact bytes of the Kafka message value.
        signature: The `SIGNATURE_HEADER` header's value, if any.
        secret: The shared secret.

    Returns:
        True when the signature matches.
    """
    if signature is None:
        return False
    if isinstance(signature, str):
        signature = signature.encode("utf-8", errors="replace")
    # Bytes on both sides: compare_digest refuses non-ASCII str, and a header is untrusted.
    return hmac.compare_digest(signature, sign(value, secret).encode())


async def publish_status(producer: AIOKafkaProducer, status: WorkflowStatus, topic: str) -> None:
    """Publishes one status and waits until the broker has it.

    This is the single place statuses are written to Kafka.

    Args:
        producer: A started producer (see `KafkaConnection.get_producer`).
        status: The status.
        topic: The status topic, or the request's reply topic.
    """
    key, value = status.to_kafka()
    await producer.send_and_wait(topic, value, key=key)

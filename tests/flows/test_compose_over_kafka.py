"""A composition sent over Kafka to the served ``compose`` workflow, and bad ones dead-lettered.

The listener checks the whole composition tree against its registry before any run
exists; the served runner runs the good one (a job, then a served workflow through
its deployment, then a job), which publishes its statuses.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client

from blocks import KafkaConnection
from flows.composition import MAX_DEPTH, When, chain, sign
from flows.listener.dead_letters import REASON_HEADER
from tests.backends.compose_targets import executions, registry
from tests.fixtures.kafka import produce, read_topic, request_bytes, running_listener, statuses_of
from tests.fixtures.workflows import KAFKA_BLOCK_NAME, ServedWorkflows

# The first test to use them starts the harness, the broker and the served runner.
pytestmark = pytest.mark.timeout(900)


def compose_request(request_id: str, composition: dict[str, Any]) -> tuple[bytes, bytes, list[Any]]:
    value = request_bytes(request_id, workflow="compose", parameters={"composition": composition})
    return request_id.encode(), value, []


def step(target: str, **fields: Any) -> dict[str, Any]:
    return {"kind": "signature", "target": target, **fields}


async def test_a_composition_over_kafka_runs_and_bad_ones_are_dead_lettered(
    served_workflows: ServedWorkflows, kafka: KafkaConnection, tmp_path: Path
) -> None:
    await kafka.asave(KAFKA_BLOCK_NAME, overwrite=True)
    log = str(tmp_path / "log")
    prefix = f"compose-{uuid.uuid4().hex[:6]}"
    good = chain(
        [
            sign("ensure_item", log=log, name="a", step="item", registry=registry),
            sign(
                "test-changes",
                tenant="t1",
                when=When(field="item.action", op="eq", value="created"),
                registry=registry,
            ),
            sign("record", log=log, value="after the workflow", registry=registry),
        ],
        registry=registry,
    ).model_dump(mode="json")
    fine = [step("add", params={"x": 1}), step("add", params={"x": 2})]
    deep: dict[str, Any] = step("add", params={"x": 1})
    for _ in range(MAX_DEPTH):
        deep = {"kind": "chain", "steps": [deep]}
    bad = {
        f"{prefix}-unknown": (
            {
                "kind": "chain",
                "steps": [*fine, step("add", params={"x": 3}, on_error=[step("rm")])],
            },
            "steps[2].on_error[0].target: 'rm' is not a registered workflow or job",
        ),
        f"{prefix}-coerced": (
            {"kind": "chain", "steps": [*fine, step("collect", params={"log": 5})]},
            "steps[2].params.log: Input should be a valid string",
        ),
        f"{prefix}-when": (
            {
                "kind": "chain",
                "steps": [step("add", params={"x": 1}, when={"field": "x.y", "op": "eq"})],
            },
            "steps[0].when.field: no earlier step is named 'x'",
        ),
        f"{prefix}-deep": (deep, f"nested deeper than {MAX_DEPTH} levels"),
        f"{prefix}-shape": (
            {"kind": "chain", "steps": [{"kind": "signature", "target": "add", "code": "rm"}]},
            "Extra inputs are not permitted",
        ),
    }
    good_id = f"{prefix}-good"
    await produce(
        kafka,
        [
            compose_request(good_id, good),
            *(compose_request(rid, tree) for rid, (tree, _) in bad.items()),
        ],
    )

    def mine(records: Any, request_id: str) -> list[dict[str, Any]]:
        return [s for s in statuses_of(records) if s["request_id"] == request_id]

    async with running_listener(kafka, registry=registry):
        dead = await read_topic(
            kafka,
            kafka.dead_letter_topic,
            lambda r: len({rec.key for rec in r} & {rid.encode() for rid in bad}) == len(bad),
        )
        records = await read_topic(
            kafka,
            kafka.status_topic,
            lambda r: any(s["state"] in ("completed", "failed") for s in mine(r, good_id)),
            timeout_s=240,
        )

    statuses = mine(records, good_id)
    assert [s["state"] for s in statuses] == ["accepted", "scheduled", "running", "completed"], (
        statuses,
        served_workflows.log_tail(),
    )
    assert statuses[-1]["workflow"] == "compose"
    assert executions(log) == ["a", "after the workflow"]
    async with get_client() as client:
        run = await client.read_flow_run(uuid.UUID(statuses[-1]["flow_run_id"]))
        children = await client.read_flow_runs()
    # The workflow step ran as its deployment's flow run, under the composition.
    served = [c for c in children if c.parameters == {"tenant": "t1"}]
    assert served and all(c.state_name == "Completed" for c in served)
    assert run.parameters["composition"] == good

    by_key = {}
    for record in dead:
        headers = {name: value.decode() for name, value in record.headers}
        by_key[record.key.decode() if record.key else ""] = headers[REASON_HEADER]
    for request_id, (_, reason) in bad.items():
        assert reason in by_key[request_id], (request_id, by_key[request_id])
    rejected = {s["request_id"] for s in statuses_of(records) if s["state"] == "rejected"}
    assert set(bad) <= rejected
    assert json.dumps(good)  # the good request round-tripped as plain JSON


def test_a_composition_request_is_checked_whole_and_its_dead_letter_keeps_no_value() -> None:
    from flows.listener.requests import Dispatch, Rejection, check_request

    secret = f"s3cr3t-{uuid.uuid4().hex}"
    tree = {"kind": "chain", "steps": [step("collect", params={"log": 5, "payload": secret})]}
    key, value, headers = compose_request("r1", tree)
    rejected = check_request(value, key, headers, registry, KafkaConnection())
    assert isinstance(rejected, Rejection)
    assert "steps[0].params.log: Input should be a valid string" in rejected.reason
    assert secret not in rejected.reason
    # Nested parameters of other targets: the signature cannot vouch for them.
    assert rejected.copy is None
    fine = {"kind": "chain", "steps": [step("collect", params={"log": "x"})]}
    key, value, headers = compose_request("r2", fine)
    accepted = check_request(value, key, headers, registry, KafkaConnection())
    assert isinstance(accepted, Dispatch) and accepted.copy is None

"""The listener's Prometheus metrics, its health endpoint, and the README's alert rules.

One listener serves ``/metrics`` on a free port while it handles one message of each
kind on a single partition; the counters read over HTTP must match what was sent,
and a request for a registered workflow without a deployment is rejected without
holding the partition back.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from blocks import KafkaConnection
from flows.listener.dead_letters import REASON_HEADER
from flows.listener.loop import RequestListener
from flows.listener.metrics import judge_health
from tests.fixtures.kafka import (
    PROJECT_ROOT,
    create_topic,
    produce,
    read_topic,
    request_bytes,
    running_listener,
    statuses_of,
    test_registry,
    wait_for_committed,
    wait_for_runs,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> tuple[str, Samples]:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def health(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_what_was_sent_and_an_undeployed_workflow_is_rejected_in_line(
    kafka: KafkaConnection, kafka_test_deployments: list[str], captured_logs
) -> None:
    await create_topic(kafka, kafka.requests_topic, partitions=1)  # one partition: one line
    p = f"m{uuid.uuid4().hex[:6]}"
    first, unknown, undeployed, after = (f"{p}-{n}" for n in ("1", "unknown", "nd", "2"))
    await produce(
        kafka,
        [
            (first.encode(), request_bytes(first), []),
            (first.encode(), request_bytes(first), []),  # a redelivery: a duplicate
            (b"junk", b"{not json", []),
            (unknown.encode(), request_bytes(unknown, "no-such-workflow"), []),
            (undeployed.encode(), request_bytes(undeployed, "undeployed"), []),
            (after.encode(), request_bytes(after), []),  # behind the undeployed one
        ],
    )
    async with running_listener(kafka, metrics_port=0) as listener:
        await wait_for_runs(after, 1)
        url = listener.metrics_url
        assert url is not None and f"metrics at {url}/metrics" in captured_logs.text
        assert await wait_for_committed(kafka, 6) == 6
        text, samples = scrape(url)
        code, body = health(url)
        counts = listener.counts
        # Two listeners in one process share nothing.
        other = RequestListener(kafka, test_registry)
        assert other.metrics.registry is not listener.metrics.registry
        assert other.counts.received == 0
    prefix = "magicflow_listener_"
    assert value(samples, f"{prefix}requests_received_total") == 6
    assert value(samples, f"{prefix}requests_dispatched_total") == 2
    assert value(samples, f"{prefix}requests_duplicate_total") == 1
    assert value(samples, f"{prefix}requests_rejected_total") == 2  # junk has no id to answer
    dead = f"{prefix}requests_dead_lettered_total"
    by_reason = {labels[0][1]: n for (name, labels), n in samples.items() if name == dead and n}
    assert by_reason == {"not_json": 1, "unknown_workflow": 1, "not_deployed": 1}
    assert value(samples, f"{prefix}dispatch_latency_seconds_count") == 2
    assert value(samples, f"{prefix}dispatch_latency_seconds_sum") > 0
    assert value(samples, f"{prefix}requests_in_flight") == 0
    assert value(samples, f"{prefix}assigned_partitions") == 1
    assert value(samples, f"{prefix}consumer_lag", topic=kafka.requests_topic, partition="0") == 0
    assert value(samples, f"{prefix}last_dispatch_timestamp_seconds") > 0
    # A loaded machine's SQLite may answer 503 once or twice: each failure was retried.
    errors = value(samples, f"{prefix}errors_total", system="prefect")
    assert errors == value(samples, f"{prefix}retries_total", system="prefect")
    assert "# HELP magicflow_listener_requests_received_total" in text
    # The counts the listener returns are the same counters, not a second tally.
    assert (counts.received, counts.dispatched, counts.duplicates, counts.rejected) == (6, 2, 1, 3)
    assert code == 200 and body["status"] == "ok" and body["partitions"] == 1
    assert body["last_poll_age_seconds"] < 30
    # Stopped: the port is closed.
    assert listener.metrics_url is None
    with pytest.raises(OSError):
        health(url)

    # One warning per registered workflow without a deployment, at start.
    warning = "Workflow 'undeployed' is registered but not deployed"
    assert captured_logs.text.count(warning) == 1
    assert "prefect deploy --name not-deployed" in captured_logs.text
    statuses = statuses_of(
        await read_topic(kafka, kafka.status_topic, lambda r: len(statuses_of(r)) >= 6)
    )
    (rejected,) = [s for s in statuses if s["request_id"] == undeployed]
    assert rejected["state"] == "rejected"
    assert rejected["reason"] == (
        "not deployed: workflow undeployed has no deployment "
        "magicflow-test-greet/not-deployed; deploy it with `prefect deploy --name not-deployed`"
    )
    assert [s["state"] for s in statuses if s["request_id"] == after] == ["accepted", "scheduled"]
    letters = await read_topic(kafka, kafka.dead_letter_topic, lambda r: len(r) >= 3)
    reasons = [dict(r.headers)[REASON_HEADER].decode() for r in letters]
    assert len(letters) == 3
    assert [r for r in reasons if r.startswith("not deployed")] == [rejected["reason"]]


def test_health_needs_partitions_and_a_recent_poll() -> None:
    assert judge_health(2, 100.0, paused=True, in_flight=3, now=110.0).healthy
    assert judge_health(0, 100.0, False, 0, now=110.0).reason == "no partitions assigned"
    stale = judge_health(2, 100.0, False, 0, max_poll_age=30, now=131.0)
    assert not stale.healthy and stale.reason == "last poll 31 s ago (limit 30 s)"
    assert judge_health(2, None, False, 0).reason == "not polled yet"
    assert json.loads(stale.as_json())["status"] == "unhealthy"


def readme_alert_rules() -> dict[str, Any]:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("### Metrics and health", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    (rules,) = [yaml.safe_load(block) for block in blocks if "groups:" in block]
    return rules


async def test_the_readme_alert_rules_parse_and_name_only_exposed_metrics(
    kafka: KafkaConnection,
) -> None:
    rules = readme_alert_rules()
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(exprs) >= 3
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"]
    listener = RequestListener(kafka, test_registry)  # every family, never started
    exposed = {
        sample.name
        for family in text_string_to_metric_families(
            generate_latest(listener.metrics.registry).decode()
        )
        for sample in family.samples
    } | {family.name for family in listener.metrics.registry.collect()}
    referenced = {name for expr in exprs for name in re.findall(r"magicflow_\w+", expr)}
    assert referenced and referenced <= exposed, referenced - exposed
    text = " ".join(exprs)
    for needed in ("consumer_lag", "dead_lettered", "dispatched"):
        assert needed in text

"""Scale-out the way production grows: Prefect on PostgreSQL, two workers, two listener replicas.

A private PostgreSQL cluster (the machine's PostgreSQL 15, as ``bench/dispatch.py``
starts it) backs a Prefect server of this test's own. Two ``prefect worker start``
processes serve the ``magicflow`` process pool, and two ``python -m
flows.kafka_trigger`` replicas share one consumer group, each with its metrics
endpoint on a free port. 100 requests (and a few bad messages) later:

- the Prefect API holds exactly one completed run per request, no more;
- each worker's own log names the runs it submitted: both did some, none twice;
- each listener's ``/metrics`` says what it did: both dispatched some, and the sums
  are exactly what was sent (received, dispatched, dead-lettered by reason), with
  the dead letters also read back from the topic.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.callables import parameter_schema
from prometheus_client.parser import text_string_to_metric_families

from blocks import KafkaConnection
from deployments.local_servers import BackendProcess, postgres, prefect_server
from magicflow.messages import REQUEST_TAG_PREFIX
from tests.deployments.scale_flows import SCALE_DEPLOYMENT, scale_probe
from tests.fixtures.kafka import (
    create_topic,
    produce,
    read_topic,
    request_bytes,
    subprocess_env,
    wait_for_committed,
)
from tests.fixtures.waiting import wait_until

REQUESTS = 100
NOT_JSON = 3
UNKNOWN_WORKFLOW = 2
PARTITIONS = 4
POOL = "magicflow"
KAFKA_BLOCK = "scale-kafka"
REGISTRY = "tests.deployments.scale_flows:scale_registry"
SUBMITTED = re.compile(r"submitting flow run '([0-9a-f-]{36})'")
PREFECT = [sys.executable, "-m", "prefect"]
LISTENER = [sys.executable, "-m", "flows.kafka_trigger", "--kafka-block", KAFKA_BLOCK]
LISTENER += ["--registry", REGISTRY]
ABORTED = re.compile(r"Aborted submission of flow run '([0-9a-f-]{36})'")
METRICS_AT = re.compile(r"metrics at (http://127\.0\.0\.1:\d+)/metrics")


def spawn(name: str, argv: list[str], workdir: Path, env: dict[str, str]) -> BackendProcess:
    """Starts a process without waiting (readiness is polled for all of them at once)."""
    own_dir = workdir / name
    own_dir.mkdir()
    return BackendProcess(name, argv, lambda: True, workdir, env=env, cwd=own_dir)


def log_of(process: BackendProcess) -> str:
    return process.log_path.read_text(errors="replace")


def ready(process: BackendProcess, marker: str) -> bool:
    assert process.process.poll() is None, f"{process.name} exited:\n{process.log_tail()}"
    return marker in log_of(process)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a listener's /metrics: (name, labels) -> value."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def health(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict[Any, float], name: str) -> float:
    return sum(v for (sample, _), v in samples.items() if sample == name)


async def runs_of(deployment_id: UUID) -> list[FlowRun]:
    runs: list[FlowRun] = []
    async with get_client() as client:
        while True:
            page = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id])
                ),
                limit=200,
                offset=len(runs),
            )
            runs.extend(page)
            if len(page) < 200:
                return runs


async def deploy_scale_probe() -> UUID:
    async with get_client() as client:
        await client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        flow_id = await client.create_flow_from_name(scale_probe.name)
        return await client.create_deployment(
            flow_id=flow_id,
            name=SCALE_DEPLOYMENT,
            entrypoint="tests.deployments.scale_flows.scale_probe",
            work_pool_name=POOL,
            # The engine started directly: Prefect's default for a process pool adds a
            # workspace supervisor, a second Python process per run (the slow part here).
            job_variables={"command": f"{sys.executable} -m prefect.engine"},
            parameter_openapi_schema=parameter_schema(scale_probe).model_dump_for_openapi(),
        )


@pytest.mark.timeout(2400)
async def test_two_workers_and_two_listeners_on_postgresql_share_100_requests_exactly_once(
    kafka: KafkaConnection,
) -> None:
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="magicflow-scale-"))
    processes: list[BackendProcess] = []
    try:
        with postgres(workdir) as database, prefect_server(workdir, database) as api:
            print(f"\nPostgreSQL and Prefect up in {time.monotonic() - began:.0f} s")
            with temporary_settings({PREFECT_API_URL: api}):
                await run_scale_out(kafka, api, workdir, processes)
            for process in processes:
                process.stop(timeout=20)
    finally:
        for process in processes:
            process.stop(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"scale-out test: {time.monotonic() - began:.0f} s in all")


async def run_scale_out(
    kafka: KafkaConnection, api: str, workdir: Path, processes: list[BackendProcess]
) -> None:
    deployment_id = await deploy_scale_probe()
    await kafka.asave(KAFKA_BLOCK, overwrite=True)
    await create_topic(kafka, kafka.requests_topic, partitions=PARTITIONS)
    env = {**subprocess_env(), "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    workers = [
        spawn(
            f"worker-{n}",
            [*PREFECT, "worker", "start", "--pool", POOL, "--name", f"w{n}", "--limit", "3"],
            workdir,
            env,
        )
        for n in (1, 2)
    ]
    listeners = [
        spawn(
            f"listener-{n}",
            [*LISTENER, "--metrics-port", "0", "--no-crash-follower"],
            workdir,
            env,
        )
        for n in (1, 2)
    ]
    processes.extend(workers + listeners)
    started = time.monotonic()
    wait_until(
        lambda: (
            all(ready(w, "started") for w in workers)
            and all(ready(x, "Kafka listener consuming") for x in listeners)
        ),
        300,
        "two workers and two listeners started",
    )
    urls = [METRICS_AT.search(log_of(listener)).group(1) for listener in listeners]  # type: ignore[union-attr]
    # Both replicas in the group, two partitions each: what /healthz and the metrics say.
    wait_until(
        lambda: all(
            health(url)[0] == 200
            and value(scrape(url), "magicflow_listener_assigned_partitions") == PARTITIONS / 2
            for url in urls
        ),
        120,
        "both listeners healthy with two partitions each",
    )
    print(f"workers and listeners ready in {time.monotonic() - started:.0f} s")

    prefix = f"scale-{uuid.uuid4().hex[:6]}"
    ids = [f"{prefix}-{i:03d}" for i in range(REQUESTS)]
    messages = [
        (rid.encode(), request_bytes(rid, "scale-probe", parameters={"index": i}), [])
        for i, rid in enumerate(ids)
    ]
    for n in range(NOT_JSON):
        messages.insert(20 * n + 5, (f"{prefix}-junk-{n}".encode(), b"{not json", []))
    for n in range(UNKNOWN_WORKFLOW):
        rid = f"{prefix}-unknown-{n}"
        messages.insert(30 * n + 10, (rid.encode(), request_bytes(rid, "no-such-workflow"), []))
    sent_at = time.monotonic()
    await produce(kafka, messages)

    scrapes = 0

    async def all_final() -> list[FlowRun] | None:
        nonlocal scrapes
        for url in urls:  # the endpoint answers while the work goes on
            await asyncio.to_thread(scrape, url)
            scrapes += 1
        runs = await runs_of(deployment_id)
        done = [r for r in runs if r.state is not None and r.state.is_final()]
        return runs if len(runs) >= REQUESTS and len(done) == len(runs) else None

    deadline = time.monotonic() + 1800  # a generous bound for a loaded 2-core machine
    while (runs := await all_final()) is None:
        assert all(w.process.poll() is None for w in workers + listeners), "a process died"
        assert time.monotonic() < deadline, (
            f"100 runs not final in 1800 s: {len(await runs_of(deployment_id))} runs\n"
            + "\n".join(p.log_tail(20) for p in workers + listeners)
        )
        await asyncio.sleep(1)
    print(f"{REQUESTS} requests to {len(runs)} final runs in {time.monotonic() - sent_at:.0f} s")
    assert await wait_for_committed(kafka, len(messages)) == len(messages)

    # Exactly one completed run per request, read from the Prefect API.
    assert len(runs) == REQUESTS
    request_ids = sorted(
        tag.removeprefix(REQUEST_TAG_PREFIX)
        for run in runs
        for tag in run.tags
        if tag.startswith(REQUEST_TAG_PREFIX)
    )
    assert request_ids == ids
    assert {run.state.type for run in runs if run.state} == {StateType.COMPLETED}

    # Each worker's own log: both ran some, none ran twice. Both workers may pick up the
    # same scheduled run; the server lets one through and aborts the other's submission.
    submitted = [
        set(SUBMITTED.findall(log_of(worker))) - set(ABORTED.findall(log_of(worker)))
        for worker in workers
    ]
    aborted = sum(len(ABORTED.findall(log_of(worker))) for worker in workers)
    assert all(submitted), [len(s) for s in submitted]
    assert not submitted[0] & submitted[1]
    assert submitted[0] | submitted[1] == {str(run.id) for run in runs}
    print(f"runs per worker: {[len(s) for s in submitted]} ({aborted} races aborted by Prefect)")

    # Each listener's metrics: both did part of the work; together, exactly what was sent.
    def settled() -> list[dict[Any, float]] | None:
        samples = [scrape(url) for url in urls]
        lag = sum(total(s, "magicflow_listener_consumer_lag") for s in samples)
        return samples if lag == 0 else None

    samples = wait_until(settled, 60, "consumer lag back to 0 on every partition")
    per_listener = {
        name: [value(s, f"magicflow_listener_requests_{name}_total") for s in samples]
        for name in ("received", "dispatched", "duplicate", "rejected")
    }
    print(f"per listener: {per_listener}")
    assert all(n > 0 for n in per_listener["dispatched"])
    assert sum(per_listener["received"]) == len(messages)
    assert sum(per_listener["dispatched"]) == REQUESTS
    assert sum(per_listener["duplicate"]) == 0
    assert sum(per_listener["rejected"]) == UNKNOWN_WORKFLOW  # not-JSON ones have no id
    dead = "magicflow_listener_requests_dead_lettered_total"
    assert sum(value(s, dead, reason="not_json") for s in samples) == NOT_JSON
    assert sum(value(s, dead, reason="unknown_workflow") for s in samples) == UNKNOWN_WORKFLOW
    assert sum(total(s, dead) for s in samples) == NOT_JSON + UNKNOWN_WORKFLOW
    latency = [value(s, "magicflow_listener_dispatch_latency_seconds_count") for s in samples]
    assert latency == per_listener["dispatched"]
    # Failed Prefect calls (a loaded machine) were all retried, none refused a request.
    assert sum(total(s, "magicflow_listener_errors_total") for s in samples) == sum(
        total(s, "magicflow_listener_retries_total") for s in samples
    )
    assert scrapes >= 2 * 2
    for url in urls:
        status, body = health(url)
        assert (status, body["status"], body["partitions"]) == (200, "ok", PARTITIONS // 2)
    # The dead letters themselves, read from the topic with an independent consumer.
    letters = await read_topic(
        kafka, kafka.dead_letter_topic, lambda r: len(r) >= NOT_JSON + UNKNOWN_WORKFLOW
    )
    assert len(letters) == NOT_JSON + UNKNOWN_WORKFLOW

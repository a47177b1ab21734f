"""How long ``magicflow up`` takes, and what Kafka adds on the way to a running flow.

In one run, on this machine:

(a) ``magicflow up --no-sample`` on a new state folder until it returns (the stack is
    ready: every server answers, deployments are deployed, the worker and the listener
    run), against ``prefect server start`` alone on a new SQLite database until
    ``/api/health`` answers. Both start from nothing (migrations included).
(b) With that stack: a request published to Kafka (the clock starts before the
    publish, on a producer started once) until its flow run is Running in the process
    worker, against Prefect's own ``run_deployment`` (the clock starts before the
    call) until Running with the same worker, one at a time, alternating, each run
    waited for to its end before the next. "Running" is the timestamp of the run's
    RUNNING state in Prefect's state history. The workflow is a dry run of
    ``tenant-provisioning`` with a spec naming no system (every system ``skipped``),
    so runs are short and nothing but the dispatch path is measured.

Prints one JSON line last:
``{"up_s", "server_only_s", "up_ratio", "request_to_running_p50_s",
"prefect_to_running_p50_s", "added_p50_s", "request_to_created_p50_s",
"prefect_to_created_p50_s", "added_to_created_p50_s"}`` (the last three: up to the
run's creation, before the worker's part, which both paths share). Targets:
``up_ratio <= 2.0``, ``added_p50_s <= 0.2``.

Run: ``python bench/stack.py [--requests 30]``.

``--sqlite-burst N`` measures instead what the listener's in-flight limit does to
Prefect on SQLite: on one stack (``magicflow up --no-sample``, SQLite), the listener
is restarted with the stack's limit (2), N requests are published at once, and once
every run is finished (or after `BURST_SECONDS`) it is restarted with prefect.yaml's
``max_in_flight`` (16, the listener's limit before the stack lowered it) for another
burst of N. For each limit it prints the seconds from the first publish until every run
was Running, the longest gap with no run starting (from the first publish), how many
runs never ran, and the ``database is locked`` lines (and the listener's retried
Prefect calls) added to the server's and the worker's logs (the worker's log holds
its flow runs' output). One JSON line last: ``{"bursts": [{"max_in_flight", ...}, ...]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from deployments.local_servers import BackendProcess, free_port, http_ready  # noqa: E402

DEPLOYMENT = "provision-tenant/tenant-provisioning"
LISTENER_DEPLOYMENT = "kafka-trigger/listener"
LOCKED = "database is locked"
BURST_SECONDS = 600.0
"""How long a burst may take; what is not done by then is reported as such."""
RETRIED = "failed (PrefectHTTPStatusError); retrying"
"""The listener's line for a Prefect call it retries (a 5xx while SQLite is locked)."""


def server_only(workdir: Path) -> float:
    port = free_port()
    began = time.monotonic()
    server = BackendProcess(
        "prefect-server-only",
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            f"{port}",
        ],
        http_ready(f"http://127.0.0.1:{port}/api/health"),
        workdir,
        env={
            "PREFECT_HOME": str(workdir / "server-only-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{workdir}/only.db",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        },
        timeout=600,
    )
    elapsed = time.monotonic() - began
    server.stop()
    return elapsed


def magicflow(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.run(
        [sys.executable, "-m", "magicflow.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spec(name: str) -> dict[str, object]:
    return {"spec": {"name": name, "environment": "bench", "owners": ["bench@example.com"]}}


async def created_and_running_at(flow_run_id: str) -> tuple[float, float]:
    """Epoch seconds of the run's creation and of its RUNNING state (waited for)."""
    from prefect import get_client

    async with get_client() as client:
        flow_run = await client.read_flow_run(uuid.UUID(str(flow_run_id)))
        assert flow_run.created is not None
        created = flow_run.created.timestamp()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            states = await client.read_flow_run_states(uuid.UUID(str(flow_run_id)))
            for state in states:
                if state.type.value == "RUNNING":
                    return created, datetime.fromisoformat(str(state.timestamp)).timestamp()
            await asyncio.sleep(0.2)
    raise TimeoutError(f"flow run {flow_run_id} never ran")


async def until_final(flow_run_id: str) -> None:
    """Waits until the run is over, so that the next request finds the worker idle."""
    from prefect import get_client

    async with get_client() as client:
        await until(
            lambda: client.read_flow_run(uuid.UUID(flow_run_id)),
            lambda run: run.state is not None and run.state.is_final(),
            seconds=300,
        )


async def run_of_request(request_id: str) -> str:
    """The id of the flow run the listener created for a request (found by its tag)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from magicflow.messages import REQUEST_TAG_PREFIX

    wanted = FlowRunFilter(tags=FlowRunFilterTags(all_=[f"{REQUEST_TAG_PREFIX}{request_id}"]))
    async with get_client() as client:
        runs = await until(lambda: client.read_flow_runs(flow_run_filter=wanted), bool, 300)
    return str(runs[0].id)


async def via_kafka(kafka: Any, producer: Any) -> tuple[float, float]:
    """From the request's publish until its run exists, and until it is Running."""
    from magicflow.messages import WorkflowRequest

    request = WorkflowRequest(
        id=f"bench-{uuid.uuid4().hex}",
        workflow="tenant-provisioning",
        parameters=spec(f"b-{uuid.uuid4().hex[:8]}"),
        dry_run=True,
        requested_by="bench",
    )
    began = time.time()
    await producer.send_and_wait(
        kafka.requests_topic, request.model_dump_json().encode(), key=request.id.encode()
    )
    flow_run_id = await run_of_request(request.id)
    created, running = await created_and_running_at(flow_run_id)
    await until_final(flow_run_id)
    return created - began, running - began


async def via_prefect() -> tuple[float, float]:
    """From ``run_deployment``'s call until its run exists, and until it is Running."""
    from prefect.deployments import run_deployment

    began = time.time()
    flow_run = await run_deployment(  # type: ignore[misc]
        DEPLOYMENT, parameters={**spec(f"p-{uuid.uuid4().hex[:8]}"), "dry_run": True}, timeout=0
    )
    created, running = await created_and_running_at(str(flow_run.id))
    await until_final(str(flow_run.id))
    return created - began, running - began


async def request_paths(
    count: int,
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """``count`` pairs, one at a time and alternating: Kafka, then ``run_deployment``."""
    from blocks.kafka import KafkaConnection

    kafka = await KafkaConnection.aload("magicflow")
    producer = kafka.get_producer()
    await producer.start()
    kafka_s: list[tuple[float, float]] = []
    prefect_s: list[tuple[float, float]] = []
    try:
        for index in range(count):
            kafka_s.append(await via_kafka(kafka, producer))
            prefect_s.append(await via_prefect())
            (kafka_created, kafka_running), (prefect_created, prefect_running) = (
                kafka_s[-1],
                prefect_s[-1],
            )
            print(
                f"{index + 1}: to created / Running: kafka {kafka_created:.2f} / "
                f"{kafka_running:.2f} s, prefect {prefect_created:.2f} / {prefect_running:.2f} s",
                flush=True,
            )
    finally:
        await producer.stop()
    return kafka_s, prefect_s


def load_stack_env(state_dir: Path) -> None:
    for line in (state_dir / "env").read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ[key] = value


async def restart_listener(state_dir: Path, max_in_flight: int) -> None:
    """Stops the stack's listener and runs the ``listener`` deployment with another limit.

    The first time, the stack's listener process is stopped by PID; later, the
    deployment run started here is cancelled (the worker stops it).
    """
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelling

    from deployments.local_servers import free_port, http_ready
    from deployments.local_stack import Stack, stop_service

    stack = Stack.load(state_dir)
    assert stack is not None and stack.listener_flow_run_id
    process = next((s for s in stack.services if s.name == "listener"), None)
    if process is not None:
        assert stop_service(process), "the stack's listener outlived SIGKILL"
        stack.services.remove(process)
    else:
        async with get_client() as client:
            await client.set_flow_run_state(stack.listener_flow_run_id, Cancelling(), force=True)
            await until(
                lambda: client.read_flow_run(uuid.UUID(stack.listener_flow_run_id or "")),
                lambda run: run.state is not None and run.state.is_final(),
            )
    metrics_port = free_port()
    flow_run = await run_deployment(  # type: ignore[misc]
        LISTENER_DEPLOYMENT,
        parameters={
            "max_in_flight": max_in_flight,
            "metrics_port": metrics_port,
            "follow_crashes": True,
        },
        timeout=0,
    )
    healthy = http_ready(f"http://127.0.0.1:{metrics_port}/healthz")

    async def serving() -> bool:
        return healthy()

    await until(serving, bool)
    stack.listener_flow_run_id, stack.listener_metrics_port = str(flow_run.id), metrics_port
    stack.save()


async def until(read: Any, done: Any, seconds: float = 600, give_up: bool = False) -> Any:
    """Polls ``read()`` until ``done(value)``; the value, or TimeoutError after ``seconds``.

    With ``give_up``, the last value read is returned after ``seconds`` instead.
    """
    deadline, value = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            value = await read()
        except Exception as error:  # an overloaded server times out: keep polling
            print(f"poll failed: {type(error).__name__}", flush=True)
        else:
            if done(value):
                return value
        await asyncio.sleep(0.5)
    if give_up and value is not None:
        return value
    raise TimeoutError(f"not done after {seconds:g}s")


def log_sizes(logs: list[Path]) -> dict[Path, int]:
    return {log: log.stat().st_size for log in logs}


def lines_since(sizes: dict[Path, int], needle: str) -> int:
    """Lines holding ``needle`` that the logs got since their ``sizes``."""
    count = 0
    for log, size in sizes.items():
        with log.open("rb") as handle:
            handle.seek(size)
            lines = handle.read().decode(errors="replace").splitlines()
            count += sum(1 for line in lines if needle in line)
    return count


async def burst(state_dir: Path, count: int, max_in_flight: int) -> dict[str, object]:
    """Publishes ``count`` requests at once; measures how their runs start."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterTags,
    )

    from blocks.kafka import KafkaConnection
    from magicflow.messages import WorkflowRequest

    await restart_listener(state_dir, max_in_flight)
    logs = [state_dir / "logs" / "prefect-server.log", state_dir / "logs" / "worker.log"]
    sizes = log_sizes(logs)
    kafka = await KafkaConnection.aload("magicflow")
    tag = f"burst-{uuid.uuid4().hex[:6]}"
    requests = [
        WorkflowRequest(
            id=f"{tag}-{index}",
            workflow="tenant-provisioning",
            parameters=spec(f"{tag}-{index}"),
            dry_run=True,
            requested_by="bench",
        )
        for index in range(count)
    ]
    wanted = {f"magicflow-request:{request.id}" for request in requests}
    producer = kafka.get_producer()
    await producer.start()
    try:
        first_publish = time.time()
        for request in requests:
            await producer.send(
                kafka.requests_topic, request.model_dump_json().encode(), key=request.id.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(DEPLOYMENT)

        async def ours() -> list[Any]:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["magicflow"])),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                sort="EXPECTED_START_TIME_DESC",
                limit=count + 20,
            )
            return [run for run in runs if wanted & set(run.tags)]

        def all_final(runs: list[Any]) -> bool:
            return len(runs) == count and all(r.state and r.state.is_final() for r in runs)

        runs = await until(ours, all_final, seconds=BURST_SECONDS, give_up=True)
    starts = sorted(run.start_time.timestamp() for run in runs if run.start_time is not None)
    # Runs that never started leave a gap up to the end of the wait.
    moments = [first_publish, *starts, *([time.time()] if len(starts) < count else [])]
    return {
        "max_in_flight": max_in_flight,
        "requests": count,
        "runs_created": len(runs),
        "all_running_s": round(starts[-1] - first_publish, 1) if starts else None,
        "longest_gap_s": round(max(b - a for a, b in itertools.pairwise(moments)), 1),
        "never_ran": count - len(starts),
        "not_completed": count - sum(1 for run in runs if run.state.is_completed()),
        "database_locked_lines": lines_since(sizes, LOCKED),
        "listener_retry_lines": lines_since(sizes, RETRIED),
    }


def sqlite_burst(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp:
        state_dir = Path(tmp) / "state"
        up = magicflow("up", "--state-dir", str(state_dir), "--prefect-port", str(free_port()),
                       "--no-sample")  # fmt: skip
        print(up.stdout, flush=True)
        if up.returncode != 0:
            raise SystemExit(f"magicflow up failed: {up.stderr}")
        try:
            load_stack_env(state_dir)
            from deployments.local_stack import POSTGRES_MAX_IN_FLIGHT, SQLITE_MAX_IN_FLIGHT

            results = []
            for max_in_flight in (SQLITE_MAX_IN_FLIGHT, POSTGRES_MAX_IN_FLIGHT):
                results.append(asyncio.run(burst(state_dir, count, max_in_flight)))
                print(json.dumps(results[-1]), flush=True)
        finally:
            magicflow("down", "--state-dir", str(state_dir))
    print(json.dumps({"bursts": results}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=30, help="requests per path")
    parser.add_argument(
        "--sqlite-burst",
        type=int,
        default=0,
        metavar="N",
        help="instead: publish N requests at once to a stack on SQLite, with the old and "
        "the stack's listener in-flight limit",
    )
    args = parser.parse_args()
    if args.sqlite_burst:
        sqlite_burst(args.sqlite_burst)
        return
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
        workdir = Path(tmp)
        server_s = server_only(workdir)
        print(f"prefect server start alone: {server_s:.1f} s", flush=True)
        state_dir, port = workdir / "state", free_port()
        began = time.monotonic()
        up = magicflow("up", "--state-dir", str(state_dir), "--prefect-port", str(port),
                       "--no-sample")  # fmt: skip
        up_s = time.monotonic() - began
        print(up.stdout, flush=True)
        if up.returncode != 0:
            raise SystemExit(f"magicflow up failed: {up.stderr}")
        try:
            load_stack_env(state_dir)
            kafka, prefect = asyncio.run(request_paths(args.requests))
        finally:
            magicflow("down", "--state-dir", str(state_dir))
    kafka_p50 = statistics.median(running for _, running in kafka)
    prefect_p50 = statistics.median(running for _, running in prefect)
    kafka_created = statistics.median(created for created, _ in kafka)
    prefect_created = statistics.median(created for created, _ in prefect)
    print(
        json.dumps(
            {
                "up_s": round(up_s, 1),
                "server_only_s": round(server_s, 1),
                "up_ratio": round(up_s / server_s, 2),
                "request_to_running_p50_s": round(kafka_p50, 3),
                "prefect_to_running_p50_s": round(prefect_p50, 3),
                "added_p50_s": round(kafka_p50 - prefect_p50, 3),
                # Up to the run's creation only: after it both paths are the same worker's,
                # whose 1 s poll and process start make Running seconds noisier.
                "request_to_created_p50_s": round(kafka_created, 3),
                "prefect_to_created_p50_s": round(prefect_created, 3),
                "added_to_created_p50_s": round(kafka_created - prefect_created, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

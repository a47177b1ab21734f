"""Dispatch benchmark: the Kafka request listener against Prefect's own paths (issue 4).

Starts everything it needs on 127.0.0.1 (a private PostgreSQL cluster, a Prefect
server on it, a Tansu broker), then, in one run against one server:

1. Throughput: N requests produced to the requests topic and dispatched by a
   running listener (`flows.listener.loop.RequestListener`, ``max_in_flight=C``),
   versus N direct ``run_deployment(..., timeout=0, idempotency_key=...)`` calls
   with C at once. The two arms alternate in ``--rounds`` batches (ABBA...) so
   that load changes on a shared machine hit both alike; each arm's rate is its
   runs over its summed time (from producing a batch, or the first call, to the
   batch's last flow run).
2. Latency, one request at a time (the listener idle and waiting): from producing a
   request to the flow run's creation (its ``created`` time on the server), versus
   Prefect's own path: ``emit_event`` to the flow run created by a deployment event
   trigger.

Nothing executes the flow runs: the deployments have no worker, so the runs stay
scheduled and only dispatch is measured. The last line printed is one JSON object:
``{"n", "listener_runs_per_s", "direct_runs_per_s", "throughput_ratio", "p50_ms",
"p95_ms", "prefect_trigger_p50_ms", "latency_ratio"}``.

Usage (as root, which may run PostgreSQL as the ``postgres`` user)::

    .venv/bin/python bench/dispatch.py              # N=1000, C=8, 40 latency samples
    .venv/bin/python bench/dispatch.py --n 100 --samples 10   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployments.local_servers import (
    BackendProcess,
    free_port,
    postgres,
    prefect_server,
    tansu_broker_argv,
    tcp_ready,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FLOW_NAME = "bench-noop"
LISTENER_DEPLOYMENT = f"{FLOW_NAME}/bench"
TRIGGER_DEPLOYMENT_NAME = "bench-trigger"
TRIGGER_EVENT = "magicflow.bench.request"


# ---------------------------------------------------------------- processes
# Servers are started and stopped by `deployments.local_servers` (as in the tests).


@contextmanager
def tansu(workdir: Path) -> Iterator[str]:
    port = free_port()
    broker = BackendProcess("tansu", tansu_broker_argv(port), tcp_ready(port), workdir)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        broker.stop()


# ---------------------------------------------------------------- measurements


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def setup_deployments(kafka_servers: str) -> Any:
    """Registers the no-op flow's two deployments and saves the Kafka block; returns it."""
    from prefect import flow
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from blocks.kafka import KafkaConnection

    @flow(name=FLOW_NAME)
    def bench_noop(i: int = 0) -> None:
        """A flow whose runs are only created, never executed."""

    # Deployments with no work pool and no worker: runs are created and stay scheduled.
    listener_deployment = await bench_noop.ato_deployment(name="bench")
    await listener_deployment.aapply()
    trigger_deployment = await bench_noop.ato_deployment(
        name=TRIGGER_DEPLOYMENT_NAME,
        triggers=[
            DeploymentEventTrigger(
                expect={TRIGGER_EVENT},
                match={"prefect.resource.id": "magicflow.bench.*"},
                parameters={"i": 1},
            )
        ],
    )
    await trigger_deployment.aapply()

    suffix = uuid.uuid4().hex[:8]
    kafka = KafkaConnection(
        bootstrap_servers=kafka_servers,
        requests_topic=f"bench.requests.{suffix}",
        status_topic=f"bench.status.{suffix}",
        dead_letter_topic=f"bench.dlq.{suffix}",
        consumer_group=f"bench-{suffix}",
    )
    return bench_noop, kafka


def request_bytes(request_id: str, i: int) -> bytes:
    return json.dumps(
        {
            "id": request_id,
            "workflow": FLOW_NAME,
            "parameters": {"i": i},
            "requested_by": "bench:dispatch",
        }
    ).encode()


async def produce(kafka: Any, requests: list[tuple[str, int]]) -> None:
    producer = kafka.get_producer(linger_ms=5)
    await producer.start()
    try:
        sends = [
            await producer.send(kafka.requests_topic, request_bytes(rid, i), key=rid.encode())
            for rid, i in requests
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def direct_batch(client: Any, n: int, concurrency: int) -> float:
    """Seconds for n direct ``arun_deployment(timeout=0)`` calls, `concurrency` at once."""
    from prefect.deployments import arun_deployment

    from magicflow.messages import REQUEST_TAG_PREFIX

    semaphore = asyncio.Semaphore(concurrency)

    async def dispatch(i: int) -> None:
        request_id = f"direct-{uuid.uuid4().hex}"
        async with semaphore:
            await arun_deployment(
                LISTENER_DEPLOYMENT,
                client=client,
                parameters={"i": i},
                flow_run_name=f"{FLOW_NAME}-{request_id}",
                timeout=0,
                tags=[REQUEST_TAG_PREFIX + request_id, "magicflow"],
                idempotency_key=request_id,
                as_subflow=False,
            )

    started = time.perf_counter()
    await asyncio.gather(*(dispatch(i) for i in range(n)))
    return time.perf_counter() - started


async def listener_batch(listener: Any, task: asyncio.Task[Any], kafka: Any, n: int) -> float:
    """Seconds from producing n requests to the running listener's n-th flow run."""
    target = listener.counts.dispatched + n
    started = time.perf_counter()
    await produce(kafka, [(f"listener-{uuid.uuid4().hex}", i) for i in range(n)])
    while listener.counts.dispatched < target:
        if task.done():
            raise RuntimeError(f"listener stopped early: {task.result()}")
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    if listener.counts.rejected:
        raise RuntimeError(f"{listener.counts.rejected} benchmark requests were rejected")
    return elapsed


async def throughputs(
    listener: Any, task: asyncio.Task[Any], kafka: Any, n: int, concurrency: int, rounds: int
) -> tuple[float, float]:
    """Runs per second of (listener, direct), alternating the arms in rounds (ABBA...)
    so that load changes on a shared machine hit both alike."""
    from prefect import get_client

    sizes = [n // rounds + (1 if r < n % rounds else 0) for r in range(rounds)]
    spent = {"listener": 0.0, "direct": 0.0}
    cpu = {"listener": 0.0, "direct": 0.0}  # this process's CPU: what each arm costs a client
    async with get_client() as client:
        await direct_batch(client, min(20, n), concurrency)  # warm the client and server
        for r, size in enumerate(sizes):
            arms = ("direct", "listener") if r % 2 == 0 else ("listener", "direct")
            for arm in arms:
                cpu_before = time.process_time()
                if arm == "direct":
                    seconds = await direct_batch(client, size, concurrency)
                else:
                    seconds = await listener_batch(listener, task, kafka, size)
                spent[arm] += seconds
                cpu[arm] += time.process_time() - cpu_before
                log(f"  round {r + 1}/{rounds} {arm}: {size / seconds:.1f} runs/s")
    log(
        "  client CPU per run: "
        + ", ".join(f"{arm} {1000 * cpu[arm] / n:.1f} ms" for arm in ("listener", "direct"))
    )
    return n / spent["listener"], n / spent["direct"]


async def created_at(flow_run_id: Any) -> datetime:
    from prefect import get_client

    async with get_client() as client:
        run = await client.read_flow_run(flow_run_id)
    assert run.created is not None
    return run.created


async def listener_latencies(listener: Any, kafka: Any, samples: int) -> list[float]:
    """Produce one request, wait for its flow run; repeat. Milliseconds to creation."""
    from aiokafka import AIOKafkaConsumer

    from magicflow.messages import RunState, WorkflowStatus

    statuses = AIOKafkaConsumer(
        kafka.status_topic, group_id=None, auto_offset_reset="latest", **kafka.client_options()
    )
    producer = kafka.get_producer()
    await statuses.start()
    await producer.start()
    latencies: list[float] = []
    try:
        for i in range(samples):
            request_id = f"latency-{uuid.uuid4().hex}"
            produced = datetime.now(UTC)
            await producer.send_and_wait(
                kafka.requests_topic, request_bytes(request_id, i), key=request_id.encode()
            )
            flow_run_id = None
            while flow_run_id is None:
                record = await asyncio.wait_for(statuses.getone(), 60)
                status = WorkflowStatus.model_validate_json(record.value)
                if status.request_id == request_id and status.state is RunState.SCHEDULED:
                    flow_run_id = status.flow_run_id
            latencies.append((await created_at(flow_run_id) - produced).total_seconds() * 1000)
            await asyncio.sleep(0.1)  # one at a time, the listener idle in between
    finally:
        await producer.stop()
        await statuses.stop()
    return latencies


async def warm_up(listener: Any, kafka: Any) -> None:
    """Waits until the listener has joined its group and dispatched one request."""
    await produce(kafka, [(f"warmup-{uuid.uuid4().hex}", 0)])
    deadline = time.monotonic() + 60
    while listener.counts.dispatched < 1:
        if time.monotonic() > deadline:
            raise TimeoutError("the listener dispatched nothing within 60 s")
        await asyncio.sleep(0.01)


async def trigger_latencies(samples: int) -> list[float]:
    """emit_event, wait for the triggered flow run; repeat. Milliseconds to creation."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.events import emit_event

    deployment_filter = DeploymentFilter(name=DeploymentFilterName(any_=[TRIGGER_DEPLOYMENT_NAME]))
    latencies: list[float] = []
    async with get_client() as client:

        async def runs() -> list[Any]:
            return list(
                await client.read_flow_runs(
                    deployment_filter=deployment_filter, sort=FlowRunSort.EXPECTED_START_TIME_DESC
                )
            )

        # Automations are loaded by the triggers service after a short delay: wait for one run.
        emit_event(TRIGGER_EVENT, resource={"prefect.resource.id": "magicflow.bench.warmup"})
        deadline = time.monotonic() + 90
        while not await runs():
            if time.monotonic() > deadline:
                raise TimeoutError("the deployment trigger never fired")
            await asyncio.sleep(0.5)
            emit_event(TRIGGER_EVENT, resource={"prefect.resource.id": "magicflow.bench.warmup"})
        await asyncio.sleep(3)  # let late warm-up events land before counting
        for i in range(samples):
            seen = {run.id for run in await runs()}
            emitted = datetime.now(UTC)
            emit_event(TRIGGER_EVENT, resource={"prefect.resource.id": f"magicflow.bench.{i}"})
            new: list[Any] = []
            deadline = time.monotonic() + 60
            while not new:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"trigger sample {i} produced no flow run")
                await asyncio.sleep(0.02)
                new = [run for run in await runs() if run.id not in seen]
            latencies.append((min(run.created for run in new) - emitted).total_seconds() * 1000)
    return latencies


async def measure(args: argparse.Namespace, kafka_servers: str) -> dict[str, Any]:
    from flows.listener.loop import RequestListener
    from flows.registry import Registry

    bench_noop, kafka = await setup_deployments(kafka_servers)
    registry = Registry()
    registry.register(FLOW_NAME, bench_noop, deployment=LISTENER_DEPLOYMENT)

    consumer_options = (
        {"fetch_max_wait_ms": args.fetch_max_wait_ms} if args.fetch_max_wait_ms is not None else {}
    )
    listener = RequestListener(
        kafka, registry, max_in_flight=args.concurrency, consumer_options=consumer_options
    )
    task = asyncio.create_task(listener.run())
    try:
        await warm_up(listener, kafka)
        log(f"throughput: {args.n} runs per arm at concurrency {args.concurrency}")
        listener_rate, direct_rate = await throughputs(
            listener, task, kafka, args.n, args.concurrency, args.rounds
        )
        log(f"  listener {listener_rate:.1f} runs/s, direct {direct_rate:.1f} runs/s")
        log(f"latency: {args.samples} requests through the listener, one at a time")
        ours = await listener_latencies(listener, kafka, args.samples)
        log(f"  p50 {statistics.median(ours):.0f} ms")
    finally:
        listener.stop()
        await task
    log(f"latency: {args.samples} events through a deployment trigger, one at a time")
    theirs = await trigger_latencies(args.samples)
    log(f"  p50 {statistics.median(theirs):.0f} ms")
    p50 = statistics.median(ours)
    trigger_p50 = statistics.median(theirs)
    return {
        "n": args.n,
        "listener_runs_per_s": round(listener_rate, 2),
        "direct_runs_per_s": round(direct_rate, 2),
        "throughput_ratio": round(listener_rate / direct_rate, 3),
        "p50_ms": round(p50, 1),
        "p95_ms": round(percentile(ours, 0.95), 1),
        "prefect_trigger_p50_ms": round(trigger_p50, 1),
        "latency_ratio": round(p50 / trigger_p50, 3),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="flow runs per throughput arm")
    parser.add_argument("--concurrency", type=int, default=8, help="dispatches at once")
    parser.add_argument("--samples", type=int, default=40, help="latency samples per path")
    parser.add_argument("--rounds", type=int, default=4, help="alternating throughput rounds")
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        default=None,
        help="the listener consumer's fetch_max_wait_ms (default: the listener's own)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    sys.path.insert(0, str(PROJECT_ROOT))

    workdir = Path(tempfile.mkdtemp(prefix="magicflow-bench-"))
    try:
        with ExitStack() as stack:
            log(f"starting PostgreSQL, Prefect server and Tansu under {workdir}")
            database_url = stack.enter_context(postgres(workdir))
            api_url = stack.enter_context(prefect_server(workdir, database_url))
            kafka_servers = stack.enter_context(tansu(workdir))
            os.environ["PREFECT_API_URL"] = api_url
            os.environ["PREFECT_HOME"] = str(workdir / "client-home")
            os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
            result = asyncio.run(measure(args, kafka_servers))
    finally:
        if args.keep:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long ``magicflow up`` takes, and what Kafka adds on the way to a running flow.

In one run, on this machine:

(a) ``magicflow up --no-sample`` on a new state folder until it returns (the stack is
    ready: every server answers, deployments are deployed, the worker and the listener
    run), against ``prefect server start`` alone on a new SQLite database until
    ``/api/health`` answers. Both start from nothing (migrations included).
(b) With that stack: a request published to Kafka until its flow run is Running in
    the process worker, against Prefect's own ``run_deployment`` until Running with
    the same worker, one at a time, alternating. "Running" is the timestamp of the
    run's RUNNING state in Prefect's state history. The workflow is a dry run of
    ``tenant-provisioning`` with a spec naming no system (every system ``skipped``),
    so runs are short and nothing but the dispatch path is measured.

Prints one JSON line last:
``{"up_s", "server_only_s", "up_ratio", "request_to_running_p50_s",
"prefect_to_running_p50_s", "added_p50_s"}``. Targets: ``up_ratio <= 2.0``,
``added_p50_s <= 0.2``.

Run: ``python bench/stack.py [--requests 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
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

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from deployments.local_servers import BackendProcess, free_port, http_ready  # noqa: E402

DEPLOYMENT = "provision-tenant/tenant-provisioning"


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


async def running_at(flow_run_id: str) -> float:
    """Epoch seconds of the run's RUNNING state, waiting for the run to get there."""
    from prefect import get_client

    async with get_client() as client:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            states = await client.read_flow_run_states(uuid.UUID(flow_run_id))
            for state in states:
                if state.type.value == "RUNNING":
                    return datetime.fromisoformat(str(state.timestamp)).timestamp()
            await asyncio.sleep(0.2)
    raise TimeoutError(f"flow run {flow_run_id} never ran")


async def via_kafka() -> float:
    from magicflow.submit import asubmit

    began = time.time()
    result = await asubmit(
        "tenant-provisioning",
        spec(f"b-{uuid.uuid4().hex[:8]}"),
        kafka="magicflow",
        dry_run=True,
        wait=True,
        timeout_seconds=300,
    )
    assert result.final is not None and result.final.flow_run_id, result.statuses
    return await running_at(result.final.flow_run_id) - began


async def via_prefect() -> float:
    from prefect.deployments import run_deployment

    began = time.time()
    flow_run = await run_deployment(  # type: ignore[misc]
        DEPLOYMENT, parameters={**spec(f"p-{uuid.uuid4().hex[:8]}"), "dry_run": True}, timeout=0
    )
    return await running_at(str(flow_run.id)) - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=30, help="requests per path")
    args = parser.parse_args()
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
            for line in (state_dir / "env").read_text().splitlines():
                key, _, value = line.removeprefix("export ").partition("=")
                os.environ[key] = value
            kafka, prefect = [], []
            for index in range(args.requests):
                kafka.append(asyncio.run(via_kafka()))
                prefect.append(asyncio.run(via_prefect()))
                print(f"{index + 1}: kafka {kafka[-1]:.2f} s, prefect {prefect[-1]:.2f} s")
        finally:
            magicflow("down", "--state-dir", str(state_dir))
    kafka_p50, prefect_p50 = statistics.median(kafka), statistics.median(prefect)
    print(
        json.dumps(
            {
                "up_s": round(up_s, 1),
                "server_only_s": round(server_s, 1),
                "up_ratio": round(up_s / server_s, 2),
                "request_to_running_p50_s": round(kafka_p50, 3),
                "prefect_to_running_p50_s": round(prefect_p50, 3),
                "added_p50_s": round(kafka_p50 - prefect_p50, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

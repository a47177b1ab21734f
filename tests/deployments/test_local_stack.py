"""``magicflow up``/``down``/``status`` end to end: the real stack, started by the CLI.

One stack for the whole module (a start-up costs tens of seconds): ``magicflow up``
runs in a subprocess with its state folder in a temporary directory and the Prefect
server on a free port. The tests then read everything back on their own: the UI over
HTTP, the flow run from Prefect's REST API, the statuses from the Kafka topic, the
tenant from the backends, and every recorded PID from ``/proc``. The example
notebook runs against the same stack in a real Jupyter kernel; the last test stops
the stack, checks that no process is left and starts it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import nbformat
import pytest
from aiokafka import AIOKafkaConsumer
from nbclient import NotebookClient

from deployments.local_servers import free_port
from tests.fixtures.kafka import PROJECT_ROOT

# The module's tests share one stack; the first one waits for its start-up.
pytestmark = pytest.mark.timeout(3600)
DEPLOYED_METRICS_PORT = 9464  # prefect.yaml's listener metrics_port
UP_TIMEOUT = 1500  # a first start on a loaded 2-core machine: server migrations, deploy, sample
RUN_URL = re.compile(r"http://127\.0\.0\.1:\d+/runs/flow-run/([0-9a-f-]{36})")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs ``magicflow`` in a subprocess with an environment that points at no Prefect API."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_API_", "MAGICFLOW_STATE_DIR"))
    }
    return subprocess.run(
        [sys.executable, "-m", "magicflow.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_ticks(pid: int) -> str | None:
    """The process's start time from /proc, or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def children_of(pid: int) -> list[int]:
    """Direct children of a process (the worker's flow-run processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def recorded(state_dir: Path) -> dict[str, Any]:
    return dict(json.loads((state_dir / "stack.json").read_text()))


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert lines[0].startswith("magicflow: error: ")
    return lines[0]


@contextmanager
def holding_port(port: int) -> Iterator[None]:
    """Keeps the port taken (by us, or already by another program) while the block runs."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            pass  # taken already: what the block needs
        yield


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state_dir = tmp_path_factory.mktemp("stack-state")
    port = free_port()
    # The listener deployment's own metrics port is taken: the stack must not need it.
    with holding_port(DEPLOYED_METRICS_PORT):
        up = cli(
            "up", "--state-dir", str(state_dir), "--prefect-port", str(port), timeout=UP_TIMEOUT
        )
        try:
            yield {"up": up, "state_dir": state_dir, "port": port}
        finally:
            if (state_dir / "stack.json").exists():
                cli("down", "--state-dir", str(state_dir))


async def statuses_on_topic(bootstrap: str, request_id: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        "magicflow.status",
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        return [
            json.loads(record.value)
            for records in batch.values()
            for record in records
            if record.key == request_id.encode() and record.value
        ]
    finally:
        await consumer.stop()


def test_up_starts_everything_and_the_sample_request_completes_through_the_worker(
    stack: dict[str, Any],
) -> None:
    up, state_dir, port = stack["up"], stack["state_dir"], stack["port"]
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
    out = up.stdout
    services = {service["name"]: service for service in recorded(state_dir)["services"]}
    expected = {
        "prefect-server",
        "tansu",
        "moto",
        "fake-gcs-server",
        "drongo",
        "openbao",
        "kubernetes-emulator",
        "gitlab-fake",
        "worker",
        "listener",
    }
    assert set(services) == expected
    for name, service in services.items():
        assert re.search(rf"^\[\s*\d+\.\d+s\] {name} ready \(pid {service['pid']}", out, re.M)
        assert start_ticks(service["pid"]) == str(service["started"]), name
        assert (state_dir / "logs" / f"{name}.log").exists()
    assert "auto-approves" in out

    # The UI answers on the port asked for.
    ui = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
    assert ui.status_code == 200 and "<html" in ui.text.lower()
    api = f"http://127.0.0.1:{port}/api"
    assert httpx.get(f"{api}/health", timeout=10).json() is True

    # The sample request ran through the process worker to completed.
    request_id = re.search(r"request (sample-[0-9a-f]{8}) over Kafka", out)
    assert request_id, out
    flow_run_id = RUN_URL.findall(out.split("sample run completed:")[1])[0]
    flow_run = httpx.get(f"{api}/flow_runs/{flow_run_id}", timeout=10).json()
    assert flow_run["state"]["type"] == "COMPLETED"
    assert flow_run["work_pool_name"] == "magicflow"
    assert flow_run["infrastructure_pid"], "no worker process ran it"
    deployment = httpx.get(f"{api}/deployments/{flow_run['deployment_id']}", timeout=10).json()
    assert deployment["name"] == "tenant-provisioning"

    # Its statuses, read back from the topic with a consumer of our own.
    statuses = asyncio.run(
        statuses_on_topic(f"127.0.0.1:{services['tansu']['port']}", request_id.group(1))
    )
    states = [status["state"] for status in sorted(statuses, key=lambda s: s["seq"])]
    assert states[0] == "accepted" and states[-1] == "completed", states
    assert {"scheduled", "running"} <= set(states)
    assert {status["flow_run_id"] for status in statuses if status["flow_run_id"]} == {flow_run_id}

    # The tenant exists in the backends, read without the blocks.
    k8s = f"http://127.0.0.1:{services['kubernetes-emulator']['port']}"
    assert httpx.get(f"{k8s}/api/v1/namespaces/sample", timeout=10).status_code == 200
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{services['moto']['port']}",
        region_name="eu-west-1",
        aws_access_key_id="independent",
        aws_secret_access_key="independent",
    )
    assert "sample-data" in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]

    status = cli("status", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    for name, service in services.items():
        assert re.search(rf"^{name}\s+{service['pid']}\s+.*\bok\b", status.stdout, re.M)
    assert re.search(r"^listener\s+.*Running", status.stdout, re.M)

    # The listener serves its metrics on the free port the stack recorded, not on 9464
    # (held by this test), and up and status both show it.
    metrics_port = recorded(state_dir)["listener_metrics_port"]
    assert metrics_port and metrics_port != DEPLOYED_METRICS_PORT
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    listener_run_id = recorded(state_dir)["listener_flow_run_id"]
    assert f"metrics {metrics_url}" in out and f"listener:     {metrics_url}" in out
    assert re.search(
        rf"^listener\s+{services['listener']['pid']}\s+{metrics_port}\s+ok\s+"
        rf"{re.escape(metrics_url)} \(flow run {listener_run_id}: Running\)$",
        status.stdout,
        re.M,
    ), status.stdout
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=10).status_code == 200
    metrics = httpx.get(metrics_url, timeout=10).text
    # The sample request went through this listener: its counters say so.
    dispatched = re.search(r"^magicflow_listener_requests_dispatched_total (\S+)$", metrics, re.M)
    assert dispatched and float(dispatched.group(1)) >= 1, metrics[:2000]
    # langflow-sync is deployed with its hourly schedule paused (the stack has no
    # LangFlow), and nothing is scheduled from it; up said so.
    assert "sync-langflow/langflow-sync: schedule paused" in out
    sync = httpx.get(f"{api}/deployments/name/sync-langflow/langflow-sync", timeout=10).json()
    assert sync["schedules"] and not any(s["active"] for s in sync["schedules"])
    sync_runs = httpx.post(
        f"{api}/flow_runs/filter",
        json={"deployments": {"id": {"any_": [sync["id"]]}}},
        timeout=10,
    ).json()
    assert sync_runs == []
    # Its run (the kafka-trigger flow, run by the listener's own process) got the free
    # port and the crash follower as parameters.
    listener_run = httpx.get(f"{api}/flow_runs/{listener_run_id}", timeout=10).json()
    assert listener_run["state"]["type"] == "RUNNING"
    assert listener_run["parameters"]["metrics_port"] == metrics_port
    assert listener_run["parameters"]["follow_crashes"] is True


def test_the_example_notebook_runs_clean_against_the_stack(
    stack: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stack["up"].returncode == 0
    # The kernel inherits this environment: the notebook finds the stack through it.
    monkeypatch.setenv("MAGICFLOW_STATE_DIR", str(stack["state_dir"]))
    for key in [key for key in os.environ if key.startswith("PREFECT_")]:
        monkeypatch.delenv(key)
    notebook = nbformat.read(PROJECT_ROOT / "examples" / "local_stack.ipynb", as_version=4)
    NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(PROJECT_ROOT)}},
    ).execute()
    outputs = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    ]
    assert not [output for output in outputs if output.output_type == "error"]
    text = json.dumps(outputs)
    # The changes table, the run's UI link, the Kafka statuses.
    assert "<table>" in text and "created" in text
    assert RUN_URL.search(text.replace("\\n", "\n"))
    assert "completed" in text
    # No warning about logs without a flow run, on any call.
    assert "without a flow run id" not in text


def test_up_twice_reuses_the_stack_down_leaves_no_process_and_up_works_again(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    state_dir, port = stack["state_dir"], stack["port"]
    assert stack["up"].returncode == 0
    before = recorded(state_dir)
    pids = {s["pid"]: str(s["started"]) for s in before["services"]}
    worker = next(s["pid"] for s in before["services"] if s["name"] == "worker")
    flow_run_processes = {pid: start_ticks(pid) for pid in children_of(worker)}
    listener = next(s for s in before["services"] if s["name"] == "listener")
    assert listener["port"] == before["listener_metrics_port"]

    again = cli("up", "--state-dir", str(state_dir), "--prefect-port", str(port), timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    assert recorded(state_dir)["services"] == before["services"]
    assert all(start_ticks(pid) == started for pid, started in pids.items())
    assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).status_code == 200

    # Another state folder cannot take the same port: one line naming it and the flag.
    other = cli("up", "--state-dir", str(tmp_path / "other"), "--prefect-port", str(port))
    assert other.returncode == 7
    line = one_error_line(other)
    assert f"port {port}" in line and "--prefect-port" in line

    down = cli("down", "--state-dir", str(state_dir), timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    alive = [
        pid
        for pid, started in {**pids, **flow_run_processes}.items()
        if started is not None and start_ticks(pid) == started
    ]
    assert alive == []
    assert not (state_dir / "stack.json").exists()
    gone = cli("status", "--state-dir", str(state_dir))
    assert gone.returncode == 5 and "no stack is recorded" in one_error_line(gone)

    after = cli(
        "up",
        "--state-dir",
        str(state_dir),
        "--prefect-port",
        str(port),
        "--no-sample",
        timeout=UP_TIMEOUT,
    )
    assert after.returncode == 0, after.stdout[-4000:] + after.stderr[-4000:]
    status = cli("status", "--state-dir", str(state_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    assert re.search(r"^listener\s+.*Running", status.stdout, re.M)
    restarted = recorded(state_dir)["services"]
    down = cli("down", "--state-dir", str(state_dir), timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert [s["name"] for s in restarted if start_ticks(s["pid"]) == str(s["started"])] == []


def test_free_ports_are_never_handed_out_twice() -> None:
    # The stack starts its servers at once, each on a port picked a moment before:
    # two servers given one port would race for it (moto lost to Tansu once).
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)

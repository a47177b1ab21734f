"""``prefect deploy --all`` of prefect.yaml, workers elsewhere, and zombie runs.

A copy of the repository's prefect.yaml, plus test deployments appended in the
project's own three-line style, is deployed with ``prefect --no-prompt deploy
--all`` from a temporary directory that is deleted right after: a deployment that
needed the deployer's path could not run. Process workers then run from other
temporary directories.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled

from blocks import KafkaConnection
from deployments.automations import ZOMBIE_AUTOMATION_NAME
from deployments.local_deploy import deploy_all
from deployments.local_servers import BackendProcess
from flows.listener.crashes import follow_crashed_runs
from magicflow.cli import ExitCode
from magicflow.messages import REQUEST_TAG_PREFIX
from tests.backends.serve_workflows import sleeping_workflow
from tests.fixtures.kafka import PROJECT_ROOT, read_topic, statuses_of, subprocess_env
from tests.fixtures.waiting import wait_until
from tests.fixtures.workflows import KAFKA_BLOCK_NAME

POOL = "magicflow"
PROBE_FLOW = "magicflow-deploy-probe"
TEST_DEPLOYMENTS = """
  - <<: *workflow
    name: probe
    entrypoint: tests.deployments.deploy_flows.deploy_probe
    work_pool: {<<: *process-pool, work_queue_name: probe}
  - <<: *workflow
    name: probe-checkout
    entrypoint: tests.deployments.deploy_flows.deploy_probe
    pull: *pull-checkout
    work_pool: {<<: *process-pool, work_queue_name: probe}
  - <<: *workflow
    name: probe-other-version
    entrypoint: tests.deployments.deploy_flows.deploy_probe
    pull:
      - deployments.steps.require_installed_version: {package: magicflow, version: 0.0.1}
    work_pool: {<<: *process-pool, work_queue_name: probe}
  - <<: *workflow
    name: doomed
    entrypoint: tests.backends.serve_workflows.sleeping_workflow
    work_pool: {<<: *process-pool, work_queue_name: doomed}
  - <<: *workflow
    name: alive
    entrypoint: tests.backends.serve_workflows.sleeping_workflow
    work_pool: {<<: *process-pool, work_queue_name: alive}
"""
HEARTBEAT_SECONDS = 30  # prefect.yaml's PREFECT_FLOWS_HEARTBEAT_FREQUENCY; Prefect's minimum
WINDOW_SECONDS = 60  # two heartbeats: a live run is never late by that much


def read_flow_run(flow_run_id: UUID) -> FlowRun:
    async def read() -> FlowRun:
        async with get_client() as client:
            return await client.read_flow_run(flow_run_id)

    return asyncio.run(read())


def final_state_of(flow_run_id: UUID, timeout: float, worker: BackendProcess) -> FlowRun:
    def final() -> FlowRun | None:
        assert worker.process.poll() is None, worker.log_tail()
        flow_run = read_flow_run(flow_run_id)
        return flow_run if flow_run.state and flow_run.state.is_final() else None

    try:
        return wait_until(final, timeout, f"flow run {flow_run_id} final")
    except AssertionError as error:
        raise AssertionError(f"{error}\nworker log:\n{worker.log_tail()}") from None


def deploy_env() -> dict[str, str]:
    return {**subprocess_env(), "PREFECT_API_URL": str(PREFECT_API_URL.value())}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> dict[str, Any]:
    """Every deployment of a prefect.yaml copy with the test ones, deployed from a dir now gone."""

    async def ensure_pool() -> None:
        async with get_client() as client:
            try:
                await client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
            except ObjectAlreadyExists:
                pass

    asyncio.run(ensure_pool())
    deployer_dir = tmp_path_factory.mktemp("deployer")
    (deployer_dir / "prefect.yaml").write_text(
        (PROJECT_ROOT / "prefect.yaml").read_text() + TEST_DEPLOYMENTS
    )
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=deployer_dir,
        env=deploy_env(),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    shutil.rmtree(deployer_dir)  # nothing may depend on where prefect deploy ran

    async def read_all() -> dict[str, Any]:
        async with get_client() as client:
            return {d.name: d for d in await client.read_deployments()}

    return {"dir": deployer_dir, "deployments": asyncio.run(read_all())}


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., BackendProcess]]:
    """Starts ``prefect worker start`` processes in their own empty directories."""
    workers: list[BackendProcess] = []

    def start(queue: str, **env: str) -> BackendProcess:
        workdir = tmp_path / f"worker-{queue}"
        workdir.mkdir()
        log = tmp_path / f"worker-{queue}.log"
        process = BackendProcess(
            f"worker-{queue}",
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                POOL,
                "--work-queue",
                queue,
                "--name",
                f"{queue}-{uuid.uuid4().hex[:6]}",
            ],
            lambda: log.exists() and "started" in log.read_text(errors="replace"),
            tmp_path,
            env={**deploy_env(), "PREFECT_WORKER_QUERY_SECONDS": "1", **env},
            timeout=120,
            cwd=workdir,
        )
        workers.append(process)
        return process

    yield start
    for worker in workers:
        worker.stop()


def test_deploy_all_creates_every_deployment_with_explicit_pull_steps(
    deployed: dict[str, Any],
) -> None:
    deployments = deployed["deployments"]
    assert {"listener", "crash-follower", "probe", "probe-checkout", "doomed", "alive"} <= set(
        deployments
    )
    for name in ("listener", "crash-follower", "probe", "doomed", "alive"):
        assert deployments[name].pull_steps == [
            {
                "deployments.steps.require_installed_version": {
                    "package": "magicflow",
                    "version": "0.1.0",
                }
            }
        ], name
    assert deployments["probe-checkout"].pull_steps == [
        {"deployments.steps.use_checkout": {"variable": "MAGICFLOW_CHECKOUT"}}
    ]
    for deployment in deployments.values():
        stored = deployment.model_dump_json()
        assert str(deployed["dir"]) not in stored and str(PROJECT_ROOT) not in stored
    listener = deployments["listener"]
    assert listener.entrypoint == "flows.kafka_trigger.kafka_trigger"
    assert listener.version == "0.1.0" and listener.work_pool_name == POOL
    assert listener.parameters["registry"] == "flows.registry:default_registry"
    # One crash follower for all replicas: the listeners leave theirs off.
    assert listener.parameters["follow_crashes"] is False
    assert listener.parameters["metrics_port"] == 9464
    follower = deployments["crash-follower"]
    assert follower.entrypoint == "flows.crash_follower.follow_crashes"
    assert follower.parameters == {"kafka": "magicflow"}
    assert follower.global_concurrency_limit.limit == 1
    assert follower.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert listener.job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
    assert listener.job_variables["env"]["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "true"
    assert listener.global_concurrency_limit.limit == 4
    assert listener.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert listener.description.startswith("Consumes workflow requests from Kafka")
    assert set(listener.tags) == {"magicflow", "kafka", "service"}
    # A description left out of the file comes from the flow's docstring.
    assert deployments["probe"].description.startswith("Says where it ran")


def comparable(stored: Any) -> Any:
    """A stored deployment as plain data, without what any write changes (times, ids of
    schedules a redeploy recreates, the worker's polling status)."""
    if isinstance(stored, dict):
        return {
            key: comparable(value)
            for key, value in stored.items()
            if key not in {"updated", "last_polled", "status", "id", "created"}
        }
    if isinstance(stored, list):
        return [comparable(value) for value in stored]
    return stored


def test_the_local_stacks_deploy_stores_what_prefect_deploy_stored(
    deployed: dict[str, Any], tmp_path: Path
) -> None:
    # magicflow up deploys with deployments.local_deploy (in its own process there; here
    # in this one, whose flows are imported already): Prefect's own per-deployment step,
    # three at a time. Run over what `prefect deploy --all` stored, it must change
    # nothing but write times.
    (tmp_path / "prefect.yaml").write_text(
        (PROJECT_ROOT / "prefect.yaml").read_text() + TEST_DEPLOYMENTS
    )
    finished = asyncio.run(deploy_all(tmp_path / "prefect.yaml"))
    # The session's server also holds other tests' deployments: only prefect.yaml's count.
    in_yaml = {
        entry["name"]
        for entry in yaml.safe_load((tmp_path / "prefect.yaml").read_text())["deployments"]
    }
    assert sorted(finished) == sorted(in_yaml)
    assert in_yaml <= set(deployed["deployments"])

    async def read_all() -> dict[str, Any]:
        async with get_client() as client:
            return {d.name: d for d in await client.read_deployments()}

    again = asyncio.run(read_all())
    for name in sorted(in_yaml):
        before, after = deployed["deployments"][name], again[name]
        assert after.id == before.id, name  # updated in place, as a redeploy does
        assert comparable(after.model_dump(mode="json")) == comparable(
            before.model_dump(mode="json")
        ), name


def test_a_worker_in_another_directory_runs_the_deployments_to_completed(
    deployed: dict[str, Any], start_worker: Callable[..., BackendProcess]
) -> None:
    worker = start_worker("probe", MAGICFLOW_CHECKOUT=str(PROJECT_ROOT))
    installed = run_deployment(f"{PROBE_FLOW}/probe", parameters={"marker": "installed"}, timeout=0)
    checkout = run_deployment(
        f"{PROBE_FLOW}/probe-checkout", parameters={"marker": "checkout"}, timeout=0
    )
    other = run_deployment(
        f"{PROBE_FLOW}/probe-other-version", parameters={"marker": "other"}, timeout=0
    )

    done = final_state_of(installed.id, 180, worker)
    assert done.state.type is StateType.COMPLETED, done.state
    # Results are persisted (prefect.yaml's flow-run env): this process reads them back.
    result = done.state.result()
    assert result["marker"] == "installed" and result["magicflow"] == "0.1.0"
    assert not result["cwd"].startswith((str(PROJECT_ROOT), str(deployed["dir"])))

    done = final_state_of(checkout.id, 180, worker)
    assert done.state.type is StateType.COMPLETED, done.state
    assert done.state.result()["cwd"] == str(PROJECT_ROOT)  # MAGICFLOW_CHECKOUT of the worker

    done = final_state_of(other.id, 180, worker)
    assert done.state.type in (StateType.FAILED, StateType.CRASHED), done.state
    assert "this worker runs magicflow 0.1.0 but the deployment was made with 0.0.1" in (
        worker.log_tail(400)
    )


def test_the_rest_api_creates_one_run_per_idempotency_key(
    deployed: dict[str, Any], start_worker: Callable[..., BackendProcess]
) -> None:
    # The README's curl example, request for request: a 503 (a busy server's locked
    # database) is retried with the same key, as its `curl --retry` does.
    api = str(PREFECT_API_URL.value())
    key = f"ci-{uuid.uuid4().hex[:8]}"

    def create_flow_run(http: httpx.Client, deployment_id: str) -> httpx.Response:
        body = {"parameters": {"marker": key}, "idempotency_key": key, "tags": ["ci"]}
        for attempt in range(5):
            time.sleep(attempt)  # curl --retry's back-off between attempts, not a wait
            answer = http.post(
                f"/deployments/{deployment_id}/create_flow_run",
                json=body,
                headers={"Content-Type": "application/json"},
            )
            if answer.status_code != 503:
                break
        return answer

    with httpx.Client(base_url=api, timeout=30) as http:
        found = http.get(f"/deployments/name/{PROBE_FLOW}/probe")
        found.raise_for_status()
        first = create_flow_run(http, found.json()["id"])
        second = create_flow_run(http, found.json()["id"])
    assert first.status_code == 201, first.text
    assert second.json()["id"] == first.json()["id"]
    worker = start_worker("probe")
    done = final_state_of(UUID(first.json()["id"]), 180, worker)
    assert done.state.type is StateType.COMPLETED and set(done.tags) == {"ci", "magicflow"}
    assert done.state.result()["marker"] == key
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "/deployments/name/" in readme and '/create_flow_run"' in readme
    assert '"idempotency_key"' in readme and '"parameters"' in readme and "--retry" in readme


def magicflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "magicflow.cli", *args],
        capture_output=True,
        text=True,
        env=deploy_env(),
        cwd=PROJECT_ROOT,
        timeout=240,
        check=False,
    )


@pytest.fixture
def zombie_automation() -> Iterator[None]:
    """The zombie-run automation, applied with the CLI; deleted afterwards."""
    window = (
        "--heartbeat-seconds",
        str(HEARTBEAT_SECONDS),
        "--window-seconds",
        str(WINDOW_SECONDS),
    )
    first = magicflow_cli("automations", "apply", *window)
    assert first.returncode == ExitCode.OK, first.stdout + first.stderr
    again = magicflow_cli("automations", "apply", *window)
    assert again.stdout.startswith(f"unchanged automation '{ZOMBIE_AUTOMATION_NAME}'"), again.stdout
    yield

    async def delete() -> None:
        async with get_client() as client:
            for automation in await client.read_automations_by_name(ZOMBIE_AUTOMATION_NAME):
                await client.delete_automation(automation.id)

    asyncio.run(delete())


def first_heartbeat(flow_run_id: UUID) -> bool:
    async def read() -> bool:
        async with get_client() as client:
            page = await client.read_events(
                EventFilter(
                    event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                    resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
                ),
                limit=5,
            )
            return bool(page.events)

    return asyncio.run(read())


async def read_flow_run_async(flow_run_id: UUID) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(flow_run_id)


async def wait_until_async(
    condition: Callable[[], Any], seconds: float, what: str, interval: float = 1.0
) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := await condition():
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not within {seconds:.0f} s")


def kill_process_in(pid_file: Path) -> None:
    """SIGKILLs the process whose id a test flow wrote, if it is still there."""
    if pid_file.exists() and Path(f"/proc/{pid_file.read_text()}").exists():
        os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.timeout(600)
async def test_a_run_whose_host_dies_ends_crashed_through_the_automation_and_kafka_hears_it(
    deployed: dict[str, Any],
    start_worker: Callable[..., BackendProcess],
    zombie_automation: None,
    kafka: KafkaConnection,
    tmp_path: Path,
) -> None:
    await kafka.asave(KAFKA_BLOCK_NAME, overwrite=True)  # prefect.yaml: MAGICFLOW_KAFKA_BLOCK
    doomed_worker, alive_worker = start_worker("doomed"), start_worker("alive")
    # The crash follower runs all along, as it does beside the listener.
    stop_following = asyncio.Event()
    follower = asyncio.create_task(follow_crashed_runs(kafka, stop=stop_following))
    request_id = f"zombie-{uuid.uuid4().hex[:8]}"
    runs: dict[str, FlowRun] = {}
    try:
        for name in ("doomed", "alive"):
            tag = REQUEST_TAG_PREFIX + request_id + ("" if name == "doomed" else "-alive")
            runs[name] = await run_deployment(
                f"{sleeping_workflow.name}/{name}",
                parameters={"pid_file": str(tmp_path / f"{name}.pid"), "seconds": 600},
                tags=[tag],
                timeout=0,
            )
        for name, run in runs.items():
            await wait_until_async(
                lambda run=run: asyncio.to_thread(first_heartbeat, run.id),
                120,
                f"a heartbeat of the {name} run",
            )
        flow_pid = int((tmp_path / "doomed.pid").read_text())

        # The host dies: its worker and the flow-run process it started, at once.
        os.kill(doomed_worker.pid, signal.SIGKILL)
        os.kill(flow_pid, signal.SIGKILL)
        killed_at = time.monotonic()

        async def crashed() -> FlowRun | None:
            flow_run = await read_flow_run_async(runs["doomed"].id)
            return flow_run if flow_run.state and flow_run.state.is_crashed() else None

        flow_run = await wait_until_async(crashed, WINDOW_SECONDS + 90, "the doomed run Crashed")
        assert flow_run.state.message == (
            f"No heartbeat for {WINDOW_SECONDS} s: the flow run's host or process died."
        )
        assert time.monotonic() - killed_at >= WINDOW_SECONDS - HEARTBEAT_SECONDS
        # A run on a live host kept its heartbeats and kept running all along.
        assert (await read_flow_run_async(runs["alive"].id)).state.is_running()

        def crash_published(records: list[Any]) -> bool:
            return any(
                status["flow_run_id"] == str(flow_run.id) and status["state"] == "crashed"
                for status in statuses_of(records)
            )

        records = await read_topic(kafka, kafka.status_topic, crash_published, timeout_s=60)
    finally:
        stop_following.set()
        await asyncio.wait_for(follower, 30)
        await leave_nothing_running(runs.get("alive"), alive_worker, tmp_path / "alive.pid")

    statuses = [s for s in statuses_of(records) if s["flow_run_id"] == str(flow_run.id)]
    states = [status["state"] for status in statuses]
    assert states[0] == "running" and "crashed" in states, states
    (crash,) = [status for status in statuses if status["state"] == "crashed"]
    assert crash["request_id"] == request_id and crash["workflow"] == sleeping_workflow.name
    assert crash["reason"] == flow_run.state.message


async def leave_nothing_running(
    flow_run: FlowRun | None, worker: BackendProcess, pid_file: Path
) -> None:
    """Stops the live run's worker and process, and marks the run Cancelled."""
    worker.stop()
    kill_process_in(pid_file)
    if flow_run is not None:
        async with get_client() as client:
            await client.set_flow_run_state(flow_run.id, Cancelled(), force=True)

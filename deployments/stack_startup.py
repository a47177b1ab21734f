"""The local stack's start-up sequence: what ``magicflow up`` starts, in which order.

`start_processes` starts, overlapping whatever does not depend on each other:

1. the deploy process (`deployments.local_deploy`), which imports Prefect's command
   line and every flow while the servers start;
2. the Prefect server and every backend at once (`ProcessStarter`, one thread each);
3. once the server answers: the work pool; then, side by side, the blocks, the worker
   and the deployments (the listener's first; the others three at a time on
   PostgreSQL, one at a time on SQLite);
4. once the listener's deployment, the blocks and the worker are there: the
   listener's flow run, whose process imports every workflow while the other
   deployments are still being created;
5. ``magicflow up`` is ready when every deployment exists, ``langflow-sync``'s schedule
   is paused and the listener answers ``/healthz``.

Every process is recorded in ``stack.json`` the moment it exists, so a failure or
Ctrl-C at any step stops it (`deployments.local_stack.start_stack`).

Example:
    ```python
    from deployments.local_stack import Progress, Stack, StackOptions
    from deployments.stack_startup import ProcessStarter, start_processes

    stack = Stack(state_dir=str(state_dir), prefect_api_url="http://127.0.0.1:4200/api")
    starter = ProcessStarter(stack, state_dir / "logs", Progress(print))
    start_processes(stack, options, state_dir, database_url, starter, Progress(print))
    ```
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from deployments.local_backends import (
    GITOPS_PROJECT,
    apply_stack_blocks,
    backend_commands,
    create_gitops_project,
)
from deployments.local_deploy import (
    DEPLOY_CONCURRENCY,
    SQLITE_DEPLOY_CONCURRENCY,
    pause_langflow_sync,
    prepare_work_pool,
    start_deploy,
)
from deployments.local_servers import BackendProcess, free_port, http_ready, tcp_ready
from deployments.local_stack import (
    LISTENER_DEPLOYMENT,
    POSTGRES_MAX_IN_FLIGHT,
    PREFECT,
    SQLITE_MAX_IN_FLIGHT,
    WORK_POOL,
    WORKER_QUERY_SECONDS,
    Progress,
    Service,
    Stack,
    StackError,
    StackOptions,
    listener_parameters,
    process_start_ticks,
    process_tree,
    signal_all,
    stop_service,
)
from deployments.prefect_when_ready import command_argv

DEPLOY_SECONDS = 600.0
"""How long the deploy process may take, imports included."""
WORKER_SECONDS = 420.0
"""How long the worker may take to start, the Prefect server's own start included."""
LISTENER_SERVING_SECONDS = 180.0
"""How long the listener's flow run may take to answer ``/healthz`` once created."""


def stack_env(stack: Stack, state_dir: Path) -> dict[str, str]:
    """What every process of the stack (and a user's shell) needs to reach it."""
    return {
        "PREFECT_API_URL": stack.prefect_api_url,
        "PREFECT_HOME": str(state_dir / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_LOCAL_STORAGE_PATH": str(state_dir / "results"),
        "MAGICFLOW_KAFKA_BLOCK": "magicflow",
    }


class ProcessStarter:
    """Starts processes, records each in ``stack.json`` at once, and undoes it all on failure."""

    def __init__(self, stack: Stack, logs: Path, progress: Progress) -> None:
        self.stack, self.logs, self.progress = stack, logs, progress
        self.processes: list[BackendProcess] = []
        self.helpers: list[subprocess.Popen[bytes]] = []
        """Short-lived processes (the deploy), killed if ``up`` fails, never recorded."""
        self.cancelled = False
        self.lock = threading.Lock()

    def stop_helpers(self) -> None:
        """Kills the helpers still running (each leads its own process group)."""
        for helper in self.helpers:
            if helper.poll() is None:
                signal_all(process_tree(helper.pid), signal.SIGKILL)
                helper.wait()

    def start(
        self,
        name: str,
        argv: list[str],
        ready: Callable[[], bool],
        port: int | None,
        health: str | None,
        url: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
        cwd: Path | None = None,
    ) -> Service:
        """Starts one process, records it in ``stack.json``, and waits until it is ready.

        Args:
            name: The service's name (and its log's).
            argv: Its command line.
            ready: Returns True once it answers.
            port: The port it serves on, if any.
            health: What ``magicflow status`` checks (a URL, ``tcp`` or None).
            url: Its URL, if it speaks HTTP.
            env: Extra environment variables.
            timeout: Seconds to wait for readiness.
            cwd: Its working directory.

        Returns:
            The recorded service.

        Raises:
            StackError: It exited or was not ready in time; names its log.
        """

        def record(process: BackendProcess) -> None:
            started = process_start_ticks(process.pid) or 0
            service = Service(name, process.pid, started, port, url, health, str(process.log_path))
            with self.lock:
                self.stack.services.append(service)
                self.stack.save()
            if self.cancelled:  # Ctrl-C came while this one was being started
                stop_service(service)

        try:
            process = BackendProcess(
                name, argv, ready, self.logs, env=env, timeout=timeout, cwd=cwd, on_start=record
            )
        except (RuntimeError, TimeoutError) as error:
            reason = "exited" if isinstance(error, RuntimeError) else f"not ready in {timeout:g}s"
            raise StackError(
                f"{name} {reason}; its log is {self.logs / (name + '.log')}",
                "read the log; rerun magicflow up (a slow first start may need a second try)",
            ) from None
        self.processes.append(process)
        self.progress(f"{name} ready (pid {process.pid}{f', {url or port}' if port else ''})")
        return (
            self.stack.services[-1]
            if self.stack.services[-1].name == name
            else next(service for service in self.stack.services if service.name == name)
        )


def start_processes(
    stack: Stack,
    options: StackOptions,
    state_dir: Path,
    database: str,
    starter: ProcessStarter,
    progress: Progress,
) -> None:
    """Starts every process of the stack, deploys, and runs the listener until it serves.

    Args:
        stack: The stack record (saved as each process starts).
        options: What ``magicflow up`` was asked for.
        state_dir: The state folder.
        database: Prefect's database URL.
        starter: Starts and records the processes.
        progress: Where progress lines go.

    Raises:
        StackError: A server did not start, the deploy failed, or the listener did not
            serve; the message names it and its log.
    """
    logs = state_dir / "logs"
    logs.mkdir(exist_ok=True)
    env = stack_env(stack, state_dir)
    os.environ.update(env)  # this process talks to the stack too (blocks, pool, deploy)
    stack.save()
    vault_token = secrets.token_hex(16)
    if not (options.project_dir / "prefect.yaml").is_file():
        raise StackError(
            f"no prefect.yaml in {options.project_dir}",
            "install magicflow from its checkout (pip install -e .) and run magicflow up there",
            "not-configured",
        )
    # Imports every flow module while the server starts; deploys once the pool exists,
    # the listener's deployment first.
    deploy_log, listener_deployed = logs / "deploy.log", state_dir / "listener-deployed"
    deploy = start_deploy(
        options.project_dir,
        deploy_log,
        f"{stack.prefect_api_url}/work_pools/{WORK_POOL}",
        first=LISTENER_DEPLOYMENT.rpartition("/")[2],
        first_deployed=listener_deployed,
        concurrency=DEPLOY_CONCURRENCY if options.database_url else SQLITE_DEPLOY_CONCURRENCY,
    )
    starter.helpers.append(deploy)
    progress(
        "starting the Prefect server and the backends "
        "(a first start on a new database runs migrations: ~20 s)"
    )
    # The blocks' SDKs take seconds to import: done while the server starts, not after.
    threading.Thread(target=_import_for_blocks, name="import-blocks", daemon=True).start()
    # So does the worker's start: it imports now and polls once the work pool exists.
    worker_log, pool_url = logs / "worker.log", f"{stack.prefect_api_url}/work_pools/{WORK_POOL}"
    side_jobs = ThreadPoolExecutor(2)
    later: list[Future[object]] = [
        side_jobs.submit(
            starter.start,
            "worker",
            command_argv(
                pool_url,
                ["prefect.cli.worker", "prefect.workers.process"],
                ["worker", "start", "--pool", WORK_POOL, "--name", f"local-{os.getpid()}"],
            ),
            lambda: worker_log.exists() and "started" in worker_log.read_text(errors="replace"),
            None,
            None,
            env={"PREFECT_WORKER_QUERY_SECONDS": WORKER_QUERY_SECONDS},
            timeout=WORKER_SECONDS,
            cwd=state_dir,
        )
    ]
    try:
        _start_servers(stack, options, state_dir, database, vault_token, starter)
    except BaseException:
        side_jobs.shutdown(wait=False, cancel_futures=True)
        raise
    ports = {service.name: service.port for service in stack.services if service.port}
    # The deploy process waits for the work pool.
    asyncio.run(prepare_work_pool(WORK_POOL, progress))

    def save_blocks() -> None:
        saved = apply_stack_blocks(ports, state_dir, vault_token)
        progress(f"{saved} blocks saved (as {state_dir / 'blocks.yaml'} describes)")
        create_gitops_project(ports["gitlab-fake"])
        progress(f"GitLab fake: project {GITOPS_PROJECT} (it auto-approves every merge request)")

    # While the deployments are created: the blocks are saved (and the worker starts).
    later.append(side_jobs.submit(save_blocks))
    try:
        _wait_for_first_deployment(deploy, deploy_log, listener_deployed)
        progress(f"{LISTENER_DEPLOYMENT} deployed (the other deployments follow)")
        for side_job in later:
            side_job.result()
    except BaseException:
        starter.cancelled = True
        raise
    finally:
        side_jobs.shutdown(wait=False, cancel_futures=True)
    worker = next(process for process in starter.processes if process.name == "worker")
    max_in_flight = POSTGRES_MAX_IN_FLIGHT if options.database_url else SQLITE_MAX_IN_FLIGHT
    # A free port rather than prefect.yaml's fixed 9464: another program or a second
    # stack may hold that one.
    stack.listener_metrics_port = free_port()
    parameters = listener_parameters(max_in_flight, stack.listener_metrics_port)
    # Its process imports every workflow while the other deployments are created.
    stack.listener_flow_run_id = asyncio.run(_create_listener_run(parameters))
    stack.save()
    progress(f"listener run {stack.listener_flow_run_id} created; the worker starts it")
    _finish_deploy(deploy, deploy_log)
    progress("every deployment of prefect.yaml deployed")
    asyncio.run(pause_langflow_sync(progress))
    asyncio.run(
        _wait_for_listener(
            stack.listener_flow_run_id,
            stack.listener_metrics_port,
            LISTENER_SERVING_SECONDS,
            worker,
        )
    )
    progress(
        f"listener running through the worker (max_in_flight={max_in_flight}, crash follower "
        f"inside, metrics {stack.listener_metrics_url}; "
        f"{stack.prefect_ui_url}/runs/flow-run/{stack.listener_flow_run_id})"
    )
    (state_dir / "env").write_text("".join(f"export {key}={value}\n" for key, value in env.items()))


def _import_for_blocks() -> None:
    """Imports what saving the stack's blocks needs (their SDKs), ahead of time."""
    import importlib

    import blocks

    for module in ("deployments.blocks_config", "prefect.deployments", "prefect_aws"):
        importlib.import_module(module)
    blocks.ALL_BLOCKS  # noqa: B018 - imports every block module of our own


def _start_servers(
    stack: Stack,
    options: StackOptions,
    state_dir: Path,
    database: str,
    vault_token: str,
    starter: ProcessStarter,
) -> None:
    """Starts the Prefect server and every backend at once; returns when all answer."""
    jobs: list[tuple[str, list[str], str | None, int, str | None, dict[str, str], float]] = [
        (
            "prefect-server",
            [
                *PREFECT,
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(options.prefect_port),
            ],
            f"{stack.prefect_api_url}/health",
            options.prefect_port,
            stack.prefect_ui_url,
            {"PREFECT_API_DATABASE_CONNECTION_URL": database},
            300.0,
        )
    ]
    for name, (argv, health, port) in backend_commands().items():
        extra = {}
        if name == "openbao":
            extra = {"HOME": str(state_dir / "openbao"), "BAO_DEV_ROOT_TOKEN_ID": vault_token}
            (state_dir / "openbao").mkdir(exist_ok=True)
        url = f"127.0.0.1:{port}" if health == "tcp" else f"http://127.0.0.1:{port}"
        jobs.append((name, argv, health, port, url, extra, 60.0))
    # Not a `with` block: on Ctrl-C it would wait for the slowest readiness check.
    pool = ThreadPoolExecutor(len(jobs))
    futures = [
        pool.submit(
            starter.start,
            name,
            argv,
            tcp_ready(port) if health == "tcp" else http_ready(str(health), (200, 204)),
            port,
            health,
            url,
            extra,
            timeout,
        )
        for name, argv, health, port, url, extra, timeout in jobs
    ]
    try:
        for future in futures:
            future.result()
    except BaseException:
        starter.cancelled = True
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _wait_for_first_deployment(
    deploy: subprocess.Popen[bytes], log: Path, first_deployed: Path
) -> None:
    """Waits until the deploy process wrote ``first_deployed`` (or exited: see its code)."""
    deadline = time.monotonic() + DEPLOY_SECONDS
    while not first_deployed.exists():
        if deploy.poll() is not None:
            _finish_deploy(deploy, log)  # raises when it failed
            return
        if time.monotonic() > deadline:
            raise StackError(
                f"the deploy process had not deployed {LISTENER_DEPLOYMENT} after "
                f"{DEPLOY_SECONDS:g}s; its log is {log}",
                "read the log; rerun magicflow up",
            )
        time.sleep(0.1)


def _finish_deploy(deploy: subprocess.Popen[bytes], log: Path) -> None:
    """Waits for the deploy process (`deployments.local_deploy`); raises when it failed."""
    returncode = deploy.wait(timeout=DEPLOY_SECONDS)
    if returncode != 0:
        raise StackError(
            f"deploying prefect.yaml failed (exit {returncode}); its log is {log}",
            "read the log; magicflow check shows what is wrong in prefect.yaml",
            "not-configured",
        )


async def _create_listener_run(parameters: dict[str, object]) -> str:
    """Creates the listener deployment's flow run; returns its id (the worker starts it)."""
    from prefect.deployments import run_deployment

    flow_run = await run_deployment(  # type: ignore[misc]
        LISTENER_DEPLOYMENT, parameters=parameters, timeout=0
    )
    return str(flow_run.id)


async def _wait_for_listener(
    flow_run_id: str, metrics_port: int, wait_seconds: float, worker: BackendProcess
) -> None:
    """Waits until the listener serves: its run is Running and ``/healthz`` answers 200.

    Then its consumer has its partitions and polls, so a request published now is
    picked up.
    """
    from uuid import UUID

    from prefect import get_client

    healthy = http_ready(f"http://127.0.0.1:{metrics_port}/healthz", (200,))
    deadline = time.monotonic() + wait_seconds
    async with get_client() as client:
        while time.monotonic() < deadline:
            state = (await client.read_flow_run(UUID(flow_run_id))).state
            if state is not None and state.is_running() and healthy():
                return
            if state is not None and state.is_final():
                raise StackError(
                    f"the listener's flow run {flow_run_id} ended {state.name}: {state.message}",
                    f"read {worker.log_path}",
                )
            if worker.process.poll() is not None:
                raise StackError(f"the worker exited; its log is {worker.log_path}", "read it")
            await asyncio.sleep(0.2)
    raise StackError(
        f"the listener's flow run {flow_run_id} was not serving (/healthz on 127.0.0.1:"
        f"{metrics_port}) after {wait_seconds:g}s",
        f"read {worker.log_path}",
    )

"""The local stack's start-up sequence: what ``magicflow up`` starts, in which order.

`start_processes` starts, overlapping whatever does not depend on each other:

1. the worker's process and the listener's, each importing what it needs (Prefect's
   command line and worker, every flow) while the servers start;
2. the Prefect server and every backend at once (`ProcessStarter`, one thread each);
3. once the server answers: the work pool and the blocks; then the listener (the
   ``kafka-trigger`` flow, `deployments.when_ready`); once its flow run runs, the
   worker's process deploys prefect.yaml (`deployments.local_deploy`: three at a
   time on PostgreSQL, one at a time on SQLite) and runs ``prefect worker start``;
4. ``magicflow up`` is ready when every deployment exists, ``langflow-sync``'s schedule
   is paused, the worker polls and the listener answers ``/healthz``.

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
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from deployments.local_backends import (
    GITOPS_PROJECT,
    KAFKA_BLOCK,
    apply_stack_blocks,
    backend_commands,
    create_gitops_project,
)
from deployments.local_deploy import (
    DEPLOY_CONCURRENCY,
    SQLITE_DEPLOY_CONCURRENCY,
    deploy_argv,
    pause_langflow_sync,
    prepare_work_pool,
)
from deployments.local_servers import BackendProcess, free_port, http_ready, tcp_ready
from deployments.local_stack import (
    LISTENER_FLOW,
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
    listener_arguments,
    process_start_ticks,
    stop_service,
)
from deployments.when_ready import command_argv

DEPLOY_SECONDS = 600.0
"""How long the worker's process may take to deploy prefect.yaml and start polling,
imports and the Prefect server's own start included."""
SCHEDULED_RUNS_AHEAD = 3
"""Runs the stack's Prefect server schedules ahead per schedule (Prefect's default
minimum; its default maximum is 100, up to 100 days ahead)."""
LISTENER_SECONDS = 420.0
"""How long the listener may take to serve, the Prefect server's own start included."""


def stack_env(stack: Stack, state_dir: Path) -> dict[str, str]:
    """What every process of the stack (and a user's shell) needs to reach it."""
    return {
        "PREFECT_API_URL": stack.prefect_api_url,
        "PREFECT_HOME": str(state_dir / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_LOCAL_STORAGE_PATH": str(state_dir / "results"),
        "MAGICFLOW_KAFKA_BLOCK": KAFKA_BLOCK,
    }


class ProcessStarter:
    """Starts processes, records each in ``stack.json`` at once, and undoes it all on failure."""

    def __init__(self, stack: Stack, logs: Path, progress: Progress) -> None:
        self.stack, self.logs, self.progress = stack, logs, progress
        self.processes: list[BackendProcess] = []
        self.cancelled = False
        self.lock = threading.Lock()

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
    os.environ.update(env)  # this process talks to the stack too (blocks, pool)
    stack.save()
    vault_token = secrets.token_hex(16)
    if not (options.project_dir / "prefect.yaml").is_file():
        raise StackError(
            f"no prefect.yaml in {options.project_dir}",
            "install magicflow from its checkout (pip install -e .) and run magicflow up there",
            "not-configured",
        )
    # The worker and the listener import what they need while the servers start, then
    # each goes on once what it needs exists. SQLite answers 503 ("database is locked")
    # to writes that overlap, and Prefect's client waits 2 s before each retry, so the
    # writers take turns where they can: once the blocks are saved the listener starts;
    # once its flow run runs (it then joins its consumer group: seconds without
    # writes) the worker's process deploys prefect.yaml, and only then starts polling
    # (a write every second).
    blocks_saved = state_dir / "blocks-saved"
    listener_running, deployed = state_dir / "listener-running", state_dir / "deployed"
    for signal_file in (blocks_saved, listener_running, deployed):
        signal_file.unlink(missing_ok=True)
    progress(
        "starting the Prefect server and the backends "
        "(a first start on a new database runs migrations: ~20 s)"
    )
    # The blocks' SDKs take seconds to import: done while the server starts, not after.
    threading.Thread(target=_import_for_blocks, name="import-blocks", daemon=True).start()
    max_in_flight = POSTGRES_MAX_IN_FLIGHT if options.database_url else SQLITE_MAX_IN_FLIGHT
    # A free port rather than prefect.yaml's fixed 9464: another program or a second
    # stack may hold that one.
    stack.listener_metrics_port = free_port()
    side_jobs = ThreadPoolExecutor(2)
    later: list[Future[object]] = [
        side_jobs.submit(
            _start_worker,
            stack,
            options.project_dir,
            state_dir,
            listener_running,
            deployed,
            DEPLOY_CONCURRENCY if options.database_url else SQLITE_DEPLOY_CONCURRENCY,
            starter,
        ),
        side_jobs.submit(
            _start_listener,
            stack,
            blocks_saved,
            max_in_flight,
            stack.listener_metrics_port,
            starter,
        ),
    ]
    try:
        _start_servers(stack, options, state_dir, database, vault_token, starter)
        ports = {service.name: service.port for service in stack.services if service.port}
        asyncio.run(prepare_work_pool(WORK_POOL, progress))
        saved = apply_stack_blocks(ports, state_dir, vault_token)
        blocks_saved.write_text(f"{saved} blocks\n")
        progress(f"{saved} blocks saved (as {state_dir / 'blocks.yaml'} describes)")
        stack.listener_flow_run_id = _wait_for_listener_run(
            stack.listener_metrics_port, later[1], logs / "listener.log"
        )
        stack.save()
        listener_running.write_text(f"{stack.listener_flow_run_id}\n")
        progress(f"listener run {stack.listener_flow_run_id} running; deploying prefect.yaml")
        _wait_for_deploy(deployed, later[0], logs / "worker.log")
        progress("every deployment of prefect.yaml deployed; the worker starts")
        create_gitops_project(ports["gitlab-fake"])
        progress(f"GitLab fake: project {GITOPS_PROJECT} (it auto-approves every merge request)")
        asyncio.run(pause_langflow_sync(progress))
        for side_job in later:
            side_job.result()
    except BaseException:
        starter.cancelled = True
        raise
    finally:
        side_jobs.shutdown(wait=False, cancel_futures=True)
    progress(
        f"listener serving (max_in_flight={max_in_flight}, crash follower inside, metrics "
        f"{stack.listener_metrics_url}; {stack.prefect_ui_url}/runs/flow-run/"
        f"{stack.listener_flow_run_id})"
    )
    (state_dir / "env").write_text("".join(f"export {key}={value}\n" for key, value in env.items()))


def _start_worker(
    stack: Stack,
    project_dir: Path,
    state_dir: Path,
    listener_running: Path,
    deployed: Path,
    concurrency: int,
    starter: ProcessStarter,
) -> Service:
    """Starts the process worker; its process deploys prefect.yaml first.

    It imports Prefect's command line, its worker and every flow now, deploys once
    the work pool exists and ``listener_running`` does (`deployments.local_deploy`), writes
    ``deployed``, then runs ``prefect worker start`` (ready once it says it started).
    """
    worker_log = state_dir / "logs" / "worker.log"
    name = f"local-{os.getpid()}"
    return starter.start(
        "worker",
        deploy_argv(
            project_dir,
            f"{stack.prefect_api_url}/work_pools/{WORK_POOL}",
            listener_running,
            deployed,
            concurrency,
            imports=["prefect.workers.process"],
            then=["worker", "start", "--pool", WORK_POOL, "--type", "process", "--name", name],
        ),
        lambda: (
            worker_log.exists()
            and f"Worker {name!r} started" in worker_log.read_text(errors="replace")
        ),
        None,
        None,
        env={"PREFECT_WORKER_QUERY_SECONDS": WORKER_QUERY_SECONDS},
        timeout=DEPLOY_SECONDS,
        cwd=state_dir,
    )


def _start_listener(
    stack: Stack, blocks_saved: Path, max_in_flight: int, metrics_port: int, starter: ProcessStarter
) -> Service:
    """Starts the listener (``kafka-trigger`` as a flow, crash follower inside).

    It imports Prefect and the listener now and runs once the server answers and the
    stack's blocks are saved (``blocks_saved`` exists); it is ready once ``/healthz``
    answers (its consumer has its partitions).
    """
    metrics_url = f"http://127.0.0.1:{metrics_port}"
    return starter.start(
        "listener",
        command_argv(
            f"{stack.prefect_api_url}/health",
            "flows.kafka_trigger:main",
            listener_arguments(max_in_flight, metrics_port),
            ready_file=blocks_saved,
            # Its registry (flows.registry.DEFAULT_REGISTRY) imports every workflow: once
            # the server is up (not competing with its start), while the blocks are saved.
            imports_once_up=["flows.registry:default_registry"],
        ),
        http_ready(f"{metrics_url}/healthz", (200,)),
        metrics_port,
        f"{metrics_url}/healthz",
        f"{metrics_url}/metrics",
        timeout=LISTENER_SECONDS,
        cwd=Path(stack.state_dir),
    )


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
            {
                "PREFECT_API_DATABASE_CONNECTION_URL": database,
                # Each answer 503 (SQLite's "database is locked") with its cause, in its log.
                "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
                # The next 3 runs of each schedule, not 100 days of them (~270 rows
                # written while the deployments are created, locking SQLite); the
                # scheduler tops them up every minute.
                "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": str(SCHEDULED_RUNS_AHEAD),
            },
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


def _wait_for_deploy(deployed: Path, worker: Future[object], log: Path) -> None:
    """Waits until the worker's process wrote ``deployed`` (every deployment exists).

    Raises:
        StackError: The process exited first (a deployment failed), or took too long.
    """
    deadline = time.monotonic() + DEPLOY_SECONDS
    while not deployed.exists():
        if worker.done() and worker.exception() is not None:
            raise StackError(
                f"deploying prefect.yaml failed; the log is {log}",
                "read the log; magicflow check shows what is wrong in prefect.yaml",
                "not-configured",
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"prefect.yaml was not deployed after {DEPLOY_SECONDS:g}s; the log is {log}",
                "read the log; rerun magicflow up",
            )
        time.sleep(0.1)


def _wait_for_listener_run(metrics_port: int, listener: Future[object], log: Path) -> str:
    """Waits until the listener's flow run runs; returns its id.

    Its run is the running ``kafka-trigger`` run with this ``metrics_port``, polled
    through one Prefect client.

    Raises:
        StackError: The listener's process exited first, or took too long.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    running_listeners = FlowFilter(name=FlowFilterName(any_=[LISTENER_FLOW]))
    running = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
    )

    async def poll() -> str:
        deadline = time.monotonic() + LISTENER_SECONDS
        async with get_client() as client:
            while True:
                runs = await client.read_flow_runs(
                    flow_filter=running_listeners,
                    flow_run_filter=running,
                    sort=FlowRunSort.START_TIME_DESC,
                )
                for run in runs:
                    if run.parameters.get("metrics_port") == metrics_port:
                        return str(run.id)
                if listener.done() and listener.exception() is not None:
                    listener.result()  # its StackError names the log
                if time.monotonic() > deadline:
                    raise StackError(
                        f"the listener had no running {LISTENER_FLOW} flow run after "
                        f"{LISTENER_SECONDS:g}s; its log is {log}",
                        "read the log; rerun magicflow up",
                    )
                await asyncio.sleep(0.1)

    return asyncio.run(poll())

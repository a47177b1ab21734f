"""The local stack: every MagicFlow server on 127.0.0.1, started and stopped by PID.

`start_stack` (``magicflow up``) starts a Prefect server (UI on 127.0.0.1:4200 by
default; SQLite in the state folder unless a PostgreSQL URL is given), the Tansu
Kafka broker, moto, fake-gcs-server, drongo, OpenBao, the Kubernetes emulator and
the GitLab fake (which auto-approves merge requests), then saves blocks pointing at
them, creates the work pool, deploys every deployment of ``prefect.yaml``, starts a
process worker polling every second and runs the listener (the ``kafka-trigger`` flow,
with its crash follower) in a process of its own, its metrics and health check on a
free port (the order, and what overlaps, is `deployments.stack_startup`'s). `stop_stack`
(``magicflow down``) stops every process it recorded, and `read_status`
(``magicflow status``) reports them.

Everything lives in one state folder (``.magicflow/`` in the current directory, or
``--state-dir`` / ``$MAGICFLOW_STATE_DIR``): ``stack.json`` (PIDs, ports, URLs),
``logs/`` (one log per process), ``prefect-home/`` and the SQLite database. A PID is
recorded with its process's start time, so a PID reused by another program is never
taken for ours.

Example:
    ```python
    from pathlib import Path

    from deployments.local_stack import StackOptions, start_stack, stop_stack

    stack = start_stack(StackOptions(state_dir=Path(".magicflow")), print)
    print(stack.prefect_ui_url)  # http://127.0.0.1:4200
    stop_stack(Path(".magicflow"), print)
    ```
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from deployments.local_backends import KAFKA_BLOCK
from deployments.local_servers import http_ready, tcp_ready

STATE_DIR_ENV = "MAGICFLOW_STATE_DIR"
"""Environment variable naming the state folder (default ``.magicflow`` here)."""

DEFAULT_PREFECT_PORT = 4200
WORK_POOL = "magicflow"
PREFECT_CLIENTS = ("listener", "worker")
"""The stack's processes that talk to its Prefect server (stopped before the servers)."""
LISTENER_FLOW = "kafka-trigger"
"""The listener's flow (`flows.kafka_trigger`): the stack runs it in a process of its own."""
SQLITE_MAX_IN_FLIGHT = 2
"""The listener's in-flight limit on SQLite: more concurrent run creations lock the
database (``database is locked``, answers 5xx for tens of seconds)."""
POSTGRES_MAX_IN_FLIGHT = 16
"""The listener's in-flight limit on PostgreSQL (prefect.yaml's value)."""
WORKER_QUERY_SECONDS = "1"
STACK_FILE = "stack.json"
PREFECT = (sys.executable, "-m", "prefect")
"""Prefect's command line, from this environment."""

Say = Callable[[str], None]
"""Where progress lines go (``print`` on the command line)."""


class StackError(Exception):
    """The stack cannot start or stop; the message names the port, file or URL.

    Attributes:
        cause: What is wrong.
        fix: What to do about it.
        kind: ``environment`` (this machine), ``unreachable`` (a server given to
            ``up``) or ``not-running`` (no stack in the state folder).
    """

    def __init__(self, cause: str, fix: str, kind: str = "environment") -> None:
        self.cause, self.fix, self.kind = cause, fix, kind
        super().__init__(f"{cause}. Fix: {fix}")


@dataclass
class StackOptions:
    """What ``magicflow up`` was asked for.

    Attributes:
        state_dir: The state folder.
        prefect_port: Port of the Prefect server and UI on 127.0.0.1.
        database_url: Prefect's database; None for SQLite in the state folder.
        sample: Submit the sample tenant-provisioning request once the stack is up.
        restart: Stop a running stack in the state folder first, instead of reusing it.
        project_dir: Where ``prefect.yaml`` is (default: this checkout).
    """

    state_dir: Path
    prefect_port: int = DEFAULT_PREFECT_PORT
    database_url: str | None = None
    sample: bool = True
    restart: bool = False
    project_dir: Path = field(default_factory=lambda: Path(__file__).resolve().parent.parent)


@dataclass
class Service:
    """One process of the stack, as recorded in ``stack.json``.

    Attributes:
        name: What it is (``prefect-server``, ``tansu``, ...).
        pid: Its PID; it leads its own process group.
        started: Its start time in clock ticks since boot (``/proc/PID/stat``).
        port: The port it serves on, if any.
        url: Its URL, if it speaks HTTP.
        health: What `read_status` checks: a URL answering 2xx, or ``tcp``.
        log: Its log file.
    """

    name: str
    pid: int
    started: int
    port: int | None
    url: str | None
    health: str | None
    log: str


@dataclass
class Stack:
    """A running stack: what ``stack.json`` holds.

    Attributes:
        state_dir: The state folder.
        prefect_api_url: The Prefect API (``PREFECT_API_URL``).
        database: The database, password masked.
        services: Every process started, in start order.
        listener_flow_run_id: The listener's flow run.
        listener_metrics_port: Where the listener serves ``/metrics`` and ``/healthz``
            on 127.0.0.1 (a free port, not prefect.yaml's fixed one).
        up_pid: The ``magicflow up`` process that started it.
    """

    state_dir: str
    prefect_api_url: str = ""
    database: str = ""
    services: list[Service] = field(default_factory=list)
    listener_flow_run_id: str | None = None
    listener_metrics_port: int | None = None
    up_pid: int = field(default_factory=os.getpid)

    @property
    def prefect_ui_url(self) -> str:
        """The Prefect UI."""
        return self.prefect_api_url.removesuffix("/api")

    @property
    def listener_metrics_url(self) -> str | None:
        """The listener's Prometheus metrics, once it was started."""
        port = self.listener_metrics_port
        return f"http://127.0.0.1:{port}/metrics" if port else None

    def service(self, name: str) -> Service | None:
        """The recorded service of that name, if any."""
        return next((s for s in self.services if s.name == name), None)

    def save(self) -> None:
        """Writes ``stack.json`` atomically."""
        path = Path(self.state_dir) / STACK_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2))
        temporary.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> Stack | None:
        """The stack recorded in the state folder, if any."""
        path = state_dir / STACK_FILE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            services = [Service(**service) for service in data.pop("services")]
            return cls(**data, services=services)
        except (ValueError, TypeError, KeyError) as error:
            raise StackError(
                f"{path} is not a stack record ({type(error).__name__})",
                f"delete {path} after checking no stack process runs",
            ) from None


# --- processes, by PID -----------------------------------------------------------------------


def process_start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot); None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_alive(service: Service) -> bool:
    """True when the recorded process still runs (same PID and same start time)."""
    return process_start_ticks(service.pid) == service.started


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """The PID and every descendant (a worker's flow runs live in sessions of their own)."""
    children, found, todo = _children_by_parent(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    """Sends a signal to each PID and to the process group it leads, if any."""
    for pid in pids:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def stop_service(service: Service, timeout: float = 15.0) -> bool:
    """SIGTERM the service's process tree and groups, then SIGKILL what lingers.

    Returns:
        True when every process of the tree is gone.
    """
    if not is_alive(service):
        return True
    tree = process_tree(service.pid)
    starts = {pid: process_start_ticks(pid) for pid in tree}

    def alive() -> list[int]:
        return [pid for pid in tree if starts[pid] and process_start_ticks(pid) == starts[pid]]

    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        signal_all(alive(), sig)
        deadline = time.monotonic() + timeout / 3
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive():
            return True
    return not alive()


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port and we may bind it."""
    import socket

    with socket.socket() as sock:
        # As servers bind: a port whose last connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not tcp_ready(port)()


def check_health(service: Service) -> bool:
    """True when the service answers its health check."""
    if not service.health:
        return True
    if service.health == "tcp" and service.port:
        return tcp_ready(service.port)()
    return http_ready(service.health, ok=tuple(range(200, 300)))()


# --- the state folder --------------------------------------------------------------------------


def default_state_dir() -> Path:
    """``$MAGICFLOW_STATE_DIR``, or ``.magicflow`` in the current directory."""
    return Path(os.environ.get(STATE_DIR_ENV) or ".magicflow")


@contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """Holds the state folder's lock: one ``up`` or ``down`` at a time per folder."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / "lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(
                f"another magicflow up or down is using the state folder {state_dir}",
                "wait for it to finish, or use another --state-dir",
            ) from None
        yield


def mask_url(url: str) -> str:
    """A URL with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


class Progress:
    """Prints one line per step with the time since ``up`` began.

    Steps run in several threads at once: one line at a time, so that two lines never
    interleave (``print`` writes a line's text and its newline separately).
    """

    def __init__(self, say: Say) -> None:
        self.say, self.began = say, time.monotonic()
        self.lock = threading.Lock()

    def __call__(self, message: str) -> None:
        """Prints one progress line."""
        with self.lock:
            self.say(f"[{time.monotonic() - self.began:6.1f}s] {message}")


# --- starting ------------------------------------------------------------------------------------


def check_database(url: str) -> None:
    """Connects to a PostgreSQL URL once; raises `StackError` naming it when unreachable."""
    import asyncio

    parts = urlsplit(url)
    if not parts.scheme.startswith("postgresql"):
        raise StackError(
            f"--database-url {mask_url(url)} is not a PostgreSQL URL",
            "give postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB, or leave it out for SQLite",
            "usage",
        )

    async def connect() -> None:
        import asyncpg

        connection = await asyncpg.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=parts.username,
            password=parts.password,
            database=parts.path.lstrip("/") or None,
            timeout=5,
        )
        await connection.close()

    try:
        asyncio.run(connect())
    except Exception as error:
        raise StackError(
            f"PostgreSQL at {mask_url(url)} is unreachable ({type(error).__name__})",
            "start it, or check host, port, user and database in --database-url",
            "unreachable",
        ) from None


def _check_existing(state_dir: Path, options: StackOptions, say: Say) -> Stack | None:
    """The running stack to reuse, if any; cleans a stale record; refuses a broken stack."""
    existing = Stack.load(state_dir)
    if existing is None:
        return None
    alive = [s for s in existing.services if is_alive(s)]
    dead = [s.name for s in existing.services if not is_alive(s)]
    if alive and not dead and not options.restart:
        return existing
    if alive and not options.restart:
        raise StackError(
            f"the stack in {state_dir} is broken: {', '.join(dead)} stopped while "
            + ", ".join(f"{s.name} (pid {s.pid})" for s in alive)
            + " still run",
            "magicflow down, then magicflow up (or magicflow up --restart)",
        )
    if alive:
        say(f"stopping the stack running from {state_dir} (--restart)")
        _stop_all(existing, say)
    else:
        say(
            f"{state_dir / STACK_FILE} was left by a stopped magicflow up "
            "(none of its processes runs): cleaned it"
        )
        (state_dir / STACK_FILE).unlink()
    return None


def start_stack(options: StackOptions, say: Say) -> tuple[Stack, bool]:
    """``magicflow up``: starts the whole stack, or finds it already running.

    Ctrl-C or any failure stops every process started so far (logs are kept).

    Args:
        options: What to start.
        say: Where progress lines go.

    Returns:
        The stack, and True when it was already running (then nothing was started).

    Raises:
        StackError: A taken port, an unreachable database, a broken stack in the
            state folder, a server that did not start; the message names it.
    """
    state_dir = options.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)  # logs of dev servers may show their (local) root tokens
    with state_lock(state_dir):
        running = _check_existing(state_dir, options, say)
        if running is not None:
            return running, True
        if not port_is_free(options.prefect_port):
            raise StackError(
                f"port {options.prefect_port} on 127.0.0.1 is taken",
                "stop what listens there (magicflow down, if it is another stack), "
                "or pass --prefect-port PORT",
            )
        if options.database_url:
            check_database(options.database_url)
        api = f"http://127.0.0.1:{options.prefect_port}/api"
        database = options.database_url or f"sqlite+aiosqlite:///{state_dir / 'prefect.db'}"
        stack = Stack(state_dir=str(state_dir), prefect_api_url=api, database=mask_url(database))
        # Imported here: the start-up sequence builds on this module's records.
        from deployments.stack_startup import ProcessStarter, start_processes

        progress = Progress(say)
        starter = ProcessStarter(stack, state_dir / "logs", progress)
        try:
            start_processes(stack, options, state_dir, database, starter, progress)
        except BaseException:
            starter.cancelled = True
            say("stopping what was started (logs kept)")
            _stop_all(stack, say)
            raise
        return stack, False


def listener_arguments(max_in_flight: int, metrics_port: int) -> list[str]:
    """The stack's listener: ``python -m flows.kafka_trigger`` arguments.

    It runs as the ``kafka-trigger`` flow (its run, logs and parameters in the UI), with
    the ``listener`` deployment's workflows, the stack's Kafka block and the crash
    follower inside (the stack starts no ``crash-follower`` run).

    Args:
        max_in_flight: Requests dispatched at once (low on SQLite).
        metrics_port: Where ``/metrics`` and ``/healthz`` are served on 127.0.0.1.

    Returns:
        The arguments.

    Example:
        >>> listener_arguments(2, 9464)[:3]
        ['--as-flow', '--kafka-block', 'magicflow']
    """
    return [
        "--as-flow",
        *("--kafka-block", KAFKA_BLOCK),
        *("--max-in-flight", str(max_in_flight)),
        *("--metrics-port", str(metrics_port)),
    ]


def _stop_all(stack: Stack, say: Say) -> None:
    """Stops every recorded process; deletes ``stack.json`` once all are gone.

    The Prefect clients (the listener and the worker) first, so their last calls (their
    flow runs' final states) still reach the server, then every server; each wave at
    once, since each process may take seconds to exit on SIGTERM.
    """
    from concurrent.futures import ThreadPoolExecutor

    clients = [service for service in stack.services if service.name in PREFECT_CLIENTS]
    servers = [service for service in stack.services if service.name not in PREFECT_CLIENTS]
    left = []
    for wave in (clients, servers):
        if not wave:
            continue
        with ThreadPoolExecutor(len(wave)) as pool:
            stopped = list(pool.map(stop_service, wave))
        left += [
            f"{s.name} (pid {s.pid})" for s, gone in zip(wave, stopped, strict=True) if not gone
        ]
    if left:
        raise StackError(
            f"still running after SIGTERM and SIGKILL: {', '.join(left)}",
            "check who owns them (ps -p PID) and stop them by PID",
        )
    (Path(stack.state_dir) / STACK_FILE).unlink(missing_ok=True)
    say(f"stopped {len(stack.services)} processes; logs kept in {Path(stack.state_dir) / 'logs'}")


def stop_stack(state_dir: Path, say: Say) -> Stack:
    """``magicflow down``: stops every process the state folder recorded, and checks they are gone.

    Args:
        state_dir: The state folder.
        say: Where progress lines go.

    Returns:
        The stack that was stopped.

    Raises:
        StackError: No stack is recorded there, or a process outlived SIGKILL.
    """
    state_dir = state_dir.resolve()
    with state_lock(state_dir):
        stack = Stack.load(state_dir)
        if stack is None:
            raise StackError(
                f"no stack is recorded in {state_dir}",
                "nothing to stop; pass --state-dir if it was started elsewhere",
                "not-running",
            )
        _stop_all(stack, say)
        return stack


@dataclass
class ServiceStatus:
    """One process as ``magicflow status`` shows it."""

    service: Service
    alive: bool
    healthy: bool


def read_status(state_dir: Path) -> tuple[Stack, list[ServiceStatus], str | None]:
    """``magicflow status``: each recorded process, alive and healthy or not.

    Args:
        state_dir: The state folder.

    Returns:
        The stack, each service's status (the listener's health is its ``/healthz``),
        and the state of the listener's flow run (None when the Prefect API does not
        answer).

    Raises:
        StackError: No stack is recorded in the state folder.
    """
    stack = Stack.load(state_dir.resolve())
    if stack is None:
        raise StackError(
            f"no stack is recorded in {state_dir.resolve()}",
            "magicflow up starts one (or pass --state-dir)",
            "not-running",
        )
    statuses = []
    for service in stack.services:
        alive = is_alive(service)
        statuses.append(ServiceStatus(service, alive, alive and check_health(service)))
    state = None
    if stack.listener_flow_run_id:
        try:
            url = f"{stack.prefect_api_url}/flow_runs/{stack.listener_flow_run_id}"
            with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback
                state = str(json.loads(response.read())["state"]["name"])
        except (OSError, ValueError, KeyError, TypeError):
            state = None
    return stack, statuses, state

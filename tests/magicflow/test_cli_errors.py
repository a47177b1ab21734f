"""Every ``magicflow`` error is one line naming the cause and the fix, with its exit code.

Each case runs the real command in a subprocess and checks what a user sees: one
``magicflow: error:`` line on stderr, no traceback, and the documented exit code
(`magicflow.cli.ExitCode`). The running-stack cases (a second ``up``, a port taken by
a stack) are in ``tests/deployments/test_local_stack.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from deployments.local_servers import free_port
from magicflow.cli import MEANING, ExitCode, build_parser, main
from tests.fixtures.kafka import PROJECT_ROOT


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MAGICFLOW_STATE_DIR")}
    return subprocess.run(
        [sys.executable, "-m", "magicflow.cli", *args],
        cwd=PROJECT_ROOT,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: ExitCode) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error: " in lines[0] and "Fix: " in lines[0], lines[0]
    return lines[0]


def children_of(pid: int) -> list[int]:
    """The direct children of a process, from /proc."""
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


def start_ticks(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def stack_record(state_dir: Path, services: list[tuple[str, int, str | None]]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "state_dir": str(state_dir),
        "prefect_api_url": "http://127.0.0.1:9/api",
        "database": "sqlite",
        "services": [
            {
                "name": name,
                "pid": pid,
                "started": int(started or 0),
                "port": None,
                "url": None,
                "health": None,
                "log": str(state_dir / f"{name}.log"),
            }
            for name, pid, started in services
        ],
        "listener_flow_run_id": None,
        "up_pid": 1,
    }
    (state_dir / "stack.json").write_text(json.dumps(record))


def test_up_on_a_taken_port_names_the_port_and_the_flag(tmp_path: Path, taken_port: int) -> None:
    result = cli("up", "--state-dir", str(tmp_path), "--prefect-port", str(taken_port))
    line = one_error_line(result, ExitCode.ENVIRONMENT)
    assert f"port {taken_port} on 127.0.0.1 is taken" in line and "--prefect-port" in line
    assert not (tmp_path / "stack.json").exists()


def test_up_with_an_unreachable_postgresql_names_it_without_its_password(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://magicflow:s3cr3t-pw@127.0.0.1:{free_port()}/prefect"
    result = cli("up", "--state-dir", str(tmp_path), "--prefect-port", str(free_port()),
                 "--database-url", url)  # fmt: skip
    line = one_error_line(result, ExitCode.UNREACHABLE)
    assert "PostgreSQL at postgresql+asyncpg://magicflow:***@127.0.0.1" in line
    assert "s3cr3t-pw" not in result.stdout + result.stderr


def test_up_cleans_a_state_folder_left_by_a_killed_up(tmp_path: Path, taken_port: int) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stack_record(tmp_path, [("prefect-server", dead.pid, "12345"), ("tansu", dead.pid, "1")])
    # The taken port stops this up right after the state folder was dealt with.
    result = cli("up", "--state-dir", str(tmp_path), "--prefect-port", str(taken_port))
    assert "was left by a stopped magicflow up (none of its processes runs): cleaned" in (
        result.stdout
    )
    one_error_line(result, ExitCode.ENVIRONMENT)
    assert not (tmp_path / "stack.json").exists()


def test_a_partly_running_stack_is_refused_and_down_stops_it_by_pid(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while start_ticks(sleeper.pid) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        stack_record(
            tmp_path,
            [("tansu", sleeper.pid, start_ticks(sleeper.pid)), ("moto", 999999, "1")],
        )
        result = cli("up", "--state-dir", str(tmp_path), "--prefect-port", str(free_port()))
        line = one_error_line(result, ExitCode.ENVIRONMENT)
        assert f"moto stopped while tansu (pid {sleeper.pid}) still run" in line
        assert "magicflow down" in line
        assert sleeper.poll() is None  # up touched nothing

        down = cli("down", "--state-dir", str(tmp_path))
        assert down.returncode == 0, down.stderr
        assert sleeper.wait(timeout=30) is not None
        assert not (tmp_path / "stack.json").exists()
    finally:
        if sleeper.poll() is None:
            sleeper.kill()


def test_status_and_down_without_a_stack_say_how_to_start_one(tmp_path: Path) -> None:
    assert "magicflow up" in one_error_line(
        cli("status", "--state-dir", str(tmp_path)), ExitCode.NOT_CONFIGURED
    )
    assert "no stack is recorded" in one_error_line(
        cli("down", "--state-dir", str(tmp_path)), ExitCode.NOT_CONFIGURED
    )


def test_the_command_run_in_process_leaves_the_kafka_clients_logging_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A notebook calling the command keeps seeing the Kafka client's own warnings after it.
    kafka_client_logger = logging.getLogger("aiokafka")
    before = kafka_client_logger.level
    kafka_client_logger.setLevel(logging.WARNING)
    try:
        assert main(["status", "--state-dir", str(tmp_path)]) == ExitCode.NOT_CONFIGURED
        assert "magicflow up" in capsys.readouterr().err
        assert kafka_client_logger.level == logging.WARNING
    finally:
        kafka_client_logger.setLevel(before)


def test_usage_errors_are_one_line_with_the_fix() -> None:
    line = one_error_line(cli("up", "--prefect-port", "70000"), ExitCode.USAGE)
    assert "70000 is not a port number" in line and "magicflow up --help" in line
    line = one_error_line(cli("no-such-command"), ExitCode.USAGE)
    assert "invalid choice" in line
    line = one_error_line(cli("submit", "Tenant_Provisioning"), ExitCode.USAGE)
    assert "^[a-z0-9][a-z0-9-]{0,63}$" in line  # the pattern a workflow name must match


def test_an_unreachable_broker_is_one_line_not_a_traceback() -> None:
    result = cli("submit", "tenant-provisioning", "--bootstrap-servers",
                 f"127.0.0.1:{free_port()}")  # fmt: skip
    line = one_error_line(result, ExitCode.UNREACHABLE)
    assert "Kafka is unreachable" in line and "magicflow up" in line


def test_an_unreachable_prefect_api_is_one_line() -> None:
    api = {"PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}
    for command in (("blocks", "list"), ("automations", "apply")):
        line = one_error_line(cli(*command, env=api), ExitCode.UNREACHABLE)
        assert "the Prefect API is unreachable" in line and "PREFECT_API_URL" in line


def test_a_missing_block_is_one_line_saying_how_to_create_it(prefect_server: None) -> None:
    api = {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    result = cli("submit", "tenant-provisioning", "--kafka-block", "no-such-block", env=api)
    line = one_error_line(result, ExitCode.NOT_CONFIGURED)
    assert "no-such-block" in line and "magicflow blocks apply" in line


def test_a_missing_blocks_file_is_one_line(tmp_path: Path) -> None:
    result = cli("blocks", "apply", str(tmp_path / "nope.yaml"))
    assert result.returncode == ExitCode.NOT_CONFIGURED
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"magicflow: error: {tmp_path / 'nope.yaml'}: no such file"
    ]


def _subcommand_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _subcommand_parsers(sub)


def test_help_lists_every_exit_code_and_every_option_has_help() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for code in ExitCode:
        assert f"{code.value:>2}  {code.name.lower()}: {MEANING[code]}" in result.stdout
    missing = [
        f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
        for parser in _subcommand_parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


def test_ctrl_c_during_up_stops_every_process_it_had_started(tmp_path: Path) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "magicflow.cli", "up", "--state-dir", str(tmp_path),
         "--prefect-port", str(free_port())],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background jobs ignore SIGINT; a terminal's Ctrl-C does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    services: list[dict[str, object]] = []
    deadline = time.monotonic() + 120
    while len(services) < 8 and time.monotonic() < deadline:  # every server is starting
        try:
            services = json.loads((tmp_path / "stack.json").read_text())["services"]
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    assert len(services) >= 8, services
    # The deploy process (importing every flow while the server starts) is not recorded.
    helpers = {pid: start_ticks(pid) for pid in children_of(up.pid)}
    assert any(
        "deployments.local_deploy" in Path(f"/proc/{pid}/cmdline").read_text() for pid in helpers
    )
    up.send_signal(signal.SIGINT)
    out, err = up.communicate(timeout=120)
    assert up.returncode == 130, out + err
    assert "stopping what was started" in out and "Traceback" not in out + err
    alive = [s["name"] for s in services if start_ticks(int(str(s["pid"]))) == str(s["started"])]
    assert alive == []
    assert [pid for pid, started in helpers.items() if start_ticks(pid) == started] == []
    assert not (tmp_path / "stack.json").exists()

"""Small jobs that compositions are tested with, and a registry that allows them.

Every job appends one JSON line to the file ``log`` when it runs (``{"job", "value"}``),
so a test counts executions from outside Prefect. The registry (``registry``) holds
these jobs, the ``compose`` workflow and the served test workflow ``test-changes``;
``MAGICFLOW_REGISTRY=tests.backends.compose_targets:registry`` makes the compose
workflow use it (the ``served_workflows`` runner sets it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pydantic import JsonValue

from flows.compose import compose
from flows.registry import Registry
from magicflow import Change, ConflictError
from magicflow.jobs import job
from tests.backends.serve_workflows import DEPLOYMENT_NAME, changes_workflow

SECRET_IN_ERROR = "hunter2-never-in-a-payload"
"""What the `leak` job's foreign exception quotes: must reach no callback payload."""


def _log(log: str | None, job_name: str, value: JsonValue) -> None:
    if log is not None:
        with Path(log).open("a") as lines:
            lines.write(json.dumps({"job": job_name, "value": value}) + "\n")


def executions(log: str | Path, job_name: str | None = None) -> list[JsonValue]:
    """The values logged by the jobs that ran (of one job, when named), in order."""
    path = Path(log)
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line["value"] for line in lines if job_name is None or line["job"] == job_name]


@job
def add(x: int, y: int = 1, log: str | None = None, dry_run: bool = False) -> int:
    """Returns ``x + y``."""
    _log(log, "add", [x, y])
    return x + y


@job
def record(
    log: str, value: JsonValue = None, seconds: float = 0.0, dry_run: bool = False
) -> JsonValue:
    """Logs and returns ``value``, after working for ``seconds``."""
    time.sleep(seconds)  # the job's own work, so that swarm items overlap
    _log(log, "record", value)
    return value


@job
def ensure_item(log: str, name: str, dry_run: bool = False) -> Change:
    """Returns a Change for ``test:item/<name>``."""
    _log(log, "ensure_item", name)
    return Change(resource=f"test:item/{name}", action="created", dry_run=dry_run)


@job
def fail(log: str, value: JsonValue = None, dry_run: bool = False) -> None:
    """Fails with a typed error naming ``value``."""
    _log(log, "fail", value)
    raise ConflictError(f"test:item/{value}", "refused by the test")


@job
def fail_once(log: str, marker: str, value: JsonValue = None) -> JsonValue:
    """Fails the first time (creating ``marker``), then returns ``value``."""
    _log(log, "fail_once", value)
    if not Path(marker).exists():
        Path(marker).write_text("failed once")
        raise ConflictError("test:flaky", "first attempt refused")
    return value


@job
def leak(log: str) -> None:
    """Fails with a foreign error whose text holds a secret."""
    _log(log, "leak", None)
    raise RuntimeError(f"could not log in with password={SECRET_IN_ERROR}")


@job
def wait_for_file(log: str, path: str, timeout_s: float = 120.0) -> str:
    """Returns once ``path`` exists (the test's go signal), polling with a deadline."""
    deadline = time.monotonic() + timeout_s
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise ConflictError(f"test:file/{path}", "never appeared")
        time.sleep(0.05)
    _log(log, "wait_for_file", path)
    return path


@job
def collect(log: str, payload: JsonValue = None) -> None:
    """A callback: logs what it receives."""
    _log(log, "collect", payload)


registry = Registry()
for _job in (add, record, ensure_item, fail, fail_once, leak, wait_for_file, collect):
    registry.register_job(_job.name, _job)
registry.register("compose", compose)
registry.register(
    "test-changes", changes_workflow, deployment=f"{changes_workflow.name}/{DEPLOYMENT_NAME}"
)

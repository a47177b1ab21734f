"""The local stack's deployments: the work pool, ``prefect deploy --all``, paused schedules.

Most of ``prefect deploy --all``'s time goes to importing Prefect's command line and
every entrypoint's module (with the SDKs they use). `start_deploy` starts
``python -m deployments.local_deploy`` as soon as ``magicflow up`` begins: it imports
all of that while the Prefect server starts, waits until the server has the work
pool (a URL answering 200), then runs ``prefect --no-prompt deploy --all`` in itself,
from the project folder. Its output goes to ``deploy.log`` in the state folder.
`prepare_work_pool` creates the pool; `pause_langflow_sync` pauses the one schedule
the stack cannot serve.

Example:
    ```python
    from pathlib import Path

    from deployments.local_deploy import start_deploy

    deploy = start_deploy(Path("."), Path("deploy.log"), "http://127.0.0.1:4200/api/work_pools/magicflow")
    assert deploy.wait() == 0
    ```
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from deployments.local_servers import http_ready

READY_TIMEOUT_SECONDS = 300.0
"""How long the deploy process waits for the server and its work pool."""
LANGFLOW_SYNC_DEPLOYMENT = "langflow-sync"
"""Deployed but with its schedule paused: the stack has no LangFlow (a 2 GB install of its
own, with pins of its own), so it saves no ``langflow`` block for it."""


def entrypoint_modules(prefect_yaml: Path) -> list[str]:
    """The modules of the deployments' entrypoints (``a.b:flow`` or ``a.b.flow``).

    Args:
        prefect_yaml: The project's ``prefect.yaml``.

    Returns:
        Module names, each once, in file order.
    """
    import yaml

    deployments = yaml.safe_load(prefect_yaml.read_text()).get("deployments") or []
    modules: list[str] = []
    for deployment in deployments:
        entrypoint = str(deployment.get("entrypoint") or "")
        module = entrypoint.split(":")[0] if ":" in entrypoint else entrypoint.rpartition(".")[0]
        if module and "/" not in module and module not in modules:
            modules.append(module)
    return modules


def start_deploy(project_dir: Path, log: Path, ready_url: str) -> subprocess.Popen[bytes]:
    """Starts the deploy process; it deploys once ``ready_url`` answers 200.

    Args:
        project_dir: Where ``prefect.yaml`` is.
        log: Where its output goes.
        ready_url: What must answer 200 first (the work pool on the Prefect API).

    Returns:
        The process (in a session of its own); exit 0 when every deployment was deployed.
    """
    with log.open("wb") as output:
        return subprocess.Popen(  # noqa: S603 - this interpreter, this module
            [sys.executable, "-m", "deployments.local_deploy", "--ready-url", ready_url],
            cwd=project_dir,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


async def prepare_work_pool(work_pool: str, progress: Callable[[str], None]) -> None:
    """Creates the process work pool and cancels runs a previous stack left running.

    Args:
        work_pool: The pool's name.
        progress: Where progress lines go.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.states import Cancelled

    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=work_pool, type="process"))
            progress(f"work pool {work_pool!r} created")
        except ObjectAlreadyExists:
            progress(f"work pool {work_pool!r} exists")
        left = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]
                    )
                )
            )
        )
        for flow_run in left:
            await client.set_flow_run_state(
                flow_run.id, Cancelled(message="left running by a stopped local stack"), force=True
            )
        if left:
            progress(f"cancelled {len(left)} run(s) a previous stack left running")


async def pause_langflow_sync(progress: Callable[[str], None]) -> None:
    """Pauses the hourly ``langflow-sync`` schedule, so it fails no run every hour.

    Pausing a schedule also deletes the runs Prefect had already scheduled from it.

    Args:
        progress: Where progress lines go.
    """
    from prefect import get_client

    from flows.langflow import SYNC_FLOW_NAME

    name = f"{SYNC_FLOW_NAME}/{LANGFLOW_SYNC_DEPLOYMENT}"
    async with get_client() as client:
        deployment = await client.read_deployment_by_name(name)
        for schedule in deployment.schedules:
            await client.update_deployment_schedule(deployment.id, schedule.id, active=False)
    progress(
        f"{name}: schedule paused, the stack has no LangFlow (no 'langflow' block). For "
        "yours: save a 'langflow' block (magicflow blocks apply), then "
        f"prefect deployment schedule resume {name} --all"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Imports, waits for the server, then runs ``prefect --no-prompt deploy --all``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ready-url", required=True, help="deploy once this answers 200")
    args = parser.parse_args(argv)
    began = time.monotonic()
    importlib.import_module("prefect.cli")
    importlib.import_module("prefect.cli.deploy")
    for module in entrypoint_modules(Path("prefect.yaml")):
        importlib.import_module(module)
    print(f"imported in {time.monotonic() - began:.1f}s; waiting for {args.ready_url}", flush=True)
    ready, deadline = http_ready(args.ready_url), time.monotonic() + READY_TIMEOUT_SECONDS
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"{args.ready_url} did not answer 200 in {READY_TIMEOUT_SECONDS:g}s")
        time.sleep(0.1)
    from prefect.cli import app

    sys.argv = ["prefect", "--no-prompt", "deploy", "--all"]
    app()


if __name__ == "__main__":
    main()

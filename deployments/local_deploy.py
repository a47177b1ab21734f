"""The local stack's deployments: the work pool, every deployment of prefect.yaml, paused schedules.

Most of ``prefect deploy --all``'s time goes to importing Prefect's command line and
every entrypoint's module (with the SDKs they use), then to its API calls, one
deployment after the other. `start_deploy` starts ``python -m deployments.local_deploy``
as soon as ``magicflow up`` begins: it imports all of that while the Prefect server
starts and waits until the server has the work pool (a URL answering 200). Then it
deploys with the very code ``prefect deploy --all`` runs for each deployment
(`deploy_all`: Prefect's own loading of prefect.yaml and its per-deployment deploy
step, so names, parameters, schedules, concurrency, pull steps and job variables are
the same), one deployment first (the listener, so ``magicflow up`` can start it) and
the others `DEPLOY_CONCURRENCY` at a time on PostgreSQL (one at a time on SQLite,
which locks under concurrent writes). Its output goes to ``deploy.log`` in the
state folder. `prepare_work_pool` creates the pool; `pause_langflow_sync` pauses the
one schedule the stack cannot serve.

Example:
    ```python
    from pathlib import Path

    from deployments.local_deploy import start_deploy

    deploy = start_deploy(
        Path("."), Path("deploy.log"), "http://127.0.0.1:4200/api/work_pools/magicflow"
    )
    assert deploy.wait() == 0
    ```
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deployments.prefect_when_ready import wait_until_ready

READY_TIMEOUT_SECONDS = 300.0
"""How long the deploy process waits for the server and its work pool."""
LANGFLOW_SYNC_DEPLOYMENT = "langflow-sync"
"""Deployed but with its schedule paused: the stack has no LangFlow (a 2 GB install of its
own, with pins of its own), so it saves no ``langflow`` block for it."""
DEPLOY_CONCURRENCY = 3
"""Deployments created at once after the first, on PostgreSQL: each is a few API calls
that mostly wait on the server."""
SQLITE_DEPLOY_CONCURRENCY = 1
"""On SQLite, one at a time: with three at once (and the worker, the blocks and the
listener writing too), a run at load average ~10 had the server answer ``database is
locked`` and three deployments each took ~70 s of the client's retries."""


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


def start_deploy(
    project_dir: Path,
    log: Path,
    ready_url: str,
    first: str | None = None,
    first_deployed: Path | None = None,
    concurrency: int = DEPLOY_CONCURRENCY,
) -> subprocess.Popen[bytes]:
    """Starts the deploy process; it deploys once ``ready_url`` answers 200.

    Args:
        project_dir: Where ``prefect.yaml`` is.
        log: Where its output goes.
        ready_url: What must answer 200 first (the work pool on the Prefect API).
        first: The deployment (its ``name`` in prefect.yaml) to deploy before the others.
        first_deployed: A file written once ``first`` is deployed.
        concurrency: How many of the others are deployed at once.

    Returns:
        The process (in a session of its own); exit 0 when every deployment was deployed.
    """
    argv = [sys.executable, "-m", "deployments.local_deploy", "--ready-url", ready_url]
    argv += ["--concurrency", str(concurrency)]
    if first is not None:
        argv += ["--first", first]
    if first_deployed is not None:
        first_deployed.unlink(missing_ok=True)
        argv += ["--first-deployed", str(first_deployed)]
    with log.open("wb") as output:
        return subprocess.Popen(  # noqa: S603 - this interpreter, this module
            argv,
            cwd=project_dir,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


async def deploy_all(
    prefect_yaml: Path,
    first: str | None = None,
    first_deployed: Path | None = None,
    concurrency: int = DEPLOY_CONCURRENCY,
) -> list[str]:
    """Deploys every deployment of prefect.yaml as ``prefect --no-prompt deploy --all`` does.

    Each deployment goes through Prefect's own deploy step (the function ``prefect
    deploy`` calls for each one), with prefect.yaml loaded and picked by Prefect's own
    code: only the order and the overlap differ.

    Args:
        prefect_yaml: The project's prefect.yaml (its folder is the current directory).
        first: The deployment to deploy before the others (its ``name``).
        first_deployed: Written once ``first`` is deployed.
        concurrency: How many of the others are deployed at once.

    Returns:
        The names deployed, in the order they finished.

    Raises:
        DeployError: A deployment failed; the others were still deployed.

    Example:
        ```python
        asyncio.run(deploy_all(Path("prefect.yaml"), first="listener"))
        ```
    """
    from prefect.cli._app import console
    from prefect.cli.deploy._config import _load_deploy_configs_and_actions, _pick_deploy_configs
    from prefect.cli.deploy._core import _run_single_deploy
    from prefect.settings import get_current_settings

    def not_interactive() -> bool:
        return False

    configs, actions = _load_deploy_configs_and_actions(prefect_file=prefect_yaml, console=console)
    configs = _pick_deploy_configs(
        configs, [], True, console=console, is_interactive=not_interactive
    )
    default_pool = get_current_settings().deployments.default_work_pool_name
    for config in configs:  # as prefect deploy --all does for more than one deployment
        if default_pool is not None and config.setdefault("work_pool", {}).get("name") is None:
            config["work_pool"]["name"] = default_pool
    configs = [config for config in configs if config.get("name")]
    deployed: list[str] = []
    failed: list[str] = []

    async def deploy(config: dict[str, Any]) -> None:
        began = time.monotonic()
        try:
            await _run_single_deploy(
                config,
                actions,
                prefect_file=prefect_yaml,
                console=console,
                is_interactive=not_interactive,
            )
        except Exception as error:
            failed.append(f"{config['name']} ({type(error).__name__}: {error})")
            print(f"deploying {config['name']} failed: {error!r}", flush=True)
            return
        deployed.append(str(config["name"]))
        print(f"deployed {config['name']} in {time.monotonic() - began:.1f}s", flush=True)

    for config in configs:
        if config["name"] == first:
            await deploy(config)
    if first_deployed is not None and first in deployed:
        await asyncio.to_thread(first_deployed.write_text, f"{first}\n")
    slots = asyncio.Semaphore(max(1, concurrency))

    async def deploy_in_turn(config: dict[str, Any]) -> None:
        async with slots:
            await deploy(config)

    await asyncio.gather(*(deploy_in_turn(c) for c in configs if c["name"] != first))
    if failed:
        raise DeployError(failed)
    return deployed


class DeployError(Exception):
    """Deployments of prefect.yaml failed; the message names each and its cause."""

    def __init__(self, failed: list[str]) -> None:
        self.failed = failed
        super().__init__(f"{len(failed)} deployment(s) failed: {'; '.join(failed)}")


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
    """Imports, waits for the server, then deploys every deployment (`deploy_all`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ready-url", required=True, help="deploy once this answers 200")
    parser.add_argument("--first", default=None, help="the deployment to deploy first")
    parser.add_argument(
        "--first-deployed", type=Path, default=None, help="written once --first is deployed"
    )
    parser.add_argument(
        "--concurrency", type=int, default=DEPLOY_CONCURRENCY, help="deployments at once"
    )
    args = parser.parse_args(argv)
    began = time.monotonic()
    importlib.import_module("prefect.cli")
    importlib.import_module("prefect.cli.deploy")
    for module in entrypoint_modules(Path("prefect.yaml")):
        importlib.import_module(module)
    print(f"imported in {time.monotonic() - began:.1f}s; waiting for {args.ready_url}", flush=True)
    wait_until_ready(args.ready_url, READY_TIMEOUT_SECONDS)
    began = time.monotonic()
    try:
        deployed = asyncio.run(
            deploy_all(Path("prefect.yaml"), args.first, args.first_deployed, args.concurrency)
        )
    except DeployError as error:
        raise SystemExit(str(error)) from None
    print(f"{len(deployed)} deployments deployed in {time.monotonic() - began:.1f}s", flush=True)


if __name__ == "__main__":
    main()

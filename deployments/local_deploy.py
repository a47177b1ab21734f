"""The local stack's deployments: the work pool, every deployment of prefect.yaml, paused schedules.

Most of ``prefect deploy --all``'s time goes to importing Prefect's command line and
every entrypoint's module (with the SDKs they use), then to its API calls, one
deployment after the other. ``magicflow up`` starts ``python -m deployments.local_deploy``
(`deploy_argv`) as soon as it begins: it imports Prefect's command line while the
Prefect server starts, the flows once the server has the work pool (a URL answering
200), and waits for its signal file. Then it
deploys with the very code ``prefect deploy --all`` runs for each deployment
(`deploy_all`: Prefect's own loading of prefect.yaml and its per-deployment deploy
step, so names, parameters, schedules, concurrency, pull steps and job variables are
the same), `DEPLOY_CONCURRENCY` at a time on PostgreSQL (one at a time on SQLite,
which locks under concurrent writes), and then becomes the stack's worker (``prefect
worker start``, run in the same process, its imports done already). `prepare_work_pool`
creates the pool; `pause_langflow_sync` pauses the one schedule the stack cannot serve.

Example:
    ```console
    $ python -m deployments.local_deploy --concurrency 1
        --ready-url http://127.0.0.1:4200/api/work_pools/magicflow
        -- worker start --pool magicflow  # (one line, in the project's folder)
    ```
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deployments.when_ready import wait_until_ready

READY_TIMEOUT_SECONDS = 300.0
"""How long the deploy process waits for the server and its work pool."""
LANGFLOW_SYNC_DEPLOYMENT = "langflow-sync"
"""Deployed but with its schedule paused: the stack has no LangFlow (a 2 GB install of its
own, with pins of its own), so it saves no ``langflow`` block for it."""
DEPLOY_CONCURRENCY = 3
"""Deployments created at once on PostgreSQL: each is a few API calls
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


def deploy_argv(
    project_dir: Path,
    ready_url: str,
    ready_file: Path | None = None,
    deployed_file: Path | None = None,
    concurrency: int = DEPLOY_CONCURRENCY,
    imports: Sequence[str] = (),
    then: Sequence[str] = (),
) -> list[str]:
    """The command line of the deploy process.

    Args:
        project_dir: Where ``prefect.yaml`` is (the deploy runs there; ``then`` runs in
            the process's own working directory).
        ready_url: What must answer 200 first (the work pool on the Prefect API).
        ready_file: What must exist too, when given.
        deployed_file: Written once every deployment is deployed.
        concurrency: How many deployments are deployed at once.
        imports: Further modules to import while waiting (for ``then``).
        then: A ``prefect`` command this process runs once every deployment is
            deployed, e.g. ``["worker", "start", "--pool", "magicflow"]``.

    Returns:
        The argv, for this interpreter; exit 0 when every deployment was deployed (and
        ``then`` ended well).

    Example:
        >>> deploy_argv(Path("."), "http://127.0.0.1:4200/api/work_pools/magicflow")[1:3]
        ['-m', 'deployments.local_deploy']
    """
    argv = [sys.executable, "-m", "deployments.local_deploy", "--ready-url", ready_url]
    argv += ["--project-dir", str(project_dir)]
    argv += ["--concurrency", str(concurrency)]
    if ready_file is not None:
        argv += ["--ready-file", str(ready_file)]
    if deployed_file is not None:
        argv += ["--deployed-file", str(deployed_file)]
    for module in imports:
        argv += ["--import", module]
    return [*argv, "--", *then] if then else argv


async def deploy_all(prefect_yaml: Path, concurrency: int = DEPLOY_CONCURRENCY) -> list[str]:
    """Deploys every deployment of prefect.yaml as ``prefect --no-prompt deploy --all`` does.

    Each deployment goes through Prefect's own deploy step (the function ``prefect
    deploy`` calls for each one), with prefect.yaml loaded and picked by Prefect's own
    code: only the overlap differs.

    Args:
        prefect_yaml: The project's prefect.yaml (its folder is the current directory).
        concurrency: How many deployments are deployed at once.

    Returns:
        The names deployed, in the order they finished.

    Raises:
        DeployError: A deployment failed; the others were still deployed.

    Example:
        ```python
        asyncio.run(deploy_all(Path("prefect.yaml"), concurrency=1))
        ```
    """
    from prefect.cli._app import console
    from prefect.cli.deploy._config import _load_deploy_configs_and_actions, _pick_deploy_configs
    from prefect.cli.deploy._core import _run_single_deploy
    from prefect.context import AsyncClientContext
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

    slots = asyncio.Semaphore(max(1, concurrency))

    async def deploy_in_turn(config: dict[str, Any]) -> None:
        async with slots:
            await deploy(config)

    # One Prefect client for every deploy step (each would build its own, with its own
    # TLS context and connections: about half of a step's time).
    async with AsyncClientContext.get_or_create():
        await asyncio.gather(*(deploy_in_turn(config) for config in configs))
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
    """Imports, waits, deploys every deployment (`deploy_all`), then runs ``then``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ready-url", required=True, help="deploy once this answers 200")
    parser.add_argument("--project-dir", type=Path, default=Path("."), help="where prefect.yaml is")
    parser.add_argument("--ready-file", type=Path, default=None, help="and once this exists")
    parser.add_argument(
        "--deployed-file", type=Path, default=None, help="written once all are deployed"
    )
    parser.add_argument(
        "--concurrency", type=int, default=DEPLOY_CONCURRENCY, help="deployments at once"
    )
    parser.add_argument(
        "--import", dest="imports", action="append", default=[], help="a module to import too"
    )
    parser.add_argument(
        "then", nargs=argparse.REMAINDER, help="after --: a prefect command to run afterwards"
    )
    args = parser.parse_args(argv)
    then = args.then[1:] if args.then[:1] == ["--"] else args.then
    workdir = Path.cwd()
    os.chdir(args.project_dir)  # Prefect's deploy resolves entrypoints from here
    began = time.monotonic()
    for module in ["prefect.cli", "prefect.cli.deploy", *args.imports]:
        importlib.import_module(module)
    print(f"imported in {time.monotonic() - began:.1f}s; waiting for {args.ready_url}", flush=True)
    # The flows (with their SDKs) once the server answers: not competing with its start.
    flows = entrypoint_modules(Path("prefect.yaml"))
    wait_until_ready(args.ready_url, READY_TIMEOUT_SECONDS, args.ready_file, flows)
    began = time.monotonic()
    try:
        deployed = asyncio.run(deploy_all(Path("prefect.yaml"), args.concurrency))
    except DeployError as error:
        raise SystemExit(str(error)) from None
    print(f"{len(deployed)} deployments deployed in {time.monotonic() - began:.1f}s", flush=True)
    os.chdir(workdir)
    if args.deployed_file is not None:
        args.deployed_file.write_text(f"{len(deployed)} deployments\n")
    if then:
        from prefect.cli import app

        sys.argv = ["prefect", *then]
        app()


if __name__ == "__main__":
    main()

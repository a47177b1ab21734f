"""Serves small test workflows as deployments on the Prefect API given in the environment.

Run by the ``served_workflows`` fixture (tests/fixtures/workflows.py) as a
subprocess: ``PREFECT_API_URL`` points at the session's test server, and the
runner polls for scheduled runs every ``--poll-seconds``. Each flow run executes
in a child process of this one, so a test can kill the flow-run process while
the runner (this process) stays up and reports the crash.

tests/fixtures/workflows.py builds its deployment-name constants from
`DEPLOYMENT_NAME` and the flow names below. The tenant runbooks (`RUNBOOKS`) are
served too, under their request names, as ``prefect.yaml`` deploys them. Importing
this module serves nothing.
"""

from __future__ import annotations

import argparse
import importlib
import os
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from magicflow import Change, ConflictError, InvalidInputError
from magicflow.workflows import workflow

DEPLOYMENT_NAME = "served"


@workflow(name="test-changes")
def changes_workflow(tenant: str = "acme", dry_run: bool = False) -> list[Change]:
    """Returns two changes at once (planned only, with ``dry_run``)."""
    return [
        Change(resource=f"test:namespace/{tenant}", action="created", dry_run=dry_run),
        Change(resource=f"test:quota/{tenant}", action="unchanged", dry_run=dry_run),
    ]


@workflow(name="test-failure")
def failing_workflow(tenant: str = "acme") -> list[Change]:
    """Fails with a typed error."""
    raise ConflictError(f"test:namespace/{tenant}", "changed by someone else")


@workflow(name="test-sleep")
def sleeping_workflow(pid_file: str, seconds: float = 60.0) -> list[Change]:
    """Writes its process id to ``pid_file``, then sleeps (for kill and cancel tests)."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return [Change(resource="test:sleep/done", action="unchanged")]


@workflow(name="test-secret")
def secret_workflow(token: SecretStr, fail: bool = False, leak: bool = False) -> list[Change]:
    """Takes a secret parameter; fails, if asked, with an error that mentions it safely,
    or (``leak``) with a foreign error whose text holds the secret value."""
    if leak:
        raise RuntimeError(f"could not use token {token.get_secret_value()}")
    if fail:
        raise InvalidInputError("test:token/api", f"token {token} is not accepted")
    return [Change(resource="test:token/api", action="updated", detail={"length": len(token)})]


RUNBOOKS = ("tenant-provisioning", "quota-adjustment")
"""The tenant runbooks, served under their request names as prefect.yaml deploys them."""


def runbook_deployments() -> list[Any]:
    """The tenant runbooks' deployments (flows/registry.py says which flow each runs)."""
    from flows.registry import MAGICFLOW_WORKFLOWS

    deployments = []
    for name in RUNBOOKS:
        path = MAGICFLOW_WORKFLOWS[name]
        module, _, attribute = path.partition(":")
        runbook = getattr(importlib.import_module(module), attribute)
        deployments.append(runbook.to_deployment(name=name))
    return deployments


def compose_deployment() -> Any:
    """The ``compose`` workflow's deployment; its registry is named by ``MAGICFLOW_REGISTRY``."""
    from flows.compose import compose

    return compose.to_deployment(name="compose")


def main() -> None:
    """Serves the test workflows until terminated."""
    from prefect import serve

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--poll-seconds", type=float, default=0.5)
    args = parser.parse_args()
    flows = (changes_workflow, failing_workflow, sleeping_workflow, secret_workflow)
    serve(
        *(f.to_deployment(name=DEPLOYMENT_NAME) for f in flows),
        *runbook_deployments(),
        compose_deployment(),
        limit=20,
        query_seconds=args.poll_seconds,
        print_starting_message=False,
    )


if __name__ == "__main__":
    main()

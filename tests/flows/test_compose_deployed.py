"""Deployed compositions controlled from another process: Prefect's own Cancel, feeding a swarm.

The ``compose`` deployment is served by the session's runner (a separate process);
these tests act on its runs only through the Prefect API, as the UI, ``prefect
flow-run cancel`` or another host would, and read the effects from the jobs' own log
file and from Prefect.
"""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
)
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.states import Cancelling

from flows.compose_control import close_swarm, feed_swarm
from flows.composition import (
    REGISTRY_ENV,
    Chain,
    InvalidCompositionError,
    Signature,
    Swarm,
    chain,
    sign,
    swarm,
)
from magicflow.cli import main as magicflow_main
from magicflow.errors import ConflictError
from tests.backends.compose_targets import executions, registry
from tests.fixtures.waiting import wait_until
from tests.fixtures.workflows import COMPOSE_DEPLOYMENT, COMPOSE_TEST_REGISTRY, ServedWorkflows

# The first test to use them starts the harness and the served runner.
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(autouse=True)
def test_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process checks fed signatures against the registry the served runs use."""
    monkeypatch.setenv(REGISTRY_ENV, COMPOSE_TEST_REGISTRY)


def start(composition: Chain | Swarm) -> UUID:
    """Starts the composition as a run of the served ``compose`` deployment."""
    flow_run: FlowRun = run_deployment(  # type: ignore[assignment]
        COMPOSE_DEPLOYMENT,
        parameters={"composition": composition.model_dump(mode="json")},
        timeout=0,
    )
    return flow_run.id


def read_flow_run(run_id: UUID) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def task_run_states(run_id: UUID) -> dict[str, str]:
    """Task-run name -> state name, of one flow run."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    return {run.name: run.state_name or "" for run in runs}


def test_prefects_own_cancel_runs_the_error_callbacks_with_reason_cancelled(
    served_workflows: ServedWorkflows, tmp_path: Path
) -> None:
    log, go = str(tmp_path / "log"), tmp_path / "go"
    note = sign("collect", log=log, receives="payload", registry=registry)
    composition = chain(
        [
            sign("record", log=log, value="first", registry=registry),
            sign("wait_for_file", log=log, path=str(go), on_error=[note], registry=registry),
            sign("record", log=log, value="never", on_error=[note], registry=registry),
        ],
        on_error=[note],
        registry=registry,
    )
    run_id = start(composition)
    wait_until(
        lambda: task_run_states(run_id).get("steps[1] wait_for_file") == "Running",
        120,
        f"the second step to run\n{served_workflows.log_tail()}",
    )
    with get_client(sync_client=True) as client:  # what the UI's Cancel button does
        client.set_flow_run_state(run_id, Cancelling(message="cancelled in the UI"))
    payloads = wait_until(
        lambda: (found := executions(log, "collect")) and len(found) >= 2 and found,
        120,
        f"the error callbacks\n{served_workflows.log_tail()}",
    )
    wait_until(lambda: read_flow_run(run_id).state_name == "Cancelled", 60, "Cancelled")
    go.touch()  # the step's process is gone: nothing after it runs
    cause = {
        "type": "CompositionCancelledError",
        "message": "composition: cancelled through Prefect",
    }
    # The running step's callback first, then the chain's; the step not started has none.
    assert payloads == [
        {
            "reason": "cancelled",
            "step": "steps[1]",
            "target": "wait_for_file",
            "input": None,
            "error": cause,
        },
        {"reason": "cancelled", "step": "(root)", "target": None, "input": None, "error": cause},
    ]
    assert executions(log, "record") == ["first"]
    # The callbacks ran as a flow run of their own, visible next to the cancelled one.
    with get_client(sync_client=True) as client:
        (callbacks_run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"cancelled {run_id}"]))
        )
    assert callbacks_run.state_name == "Completed"
    assert set(task_run_states(callbacks_run.id)) == {
        "steps[1].on_error[0] collect",
        "on_error[0] collect",
    }
    assert executions(log, "collect") == payloads  # run once, not again


def test_an_open_swarm_is_fed_and_closed_from_another_process(
    served_workflows: ServedWorkflows, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = str(tmp_path / "log")
    composition = swarm(
        [sign("record", log=log, value="first", registry=registry)],
        open=True,
        max_concurrency=2,
        on_success=[sign("collect", log=log, receives="payload", registry=registry)],
        registry=registry,
    )
    run_id = start(composition)
    wait_until(
        lambda: executions(log, "record") == ["first"],
        120,
        f"the first item\n{served_workflows.log_tail()}",
    )
    # Fed from this process (not the runner's): the Python call, then the CLI.
    feed_swarm(run_id, [sign("record", log=log, value=v, registry=registry) for v in "ca"])
    wait_until(lambda: len(executions(log, "record")) == 3, 60, "the first feed to run")
    assert read_flow_run(run_id).state_name == "Running"  # still open: waits for more
    feed = json.dumps({"target": "record", "params": {"log": log, "value": "b"}})
    assert magicflow_main(["compose", "feed", str(run_id), feed]) == 0
    assert magicflow_main(["compose", "feed", str(run_id)]) == 2  # nothing to feed
    assert magicflow_main(["compose", "feed", str(run_id), "not json"]) == 3
    bad = json.dumps({"target": "rm-rf", "params": {}})
    assert magicflow_main(["compose", "feed", str(run_id), bad]) == 3
    assert "'rm-rf' is not a registered workflow or job" in capsys.readouterr().err
    with pytest.raises(InvalidCompositionError, match=r"fed\[0\]\.params\.log: Field required"):
        feed_swarm(run_id, [Signature(target="record")])
    assert magicflow_main(["compose", "close", str(run_id)]) == 0
    wait_until(
        lambda: read_flow_run(run_id).state_name in ("Completed", "Failed"),
        120,
        f"the swarm to drain\n{served_workflows.log_tail()}",
    )
    assert read_flow_run(run_id).state_name == "Completed"
    assert sorted(executions(log, "record")) == ["a", "b", "c", "first"]  # each once
    # The results, as the success callback received them: in the order fed.
    assert executions(log, "collect") == [["first", "c", "a", "b"]]
    assert set(task_run_states(run_id)) >= {f"items[{i}] record" for i in range(4)}
    with pytest.raises(ConflictError, match="already Completed; nothing to feed"):
        feed_swarm(run_id, [])
    plain = start(chain([sign("record", log=log, value="x", registry=registry)], registry=registry))
    with pytest.raises(ConflictError, match="has no open swarm to close"):
        close_swarm(plain)

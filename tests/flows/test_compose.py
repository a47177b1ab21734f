"""Compositions run by the compose workflow under the Prefect test harness.

Every job of ``tests/backends/compose_targets.py`` logs its executions to a file, so
the tests count what ran from outside Prefect; task-run times and artifacts are read
back from the Prefect API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
)
from prefect.client.schemas.objects import FlowRun, TaskRun
from prefect.states import State

from flows.compose import CompositionResult, CompositionRun, compose
from flows.compose_swarm import OpenSwarm
from flows.composition import (
    MAX_DEPTH,
    MAX_NODES,
    REGISTRY_ENV,
    Chain,
    InvalidCompositionError,
    Signature,
    Swarm,
    When,
    chain,
    check_composition,
    sign,
    swarm,
)
from magicflow.cli import main as magicflow_main
from tests.backends.compose_targets import SECRET_IN_ERROR, executions, registry
from tests.fixtures.waiting import wait_until
from tests.fixtures.workflows import COMPOSE_TEST_REGISTRY


@pytest.fixture(autouse=True)
def test_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compositions in these tests run from the test jobs' registry."""
    monkeypatch.setenv(REGISTRY_ENV, COMPOSE_TEST_REGISTRY)


def read_flow_run(run_id: UUID) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def finished_task_runs(run_id: UUID, count: int) -> list[TaskRun]:
    """The run's task runs, once ``count`` of them have an end time (Prefect records them late)."""

    def read() -> list[TaskRun] | None:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=200
            )
        ended = [run for run in runs if run.start_time and run.end_time]
        return ended if len(ended) >= count else None

    return wait_until(read, 60, f"{count} finished task runs of {run_id}")


def most_at_once(task_runs: list[TaskRun]) -> int:
    """The largest number of task runs between their start and end at one instant."""
    events: list[tuple[datetime, int]] = []
    for run in task_runs:
        assert run.start_time is not None and run.end_time is not None
        events += [(run.start_time, 1), (run.end_time, -1)]
    running = peak = 0
    for _, delta in sorted(events, key=lambda event: (event[0], event[1])):
        running += delta
        peak = max(peak, running)
    return peak


def run_id_of(state: State[Any]) -> UUID:
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id


def test_signatures_round_trip_and_bad_trees_name_the_bad_node(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    note = sign("collect", log=log, receives="payload", registry=registry)
    built = chain(
        [
            sign("add", x=1, y=2, step="sum", registry=registry),
            swarm([sign("add", x=5, registry=registry)], max_concurrency=2, registry=registry),
            sign(
                "record",
                log=log,
                when=When(field="sum", op="gt", value=2),
                on_error=[note],
                registry=registry,
            ),
        ],
        on_success=[note],
        registry=registry,
    )
    assert Chain.model_validate_json(built.model_dump_json()) == built
    assert executions(log) == []  # signing runs nothing

    def refused(tree: dict[str, Any]) -> str:
        with pytest.raises(InvalidCompositionError) as raised:
            check_composition(Chain.model_validate(tree), registry)
        return str(raised.value)

    def step(target: str, **fields: Any) -> dict[str, Any]:
        return {"kind": "signature", "target": target, **fields}

    good = [step("add", params={"x": 1}), step("add", params={"x": 2}, step="second")]
    bad_param = step("collect", params={"log": 3})
    assert refused({"kind": "chain", "steps": [*good, step("add", on_error=[bad_param])]}) == (
        "composition: steps[2].params.x: Field required"
    )
    assert refused(
        {"kind": "chain", "steps": [*good, step("add", params={"x": 1}, on_error=[bad_param])]}
    ) == ("composition: steps[2].on_error[0].params.log: Input should be a valid string")
    # Strict: a number in a string is not a number.
    assert "steps[0].params.x: Input should be a valid integer" in refused(
        {"kind": "chain", "steps": [step("add", params={"x": "5"})]}
    )
    assert "steps[1].items[0].target: 'rm-rf' is not a registered workflow or job" in refused(
        {"kind": "chain", "steps": [good[0], {"kind": "swarm", "items": [step("rm-rf")]}]}
    )
    assert "steps[0].params.y: must be a parameter that is not also given" in refused(
        {"kind": "chain", "steps": [step("add", params={"x": 1, "y": 2}, receives="y")]}
    )
    when_missing = {"field": "nope.action", "op": "eq", "value": "created"}
    assert "steps[1].when.field: no earlier step is named 'nope'" in refused(
        {"kind": "chain", "steps": [good[0], step("add", params={"x": 1}, when=when_missing)]}
    )
    item = step("ensure_item", params={"log": log, "name": "a"}, step="item")
    no_field = {"field": "item.colour", "op": "eq", "value": "red"}
    assert "steps[1].when.field: the result of 'item' has no field 'colour'" in refused(
        {"kind": "chain", "steps": [item, step("add", params={"x": 1}, when=no_field)]}
    )
    deep: dict[str, Any] = step("add", params={"x": 1})
    for _ in range(MAX_DEPTH):
        deep = {"kind": "chain", "steps": [deep]}
    assert f"nested deeper than {MAX_DEPTH} levels" in refused(deep)
    many = [step("add", params={"x": 1})] * MAX_NODES
    assert f"more than {MAX_NODES} nodes" in refused({"kind": "chain", "steps": many})
    looped = Signature(target="add", params={"x": 1})
    looped.on_success.append(looped)  # only Python objects can loop; JSON cannot
    with pytest.raises(InvalidCompositionError, match=r"on_success\[0\]: a cycle"):
        check_composition(looped, registry)
    with pytest.raises(InvalidCompositionError, match="params: this workflow has no dry-run mode"):
        check_composition(
            Signature(target="fail_once", params={"log": log, "marker": log}),
            registry,
            dry_run=True,
        )


def test_a_chain_passes_results_in_order_skips_by_condition_and_calls_back(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "log")
    composition = chain(
        [
            sign("add", x=1, y=2, log=log, step="first", registry=registry),
            sign("add", y=10, log=log, receives="x", registry=registry),
            sign(
                "record",
                log=log,
                value="skipped",
                when=When(field="first", op="gt", value=100),
                registry=registry,
            ),
            sign("record", log=log, receives="value", step="last", registry=registry),
        ],
        on_success=[
            sign("fail", log=log, value="callback", registry=registry),
            sign("collect", log=log, receives="payload", registry=registry),
        ],
        registry=registry,
    )
    result = compose(composition)
    assert isinstance(result, CompositionResult)
    assert (result.state, result.result) == ("completed", 13)
    assert executions(log) == [[1, 2], [3, 10], 13, "callback", 13]
    assert result.steps == {
        "steps[0]": "completed",
        "steps[1]": "completed",
        "steps[2]": "skipped",
        "steps[3]": "completed",
        "on_success[0]": "failed",
        "on_success[1]": "completed",
    }
    (failure,) = result.callback_failures  # a failing callback is recorded, the rest still run
    assert (failure.step, failure.target) == ("on_success[0]", "fail")
    assert failure.error == "ConflictError: test:item/callback: refused by the test"


def test_a_chain_stops_at_the_first_failure_and_error_callbacks_get_its_input_and_error(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "log")
    composition = chain(
        [
            sign("add", x=1, log=log, registry=registry),
            sign("leak", log=log, registry=registry),
            sign("add", x=2, log=log, registry=registry),
        ],
        on_error=[sign("collect", log=log, receives="payload", registry=registry)],
        registry=registry,
    )
    state = compose(composition, return_state=True)
    assert state.is_failed()
    assert state.message is not None and "steps[1]: RuntimeError" in state.message
    assert executions(log, "add") == [[1, 1]]  # the third step never ran
    (payload,) = executions(log, "collect")
    assert payload == {
        "reason": "failed",
        "step": "steps[1]",
        "target": "leak",
        "input": {"log": log},
        "error": {"type": "RuntimeError", "message": None},
    }
    run = read_flow_run(run_id_of(state))
    assert SECRET_IN_ERROR not in json.dumps(payload)
    assert SECRET_IN_ERROR not in (run.state.message if run.state else "")


def test_a_swarm_keeps_input_order_never_exceeds_its_bound_and_shows_progress(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "log")
    # Later items work less, so they finish before earlier ones.
    items = [
        sign("record", log=log, value=index, seconds=0.05 * (12 - index), registry=registry)
        for index in range(12)
    ]
    state = compose(swarm(items, max_concurrency=3, registry=registry), return_state=True)
    result = state.result()
    assert isinstance(result, CompositionResult)
    assert result.result == list(range(12))
    assert sorted(executions(log)) == list(range(12))
    assert executions(log) != list(range(12))  # they did finish out of order
    run_id = run_id_of(state)
    task_runs = finished_task_runs(run_id, 12)
    assert len(task_runs) == 12
    peak = most_at_once(task_runs)
    assert 2 <= peak <= 3, peak
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    (progress,) = [artifact for artifact in artifacts if artifact.type == "progress"]
    assert progress.data == 100.0
    assert progress.description == "swarm (root): 12/12 done, 0 failed"


def test_a_swarm_stops_at_its_failure_budget_and_cancels_what_has_not_started(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "log")
    note = sign("collect", log=log, receives="payload", registry=registry)
    items = [
        sign("fail", log=log, value="a", registry=registry),
        sign("fail", log=log, value="b", registry=registry),
        *(
            sign("record", log=log, value=index, on_error=[note], registry=registry)
            for index in range(2, 10)
        ),
    ]
    composition = swarm(
        items, max_concurrency=2, stop_after_n_failures=2, on_error=[note], registry=registry
    )
    state = compose(composition, return_state=True)
    assert state.is_failed()
    started = executions(log, "record")
    assert len(started) <= 2  # at most the slots freed before the second failure
    payloads = executions(log, "collect")
    cancelled = [p for p in payloads if isinstance(p, dict) and p["reason"] == "cancelled"]
    assert len(cancelled) == 8 - len(started)
    assert {p["step"] for p in cancelled} <= {f"items[{i}]" for i in range(2, 10)}
    summary = f"2 failed, {len(started)} done, {8 - len(started)} cancelled of 10"
    assert state.message is not None and summary in state.message
    (swarm_payload,) = [p for p in payloads if isinstance(p, dict) and p["reason"] == "failed"]
    assert swarm_payload["error"]["type"] == "SwarmFailedError"
    assert summary in swarm_payload["error"]["message"]


def test_an_open_swarm_takes_more_work_while_it_runs_and_completes_when_closed(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "log")

    @flow
    def feeding() -> list[Any]:
        from prefect.context import get_run_context

        run = CompositionRun(registry, False, get_run_context().flow_run.id)  # type: ignore[union-attr]
        running = OpenSwarm(run, Swarm(max_concurrency=2), "fed", None)
        running.feed(*(sign("record", log=log, value=i, registry=registry) for i in range(3)))
        wait_until(lambda: len(executions(log)) >= 3, 60, "the first items to run")
        running.feed(*(sign("record", log=log, value=i, registry=registry) for i in range(3, 5)))
        return running.close()

    assert feeding() == [0, 1, 2, 3, 4]
    assert sorted(executions(log)) == [0, 1, 2, 3, 4]


class CompositionThread:
    """Runs the compose flow in a thread, under a known flow-run name."""

    def __init__(self, composition: Chain, name: str) -> None:
        self.name = name
        self.state: State[Any] | None = None
        flow_with_name = compose.with_options(flow_run_name=name)
        self.thread = threading.Thread(
            target=lambda: setattr(self, "state", flow_with_name(composition, return_state=True))
        )
        self.thread.start()

    def run_id(self) -> UUID:
        def find() -> UUID | None:
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[self.name]))
                )
            return runs[0].id if runs else None

        return wait_until(find, 60, f"flow run {self.name}")

    def join(self) -> State[Any]:
        self.thread.join(timeout=120)
        assert self.state is not None, "the composition did not finish"
        return self.state


@pytest.fixture
def cli() -> Iterator[Callable[..., int]]:
    yield lambda *argv: magicflow_main(["compose", *argv])


def test_pause_takes_effect_between_steps_and_resume_runs_nothing_twice(
    tmp_path: Path, cli: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    log, go = str(tmp_path / "log"), tmp_path / "go"
    composition = chain(
        [
            sign("wait_for_file", log=log, path=str(go), registry=registry),
            sign("record", log=log, value="a", registry=registry),
            sign("record", log=log, value="b", registry=registry),
        ],
        registry=registry,
    )
    running = CompositionThread(composition, f"pause-{tmp_path.name}")
    run_id = running.run_id()
    wait_until(lambda: read_flow_run(run_id).state_name == "Running", 60, "the run to start")
    assert cli("pause", str(run_id)) == 0
    go.touch()  # the first step finishes; the pause takes effect before the second
    wait_until(lambda: read_flow_run(run_id).state_name == "Paused", 60, "the pause")
    assert executions(log) == [str(go)]
    assert cli("resume", str(run_id)) == 0
    state = running.join()
    assert state.is_completed()
    assert executions(log) == [str(go), "a", "b"]  # nothing ran twice
    assert cli("pause", str(run_id)) == 2  # finished: a one-line usage error
    assert "already Completed; nothing to pause" in capsys.readouterr().err
    assert cli("resume", "not-a-uuid") == 2


def test_a_retried_composition_reuses_the_results_of_finished_steps(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    composition = chain(
        [
            sign("record", log=log, value="first", registry=registry),
            sign(
                "fail_once", log=log, marker=str(tmp_path / "marker"), value="x", registry=registry
            ),
            sign("record", log=log, value="last", registry=registry),
        ],
        registry=registry,
    )
    result = compose.with_options(retries=1, retry_delay_seconds=0)(composition)
    assert isinstance(result, CompositionResult) and result.result == "last"
    # The first attempt failed at step 1; the retry took step 0's persisted result.
    assert executions(log) == ["first", "x", "x", "last"]

    # A swarm saves its finished items' results in one record: the retry starts none of them.
    swarm_log = str(tmp_path / "swarm-log")
    items = [sign("record", log=swarm_log, value=index, registry=registry) for index in range(3)]
    marker = str(tmp_path / "swarm-marker")
    items.append(sign("fail_once", log=swarm_log, marker=marker, value="x", registry=registry))
    retried = compose.with_options(retries=1, retry_delay_seconds=0)(
        swarm(items, max_concurrency=2, registry=registry)
    )
    assert isinstance(retried, CompositionResult) and retried.result == [0, 1, 2, "x"]
    assert sorted(map(str, executions(swarm_log))) == ["0", "1", "2", "x", "x"]


def test_cancel_stops_the_rest_and_runs_error_callbacks_with_reason_cancelled(
    tmp_path: Path, cli: Callable[..., int]
) -> None:
    log, go = str(tmp_path / "log"), tmp_path / "go"
    composition = chain(
        [
            sign("wait_for_file", log=log, path=str(go), registry=registry),
            sign("record", log=log, value="never", registry=registry),
        ],
        on_error=[sign("collect", log=log, receives="payload", registry=registry)],
        registry=registry,
    )
    running = CompositionThread(composition, f"cancel-{tmp_path.name}")
    run_id = running.run_id()
    wait_until(lambda: read_flow_run(run_id).state_name == "Running", 60, "the run to start")
    assert cli("cancel", str(run_id)) == 0
    go.touch()
    state = running.join()
    assert state.is_cancelled()
    assert executions(log, "record") == []
    (payload,) = executions(log, "collect")
    assert payload["reason"] == "cancelled" and payload["step"] == "(root)"
    assert payload["error"] == {
        "type": "CompositionCancelledError",
        "message": "composition: cancelled before steps[1]",
    }
    assert read_flow_run(run_id).state_name == "Cancelled"


def test_pause_resume_and_cancel_take_effect_between_the_items_of_a_swarm(
    tmp_path: Path, cli: Callable[..., int]
) -> None:
    log = str(tmp_path / "log")
    note = sign("collect", log=log, receives="payload", registry=registry)
    go = [tmp_path / f"go{i}" for i in range(8)]
    items = [
        sign("wait_for_file", log=log, path=str(path), on_error=[note], registry=registry)
        for path in go
    ]
    composition = swarm(items, max_concurrency=2, on_error=[note], registry=registry)
    running = CompositionThread(composition, f"swarm-pause-{tmp_path.name}")
    run_id = running.run_id()

    def started() -> list[str]:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )
        return sorted(run.name for run in runs if run.name.endswith(" wait_for_file"))

    wait_until(lambda: len(started()) == 2, 60, "two items to start")
    assert cli("pause", str(run_id)) == 0
    wait_until(lambda: read_flow_run(run_id).state_name == "Paused", 60, "the pause")
    for path in go[:4]:
        path.touch()  # items 0-3 may finish at once: only 0 and 1 have started
    wait_until(lambda: len(executions(log)) == 2, 60, "the running items to finish")
    # Paused between items: the running ones finished, no new one started.
    assert read_flow_run(run_id).state_name == "Paused"
    assert started() == ["items[0] wait_for_file", "items[1] wait_for_file"]
    assert sorted(executions(log)) == [str(go[0]), str(go[1])]

    assert cli("resume", str(run_id)) == 0
    # Items 2 and 3 finish at once; 4 and 5 wait for their files; 6 and 7 for a slot.
    wait_until(lambda: len(started()) == 6, 60, "items 2-5 to start")
    wait_until(lambda: len(executions(log)) == 4, 60, "items 2 and 3 to finish")
    assert cli("cancel", str(run_id)) == 0
    wait_until(lambda: "stopped: composition: cancelled" in progress(run_id), 60, "the cancel")
    go[4].touch()
    go[5].touch()  # the running items finish; 6 and 7 never start
    state = running.join()
    assert state.is_cancelled()
    # Each started item ran exactly once: resume re-ran nothing that had finished.
    assert sorted(executions(log, "wait_for_file")) == sorted(str(path) for path in go[:6])
    assert len(started()) == 6
    payloads = executions(log, "collect")
    assert [(p["step"], p["reason"]) for p in payloads] == [  # type: ignore[index,call-overload]
        ("items[6]", "cancelled"),
        ("items[7]", "cancelled"),
        ("(root)", "cancelled"),
    ]
    assert read_flow_run(run_id).state_name == "Cancelled"


def progress(run_id: UUID) -> str:
    """The description of the run's progress artifact, as the UI shows it."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    return " ".join(a.description or "" for a in artifacts if a.type == "progress")


def test_a_when_on_a_sibling_item_is_refused_and_one_on_a_missing_field_fails_its_step(
    tmp_path: Path,
) -> None:
    log = str(tmp_path / "log")
    first = sign("add", x=1, step="first", registry=registry)
    on_first = When(field="first", op="gt", value=0)
    sibling = Swarm(items=[first, sign("add", x=2, when=on_first, registry=registry)])
    with pytest.raises(InvalidCompositionError) as refused:
        check_composition(Chain(steps=[sign("add", x=0, registry=registry), sibling]), registry)
    assert str(refused.value) == (
        "composition: steps[1].items[1].when.field: 'first' is a sibling item of the same "
        "swarm: its result is not known before this item runs"
    )
    assert refused.value.path == "steps[1].items[1].when.field"
    with pytest.raises(InvalidCompositionError, match=r"items\[1\].step: 'first' names two"):
        swarm([first, first], registry=registry)
    # After the swarm, its items' results are known: a later step may look at them.
    chain([swarm([first], registry=registry), sign("add", x=3, when=on_first, registry=registry)])

    # ``add`` declares no result model, so a field of its result is checked when it runs.
    note = sign("collect", log=log, receives="payload", registry=registry)
    composition = chain(
        [
            sign("add", x=1, log=log, step="sum", registry=registry),
            sign(
                "record",
                log=log,
                value="never",
                when=When(field="sum.total", op="eq", value=2),
                on_error=[note],
                registry=registry,
            ),
        ],
        registry=registry,
    )
    state = compose(composition, return_state=True)
    assert state.is_failed()
    cause = "composition: steps[1].when.field: sum.total: 'total' is not in the result"
    assert state.message is not None and cause in state.message
    assert executions(log, "record") == []
    (payload,) = executions(log, "collect")
    assert payload == {
        "reason": "failed",
        "step": "steps[1]",
        "target": "record",
        "input": None,
        "error": {"type": "InvalidCompositionError", "message": cause},
    }

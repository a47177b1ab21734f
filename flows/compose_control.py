"""Control a running composition from any process: pause, resume, cancel, feed and close.

Everything goes through the Prefect API, the only state store, so the caller may be
another process or another host than the one running the composition:

- pause, resume, cancel set the run's control Variable ``compose-control-<run id>``
  (read by the run between steps) and resume a paused run;
- feed and close send the run a `flows.compose.SwarmFeed` as Prefect flow-run input
  (`prefect.input.send_input`); the run's open swarm reads its inputs in the order they
  were sent.

Prefect's own Cancel (the UI's button, ``prefect flow-run cancel``) needs nothing from
here: the ``compose`` workflow's ``on_cancellation`` hook runs the error callbacks.

Example:
    ```python
    from flows.compose_control import close_swarm, control_composition, feed_swarm
    from flows.composition import sign

    feed_swarm(run_id, [sign("ensure_namespace", connection="prod-cluster", name="acme")])
    close_swarm(run_id)  # the swarm completes once what was fed has run
    control_composition(run_id, "pause")  # 'Running'; it pauses before its next step
    ```
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
from uuid import UUID

from prefect import flow

from flows.compose import (
    FEED_KEY_PREFIX,
    ROOT,
    CallbackFailure,
    CompositionCancelledError,
    CompositionRun,
    SwarmFeed,
    control_variable,
    open_swarm_of,
)
from flows.composition import (
    Chain,
    Composition,
    InvalidCompositionError,
    Signature,
    Swarm,
    check_composition,
    error_payload,
    join_path,
    registry_for_compositions,
)
from magicflow.errors import ConflictError, NotFoundError

COMPOSE_FLOW_NAME = "compose"
"""The flow name of the ``compose`` workflow (runs of any other flow are refused)."""

Action = Literal["pause", "resume", "cancel"]


def _running_composition(flow_run_id: UUID | str, doing: str, open_swarm: bool = False) -> Any:
    """The composition's flow run, if it is one (with an open swarm, if asked) and running.

    Raises:
        NotFoundError: No flow run has that id.
        ConflictError: The run is not a composition (with an open swarm), or it has
            already finished.
    """
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    resource = f"flow-run:{flow_run_id}"
    with get_client(sync_client=True) as client:
        try:
            flow_run = client.read_flow_run(UUID(str(flow_run_id)))
        except ObjectNotFound:
            raise NotFoundError(resource, "no such flow run") from None
        flow = client.read_flow(flow_run.flow_id)
    if flow.name != COMPOSE_FLOW_NAME:
        raise ConflictError(resource, f"a run of {flow.name!r}, not a composition")
    if open_swarm:
        try:
            found = open_swarm_of((flow_run.parameters or {}).get("composition"))
        except ValueError:
            found = None
        if found is None:
            raise ConflictError(resource, f"has no open swarm to {doing}")
    state = flow_run.state
    if state is None or state.is_final():
        kind = state.name if state is not None else "not started"
        raise ConflictError(resource, f"already {kind}; nothing to {doing}")
    return flow_run


def control_composition(flow_run_id: UUID | str, action: Action) -> str:
    """Pauses, resumes or cancels a running composition (the API behind the CLI).

    ``pause`` takes effect before the composition's next step (a swarm starts no
    further item; running ones finish), ``resume`` lets a paused one go on (finished
    steps are not run again), ``cancel`` stops the steps not started and runs the
    error callbacks with reason ``cancelled``, also from a pause.

    Args:
        flow_run_id: The composition's flow run.
        action: ``pause``, ``resume`` or ``cancel``.

    Returns:
        The run's state name when asked, e.g. ``Running``.

    Raises:
        NotFoundError: No flow run has that id.
        ConflictError: The run is not a composition, or it has already finished.

    Example:
        ```python
        control_composition("0b6f2d1e-...", "pause")  # 'Running'; it pauses before its next step
        ```
    """
    from prefect.flow_runs import resume_flow_run
    from prefect.variables import Variable

    flow_run = _running_composition(flow_run_id, action)
    state = flow_run.state
    Variable.set(
        control_variable(flow_run.id), "run" if action == "resume" else action, overwrite=True
    )
    if action in ("resume", "cancel") and state.is_paused():
        resume_flow_run(flow_run.id)  # a cancelled one wakes up to run its error callbacks
    return str(state.name or state.type.value)


def feed_swarm(flow_run_id: UUID | str, items: Sequence[Signature]) -> None:
    """Feeds signatures to the open swarm of a running composition, from any process.

    The items are checked against the registry here (and again by the run: anyone
    who can reach the API may be hostile); they run after those fed before them,
    and their results come back in the order they were fed.

    Args:
        flow_run_id: The composition's flow run.
        items: The signatures to add.

    Raises:
        NotFoundError: No flow run has that id.
        ConflictError: The run is not a composition, has finished, or has no open swarm.
        InvalidCompositionError: An item does not check, naming its index.

    Example:
        ```python
        feed_swarm(run_id, [sign("add", x=1), sign("add", x=2)])
        ```
    """
    from prefect.input import send_input

    flow_run = _running_composition(flow_run_id, "feed", open_swarm=True)
    registry = registry_for_compositions()
    for index, item in enumerate(items):
        try:
            check_composition(item, registry)
        except InvalidCompositionError as error:
            path = join_path(f"fed[{index}]", error.path)
            raise InvalidCompositionError(path, error.cause) from None
    send_input(SwarmFeed(items=list(items)), flow_run_id=flow_run.id, key_prefix=FEED_KEY_PREFIX)


def close_swarm(flow_run_id: UUID | str) -> None:
    """Closes the open swarm of a running composition: it completes once drained.

    Args:
        flow_run_id: The composition's flow run.

    Raises:
        NotFoundError: No flow run has that id.
        ConflictError: The run is not a composition, has finished, or has no open swarm.
    """
    from prefect.input import send_input

    flow_run = _running_composition(flow_run_id, "close", open_swarm=True)
    send_input(SwarmFeed(close=True), flow_run_id=flow_run.id, key_prefix=FEED_KEY_PREFIX)


def _active_paths(node: Signature | Chain | Swarm, path: str, unfinished: set[str]) -> list[str]:
    """Paths of the nodes holding an unfinished step, innermost first; the root always."""
    found: list[str] = []
    children: list[tuple[str, Signature | Chain | Swarm]] = []
    if isinstance(node, Chain):
        children = [(f"{join_path(path, 'steps')}[{i}]", step) for i, step in enumerate(node.steps)]
    elif isinstance(node, Swarm):
        children = [(f"{join_path(path, 'items')}[{i}]", item) for i, item in enumerate(node.items)]
    for child_path, child in children:
        found += _active_paths(child, child_path, unfinished)
    inside = any(
        step == (path or ROOT) or step.startswith((f"{path}.", f"{path}[")) for step in unfinished
    )
    if not path or inside:
        found.append(path)
    return found


def _node_at(node: Signature | Chain | Swarm, path: str) -> Signature | Chain | Swarm:
    """The node at a path made by `_active_paths` (``steps[1].items[0]``)."""
    for part in filter(None, path.split(".")):
        label, _, index = part.partition("[")
        children = node.steps if isinstance(node, Chain) and label == "steps" else node.items  # type: ignore[union-attr]
        node = children[int(index.rstrip("]"))]
    return node


@flow(name="compose-cancelled", flow_run_name="cancelled {cancelled_run}")
def compose_cancelled(
    composition: Composition, dry_run: bool, cancelled_run: UUID, unfinished: list[str]
) -> list[CallbackFailure]:
    """Runs the error callbacks of a composition cancelled through Prefect (reason ``cancelled``).

    Args:
        composition: The cancelled run's composition.
        dry_run: Whether it ran as a dry run.
        cancelled_run: The cancelled run (the callbacks' results are keyed by it).
        unfinished: Paths of its steps that had started and not finished.

    Returns:
        The callbacks that failed themselves.
    """
    run = CompositionRun(registry_for_compositions(), dry_run, cancelled_run)
    cause = CompositionCancelledError("composition", "cancelled through Prefect")
    for path in _active_paths(composition, "", set(unfinished)):
        node = _node_at(composition, path)
        target = node.target if isinstance(node, Signature) else None
        payload = error_payload("cancelled", path or ROOT, target, None, cause)
        run.steps[path or ROOT] = "cancelled"
        run.callbacks(node.on_error, path, "on_error", payload)
    return run.callback_failures


def run_error_callbacks_when_cancelled(flow_run: Any) -> None:
    """Prefect's own Cancel runs the error callbacks too (the ``on_cancellation`` hook).

    Prefect stops the run's process at once, so the callbacks run in a flow run of
    their own (`compose_cancelled`), for the root and for every node that held a
    step still running (its task run not finished), innermost first.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id]))
        )
    unfinished = [
        run.name.rsplit(" ", 1)[0]
        for run in task_runs
        if run.state is None or not (run.state.is_completed() or run.state.is_failed())
    ]
    compose_cancelled(
        flow_run.parameters["composition"],
        bool(flow_run.parameters.get("dry_run", False)),
        flow_run.id,
        unfinished,
    )

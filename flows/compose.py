"""The ``compose`` workflow: runs a composition (`flows.composition`) as ordinary Prefect runs.

Every step is a task run of the composition's flow run, so the Prefect UI shows a
composition as one flow run with a task run per step, named after its path:

- a job runs as its own task (``task.submit()``);
- a workflow runs as its deployment (`run_deployment`, inside a task run named
  ``<path> <workflow>``), on the work pool and infrastructure its deployment sets,
  as a subflow run of the composition. Calling the flow in-process instead would
  run a tenant runbook inside whatever process runs the composition, and lose its
  deployment's concurrency and infrastructure settings.

What Prefect keeps for the composition (Prefect is the only state store):

- Step results are persisted and cached under ``compose:<flow run id>:<path>``: a
  retried or resumed composition run gets every finished step's result back from
  result storage and runs it again never; a workflow step reuses its run through
  `run_deployment`'s idempotency key, the same string. Jobs are otherwise never
  cached (`magicflow.jobs`); this key cannot outlive the composition run.
- A swarm's bound is kept inside the run, by one dispatcher thread: at most
  ``max_concurrency`` of its task runs are submitted and unfinished at any time; its
  progress is a progress artifact (``done/total``).
- Pause, resume and cancel (`magicflow compose pause|resume|cancel RUN`, the API in
  `flows.compose_control`, or the Prefect Variable ``compose-control-<run id>``
  edited in the UI): the composition reads its control between steps (a swarm,
  between items); ``pause`` calls Prefect's `pause_flow_run` (the UI's Resume button
  resumes it), ``cancel`` stops the steps not started, runs the error callbacks with
  reason ``cancelled`` and ends the run Cancelled.
- Prefect's own Cancel (the UI's button, ``prefect flow-run cancel``, the API setting
  the run Cancelling) stops the run's process at once; the flow's ``on_cancellation``
  hook then runs, in a flow run of its own (``compose-cancelled``), the error
  callbacks of the nodes that had not finished, with reason ``cancelled``.
- An open swarm (``Swarm(open=True)``) takes signatures fed as Prefect flow-run
  inputs (`SwarmFeed`, sent by `flows.compose_control.feed_swarm` or
  ``magicflow compose feed``) until a ``close`` input arrives.

Example:
    ```python
    from flows.compose import compose
    from flows.composition import chain, sign

    compose(chain([sign("add", x=1, y=2), sign("add", y=10, receives="x")]))
    # CompositionResult(state="completed", result=13, ...)
    ```
"""

from __future__ import annotations

import contextvars
import time
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from prefect import Task, get_run_logger, pause_flow_run, task
from prefect.cache_policies import NO_CACHE, CacheKeyFnPolicy
from prefect.client.schemas.objects import FlowRun
from prefect.context import get_run_context
from prefect.deployments import run_deployment
from prefect.futures import PrefectFuture
from prefect.input import RunInput
from prefect.states import Cancelled, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.variables import Variable
from pydantic import BaseModel, Field, JsonValue
from pydantic_core import to_jsonable_python

from flows.composition import (
    MAX_SWARM_CONCURRENCY,
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
from flows.registry import RegisteredJob, Registry
from magicflow.errors import ConflictError, MagicFlowError
from magicflow.messages import reason_for
from magicflow.workflows import workflow

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from flows.compose_swarm import OpenSwarm

CONTROL_PREFIX = "compose-control-"
"""A composition run's control is the Prefect Variable ``compose-control-<flow run id>``."""
CONTROL_READ_SECONDS = 0.5
"""A swarm's watcher reads its control this often (a chain reads it before every step)."""
PAUSE_TIMEOUT_SECONDS = 7 * 24 * 3600
"""How long a paused composition waits to be resumed before it fails."""
PAUSE_POLL_SECONDS = 1
SAVE_RESULTS_SECONDS = 1.0
"""A swarm saves its finished items' results at most this often (and before a pause, at its end)."""
PROGRESS_UPDATE_SECONDS = 1.0
"""A swarm's progress artifact is updated at most this often, and when it ends."""

FEED_KEY_PREFIX = "compose-swarm-feed"
"""Flow-run inputs with keys starting so feed (or close) a composition's open swarm."""
FEED_READ_SECONDS = 0.5
"""An open swarm reads its feed this often."""

ROOT = "(root)"
"""How a composition's root node is named in step lists and payloads."""

Control = Literal["run", "pause", "cancel"]
_CONTROLS: dict[str, Control] = {"pause": "pause", "cancel": "cancel"}


class CompositionFailedError(ConflictError):
    """A step of a composition failed; the message names the step and the cause."""


class CompositionCancelledError(MagicFlowError):
    """The composition was cancelled by request; raised inside it to stop the steps left."""


class SwarmFailedError(CompositionFailedError):
    """A swarm's failure budget ran out (or an item failed with no budget set)."""


class SwarmFeed(RunInput):
    """A flow-run input to a composition's open swarm: more signatures, or the close.

    Example:
        ```python
        from prefect.input import send_input

        feed = SwarmFeed(items=[sign("add", x=1)])
        send_input(feed, flow_run_id=run_id, key_prefix=FEED_KEY_PREFIX)
        ```
    """

    items: list[Signature] = Field(default_factory=list)
    close: bool = False


def open_swarm_of(composition: Any) -> Swarm | None:
    """The open swarm of a composition (a node or its JSON), if it has one.

    Raises:
        ValueError: ``composition`` is not a composition.
    """
    from pydantic import TypeAdapter

    from flows.composition import Node

    node: Signature | Chain | Swarm = TypeAdapter(Node).validate_python(composition)
    pending: list[Signature | Chain | Swarm] = [node]
    while pending:
        node = pending.pop()
        if isinstance(node, Swarm) and node.open:
            return node
        if isinstance(node, Chain):
            pending.extend(node.steps)
    return None


class CallbackFailure(BaseModel):
    """A callback that failed: recorded, never raised, never losing the main result."""

    step: str
    target: str
    error: str


class CompositionResult(BaseModel):
    """What a composition run returns.

    Attributes:
        state: ``completed``, ``failed`` or ``cancelled``.
        result: The last step's result, as JSON (None when it failed or was cancelled).
        steps: Path -> ``completed``, ``failed``, ``skipped`` or ``cancelled``.
        callback_failures: Callbacks that failed themselves.
    """

    state: Literal["completed", "failed", "cancelled"]
    result: JsonValue = None
    steps: dict[str, str] = Field(default_factory=dict)
    callback_failures: list[CallbackFailure] = Field(default_factory=list)


def control_variable(flow_run_id: UUID | str) -> str:
    """The name of the Prefect Variable that pauses or cancels a composition run.

    Example:
        >>> control_variable("0b6f2d1e-0000-0000-0000-000000000000")
        'compose-control-0b6f2d1e-0000-0000-0000-000000000000'
    """
    return f"{CONTROL_PREFIX}{flow_run_id}"


_STEP_KEY: contextvars.ContextVar[str] = contextvars.ContextVar("magicflow_compose_step_key")
_STEP_NAME: contextvars.ContextVar[str] = contextvars.ContextVar("magicflow_compose_step_name")


def _step_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """A step's result key, ``compose:<run id>:<path>``, set when the step was submitted."""
    return _STEP_KEY.get()


def _step_run_name() -> str:
    """A step's task-run name, ``<path> <target>``, set when the step was submitted."""
    return _STEP_NAME.get()


class _StepFailed(Exception):
    """A step failed; carries what its error callbacks receive. Internal to a run."""

    def __init__(
        self, path: str, target: str | None, step_input: Any, error: BaseException
    ) -> None:
        super().__init__(path)
        self.path, self.target, self.step_input, self.error = path, target, step_input, error


@task(name="run-workflow", cache_policy=NO_CACHE)
def run_workflow_step(deployment: str, parameters: dict[str, Any], idempotency_key: str) -> Any:
    """Runs a workflow's deployment as a step, once per key, and returns its result.

    Raises:
        CompositionFailedError: The run did not complete.
    """
    flow_run: FlowRun = run_deployment(  # type: ignore[assignment]
        deployment, parameters=parameters, idempotency_key=idempotency_key, timeout=None
    )
    state = flow_run.state
    if state is None or not state.is_completed():
        kind = state.type.value.lower() if state is not None else "unknown"
        raise CompositionFailedError(
            f"workflow:{deployment}", f"flow run {flow_run.id} ended {kind}"
        )
    try:
        return state.result()
    except Exception:
        return None  # the workflow does not persist its result: nothing to pass on


class CompositionRun:
    """One run of a composition inside the ``compose`` flow run.

    Args:
        registry: Where targets are looked up.
        dry_run: Pass ``dry_run=True`` to every step.
        flow_run_id: The composition's flow run (keys of persisted results, the control).
    """

    def __init__(self, registry: Registry, dry_run: bool, flow_run_id: UUID) -> None:
        self.registry = registry
        self.dry_run = dry_run
        self.flow_run_id = flow_run_id
        self.named: dict[str, Any] = {}
        self.steps: dict[str, str] = {}
        self.callback_failures: list[CallbackFailure] = []
        self._step_tasks: dict[tuple[str, bool], Task[..., Any]] = {}

    # control -----------------------------------------------------------------

    def control(self, client: SyncPrefectClient | None = None) -> Control:
        """The run's control (``run``, ``pause`` or ``cancel``), read from its Variable.

        Args:
            client: An open client to read it with; a reader that asks often (a swarm's
                watcher) keeps one, since each new client costs a TLS context on the CPU.
        """
        name = control_variable(self.flow_run_id)
        value: Any
        if client is None:
            value = Variable.get(name, default="run")
        else:
            variable = client.read_variable_by_name(name)
            value = "run" if variable is None else variable.value
        return _CONTROLS.get(str(value), "run")

    def between_steps(self, path: str) -> None:
        """Pauses here when asked, and stops when cancelled.

        Raises:
            CompositionCancelledError: The run was asked to cancel.
        """
        control = self.control()
        if control == "pause":
            get_run_logger().info("Pausing before %s, as asked", path)
            pause_flow_run(
                timeout=PAUSE_TIMEOUT_SECONDS, poll_interval=PAUSE_POLL_SECONDS, key=f"pause-{path}"
            )
            control = self.control()
            if control == "pause":  # resumed from the UI: the pause request is spent
                Variable.set(control_variable(self.flow_run_id), "run", overwrite=True)
                control = "run"
        if control == "cancel":
            raise CompositionCancelledError("composition", f"cancelled before {path}")

    # nodes -------------------------------------------------------------------

    def run(self, node: Signature | Chain | Swarm, path: str, previous: Any) -> Any:
        """Runs a node and its callbacks; returns its result.

        Raises:
            _StepFailed: The node failed (after its error callbacks ran).
            CompositionCancelledError: The run was cancelled (after the error callbacks).
        """
        if node.when is not None and not self.condition_holds(node, path):
            self.steps[path or ROOT] = "skipped"
            get_run_logger().info("Skipping %s: its condition does not hold", path or ROOT)
            return previous
        try:
            if isinstance(node, Signature):
                result = self.run_signature(node, path, previous)
            elif isinstance(node, Chain):
                result = self.run_chain(node, path, previous)
            else:
                result = self.run_swarm(node, path, previous)
        except _StepFailed as failed:
            self.callbacks(node.on_error, path, "on_error", self.payload("failed", failed))
            raise
        except CompositionCancelledError as cancelled:
            payload = error_payload("cancelled", path or ROOT, None, None, cancelled)
            self.callbacks(node.on_error, path, "on_error", payload)
            raise
        if node.step is not None:
            self.named[node.step] = result
        self.callbacks(node.on_success, path, "on_success", result)
        return result

    def condition_holds(self, node: Signature | Chain | Swarm, path: str) -> bool:
        """Evaluates a node's ``when``; a field missing from the result fails the node.

        Raises:
            _StepFailed: The field is not in the result, or the types do not compare
                (after the node's error callbacks ran).
        """
        when = node.when
        if when is None:
            return True
        try:
            return when.holds(self.named)
        except InvalidCompositionError as error:
            self.steps[path or ROOT] = "failed"
            named = InvalidCompositionError(
                join_path(path, "when.field"), f"{when.field}: {error.cause}"
            )
            failed = _StepFailed(path or ROOT, getattr(node, "target", None), None, named)
            self.callbacks(node.on_error, path, "on_error", self.payload("failed", failed))
            raise failed from None

    @staticmethod
    def payload(
        reason: Literal["failed", "cancelled"], failed: _StepFailed
    ) -> dict[str, JsonValue]:
        """What the error callbacks of a failed step receive."""
        return error_payload(reason, failed.path, failed.target, failed.step_input, failed.error)

    def run_chain(self, node: Chain, path: str, previous: Any) -> Any:
        """Runs steps in order, reading the control before each; returns the last result."""
        result = previous
        for index, step in enumerate(node.steps):
            step_path = f"{join_path(path, 'steps')}[{index}]"
            self.between_steps(step_path)
            result = self.run(step, step_path, result)
        return result

    def run_signature(self, node: Signature, path: str, previous: Any) -> Any:
        """Runs one signature as a task run and waits for its result."""
        step_path = path or ROOT
        future, parameters = self.submit(node, step_path, previous)
        try:
            result = future.result()
        except Exception as error:
            self.steps[step_path] = "failed"
            raise _StepFailed(step_path, node.target, parameters, error) from None
        self.steps[step_path] = "completed"
        return result

    def submit(
        self, node: Signature, path: str, previous: Any, keyed: bool = True
    ) -> tuple[PrefectFuture[Any], dict[str, Any]]:
        """Submits one signature as a task run.

        Args:
            node: The signature.
            path: Its path (the task run's name, its result's key).
            previous: What it receives, if it has ``receives``.
            keyed: Persist its result under the run and path, for a resume; a swarm
                keeps its items' results itself, in one record (`OpenSwarm`).
        """
        target = self.registry.target(node.target)
        parameters: dict[str, Any] = dict(node.params)
        if node.receives is not None:
            parameters[node.receives] = previous
        if self.dry_run:
            parameters["dry_run"] = True
        key = f"compose:{self.flow_run_id}:{path}"
        step = self._step_tasks.get((node.target, keyed))
        if step is None:
            # One configured task per target, reused by every step of it: the key and
            # the run name come from context variables, copied into each task run.
            task_of_target = target.task if isinstance(target, RegisteredJob) else run_workflow_step
            step = task_of_target.with_options(
                cache_policy=CacheKeyFnPolicy(cache_key_fn=_step_cache_key) if keyed else NO_CACHE,
                persist_result=keyed,
                task_run_name=_step_run_name,
            )
            self._step_tasks[(node.target, keyed)] = step
        keys = _STEP_KEY.set(key), _STEP_NAME.set(f"{path} {node.target}")
        try:
            if isinstance(target, RegisteredJob):
                return step.submit(**parameters), parameters
            return step.submit(target.deployment, to_jsonable_python(parameters), key), parameters
        finally:
            _STEP_KEY.reset(keys[0])
            _STEP_NAME.reset(keys[1])

    def run_swarm(self, node: Swarm, path: str, previous: Any) -> list[Any]:
        """Runs a swarm's items and returns their results in order.

        An open swarm also runs what is fed to it as flow-run inputs (`SwarmFeed`),
        in the order sent, until a close arrives (or the run is cancelled). A
        resumed or retried run reads every input again: the items keep their paths,
        so the finished ones are not run again.
        """
        from flows.compose_swarm import OpenSwarm

        running = OpenSwarm(self, node, path, previous)
        running.feed(*node.items, checked=True)  # the whole tree was checked at the start
        if node.open:
            self.read_feed(running)
        return running.close()

    def read_feed(self, running: OpenSwarm) -> None:
        """Feeds the open swarm from its flow-run inputs until it is closed or stopped."""
        from prefect import get_client

        seen: set[str] = set()
        logger = get_run_logger()
        with get_client(sync_client=True) as client:
            while not running.stop_feeding():
                try:
                    inputs = client.filter_flow_run_input(
                        flow_run_id=self.flow_run_id,
                        key_prefix=FEED_KEY_PREFIX,
                        limit=100,
                        exclude_keys=seen,
                    )
                except Exception as error:  # an API hiccup: try again
                    logger.warning("Could not read the swarm's feed: %s", reason_for(error))
                    inputs = []
                for flow_run_input in inputs:  # oldest first
                    seen.add(flow_run_input.key)
                    try:
                        fed = SwarmFeed.load_from_flow_run_input(flow_run_input)
                    except Exception as error:  # anyone who can reach the API may be hostile
                        logger.error(
                            "Refused the swarm feed %s: %s", flow_run_input.key, reason_for(error)
                        )
                        continue
                    running.feed_checking(*fed.items)
                    if fed.close:
                        return
                if not inputs:
                    time.sleep(FEED_READ_SECONDS)

    def callbacks(self, callbacks: list[Signature], path: str, label: str, payload: Any) -> None:
        """Runs callbacks in order; a failing one is recorded and logged, never raised."""
        for index, callback in enumerate(callbacks):
            callback_path = f"{join_path(path, label)}[{index}]"
            try:
                self.run(callback, callback_path, payload)
            except (_StepFailed, CompositionCancelledError) as error:
                cause = error.error if isinstance(error, _StepFailed) else error
                self.callback_failures.append(
                    CallbackFailure(
                        step=callback_path, target=callback.target, error=reason_for(cause)
                    )
                )
                get_run_logger().error(
                    "Callback %s (%s) failed: %s", callback_path, callback.target, reason_for(cause)
                )


def _cancelled_through_prefect(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """The ``on_cancellation`` hook: runs the error callbacks of a run cancelled through Prefect."""
    from flows.compose_control import run_error_callbacks_when_cancelled

    run_error_callbacks_when_cancelled(flow_run)


@workflow(
    name="compose",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_SWARM_CONCURRENCY),
    on_cancellation=[_cancelled_through_prefect],
)
def compose(composition: Composition, dry_run: bool = False) -> CompositionResult | State[Any]:
    """Runs a composition of registered jobs and workflows.

    Args:
        composition: A signature, chain or swarm (`flows.composition`), as JSON in a request.
        dry_run: Run every step as a dry run (every target must have ``dry_run``).

    Returns:
        The composition's result; a Cancelled state when it was cancelled by request.

    Raises:
        InvalidCompositionError: The composition does not check against the registry.
        CompositionFailedError: A step failed (after the error callbacks ran).
    """
    registry = registry_for_compositions()
    check_composition(composition, registry, dry_run)
    flow_run_id = get_run_context().flow_run.id  # type: ignore[union-attr]
    run = CompositionRun(registry, dry_run, flow_run_id)
    try:
        result = run.run(composition, "", None)
    except _StepFailed as failed:
        # MagicFlow's own errors name their resource and cause; others only their type.
        cause = reason_for(failed.error)
        raise CompositionFailedError("composition", f"{failed.path}: {cause}") from None
    except CompositionCancelledError as cancelled:
        return Cancelled(
            message=str(cancelled),
            data=CompositionResult(
                state="cancelled", steps=run.steps, callback_failures=run.callback_failures
            ),
        )
    return CompositionResult(
        state="completed",
        result=to_jsonable_python(result),
        steps=run.steps,
        callback_failures=run.callback_failures,
    )

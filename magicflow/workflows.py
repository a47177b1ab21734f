"""The `workflow` decorator: a Prefect flow that reports every run's status to Kafka.

Every MagicFlow workflow is a Prefect flow decorated with `workflow` instead of
``prefect.flow``. It attaches Prefect state hooks that publish a `WorkflowStatus`
(``running``, ``completed``, ``failed``, ``crashed``, ``cancelled``) for every run,
however it was started: by a Kafka request, a schedule, the UI or a notebook.

Where the hooks run, and so where statuses come from:

- ``running``, ``completed``, ``failed`` (and ``cancelled`` for a run cancelled
  in-process): the flow-run process, from Prefect's engine.
- ``crashed`` and ``cancelled`` for a deployment run: the runner or process worker
  that started the flow-run process. When that process dies (SIGKILL, out of
  memory), the runner sees the non-zero exit code, sets the run ``Crashed`` and
  runs the ``on_crashed`` hooks itself; when a run is cancelled, it runs the
  ``on_cancellation`` hooks before it kills the process.
- ``crashed`` when the runner died with the run (lost host): nobody can run a
  hook; `follow_crashed_runs`, run beside the request listener, reports the
  ``Crashed`` state Prefect's server later sets.

Statuses go to the status topic of the saved `KafkaConnection` block named by
the ``MAGICFLOW_KAFKA_BLOCK`` environment variable (default ``magicflow``), or to
the reply topic named in the run's `REPLY_TOPIC_TAG_PREFIX` tag. Without such a
block, statuses are off and runs are unaffected. Publishing never fails a run: a
broker that cannot be reached costs at most `PUBLISH_TIMEOUT_SECONDS` and a
warning in the run's log.

Example:
    ```python
    from magicflow import Change
    from magicflow.workflows import workflow

    @workflow(log_prints=True)
    def tenant_provisioning(tenant: str, dry_run: bool = False) -> list[Change]:
        return [Change(resource=f"k8s:namespace/{tenant}", action="created", dry_run=dry_run)]
    ```
"""

import asyncio
import inspect
import logging
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeGuard, TypeVar, cast, overload
from uuid import UUID

from aiokafka import AIOKafkaProducer
from prefect import Flow, flow, get_client
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter
from prefect.logging.loggers import flow_run_logger
from prefect.settings import PREFECT_API_URL
from prefect.states import State
from prefect.utilities.urls import url_for

from blocks.kafka import KafkaConnection
from magicflow.changes import Change, publish_changes_artifact, summarize_changes
from magicflow.messages import REQUEST_TAG_PREFIX, RunState, WorkflowStatus, publish_status

P = ParamSpec("P")
R = TypeVar("R")

KAFKA_BLOCK_ENV = "MAGICFLOW_KAFKA_BLOCK"
"""Environment variable naming the saved `KafkaConnection` block statuses go through."""

DEFAULT_KAFKA_BLOCK = "magicflow"
"""Block name used when `KAFKA_BLOCK_ENV` is not set."""

REPLY_TOPIC_TAG_PREFIX = "magicflow-reply-topic:"
"""Flow-run tag naming the topic a run's statuses go to instead of the status topic.

The request listener adds ``REPLY_TOPIC_TAG_PREFIX + request.reply_topic`` to the
run's tags when a request asks for a reply topic.
"""

PUBLISH_TIMEOUT_SECONDS = 15.0
"""Longest a hook waits for the block and the broker before giving up on a status."""

REASON_MAX_CHARS = 500
"""Failure reasons are cut to this length."""

_HOOK_OPTIONS = ("on_running", "on_completion", "on_failure", "on_crashed", "on_cancellation")

_CRASHED_EVENT = "prefect.flow-run.Crashed"
_statuses_off_reported = False


@overload
def workflow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def workflow(fn: None = None, /, **options: Any) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def workflow(
    fn: Callable[P, R] | None = None, /, **options: Any
) -> Flow[P, R] | Callable[[Callable[P, R]], Flow[P, R]]:
    """Makes a function a MagicFlow workflow: a Prefect flow that publishes its statuses.

    Args:
        fn: The workflow function (when used as ``@workflow`` without arguments).
        **options: Any ``prefect.flow`` keyword argument (``name``, ``retries``,
            ``log_prints``, ...). State hooks given here run before the status hook
            of the same state.

    Returns:
        The Prefect flow. When it returns a list of `Change`, its completion also
        publishes the changes as a table artifact and their counts in the status.

    Example:
        ```python
        from magicflow import Change
        from magicflow.workflows import workflow

        @workflow(name="rotate-db-password", retries=1)
        def rotate_db_password(tenant: str) -> list[Change]:
            return []
        ```
    """

    def decorate(function: Callable[P, R]) -> Flow[P, R]:
        hooks = {
            option: [*(options.get(option) or []), _publish_run_status] for option in _HOOK_OPTIONS
        }
        hooks["on_completion"].insert(-1, _publish_changes_table)
        return cast(Flow[P, R], flow(function, **{**options, **hooks}))

    return decorate(fn) if fn is not None else decorate


async def _publish_changes_table(
    flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]
) -> None:
    """Completion hook: shows a returned list of `Change` as a table artifact. Never raises."""
    try:
        result = await state.aresult(raise_on_failure=False)
        if _is_change_list(result):
            # Inside a running event loop, Prefect's artifact call hands back a coroutine.
            created = publish_changes_artifact(result, key=f"{_artifact_key(flow.name)}-changes")
            if inspect.isawaitable(created):
                await created
    except Exception as error:
        flow_run_logger(flow_run, flow).warning(
            "Could not publish the changes artifact of flow run %s: %s",
            flow_run.id,
            _describe(error),
        )


async def _publish_run_status(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """State hook: publishes the run's new state. Never raises, so never fails the run."""
    try:
        await asyncio.wait_for(
            _publish_run_status_unguarded(flow, flow_run, state), PUBLISH_TIMEOUT_SECONDS
        )
    except Exception as error:
        flow_run_logger(flow_run, flow).warning(
            "Could not publish the %s status of flow run %s: %s",
            state.type.value,
            flow_run.id,
            _describe(error),
        )


async def _publish_run_status_unguarded(
    flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]
) -> None:
    kafka = await _load_kafka_connection(flow_run_logger(flow_run, flow))
    if kafka is None:
        return
    status = await _status_for(flow.name, flow_run, state)
    producer = kafka.get_producer()
    await producer.start()
    try:
        await publish_status(producer, status, _topic_for(flow_run, kafka))
    finally:
        await producer.stop()


def _topic_for(flow_run: FlowRun, kafka: KafkaConnection) -> str:
    return _tag_value(flow_run.tags, REPLY_TOPIC_TAG_PREFIX) or kafka.status_topic


async def _load_kafka_connection(
    run_logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> KafkaConnection | None:
    """The configured Kafka block, or None (statuses off) when it is not saved."""
    global _statuses_off_reported
    name = os.environ.get(KAFKA_BLOCK_ENV) or DEFAULT_KAFKA_BLOCK
    try:
        return cast(KafkaConnection, await KafkaConnection.aload(name))
    except ValueError:  # Prefect's answer for "no block document with this name"
        level = logging.DEBUG if _statuses_off_reported else logging.INFO
        _statuses_off_reported = True
        run_logger.log(
            level,
            "No KafkaConnection block named %r (set %s): run statuses are not published.",
            name,
            KAFKA_BLOCK_ENV,
        )
        return None


async def _status_for(workflow_name: str, flow_run: FlowRun, state: State[Any]) -> WorkflowStatus:
    run_state = _run_state_of(state)
    changes: dict[str, int] | None = None
    reason: str | None = None
    if run_state is RunState.COMPLETED:
        result = await state.aresult(raise_on_failure=False)
        if _is_change_list(result):
            changes = summarize_changes(result)
    elif run_state is RunState.FAILED:
        reason = await _failure_reason(state)
    elif state.message:
        reason = _truncate(state.message)
    return WorkflowStatus(
        request_id=_tag_value(flow_run.tags, REQUEST_TAG_PREFIX),
        workflow=workflow_name,
        flow_run_id=flow_run.id,
        state=run_state,
        reason=reason,
        changes=changes,
        ui_url=flow_run_ui_url(flow_run.id),
    )


def _run_state_of(state: State[Any]) -> RunState:
    if state.is_running():
        return RunState.RUNNING
    if state.is_completed():
        return RunState.COMPLETED
    if state.is_crashed():
        return RunState.CRASHED
    if state.is_cancelling() or state.is_cancelled():
        return RunState.CANCELLED
    return RunState.FAILED


def _is_change_list(result: object) -> TypeGuard[list[Change]]:
    return isinstance(result, list) and all(isinstance(item, Change) for item in result)


def _artifact_key(workflow_name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in workflow_name.lower()).strip("-") or "run"


async def _failure_reason(state: State[Any]) -> str | None:
    try:
        error = await state.aresult(raise_on_failure=False)
    except Exception:
        error = None
    if isinstance(error, BaseException):
        return _truncate(_describe(error))
    return _truncate(state.message) if state.message else None


def _describe(error: BaseException) -> str:
    # By the job contract, exception messages hold no secret; the type says what failed.
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _truncate(text: str) -> str:
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 3] + "..."


def _tag_value(tags: Iterable[str], prefix: str) -> str | None:
    return next((tag[len(prefix) :] for tag in tags if tag.startswith(prefix)), None)


def flow_run_ui_url(flow_run_id: UUID) -> str | None:
    """Link to a flow run in the Prefect UI, as Prefect builds it (``PREFECT_UI_URL``).

    Args:
        flow_run_id: The flow run.

    Returns:
        The URL; derived from ``PREFECT_API_URL`` when no UI URL is set; None when
        neither is.

    Example:
        ```python
        flow_run_ui_url(flow_run.id)  # "http://127.0.0.1:4200/runs/flow-run/..."
        ```
    """
    url = url_for("flow-run", obj_id=flow_run_id)
    if url:
        return url
    api_url = PREFECT_API_URL.value()
    if not api_url:
        return None
    return f"{api_url.removesuffix('/').removesuffix('/api')}/runs/flow-run/{flow_run_id}"


async def follow_crashed_runs(
    kafka: KafkaConnection | None = None,
    stop: asyncio.Event | None = None,
    backfill: timedelta = timedelta(minutes=10),
) -> None:
    """Publishes a ``crashed`` status for every flow run Prefect marks ``Crashed``.

    The ``on_crashed`` hook cannot run when nobody is left to run it: when the
    runner or worker that supervised the flow-run process dies too (lost host,
    SIGKILL of the whole process group), it is Prefect's server that later marks
    the run ``Crashed`` (with flow-run heartbeats and a zombie-detecting
    automation). This follower turns every ``prefect.flow-run.Crashed`` event into
    a status, so such runs are reported as well. A run whose hook did run is
    reported twice, with the same key and state; status consumers treat a final
    status as idempotent.

    Args:
        kafka: The connection to publish through; defaults to the saved block named
            by `KAFKA_BLOCK_ENV` (returns at once when there is none).
        stop: Set it to stop following; otherwise follows until cancelled.
        backfill: How far back crashes are reported at start, to cover a restart.

    Example:
        ```python
        import asyncio

        asyncio.run(follow_crashed_runs())  # e.g. beside the request listener
        ```
    """
    kafka = kafka or await _load_kafka_connection(logging.getLogger("magicflow.workflows"))
    if kafka is None:
        return
    stop = stop or asyncio.Event()
    crashed = EventFilter(
        # Prefect types `since` as its own DateTime alias; pydantic takes a datetime.
        occurred=EventOccurredFilter(since=datetime.now(UTC) - backfill),  # type: ignore[arg-type]
        event=EventNameFilter(name=[_CRASHED_EVENT]),
    )
    producer = kafka.get_producer()
    await producer.start()
    try:
        async with (
            get_events_subscriber(filter=crashed, reconnect_on_clean_close=True) as events,
            get_client() as client,
        ):
            iterator = aiter(events)
            while not stop.is_set():
                stopped = asyncio.create_task(stop.wait())
                received = asyncio.create_task(anext(iterator))
                await asyncio.wait({stopped, received}, return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
                if not received.done():
                    received.cancel()
                    break
                event = received.result()
                await _publish_crash(client, producer, kafka, event.resource.id)
    finally:
        await producer.stop()


async def _publish_crash(
    client: PrefectClient, producer: AIOKafkaProducer, kafka: KafkaConnection, resource_id: str
) -> None:
    log = logging.getLogger("magicflow.workflows")
    try:
        flow_run = await client.read_flow_run(UUID(resource_id.rpartition(".")[2]))
        if flow_run.state is None or not flow_run.state.is_crashed():
            return
        workflow_name = (await client.read_flow(flow_run.flow_id)).name
        status = await _status_for(workflow_name, flow_run, flow_run.state)
        await publish_status(producer, status, _topic_for(flow_run, kafka))
    except Exception as error:
        log.warning("Could not publish the crash of %s: %s", resource_id, _describe(error))

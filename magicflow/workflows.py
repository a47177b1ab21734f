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
  hook; the request listener's crash follower (`flows.listener.crashes`) reports
  the ``Crashed`` state Prefect's server later sets, with `run_status`.

Every status carries the run's ``dry_run`` parameter and a ``seq`` from the
Prefect state's timestamp, so consumers can order a run's statuses.

Statuses go to the status topic of the saved `KafkaConnection` block named by
the ``MAGICFLOW_KAFKA_BLOCK`` environment variable (default ``magicflow``), or to
the reply topic named in the run's `REPLY_TOPIC_TAG_PREFIX` tag (when the block's
reply-topic rule allows it). Without such a
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
import re
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeGuard, TypeVar, cast, overload
from uuid import UUID

from prefect import Flow, flow
from prefect.client.schemas.objects import FlowRun
from prefect.logging.loggers import flow_run_logger
from prefect.settings import PREFECT_API_URL
from prefect.states import State
from prefect.utilities.urls import url_for

from blocks.kafka import KafkaConnection
from magicflow.changes import Change, publish_changes_artifact, summarize_changes
from magicflow.messages import (
    REQUEST_HASH_TAG_PREFIX,
    REQUEST_TAG_PREFIX,
    RunState,
    WorkflowStatus,
    publish_status,
    reason_for,
    seq_of,
)

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

DRY_RUN_PARAMETER = "dry_run"
"""The workflow parameter that makes a run plan without writing."""

_statuses_off_reported: set[str] = set()
"""Kafka block names already reported missing in this process (INFO once per name)."""
_EXCEPTION_TYPE_IN_MESSAGE = re.compile(r"encountered an exception: ([A-Za-z_][\w.]*)")


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
            counts = summarize_changes(result)
            summary = ", ".join(f"{n} {action}" for action, n in counts.items() if n) or "no jobs"
            dry_run = is_dry_run(flow_run) or any(change.dry_run for change in result)
            # Inside a running event loop, Prefect's artifact call hands back a coroutine.
            created = publish_changes_artifact(
                result,
                key=f"{_artifact_key(flow.name)}-changes",
                description=f"**Dry run**: nothing was written. {summary}" if dry_run else summary,
            )
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
    kafka = await load_kafka_connection(flow_run_logger(flow_run, flow))
    if kafka is None:
        return
    status = await run_status(flow.name, flow_run, state)
    producer = kafka.get_producer()
    try:
        await producer.start()
        await publish_status(producer, status, status_topic_for(flow_run, kafka))
    finally:
        await producer.stop()  # also after a failed start: no unclosed client


def status_topic_for(flow_run: FlowRun, kafka: KafkaConnection) -> str:
    """Where a run's statuses go: its reply topic when the connection allows it.

    Args:
        flow_run: The run; the listener tags it with its request's reply topic.
        kafka: The connection statuses go through.

    Returns:
        The reply topic, or the connection's status topic.
    """
    reply_topic = _tag_value(flow_run.tags, REPLY_TOPIC_TAG_PREFIX)
    if reply_topic and kafka.reply_topic_problem(reply_topic) is None:
        return reply_topic
    return kafka.status_topic


def is_dry_run(flow_run: FlowRun) -> bool:
    """True when the run was started with ``dry_run=True``."""
    return (flow_run.parameters or {}).get(DRY_RUN_PARAMETER) is True


async def load_kafka_connection(
    run_logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
) -> KafkaConnection | None:
    """The configured Kafka block, or None (statuses off) when it is not saved."""
    name = os.environ.get(KAFKA_BLOCK_ENV) or DEFAULT_KAFKA_BLOCK
    try:
        return cast(KafkaConnection, await KafkaConnection.aload(name))
    except ValueError:  # Prefect's answer for "no block document with this name"
        level = logging.DEBUG if name in _statuses_off_reported else logging.INFO
        _statuses_off_reported.add(name)
        run_logger.log(
            level,
            "No KafkaConnection block named %r (set %s): run statuses are not published.",
            name,
            KAFKA_BLOCK_ENV,
        )
        return None


async def run_status(
    workflow_name: str,
    flow_run: FlowRun,
    state: State[Any],
    changes: dict[str, int] | None = None,
) -> WorkflowStatus:
    """The status that reports a run's state: the one place run statuses are built.

    Args:
        workflow_name: The workflow (flow) name.
        flow_run: The run, with its tags (request id, request hash) and parameters.
        state: The state to report.
        changes: The change counts, when known; a completed state's result is read
            for them otherwise.

    Returns:
        The status; ``seq`` is the state's timestamp, ``reason`` only MagicFlow's own
        error messages (any other error is named by its type).
    """
    run_state = run_state_of(state)
    reason: str | None = None
    if run_state is RunState.COMPLETED and changes is None:
        try:
            result = await state.aresult(raise_on_failure=False)
        except Exception:
            result = None  # not persisted (a run read back from the API): no counts
        if _is_change_list(result):
            changes = summarize_changes(result)
    elif run_state is RunState.FAILED:
        reason = await _failure_reason(state)
    elif run_state in (RunState.CRASHED, RunState.CANCELLED) and state.message:
        # Written by Prefect's runner or server (exit codes, heartbeats), not by the flow.
        reason = _truncate(state.message)
    return WorkflowStatus(
        request_id=_tag_value(flow_run.tags, REQUEST_TAG_PREFIX),
        workflow=workflow_name,
        flow_run_id=flow_run.id,
        state=run_state,
        reason=reason,
        changes=changes if run_state is RunState.COMPLETED else None,
        ui_url=flow_run_ui_url(flow_run.id),
        at=state.timestamp,
        seq=seq_of(state.timestamp),
        dry_run=is_dry_run(flow_run),
        request_hash=_tag_value(flow_run.tags, REQUEST_HASH_TAG_PREFIX),
    )


def run_state_of(state: State[Any]) -> RunState:
    """The status state that reports a Prefect state.

    Args:
        state: A flow run's Prefect state.

    Returns:
        ``scheduled`` for a run not started yet (scheduled, late, pending),
        ``running`` while it runs or is paused, else its final state; a run being
        cancelled is reported ``cancelled``, as its cancellation hook runs then.
    """
    if state.is_scheduled() or state.is_pending():
        return RunState.SCHEDULED
    if state.is_running() or state.is_paused():
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
        return _truncate(reason_for(error))
    # Prefect's message quotes the exception's text, which may hold anything: keep its type.
    found = _EXCEPTION_TYPE_IN_MESSAGE.search(state.message or "")
    return found.group(1) if found else None


def _describe(error: BaseException) -> str:
    """An error for a log line: MagicFlow's own message, or the exception's type."""
    return reason_for(error)


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

"""The `job` decorator: a Prefect task with MagicFlow's retry rule and logging.

A job is a Prefect task that follows the job contract (see the README): it is
idempotent, supports ``dry_run``, returns a `Change` and raises typed errors.
`job` gives every such task the same retry policy, so that transient failures
(`TransientError`) are retried with exponential backoff and jitter while
permanent ones (bad input, missing permission, conflicts) fail at once.
"""

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

from prefect import Task, task
from prefect.blocks.core import Block
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.logging import get_run_logger
from prefect.states import State
from prefect.tasks import exponential_backoff

from magicflow.changes import Change
from magicflow.errors import InvalidInputError, MagicFlowError, NotFoundError

P = ParamSpec("P")
R = TypeVar("R")
B = TypeVar("B", bound=Block)

DEFAULT_RETRIES = 3
"""How often a job retries a transient failure before it fails."""


def retry_on_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry only errors marked retryable.

    Jobs translate their backend's errors into `magicflow.errors` types, so this
    rule is the single place that decides what is transient.

    Args:
        task: The task being retried (unused, part of Prefect's signature).
        task_run: The task run (unused, part of Prefect's signature).
        state: The failed state; its exception decides.

    Returns:
        True when the failure is a `MagicFlowError` with ``retryable`` set.
    """
    try:
        state.result()
    except MagicFlowError as error:
        return error.retryable
    except BaseException:
        return False
    return False


@overload
def job(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def job(
    fn: None = None, /, *, retries: int = ..., name: str | None = ...
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def job(
    fn: Callable[P, R] | None = None,
    /,
    *,
    retries: int = DEFAULT_RETRIES,
    name: str | None = None,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Makes a function a MagicFlow job: a Prefect task with the shared retry rule.

    Jobs are never cached: each call reads the current state of its resource.

    Args:
        fn: The job function (when used as ``@job`` without arguments).
        retries: How often to retry a `TransientError`.
        name: The task name in the Prefect UI; defaults to the function name.

    Returns:
        The Prefect task. Use ``.with_options(...)`` to change its retry delays,
        for example in tests.

    Example:
        ```python
        from magicflow import Change, job

        @job
        def ensure_thing(name: str, dry_run: bool = False) -> Change:
            return Change(resource=f"demo:thing/{name}", action="unchanged", dry_run=dry_run)
        ```
    """

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        return task(
            name=name or function.__name__,
            task_run_name=job_run_name(name or function.__name__),
            # A job must read live state every time. Prefect's default policy would
            # also reuse a result when only a SecretStr input changed (it hashes
            # them masked), silently skipping a rotation.
            cache_policy=NO_CACHE,
            # Nothing reads a job's result back (it is never cached), so it is not
            # written to result storage: a workflow that persists its own result would
            # otherwise store every job's too, a file write per job run.
            persist_result=False,
            retries=retries,
            retry_delay_seconds=exponential_backoff(backoff_factor=2),
            retry_jitter_factor=0.5,
            retry_condition_fn=retry_on_transient,
        )(function)

    return decorate(fn) if fn is not None else decorate


def job_run_name(job_name: str) -> Callable[[], str]:
    """A job's run name: the job and its first text argument after the connection.

    Prefect would name a run ``ensure_s3_bucket-a1b`` (a random suffix); in the UI and
    in a notebook, ``ensure_s3_bucket: acme-data (dry run)`` says which run is which.

    Args:
        job_name: The job's name.

    Returns:
        A function Prefect calls at run time (``task_run_name``).

    Example:
        ```python
        task(task_run_name=job_run_name("ensure_s3_bucket"))(ensure_s3_bucket)
        ```
    """

    def run_name() -> str:
        from prefect.runtime import task_run

        parameters = dict(task_run.parameters)
        key = next(
            (
                value
                for field, value in list(parameters.items())[1:]
                if isinstance(value, str) and value and field != "dry_run"
            ),
            None,
        )
        text = f"{job_name}: {key[:60]}" if key else job_name
        return f"{text} (dry run)" if parameters.get("dry_run") is True else text

    return run_name


BLOCK_REUSE_SECONDS = 60.0
"""How long a block loaded by name is reused by the other jobs of the same flow run."""

_loaded_blocks: OrderedDict[tuple[str, str, str], tuple[float, Block]] = OrderedDict()
_loaded_blocks_lock = threading.Lock()
_LOADED_BLOCKS_KEPT = 256


def _current_flow_run_id() -> str | None:
    task_context = TaskRunContext.get()
    if task_context is not None and task_context.task_run.flow_run_id is not None:
        return str(task_context.task_run.flow_run_id)
    flow_context = FlowRunContext.get()
    if flow_context is not None and flow_context.flow_run is not None:
        return str(flow_context.flow_run.id)
    return None


def _load_for_this_run(block_type: type[B], name: str) -> B:
    """Loads a saved block, reusing one the same flow run loaded in the last minute.

    A runbook's jobs mostly share one connection: validating 24 backups loads the same
    AWS block about a hundred times, each a round trip to the Prefect API that competes
    with the jobs for the machine. Reuse is scoped to one flow run and to
    `BLOCK_REUSE_SECONDS`, so an edited block (a rotated credential) is read again by
    the next run, and by a long run (one paused for an approval) after a minute.
    """
    run_id = _current_flow_run_id()
    if run_id is None:
        return block_type.load(name)  # type: ignore[return-value]
    key = (run_id, block_type.get_block_type_slug(), name)
    now = time.monotonic()
    with _loaded_blocks_lock:
        cached = _loaded_blocks.get(key)
    if cached is not None and now - cached[0] < BLOCK_REUSE_SECONDS:
        return cached[1]  # type: ignore[return-value]
    block = cast(B, block_type.load(name))
    with _loaded_blocks_lock:
        _loaded_blocks[key] = (now, block)
        _loaded_blocks.move_to_end(key)
        while len(_loaded_blocks) > _LOADED_BLOCKS_KEPT:
            _loaded_blocks.popitem(last=False)
    return block


def connection(value: B | str, block_type: type[B]) -> B:
    """Returns the block a job was given, loading it first when given its name.

    Inside a flow run, a block loaded by name is reused by the run's other jobs for
    `BLOCK_REUSE_SECONDS` (one read of the Prefect API instead of one per job).

    Args:
        value: A block instance, or the name of a saved block of `block_type`.
        block_type: The expected block class.

    Returns:
        The block instance.

    Raises:
        NotFoundError: No block of `block_type` is saved under that name; the
            message says how to create one.
        InvalidInputError: `value` is a block of another type, or the name of a
            saved block of another type, or an empty name.

    Example:
        ```python
        vault = connection("prod", VaultConnection)  # VaultConnection.load("prod")
        ```
    """
    kind = block_type.__name__
    if isinstance(value, str):
        resource = f"block:{block_type.get_block_type_slug()}/{value}"
        if not value.strip():
            raise InvalidInputError(resource, f"the name of a saved {kind} block is empty")
        try:
            return _load_for_this_run(block_type, value)
        except ValueError as error:
            if not isinstance(error.__cause__, ObjectNotFound):
                raise
        others = _block_types_saved_as(value)
        if others:
            raise InvalidInputError(
                resource,
                f"{value!r} is a saved {' and '.join(others)} block, not a {kind}; "
                f"pass the name of a {kind} block",
            ) from None
        raise NotFoundError(
            resource,
            f"no {kind} block is saved as {value!r}; create it with "
            f"{kind}(...).save({value!r}) or in the Prefect UI under Blocks",
        ) from None
    if not isinstance(value, block_type):
        raise InvalidInputError(
            f"block:{type(value).__name__}", f"expected a {kind} or the name of a saved one"
        )
    return value


def _block_types_saved_as(name: str) -> list[str]:
    """Slugs of the block types that have a (non-anonymous) block saved under `name`."""
    with get_client(sync_client=True) as client:
        response = client.request(
            "POST",
            "/block_documents/filter",
            json={
                "block_documents": {"name": {"any_": [name]}, "is_anonymous": {"eq_": False}},
                "include_secrets": False,
            },
        )
    return sorted({str(document["block_type"]["slug"]) for document in response.json()})


def job_logger(
    outside_runs: str = "magicflow.jobs",
) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger inside a run (shown in the UI), else a named logger.

    Args:
        outside_runs: The logger used outside a flow or task run.

    Returns:
        The logger.
    """
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(outside_runs)


def report(change: Change) -> Change:
    """Logs a job's `Change` in one consistent line and returns it.

    Args:
        change: The change to report; it holds no secret by contract.

    Returns:
        The same change, so a job can ``return report(Change(...))``.
    """
    job_logger().info("%s%s", change, f" {change.detail}" if change.detail else "")
    return change

"""A swarm while it runs: items started as slots free up, fed more while open, results in order.

`OpenSwarm` is how the ``compose`` workflow (`flows.compose`) runs a swarm: at most
``max_concurrency`` items are submitted and unfinished at once, one dispatcher thread
starts an item per freed slot (an item's end only records it and wakes the
dispatcher), a watcher reads the run's control (pause, cancel) and the failure
budget stops what has not started.
Finished items' results are saved together in one record, read again by a retried
or resumed run so that nothing finished runs twice. A progress artifact shows
``done/total``.

Example:
    ```python
    from prefect import flow
    from prefect.context import get_run_context

    from flows.compose import CompositionRun
    from flows.compose_swarm import OpenSwarm
    from flows.composition import Swarm, registry_for_compositions, sign


    @flow
    def fed_by_hand() -> list[int]:
        run = CompositionRun(registry_for_compositions(), False, get_run_context().flow_run.id)
        running = OpenSwarm(run, Swarm(max_concurrency=4), "by-hand", None)
        running.feed(sign("add", x=1), sign("add", x=2))
        return running.close()  # [2, 3]
    ```
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import functools
import threading
import time
from typing import Any
from uuid import UUID

from prefect import get_client, get_run_logger
from prefect.artifacts import create_progress_artifact
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.futures import PrefectFuture
from prefect.results import ResultRecord, get_result_store
from prefect.states import State

from flows.compose import (
    CONTROL_READ_SECONDS,
    PROGRESS_UPDATE_SECONDS,
    ROOT,
    SAVE_RESULTS_SECONDS,
    CompositionCancelledError,
    CompositionRun,
    Control,
    SwarmFailedError,
    _StepFailed,
)
from flows.composition import (
    InvalidCompositionError,
    Signature,
    Swarm,
    check_composition,
    error_payload,
    join_path,
)
from magicflow.messages import reason_for


def completed_result(future: PrefectFuture[Any]) -> Any:
    """The result of a finished task run's future, read from its final state when it can be.

    A task run that completed in this process carries its result in its final state;
    reading it there saves `PrefectFuture.result`'s round trip through an event loop
    (one per swarm item). Anything else (a failure, a result held in storage, another
    kind of future) goes through `PrefectFuture.result`, which raises the run's error.

    Args:
        future: The future of a task run that is done (as in a done callback).

    Returns:
        The task run's return value.

    Example:
        ```python
        future = add.submit(x=1)
        future.wait()
        completed_result(future)  # 2
        ```
    """
    wrapped = getattr(future, "wrapped_future", None)
    if isinstance(wrapped, concurrent.futures.Future) and wrapped.done():
        state = wrapped.result()
        if isinstance(state, State) and state.is_completed():
            if isinstance(state.data, ResultRecord):
                return state.data.result
    return future.result()


class OpenSwarm:
    """A swarm that runs while it is fed: `feed` adds signatures, `close` waits for the rest.

    At most ``max_concurrency`` items are submitted and unfinished at once. One
    dispatcher thread submits them: an item's end only records its result and wakes
    the dispatcher, which starts as many items as slots are free (a batch when several
    ended meanwhile) and keeps the saved results and the progress artifact up to date.
    The items' worker threads never submit, so they never wait on the task runner's
    locks while holding a slot. Once ``stop_after_n_failures`` items failed, the items
    not started are cancelled. Results come back in the order the items were fed.

    Args:
        run: The composition run.
        node: The swarm's settings (its ``items`` are not fed by this constructor).
        path: The swarm's path.
        previous: What items with ``receives`` receive.
    """

    def __init__(self, run: CompositionRun, node: Swarm, path: str, previous: Any) -> None:
        self.run, self.node, self.path, self.previous = run, node, path, previous
        self.items: list[Signature] = []
        self.results: list[Any] = []
        self.errors: dict[int, BaseException] = {}
        self.inputs: dict[int, Any] = {}
        self.outcome: dict[int, str] = {}
        self.futures: dict[int, PrefectFuture[Any]] = {}
        self._in_flight = 0  # items claimed and not finished: at most max_concurrency
        self._changed = threading.Condition()
        self._closed = False
        self._next = 0
        self._stopped: BaseException | None = None
        self._paused = False  # the dispatcher waits in a pause: an ending item saves itself
        self._progress_at = 0.0
        self._progress_lock = threading.Lock()
        # The watcher's client (then the close's): one for the swarm's life, since each
        # new client costs a TLS context on the CPU the items need.
        self._clients = contextlib.ExitStack()
        self._client = self._clients.enter_context(get_client(sync_client=True))
        # Finished items' results, saved together under one key (see `save_results`).
        self._results_key = f"compose:{run.flow_run_id}:{path or ROOT}:items"
        # The flow's result storage, records written whole (as a persisted task's are).
        self._result_store = get_result_store().model_copy(update={"metadata_storage": None})
        self._saved: dict[str, Any] = self._restore_results()
        self._unsaved: dict[str, Any] = {}
        self._saved_at = time.monotonic()
        self._save_lock = threading.Lock()
        self._progress_id: UUID = create_progress_artifact(  # type: ignore[assignment]
            0.0, description=self._describe()
        )
        self._watched_control: Control = "run"
        self._done_watching = threading.Event()
        # A watcher of its own reads the control, saves the results and updates the
        # progress: the dispatcher makes no API call, so a slow API never slows it.
        self._watcher = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._watch_control,),
            name=f"swarm {path} control",
            daemon=True,
        )
        self._watcher.start()
        # The dispatcher submits in the flow run's context (copied), as the flow would.
        self._dispatcher = threading.Thread(
            target=contextvars.copy_context().run,
            args=(self._dispatch,),
            name=f"swarm {path}",
            daemon=True,
        )
        self._dispatcher.start()

    def _watch_control(self) -> None:
        while not self._done_watching.is_set():
            try:
                self._watched_control = self.run.control(self._client)
            except Exception as error:  # an API hiccup: keep the last answer, try again
                get_run_logger().warning("Could not read the control: %s", reason_for(error))
            if self._watched_control == "cancel" and self._stopped is None:
                # Cancel needs no pause point: no item starts from now on.
                where = f"cancelled before {join_path(self.path, 'items')}[{self._next}]"
                self._stopped = CompositionCancelledError("composition", where)
                self._update_progress(force=True)
            if self._watched_control != "run":
                with self._changed:
                    self._changed.notify_all()  # the dispatcher pauses or stops now
            if self._unsaved and time.monotonic() - self._saved_at >= SAVE_RESULTS_SECONDS:
                self.save_results()
            self._update_progress()
            self._done_watching.wait(CONTROL_READ_SECONDS)

    def feed(self, *items: Signature, checked: bool = False) -> None:
        """Adds signatures to the running swarm.

        Args:
            *items: The signatures.
            checked: They were checked against the registry already.

        Raises:
            InvalidCompositionError: The swarm is closed, or an item does not check.
        """
        for item in items if not checked else ():
            check_composition(item, self.run.registry, self.run.dry_run)
        with self._changed:
            if self._closed:
                raise InvalidCompositionError(self.path or ROOT, "the swarm is closed")
            self.items.extend(items)
            self.results.extend([None] * len(items))
            self._changed.notify_all()

    def feed_checking(self, *items: Signature) -> None:
        """Adds signatures from outside the run; one that does not check is a failed item.

        Args:
            *items: The signatures.
        """
        for item in items:
            try:
                check_composition(item, self.run.registry, self.run.dry_run)
            except InvalidCompositionError as error:
                get_run_logger().error("Refused a fed item: %s", error)
                with self._changed:
                    index = len(self.items)
                    self.errors[index] = error
                    self.outcome[index] = "failed"
                self.feed(item, checked=True)
            else:
                self.feed(item, checked=True)

    def stop_feeding(self) -> bool:
        """Whether an open swarm should stop waiting for its feed: cancelled or budget spent."""
        if self._stopped is None and self._budget_spent():
            self._stopped = SwarmFailedError(f"swarm:{self.path or ROOT}", "failure budget spent")
        if self._stopped is None and self._watched_control == "cancel":
            self._stopped = CompositionCancelledError(
                "composition", f"cancelled while {self.path or ROOT} waited for its feed"
            )
        return self._stopped is not None

    def close(self) -> list[Any]:
        """Stops the feeding, waits until every item finished or was cancelled.

        Returns:
            The results, in the order the items were fed.

        Raises:
            _StepFailed: The failure budget ran out (or an item failed with none set).
            CompositionCancelledError: The composition was cancelled meanwhile.
        """
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._dispatcher.join()
        with self._changed:  # the items under way when the dispatcher stopped
            self._changed.wait_for(lambda: self._in_flight == 0)
        self._done_watching.set()
        self._watcher.join()
        self.save_results()
        self._update_progress(force=True)
        self._clients.close()
        for index, item in enumerate(self.items):
            item_path = f"{join_path(self.path, 'items')}[{index}]"
            outcome = self.outcome.get(index, "cancelled")
            self.run.steps[item_path] = outcome
            if outcome == "completed":
                if item.step is not None:
                    self.run.named[item.step] = self.results[index]
                self.run.callbacks(item.on_success, item_path, "on_success", self.results[index])
            elif outcome == "failed":
                failed = _StepFailed(item_path, item.target, self.inputs[index], self.errors[index])
                self.run.callbacks(
                    item.on_error, item_path, "on_error", self.run.payload("failed", failed)
                )
            else:
                payload = error_payload("cancelled", item_path, item.target, item.params, None)
                self.run.callbacks(item.on_error, item_path, "on_error", payload)
        if isinstance(self._stopped, CompositionCancelledError):
            raise self._stopped
        if self.errors:
            counts = self.counts()
            error = SwarmFailedError(
                f"swarm:{self.path or ROOT}",
                f"{counts['failed']} failed, {counts['done']} done, "
                f"{counts['cancelled']} cancelled of {len(self.items)}",
            )
            raise _StepFailed(self.path or ROOT, None, None, error)
        return self.results

    def counts(self) -> dict[str, int]:
        """How many items are done, failed, cancelled (never started) and running."""
        values = list(self.outcome.values())
        done, failed = values.count("completed"), values.count("failed")
        started = len(self.futures)
        never_started = len(self.items) - len(set(self.futures) | set(self.outcome))
        cancelled = never_started if self._stopped is not None or self._closed_drained else 0
        return {
            "done": done,
            "failed": failed,
            "cancelled": cancelled,
            "running": started - len(set(self.futures) & set(self.outcome)),
        }

    @property
    def _closed_drained(self) -> bool:
        return self._closed and not self._dispatcher.is_alive()

    def _budget_spent(self) -> bool:
        budget = self.node.stop_after_n_failures
        return budget is not None and len(self.errors) >= budget

    def _dispatch_due(self) -> bool:
        """Whether the dispatcher has work: free slots and items, an end, or a stop."""
        return (
            self._stopped is not None
            or self._watched_control != "run"
            or (self._closed and self._next >= len(self.items))
            or (self._in_flight < self.node.max_concurrency and self._next < len(self.items))
        )

    def _dispatch(self) -> None:
        """Submits items in order as slots free up, until closed and fed out, or stopped.

        Woken by an item's end (or a feed, the close, a control change, at the latest
        every `CONTROL_READ_SECONDS`), it submits one item per free slot; it calls the
        API only to pause.
        """
        while True:
            with self._changed:
                self._changed.wait_for(self._dispatch_due, timeout=CONTROL_READ_SECONDS)
            if self._should_stop():
                return
            with self._changed:
                claimed = self._claim(self.node.max_concurrency - self._in_flight)
                if not claimed and self._closed and self._next >= len(self.items):
                    return
            for index in claimed:
                self._start(index)

    def _claim(self, slots: int) -> list[int]:
        """Up to ``slots`` next items to start, each counted in flight (holding ``_changed``)."""
        claimed: list[int] = []
        while len(claimed) < slots and self._next < len(self.items):
            index = self._next
            self._next = index + 1
            if index in self.outcome:  # refused when fed: it never starts
                continue
            saved = self._saved.get(str(index))
            if saved is not None and saved["target"] == self.items[index].target:
                # Finished in an earlier attempt: not run again.
                self.outcome[index], self.results[index] = "completed", saved["result"]
                continue
            claimed.append(index)
        self._in_flight += len(claimed)
        return claimed

    def _start(self, index: int) -> None:
        """Submits a claimed item (from the dispatcher, in the flow run's context)."""
        item = self.items[index]
        path = f"{join_path(self.path, 'items')}[{index}]"
        try:
            future, parameters = self.run.submit(item, path, self.previous, False)
        except BaseException as error:  # recorded as the item's failure
            self._finished(index, None, error)
            return
        with self._changed:
            self.inputs[index] = parameters
            self.futures[index] = future
        future.add_done_callback(functools.partial(self._on_done, index))

    def _should_stop(self) -> bool:
        if self._stopped is not None:
            return True
        if self._budget_spent():
            self._stopped = SwarmFailedError(f"swarm:{self.path or ROOT}", "failure budget spent")
            return True
        if self._watched_control == "run":
            return False
        self.save_results()  # before a pause: a resume must find every finished item
        self._paused = True
        try:
            self.run.between_steps(f"{join_path(self.path, 'items')}[{self._next}]")
        except CompositionCancelledError as cancelled:
            self._stopped = cancelled
            return True
        finally:
            self._paused = False
        self._watched_control = "run"  # resumed: what the watcher reads next
        return False

    def _on_done(self, index: int, future: PrefectFuture[Any]) -> None:
        """An item's end, on its worker thread: records it and wakes the dispatcher."""
        try:
            result, error = completed_result(future), None
        except BaseException as failure:  # recorded as the item's failure
            result, error = None, failure
        self._finished(index, result, error)
        if self._paused:  # no dispatcher saves meanwhile: a resume must find this item
            self.save_results()

    def _finished(self, index: int, result: Any, error: BaseException | None) -> None:
        with self._changed:
            if error is None:
                self.results[index] = result
                self.outcome[index] = "completed"
                target = self.items[index].target
                self._unsaved[str(index)] = {"target": target, "result": result}
            else:
                self.errors[index] = error
                self.outcome[index] = "failed"
            self._in_flight -= 1
            self._changed.notify_all()

    def _restore_results(self) -> dict[str, Any]:
        """The results an earlier attempt of this run saved (a retry, a resume)."""
        try:
            if not self._result_store.exists(self._results_key):
                return {}
            saved = self._result_store.read(self._results_key).result
        except Exception as error:  # unreadable: run the items again (jobs are idempotent)
            get_run_logger().warning(
                "Could not read the swarm's saved results: %s", reason_for(error)
            )
            return {}
        return saved if isinstance(saved, dict) else {}

    def save_results(self, wait: bool = True) -> None:
        """Saves the results finished since the last save, with the earlier ones.

        One record per swarm, rewritten at most every `SAVE_RESULTS_SECONDS` while
        it runs, before it pauses and when it ends: a retried or resumed run reads
        it and starts none of the items it holds. (A process killed between saves
        runs the items finished since the last save again.)

        Args:
            wait: Wait for a save under way, then save; else leave it to the next one.
        """
        if not self._save_lock.acquire(blocking=wait):
            return  # another item's end is saving: this one's result goes with the next
        try:
            with self._changed:
                if not self._unsaved:
                    return
                self._saved.update(self._unsaved)
                self._unsaved = {}
                record = dict(self._saved)
                self._saved_at = time.monotonic()
            self._result_store.write(record, key=self._results_key)
        finally:
            self._save_lock.release()

    def _describe(self) -> str:
        values = list(self.outcome.values())
        stopped = "" if self._stopped is None else f"; stopped: {self._stopped}"
        return (
            f"swarm {self.path or ROOT}: {values.count('completed')}/{len(self.items)} done, "
            f"{values.count('failed')} failed{stopped}"
        )

    def _update_progress(self, force: bool = False) -> None:
        # One update at a time, each computed when sent: the artifact never goes backwards.
        # An item's end never waits for another's update (a worker thread would idle).
        if not self._progress_lock.acquire(blocking=force):
            return
        try:
            now = time.monotonic()
            if not force and now - self._progress_at < PROGRESS_UPDATE_SECONDS:
                return
            self._progress_at = now
            finished = len(self.outcome)
            progress = 100.0 * finished / len(self.items) if self.items else 100.0
            try:
                update = ArtifactUpdate(data=progress, description=self._describe())
                self._client.update_artifact(self._progress_id, update)
            except Exception as error:  # progress is for people watching; never fail a step
                get_run_logger().warning(
                    "Could not update the swarm's progress: %s", reason_for(error)
                )
        finally:
            self._progress_lock.release()

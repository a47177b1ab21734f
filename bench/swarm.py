"""A swarm of trivial jobs against raw Prefect ``.submit()`` under the same concurrency bound.

Both arms run N trivial jobs (``noop``, returning its input) as task runs of one flow
run against one Prefect server on PostgreSQL, at most 50 at a time:

- ``raw``: a flow whose task runner has 50 threads submits the N tasks and waits
  for every result: Prefect's own bound;
- ``swarm``: the ``compose`` workflow runs ``swarm([...], max_concurrency=50)`` of
  the same N signatures: the composition's checks, its semaphore, the record of
  finished items' results (saved at most every second, before a pause and at the
  end, so a resume or retry re-runs nothing that finished) and the progress
  artifact included;
- ``keyed`` (for reference, not in the ratio): raw ``.submit()`` with every task's
  result persisted under a key of its own, which is what each swarm item cost
  before its results were saved together.

The arms alternate for ``--rounds`` rounds after one small warm-up of each; each
figure is the median. Between arms, off the clock, the client sends every event it
holds and the server records every task run of the arm's flow run as completed, so
no arm pays for the one before it. The last line printed is
``{"n": 1000, "swarm_s": ..., "raw_s": ..., "ratio": ...}`` (target: ratio <= 1.15).

Run as root (PostgreSQL runs as the ``postgres`` user, as in bench/dispatch.py):

```sh
.venv/bin/python bench/swarm.py                # n=1000, 3 rounds
.venv/bin/python bench/swarm.py --n 200 --rounds 1   # smoke run
```
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from deployments.local_servers import postgres, prefect_server  # noqa: E402

CONCURRENCY = 50

registry: Any = None
"""The registry the compose workflow runs from (``MAGICFLOW_REGISTRY=__main__:registry``)."""


def main() -> None:
    """Starts PostgreSQL and a Prefect server, runs both arms, prints the JSON line."""
    global registry
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs")
    args = parser.parse_args()
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="magicflow-bench-swarm-"))
        database = stack.enter_context(postgres(workdir))
        api_url = stack.enter_context(prefect_server(workdir, database))
        os.environ["PREFECT_API_URL"] = api_url
        os.environ["PREFECT_HOME"] = str(workdir / "client-home")
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
        os.environ["MAGICFLOW_REGISTRY"] = "__main__:registry"

        import httpx
        from prefect import flow
        from prefect.task_runners import ThreadPoolTaskRunner

        from flows.compose import compose
        from flows.composition import sign, swarm
        from flows.registry import Registry
        from magicflow.jobs import job

        @job
        def noop(i: int) -> int:
            """A trivial job."""
            return i

        registry = Registry()
        registry.register_job("noop", noop)

        @flow(name="bench-raw", task_runner=ThreadPoolTaskRunner(max_workers=CONCURRENCY))
        def raw(n: int) -> list[int]:
            futures = [noop.submit(i) for i in range(n)]
            return [future.result() for future in futures]

        def swarm_of(n: int) -> Any:
            items = [sign("noop", i=i, registry=registry) for i in range(n)]
            return swarm(items, max_concurrency=CONCURRENCY, registry=registry)

        from prefect.cache_policies import CacheKeyFnPolicy

        @flow(name="bench-keyed", task_runner=ThreadPoolTaskRunner(max_workers=CONCURRENCY))
        def keyed(n: int) -> list[int]:
            run = time.time()
            futures = [
                noop.with_options(
                    cache_policy=CacheKeyFnPolicy(cache_key_fn=lambda *_, i=i: f"{run}:{i}"),
                    persist_result=True,
                ).submit(i)
                for i in range(n)
            ]
            return [future.result() for future in futures]

        from prefect.events.worker import EventsWorker

        def settled(flow_run_id: Any, n: int) -> None:
            """Waits until the server has recorded the arm's n task runs as completed."""
            EventsWorker.drain_all(timeout=300)
            query = {
                "flow_runs": {"id": {"any_": [str(flow_run_id)]}},
                "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
            }
            deadline, count = time.monotonic() + 300, 0
            while time.monotonic() < deadline:
                count = httpx.post(f"{api_url}/task_runs/count", json=query, timeout=60).json()
                if count >= n:
                    return
                time.sleep(0.5)
            raise TimeoutError(f"the server recorded {count} of {n} task runs in 300 s")

        def timed(arm: str, n: int) -> float:
            composition = swarm_of(n) if arm == "swarm" else None  # signing is not running
            started = time.perf_counter()
            state: Any
            if arm == "swarm":
                state = compose(composition, return_state=True)
                seconds = time.perf_counter() - started
                assert state.result().result == list(range(n)), "swarm results out of order"
            else:
                state = (keyed if arm == "keyed" else raw)(n, return_state=True)
                seconds = time.perf_counter() - started
                assert state.result() == list(range(n))
            settled(state.state_details.flow_run_id, n)
            return seconds

        timed("raw", 20)
        timed("swarm", 20)
        figures: dict[str, list[float]] = {"raw": [], "swarm": [], "keyed": []}
        for round_index in range(args.rounds):
            for arm in ("raw", "swarm", "keyed") if round_index % 2 == 0 else ("swarm", "raw"):
                seconds = timed(arm, args.n)
                figures[arm].append(seconds)
                print(f"round {round_index + 1}: {arm} {seconds:.2f} s", flush=True)
        # Send the runs' events while the server is still up (else the client retries them).
        EventsWorker.drain_all(timeout=120)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    swarm_s = statistics.median(figures["swarm"])
    raw_s = statistics.median(figures["raw"])
    line = {"n": args.n, "swarm_s": round(swarm_s, 2), "raw_s": round(raw_s, 2)}
    print(json.dumps({**line, "ratio": round(swarm_s / raw_s, 3)}), flush=True)


if __name__ == "__main__":
    main()

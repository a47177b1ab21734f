"""The crash follower as a service of its own, and what two followers publish.

``python -m flows.crash_follower`` (what the ``crash-follower`` deployment runs) and a
second follower in this process both follow the session's Prefect server. A run
marked Crashed by the server is published by each, byte for byte the same status
(same key, value: state, ``seq`` and time), so a consumer drops the repeat; the
service stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

from prefect import get_client
from prefect.states import Crashed

from blocks import KafkaConnection
from deployments.local_servers import BackendProcess
from flows.listener.crashes import supervise_crash_follower
from magicflow.messages import REQUEST_TAG_PREFIX
from tests.fixtures.kafka import PROJECT_ROOT, TEST_DEPLOYMENT, greet, read_topic, subprocess_env

FOLLOWER_BLOCK = "crash-follower-test"


async def test_two_followers_publish_one_crash_as_identical_statuses(
    kafka: KafkaConnection, kafka_test_deployments: list[str], tmp_path: Path
) -> None:
    await kafka.asave(FOLLOWER_BLOCK, overwrite=True)
    service = BackendProcess(
        "crash-follower",
        [sys.executable, "-m", "flows.crash_follower", "--kafka-block", FOLLOWER_BLOCK],
        lambda: True,  # readiness: its log line, polled below
        tmp_path,
        env=subprocess_env(),
        cwd=PROJECT_ROOT,
    )
    log_path = service.log_path
    stop = asyncio.Event()
    in_process = asyncio.create_task(supervise_crash_follower(kafka, stop))
    try:
        deadline = time.monotonic() + 300
        while b"Following crashed flow runs" not in log_path.read_bytes():
            assert service.process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.2)

        request_id = f"crash-{uuid.uuid4().hex[:8]}"
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"{greet.name}/{TEST_DEPLOYMENT}")
            flow_run = await client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"name": "ada"},
                tags=[f"{REQUEST_TAG_PREFIX}{request_id}"],
            )
            message = "the host of this run is gone"
            await client.set_flow_run_state(flow_run.id, Crashed(message=message), force=True)

        def crashes(records: list) -> list:
            return [
                r
                for r in records
                if r.value and json.loads(r.value).get("flow_run_id") == str(flow_run.id)
            ]

        records = await read_topic(
            kafka, kafka.status_topic, lambda r: len(crashes(r)) >= 2, timeout_s=120
        )
    finally:
        stop.set()
        await asyncio.wait_for(in_process, 30)
        service.stop(timeout=60)  # SIGTERM, then SIGKILL if it lingers
        exit_code = service.process.returncode

    first, second = crashes(records)
    assert (first.key, first.value) == (second.key, second.value)
    status = json.loads(first.value)
    assert first.key == request_id.encode()
    assert status["state"] == "crashed" and status["request_id"] == request_id
    assert status["reason"] == message
    assert exit_code == 0, log_path.read_text()
    # Nothing more arrives for that run: each follower published it once.
    later = await read_topic(kafka, kafka.status_topic, lambda r: False, timeout_s=2)
    assert len(crashes(later)) == 2

"""``magicflow submit`` against the kafka-trigger flow and the served test workflows."""

import asyncio
import re
import sys
import uuid

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from pydantic import SecretStr

from blocks import KafkaConnection
from magicflow.cli import ExitCode
from magicflow.cli.submit import parse_param
from magicflow.messages import SIGNATURE_HEADER, WorkflowRequest, signature_is_valid
from magicflow.submit import asubmit, submit
from tests.fixtures.kafka import PROJECT_ROOT, read_topic, subprocess_env
from tests.fixtures.workflows import KAFKA_BLOCK_NAME


async def _magicflow(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "magicflow.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=subprocess_env(),
        cwd=PROJECT_ROOT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 150)
    return process.returncode, output.decode()


def _states(output: str) -> list[str]:
    """The states of the status lines ``magicflow submit --wait`` printed."""
    return [line.split()[1] for line in output.splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)]


def test_param_values_parse_as_json_else_string() -> None:
    assert parse_param("n=5") == ("n", 5)
    assert parse_param("flag=true") == ("flag", True)
    assert parse_param('tags=["a","b"]') == ("tags", ["a", "b"])
    assert parse_param("tenant=acme") == ("tenant", "acme")
    assert parse_param("expr={{ x }}") == ("expr", "{{ x }}")


async def test_submit_without_wait_publishes_one_signed_request(kafka: KafkaConnection) -> None:
    kafka = kafka.model_copy(update={"signing_secret": SecretStr("cli-secret")})
    result = await asubmit("greet", {"name": "ada"}, kafka=kafka, request_id="cli-nowait-1")
    assert result.exit_code == ExitCode.OK and not result.waited
    (record,) = await read_topic(kafka, kafka.requests_topic, lambda r: len(r) >= 1)
    assert record.key == b"cli-nowait-1"
    request = WorkflowRequest.model_validate_json(record.value)
    assert (request.workflow, request.parameters) == ("greet", {"name": "ada"})
    signature = dict(record.headers)[SIGNATURE_HEADER]
    assert signature_is_valid(record.value, signature, SecretStr("cli-secret"))


def test_sync_submit_rejects_a_malformed_request_before_publishing() -> None:
    with pytest.raises(ValueError):
        submit("Not A Workflow!", kafka=KafkaConnection(bootstrap_servers="127.0.0.1:1"))


async def test_submit_wait_exit_codes_and_ui_link_against_the_listener_flow(
    kafka: KafkaConnection, served_workflows, kafka_test_deployments: list[str], listener_processes
) -> None:
    kafka = kafka.model_copy(update={"signing_secret": SecretStr("shared-" + uuid.uuid4().hex)})
    await kafka.asave(KAFKA_BLOCK_NAME, overwrite=True)
    listener = listener_processes(KAFKA_BLOCK_NAME, "--as-flow", "--max-in-flight", "4")
    block = ("--kafka-block", KAFKA_BLOCK_NAME)

    completed_id = f"cli-ok-{uuid.uuid4().hex[:6]}"
    submit_completed = ("submit", "test-changes", "--param", "tenant=cli", "--id", completed_id)
    code, output = await _magicflow(*submit_completed, "--wait", "--timeout", "120", *block)
    assert code == 0, output + listener.log_tail()
    assert _states(output) == ["accepted", "scheduled", "running", "completed"], output
    assert f"request {completed_id}: test-changes" in output.splitlines()
    ui_links = [line for line in output.splitlines() if line.startswith("Prefect UI: http")]
    assert len(ui_links) == 1 and "/runs/flow-run/" in ui_links[0], output

    # Resubmitting the finished request's id: the listener re-sends the final status.
    code, output = await _magicflow(*submit_completed, "--wait", "--timeout", "60", *block)
    assert code == 0, output + listener.log_tail()
    assert _states(output) == ["completed"], output

    code, output = await _magicflow(
        "submit", "no-such-workflow", "--wait", "--timeout", "60", *block
    )
    assert code == ExitCode.REJECTED, output
    assert "rejected" in output and "not a registered workflow" in output

    code, output = await _magicflow(
        "submit",
        "test-failure",
        "--params-json",
        '{"tenant": "cli"}',
        "--wait",
        "--timeout",
        "120",
        *block,
    )
    assert code == ExitCode.RUN_FAILED, output
    assert " failed " in output

    # SIGTERM drains the listener flow, which then ends Completed.
    assert listener.terminate() == 0, listener.log_tail()
    async with get_client() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["kafka-trigger"]))
        )
    assert runs and all(run.state_type.value == "COMPLETED" for run in runs), [
        run.state_type for run in runs
    ]

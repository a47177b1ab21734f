"""The LangFlow jobs, workflows and CLI against a real LangFlow server (marker ``langflow``).

Left out of the default run (LangFlow is ~2 GB and starts in ~35 s); run it with
``python -m pytest -m langflow``. The fixture installs LangFlow into its own
virtual environment on first use, starts it on 127.0.0.1, makes an API key and a
Chat Input -> Chat Output flow through the API.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient

from blocks import LangflowConnection
from deployments.langflow import read_langflow_deployments
from flows.langflow import run_langflow, sync_langflow
from magicflow import Action, InvalidInputError, NotFoundError, PermissionDeniedError
from tasks.langflow import (
    analyze_langflow_flow,
    get_langflow_flow,
    list_langflow_flows,
    run_langflow_flow,
)
from tests.fixtures.langflow import RealLangflow
from tests.magicflow.test_cli_langflow import assert_one_line_error, magicflow

pytestmark = [pytest.mark.langflow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def echo(real_langflow: RealLangflow) -> dict:
    return real_langflow.create_chat_flow("Echo", endpoint_name="echo")


@pytest.fixture
def prefect() -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        yield client


def test_jobs_read_analyse_and_run_a_real_flow(real_langflow: RealLangflow, echo: dict) -> None:
    langflow = real_langflow.connection()
    headers = list_langflow_flows.fn(langflow)
    assert [(f.id, f.name, f.data) for f in headers] == [(echo["id"], "Echo", None)]
    assert real_langflow.create_chat_flow("Echo")["name"] == "Echo (1)"  # renamed silently
    flow = get_langflow_flow.fn(langflow, "echo")  # by endpoint name
    assert flow.id == echo["id"] and flow.data
    analysis = analyze_langflow_flow.fn(flow)
    assert analysis.runnable, analysis.problems
    assert [c.type for c in analysis.inputs + analysis.outputs] == ["ChatInput", "ChatOutput"]

    result = run_langflow_flow.fn(langflow, "Echo", input_value="hello real", session_id="s-1")
    assert result.output_text == "hello real" and result.session_id == "s-1"
    assert result.outputs[0]["outputs"][0]["results"]["message"]["text"] == "hello real"  # type: ignore[index, call-overload]

    output_id = analysis.outputs[0].id
    with pytest.raises(InvalidInputError, match=f"tweak '{output_id}' refused.*fields: code"):
        run_langflow_flow.fn(
            langflow, echo["id"], input_value="x", tweaks={output_id: {"code": "1"}}
        )
    with pytest.raises(NotFoundError, match="not found"):
        run_langflow_flow.fn(langflow, str(uuid.uuid4()), input_value="x")
    wrong = LangflowConnection(url=real_langflow.url, api_key="sk-wrong")
    with pytest.raises(PermissionDeniedError, match="403"):
        list_langflow_flows.fn(wrong)
    with pytest.raises(PermissionDeniedError, match="403"):
        run_langflow_flow.fn(wrong, echo["id"], input_value="x")
    real_langflow.api.delete_flow(get_langflow_flow.fn(langflow, "Echo (1)").id)


def test_workflows_and_cli_against_a_real_server(
    real_langflow: RealLangflow,
    echo: dict,
    prefect: SyncPrefectClient,
    work_pool: str,
) -> None:
    for deployment in read_langflow_deployments(prefect):
        prefect.delete_deployment(deployment.id)
    block = f"langflow-real-{uuid.uuid4().hex[:6]}"
    real_langflow.connection().save(block, overwrite=True)

    changes = sync_langflow(langflow=block, work_pool=work_pool)
    assert [(c.resource, c.action) for c in changes] == [
        ("prefect:deployment/run-langflow/Echo", Action.CREATED)
    ]
    assert all(not c.changed for c in sync_langflow(langflow=block, work_pool=work_pool))

    state = run_langflow("echo", input_value="via prefect", langflow=block, return_state=True)
    assert state.result() == "via prefect"
    run_id = str(state.state_details.flow_run_id)

    url, key = real_langflow.url, real_langflow.api_key
    code, output = magicflow("flows", "list", url=url, key=key)
    assert code == 0 and "Echo" in output and "ChatInput -> ChatOutput" in output, output
    code, output = magicflow(
        "schedules", "create", "Echo", "--cron", "0 6 * * *", "--timezone", "Europe/Paris",
        url=url, key=key,
    )  # fmt: skip
    assert code == 0, output
    schedule_id = output.split()[1].rstrip(":")
    code, output = magicflow("schedules", "list", url=url, key=key)
    assert code == 0 and schedule_id in output and "Europe/Paris" in output, output
    code, output = magicflow("schedules", "delete", schedule_id, url=url, key=key)
    assert code == 0, output
    code, output = magicflow("runs", "output", run_id, url=url, key=key)
    assert (code, output) == (0, "via prefect\n")
    code, output = magicflow("flows", "show", "Nope", url=url, key=key)
    assert code == 2
    assert_one_line_error(output, "langflow:flow/Nope")
    code, output = magicflow("flows", "list", url=url, key="sk-wrong-key")
    assert code == 5
    assert_one_line_error(output, "403")

    real_langflow.api.delete_flow(echo["id"])
    (paused,) = sync_langflow(langflow=block, work_pool=work_pool)
    assert paused.action == Action.UPDATED and paused.detail["paused"] is True
    assert prefect.read_deployment(read_langflow_deployments(prefect)[0].id).paused

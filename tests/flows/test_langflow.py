"""run-langflow and sync-langflow against the LangFlow fake and the session's Prefect server.

What the flows did is read back with an independent Prefect client (deployments,
their parameters, paused state, artifacts) and from the fake's request counts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.responses import DeploymentResponse

from blocks import LangflowConnection
from deployments.langflow import (
    ENTRYPOINT,
    FLOW_TAG_PREFIX,
    UNAVAILABLE_TAG,
    read_langflow_deployments,
)
from flows.langflow import run_artifact_key, run_langflow, sync_langflow
from flows.registry import InvalidParametersError, magicflow_registry
from magicflow import Action, Change, InvalidInputError
from tests.fixtures.langflow import LANGFLOW_TEST_KEY, LangflowApi, chat_graph

WRITES = ("POST /api/v1/flows/", "PATCH /api/v1/flows/*", "DELETE /api/v1/flows/*")
RUNS = "POST /api/v1/run/*"


@pytest.fixture
def prefect() -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        yield client


@pytest.fixture
def clean_deployments(prefect: SyncPrefectClient) -> None:
    """No LangFlow deployment left over from another test."""
    for deployment in read_langflow_deployments(prefect):
        prefect.delete_deployment(deployment.id)


@pytest.fixture
def block_name(langflow: LangflowConnection) -> str:
    name = f"langflow-{uuid.uuid4().hex[:8]}"
    langflow.save(name, overwrite=True)
    return name


def by_name(prefect: SyncPrefectClient) -> dict[str, DeploymentResponse]:
    return {d.name: d for d in read_langflow_deployments(prefect)}


def broken_graph() -> dict:
    graph = chat_graph("b")
    graph["nodes"] = graph["nodes"][:1]  # a Chat Input and an edge to nowhere
    return graph


# --- run-langflow ------------------------------------------------------------------------------


def test_run_langflow_returns_the_output_and_records_an_artifact(
    langflow_api: LangflowApi, block_name: str, prefect: SyncPrefectClient, captured_logs
) -> None:
    langflow_api.create_flow("Echo", chat_graph(output_prefix="echo: "))
    state = run_langflow(
        "Echo", input_value="hello", langflow=block_name, session_id="s-7", return_state=True
    )
    assert state.is_completed() and state.result() == "echo: hello"
    flow_run = prefect.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.name == "run-langflow/Echo"
    (artifact,) = prefect.read_artifacts(
        artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[run_artifact_key(flow_run.id)]))
    )
    assert artifact.type == "table" and artifact.flow_run_id == flow_run.id
    rows = {row["field"]: row["value"] for row in json.loads(str(artifact.data))}
    assert (rows["flow"], rows["input"], rows["output"]) == ("Echo", "hello", "echo: hello")
    assert rows["session_id"] == "s-7" and float(rows["duration_seconds"]) >= 0
    assert json.loads(rows["outputs"])[0]["outputs"][0]["results"]["message"]["text"] == (
        "echo: hello"
    )
    assert LANGFLOW_TEST_KEY not in captured_logs.text + str(artifact.data)


def test_run_langflow_refuses_a_flow_that_fails_analysis_without_running_it(
    langflow_api: LangflowApi, block_name: str
) -> None:
    langflow_api.create_flow("Broken", broken_graph())
    langflow_api.clear_requests()
    state = run_langflow("Broken", input_value="x", langflow=block_name, return_state=True)
    assert state.is_failed()
    with pytest.raises(InvalidInputError, match=r"not runnable: .*no-output"):
        state.result()
    assert langflow_api.counts().get(RUNS, 0) == 0


def test_kafka_registry_knows_both_workflows_and_checks_their_parameters() -> None:
    registry = magicflow_registry()
    assert registry.get("langflow-run").deployment == "run-langflow/langflow-run"
    assert registry.get("langflow-sync").deployment == "sync-langflow/langflow-sync"
    assert registry.get("langflow-sync").accepts_dry_run
    run = registry.get("langflow-run")
    assert run.validate_parameters({"flow": "Echo", "tweaks": {"Chat Output": {"x": 1}}})
    with pytest.raises(InvalidParametersError, match="flow"):
        run.validate_parameters({"input_value": "no flow named"})
    with pytest.raises(InvalidParametersError, match="tweaks"):
        run.validate_parameters({"flow": "Echo", "tweaks": {"Chat Output": "loud"}})


# --- sync-langflow -----------------------------------------------------------------------------


def test_sync_deploys_runnable_flows_reports_broken_ones_and_is_idempotent(
    langflow_api: LangflowApi,
    block_name: str,
    work_pool: str,
    prefect: SyncPrefectClient,
    clean_deployments: None,
) -> None:
    echo = langflow_api.create_flow("Echo", chat_graph(), description="says it back")
    broken = langflow_api.create_flow("Broken", broken_graph())
    langflow_api.clear_requests()

    planned = sync_langflow(langflow=block_name, work_pool=work_pool, dry_run=True)
    assert {(c.resource, c.action, c.dry_run) for c in planned} == {
        ("prefect:deployment/run-langflow/Echo", Action.CREATED, True),
        ("langflow:flow/Broken", Action.SKIPPED, True),
    }
    assert by_name(prefect) == {}

    changes = sync_langflow(langflow=block_name, work_pool=work_pool)
    actions = {c.resource: c.action for c in changes}
    assert actions == {
        "prefect:deployment/run-langflow/Echo": Action.CREATED,
        "langflow:flow/Broken": Action.SKIPPED,
    }
    skipped = next(c for c in changes if c.action == Action.SKIPPED)
    assert skipped.detail["flow_id"] == broken["id"] and "no-output" in str(skipped.detail)

    deployment = by_name(prefect)["Echo"]
    assert deployment.entrypoint == ENTRYPOINT and deployment.work_pool_name == work_pool
    assert deployment.parameters == {
        "flow": echo["id"],
        "langflow": block_name,
        "input_type": "chat",
        "output_type": "chat",
        "input_value": "",
    }
    assert f"{FLOW_TAG_PREFIX}{echo['id']}" in deployment.tags and not deployment.paused
    assert "says it back" in (deployment.description or "")
    assert deployment.parameter_openapi_schema["required"] == ["flow"]

    again = sync_langflow(langflow=block_name, work_pool=work_pool)
    assert all(not change.changed for change in again), again
    assert by_name(prefect)["Echo"].updated == deployment.updated  # nothing written
    assert not any(langflow_api.counts().get(write) for write in WRITES)


def test_a_renamed_flow_keeps_its_deployment_and_a_deleted_one_is_paused(
    langflow_api: LangflowApi,
    block_name: str,
    work_pool: str,
    prefect: SyncPrefectClient,
    clean_deployments: None,
) -> None:
    echo = langflow_api.create_flow("Echo", chat_graph())
    sync_langflow(langflow=block_name, work_pool=work_pool)
    deployment = by_name(prefect)["Echo"]
    earlier_run = prefect.create_flow_run_from_deployment(deployment.id)

    langflow_api.update_flow(echo["id"], name="Echo v2")
    (renamed,) = sync_langflow(langflow=block_name, work_pool=work_pool)
    assert renamed.action == Action.UPDATED and renamed.detail["langflow_name"] == "Echo v2"
    assert list(by_name(prefect)) == ["Echo"] and by_name(prefect)["Echo"].id == deployment.id
    assert "'Echo v2'" in (by_name(prefect)["Echo"].description or "")

    langflow_api.delete_flow(echo["id"])
    (paused,) = sync_langflow(langflow=block_name, work_pool=work_pool)
    assert paused == Change(
        resource="prefect:deployment/run-langflow/Echo",
        action=Action.UPDATED,
        detail={"reason": "deleted in LangFlow", "flow_id": echo["id"], "paused": True},
    )
    after = prefect.read_deployment(deployment.id)
    assert after.paused and UNAVAILABLE_TAG in after.tags
    assert prefect.read_flow_run(earlier_run.id).deployment_id == deployment.id  # history stays
    (still,) = sync_langflow(langflow=block_name, work_pool=work_pool)
    assert still.action == Action.UNCHANGED


def test_a_flow_broken_after_deployment_is_paused_and_resumed_once_fixed(
    langflow_api: LangflowApi,
    block_name: str,
    work_pool: str,
    prefect: SyncPrefectClient,
    clean_deployments: None,
) -> None:
    echo = langflow_api.create_flow("Echo", chat_graph())
    sync_langflow(langflow=block_name, work_pool=work_pool)
    langflow_api.update_flow(echo["id"], data=broken_graph())
    changes = sync_langflow(langflow=block_name, work_pool=work_pool)
    assert [c.action for c in changes] == [Action.UPDATED, Action.SKIPPED]
    assert by_name(prefect)["Echo"].paused
    langflow_api.update_flow(echo["id"], data=chat_graph())
    (resumed,) = sync_langflow(langflow=block_name, work_pool=work_pool)
    assert resumed.action == Action.UPDATED and "paused" in resumed.detail["fields"]  # type: ignore[operator]
    assert not by_name(prefect)["Echo"].paused

"""LangFlow flows as Prefect workflows: run-langflow runs one, sync-langflow deploys them all.

- `run_langflow` runs one LangFlow flow, records its input, output and timing as a
  table artifact keyed by the flow run (``langflow-run-<flow run id>``), and returns
  the output text. Its runs are named ``run-langflow/<flow name>``.
- `sync_langflow` reads every LangFlow flow, analyses it, and ensures each runnable
  one has a ``run-langflow/<flow name>`` deployment (see `deployments.langflow`);
  deployments of flows deleted in LangFlow, or that no longer pass analysis, are
  paused. A flow that fails analysis is reported (``skipped``, with its problems),
  never deployed. A second sync reports only ``unchanged`` and ``skipped``.

Both are `magicflow.workflow` flows: their statuses go to Kafka, and the sync's
changes show as a table artifact. Registered for Kafka requests as
``langflow-run`` and ``langflow-sync`` (``flows/registry.py``).

Example:
    ```python
    from flows.langflow import run_langflow, sync_langflow

    sync_langflow(langflow="langflow")  # a saved LangflowConnection block
    run_langflow("Support bot", input_value="Is prod up?", langflow="langflow")
    ```
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.artifacts import create_table_artifact
from prefect.runtime import deployment as current_deployment
from prefect.runtime import flow_run as current_flow_run

from deployments.langflow import (
    DEFAULT_WORK_POOL,
    FLOW_TAG_PREFIX,
    RUN_FLOW_NAME,
    ensure_langflow_deployment,
    langflow_flow_id_of,
    pause_langflow_deployment,
    read_langflow_deployments,
)
from magicflow import Action, Change, InvalidInputError, report
from magicflow.workflows import workflow
from tasks.langflow import (
    analyze_langflow_flow,
    get_langflow_flow,
    langflow_connection,
    list_langflow_flows,
    run_langflow_flow,
)

RUN_ARTIFACT_PREFIX = "langflow-run-"
"""Key prefix of a run's input/output artifact; the flow run id follows."""

SYNC_FLOW_NAME = "sync-langflow"
"""Name of the Prefect flow that deploys LangFlow flows."""


def run_artifact_key(flow_run_id: UUID | str) -> str:
    """The key of a run's input/output artifact.

    Args:
        flow_run_id: The ``run-langflow`` flow run.

    Returns:
        ``langflow-run-<flow run id>`` (artifact keys allow lowercase, digits and dashes).

    Example:
        >>> run_artifact_key("0c1d2e3f-0000-4000-8000-000000000001")
        'langflow-run-0c1d2e3f-0000-4000-8000-000000000001'
    """
    return f"{RUN_ARTIFACT_PREFIX}{str(flow_run_id).lower()}"


def _run_name() -> str:
    """``run-langflow/<flow name>``: the deployment's name for a synced flow, else the `flow`."""
    tags = current_flow_run.tags or []
    name = current_deployment.name if any(t.startswith(FLOW_TAG_PREFIX) for t in tags) else None
    flow = name or current_flow_run.parameters.get("flow") or "flow"
    return f"{RUN_FLOW_NAME}/{flow}"


@workflow(name=RUN_FLOW_NAME, flow_run_name=_run_name, log_prints=False)
def run_langflow(
    flow: str,
    input_value: str = "",
    tweaks: dict[str, dict[str, Any]] | None = None,
    input_type: str = "chat",
    output_type: str = "chat",
    session_id: str | None = None,
    timeout_seconds: float | None = None,
    langflow: str | None = None,
) -> str | None:
    """Runs one LangFlow flow and returns its output text.

    The flow is read and analysed first: a flow that cannot run (no input or
    output, a cycle, ...) fails with an `InvalidInputError` naming its problems,
    and no run request is sent.

    Input, output (the text and the structured result) and timing are recorded
    in a table artifact keyed ``langflow-run-<flow run id>``, readable from any
    machine that reaches the Prefect API (``magicflow langflow runs output RUN``).

    Args:
        flow: The LangFlow flow's id, name or endpoint name.
        input_value: The text given to its input component.
        tweaks: Component id or name -> field overrides.
        input_type: ``chat``, ``text`` or ``any``.
        output_type: ``chat``, ``text``, ``any`` or ``debug``.
        session_id: Continue this LangFlow chat session.
        timeout_seconds: Longest wait for the answer (the connection's timeout when None).
        langflow: Name of a saved `LangflowConnection` block; None reads
            ``LANGFLOW_API_URL`` / ``LANGFLOW_API_KEY`` where the run executes.

    Returns:
        The first output component's text (None when the flow returned no text).

    Example:
        ```python
        run_langflow("Support bot", input_value="Is prod up?", langflow="langflow")
        ```
    """
    langflow_flow = get_langflow_flow(langflow, flow)
    analysis = analyze_langflow_flow(langflow_flow)
    if not analysis.runnable:
        # LangFlow would answer a 500 after building half the graph; say what is wrong instead.
        problems = "; ".join(map(str, analysis.problems))
        raise InvalidInputError(langflow_flow.resource, f"not runnable: {problems}")
    started = datetime.now(UTC)
    result = run_langflow_flow(
        langflow,
        langflow_flow.id,
        input_value=input_value,
        input_type=input_type,
        output_type=output_type,
        tweaks=tweaks,
        session_id=session_id,
        timeout_seconds=timeout_seconds,
    )
    finished = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {"field": "flow", "value": langflow_flow.name},
        {"field": "flow_id", "value": result.flow_id},
        {"field": "input", "value": input_value},
        {"field": "output", "value": result.output_text},
        {"field": "session_id", "value": result.session_id},
        {"field": "started", "value": started.isoformat()},
        {"field": "finished", "value": finished.isoformat()},
        {"field": "duration_seconds", "value": result.duration_seconds},
        {"field": "outputs", "value": json.dumps(result.outputs, separators=(",", ":"))},
    ]
    flow_run_id = current_flow_run.id
    create_table_artifact(
        table=rows,
        key=run_artifact_key(flow_run_id) if flow_run_id else None,
        description=f"LangFlow flow {langflow_flow.name!r}: input, output and timing",
    )
    return result.output_text


@workflow(name=SYNC_FLOW_NAME)
def sync_langflow(
    langflow: str | None = None,
    work_pool: str = DEFAULT_WORK_POOL,
    dry_run: bool = False,
) -> list[Change]:
    """Makes every runnable LangFlow flow a Prefect deployment, and pauses the ones gone.

    Args:
        langflow: Name of a saved `LangflowConnection` block (also what the
            deployments' runs use); None reads ``LANGFLOW_API_URL`` /
            ``LANGFLOW_API_KEY``, here and on the workers.
        work_pool: Work pool of new deployments.
        dry_run: Read only and report what would be done.

    Returns:
        One change per LangFlow flow and per paused deployment: ``created``,
        ``updated`` or ``unchanged`` deployments; ``skipped`` flows that fail
        analysis (detail lists the problems).

    Example:
        ```python
        sync_langflow(langflow="langflow", work_pool="magicflow")
        ```
    """
    langflow_connection(langflow)  # a missing block fails here, before any read
    flows = list_langflow_flows(langflow, include_graphs=True)
    changes: list[Change] = []
    from prefect import get_client

    with get_client(sync_client=True) as client:
        deployments = {langflow_flow_id_of(d): d for d in read_langflow_deployments(client)}
    for langflow_flow in flows:
        analysis = analyze_langflow_flow(langflow_flow)
        if analysis.runnable:
            changes.append(
                ensure_langflow_deployment(
                    langflow_flow, analysis, langflow=langflow, work_pool=work_pool, dry_run=dry_run
                )
            )
            continue
        problems = "; ".join(map(str, analysis.problems))
        existing = deployments.get(langflow_flow.id)
        if existing is not None:
            changes.append(
                pause_langflow_deployment(
                    existing.id, reason=f"fails analysis: {problems}", dry_run=dry_run
                )
            )
        changes.append(
            report(
                Change(
                    resource=langflow_flow.resource,
                    action=Action.SKIPPED,
                    dry_run=dry_run,
                    detail={"flow_id": langflow_flow.id, "problems": problems},
                )
            )
        )
    current = {langflow_flow.id for langflow_flow in flows}
    for flow_id, deployment in deployments.items():
        if flow_id not in current:
            changes.append(
                pause_langflow_deployment(
                    deployment.id, reason="deleted in LangFlow", dry_run=dry_run
                )
            )
    return changes

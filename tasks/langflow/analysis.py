"""Analysing a flow's graph: its inputs and outputs, components and what stops it running."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

from magicflow import (
    job,
)
from tasks.langflow.models import (
    _NOTE_NODE_TYPES,
    INPUT_COMPONENT_TYPES,
    OUTPUT_COMPONENT_TYPES,
    LangflowComponent,
    LangflowFlow,
    LangflowFlowAnalysis,
    LangflowProblem,
)
from tasks.langflow.session import (
    _dict,
    _list,
)


def _components(nodes: Iterable[Any]) -> list[LangflowComponent]:
    components = []
    for node in nodes:
        if not isinstance(node, dict) or node.get("type") in _NOTE_NODE_TYPES:
            continue
        data = _dict(node.get("data"))
        inner = _dict(data.get("node"))
        node_id = str(node.get("id") or data.get("id") or "")
        if not node_id:
            continue
        components.append(
            LangflowComponent(
                id=node_id,
                type=str(data.get("type") or node_id.split("-")[0]),
                display_name=inner.get("display_name"),
            )
        )
    return components


def _default_input(nodes: Iterable[Any], input_ids: set[str]) -> str | None:
    for node in nodes:
        if isinstance(node, dict) and str(node.get("id")) in input_ids:
            template = _dict(_dict(_dict(node.get("data")).get("node")).get("template"))
            value = _dict(template.get("input_value")).get("value")
            if isinstance(value, str) and value:
                return value
    return None


def analyze_flow_graph(flow: LangflowFlow) -> LangflowFlowAnalysis:
    """Analyses a flow's graph (the pure function behind `analyze_langflow_flow`).

    Args:
        flow: A flow read with its graph.

    Returns:
        The analysis; see `analyze_langflow_flow`.

    Example:
        >>> graph = {"nodes": [{"id": "ChatInput-1", "data": {"type": "ChatInput"}},
        ...                    {"id": "ChatOutput-2", "data": {"type": "ChatOutput"}}],
        ...          "edges": [{"source": "ChatInput-1", "target": "ChatOutput-2"}]}
        >>> analyze_flow_graph(LangflowFlow(id="f", name="echo", data=graph)).order
        ['ChatInput-1', 'ChatOutput-2']
    """
    graph = flow.data or {}
    nodes = _list(graph.get("nodes"))
    edges = _list(graph.get("edges"))
    components = _components(nodes)
    ids = {component.id for component in components}
    inputs = [c for c in components if c.type in INPUT_COMPONENT_TYPES]
    outputs = [c for c in components if c.type in OUTPUT_COMPONENT_TYPES]
    problems: list[LangflowProblem] = []

    def problem(kind: str, detail: str) -> None:
        problems.append(LangflowProblem(kind=kind, detail=detail))

    if flow.data is None or not components:
        problem("no-graph", "the flow has no components")
    if components and not inputs:
        problem("no-input", f"no input component ({', '.join(INPUT_COMPONENT_TYPES)})")
    if components and not outputs:
        problem("no-output", f"no output component ({', '.join(OUTPUT_COMPONENT_TYPES)})")

    successors: dict[str, set[str]] = defaultdict(set)
    neighbours: dict[str, set[str]] = defaultdict(set)
    for edge in edges:
        if not isinstance(edge, dict):
            continue
        source, target = str(edge.get("source", "")), str(edge.get("target", ""))
        missing = [end for end in (source, target) if end not in ids]
        if missing:
            names = ", ".join(repr(end) for end in missing)
            problem("dangling-edge", f"edge {source or '?'} -> {target or '?'}: no {names}")
            continue
        successors[source].add(target)
        neighbours[source].add(target)
        neighbours[target].add(source)

    # Kahn's algorithm, in the graph's own node order for a stable result.
    position = {component.id: index for index, component in enumerate(components)}
    indegree = {component.id: 0 for component in components}
    for targets in successors.values():
        for target in targets:
            indegree[target] += 1
    ready = deque(c.id for c in components if indegree[c.id] == 0)
    order: list[str] = []
    while ready:
        current = ready.popleft()
        order.append(current)
        for target in sorted(successors[current], key=position.__getitem__):
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    if len(order) < len(components):
        looped = [c.id for c in components if c.id not in set(order)]
        problem("cycle", f"in or after a cycle: {', '.join(looped)}")

    if outputs:
        # Everything must be connected (either way) to an output; else it never runs.
        reached = {output.id for output in outputs}
        pending = list(reached)
        while pending:
            for neighbour in neighbours[pending.pop()]:
                if neighbour not in reached:
                    reached.add(neighbour)
                    pending.append(neighbour)
        stray = [c.id for c in components if c.id not in reached]
        if stray:
            problem("disconnected", f"not connected to any output: {', '.join(stray)}")
    return LangflowFlowAnalysis(
        flow_id=flow.id,
        flow_name=flow.name,
        inputs=inputs,
        outputs=outputs,
        order=order,
        problems=problems,
        default_input=_default_input(nodes, {c.id for c in inputs}),
    )


@job
def analyze_langflow_flow(flow: LangflowFlow) -> LangflowFlowAnalysis:
    """Finds a flow's inputs and outputs, its run order, and what keeps it from running.

    Problems: no graph, no input component, no output component, an edge naming
    a component that does not exist (dangling), components not connected to any
    output (they would never run), and cycles.

    Args:
        flow: A flow read with its graph (`get_langflow_flow`, or
            `list_langflow_flows` with ``include_graphs=True``).

    Returns:
        The analysis; ``runnable`` is True when there is no problem.

    Example:
        ```python
        analysis = analyze_langflow_flow(get_langflow_flow("langflow", "Support bot"))
        analysis.inputs, analysis.outputs, analysis.order, analysis.problems
        ```
    """
    return analyze_flow_graph(flow)

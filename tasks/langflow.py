"""LangFlow jobs: list, read, analyse and run the flows of a LangFlow server.

Every job takes a `LangflowConnection`, the name of a saved one, or None for the
connection described by ``LANGFLOW_API_URL`` / ``LANGFLOW_API_KEY`` (see
`LangflowConnection.from_environment`). Resources are named
``langflow:flow/<name or id>``.

The API key travels only in the ``x-api-key`` header: it is never part of a
result, a log line or an error (answers from the server are scrubbed of it too).
HTTP failures are translated through the one error table
(`magicflow.errors.error_for_status` / `error_for_exception`), so 5xx, 429,
timeouts and refused connections are `TransientError` (retried by Prefect) and
401/403, 404 and other 4xx are permanent. The one LangFlow-specific rule: a 4xx
answer to a run that blames a tweak is an `InvalidInputError` naming the tweak.

Example:
    ```python
    from prefect import flow
    from tasks.langflow import analyze_langflow_flow, get_langflow_flow, run_langflow_flow

    @flow
    def ask(question: str) -> str | None:
        chat = get_langflow_flow("langflow", "Support bot")
        if not analyze_langflow_flow(chat).runnable:
            raise ValueError("the flow is not runnable")
        return run_langflow_flow("langflow", chat.id, input_value=question).output_text
    ```
"""

from __future__ import annotations

import re
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from blocks.langflow import LangflowConnection
from magicflow import (
    InvalidInputError,
    MagicFlowError,
    NotFoundError,
    connection,
    job,
    job_logger,
)
from magicflow.errors import error_for_exception, error_for_status

API_PREFIX = "/api/v1"

INPUT_COMPONENT_TYPES: dict[str, str] = {"ChatInput": "chat", "TextInput": "text"}
"""Component type (``data.nodes[].data.type``) -> the run API's ``input_type`` it takes."""

OUTPUT_COMPONENT_TYPES: dict[str, str] = {"ChatOutput": "chat", "TextOutput": "text"}
"""Component type -> the run API's ``output_type`` that selects it."""

INPUT_TYPES = ("chat", "text", "any")
"""Values of the run API's ``input_type``."""

OUTPUT_TYPES = ("chat", "text", "any", "debug")
"""Values of the run API's ``output_type``."""

_NOTE_NODE_TYPES = frozenset({"noteNode"})  # sticky notes on the canvas: not components
_MAX_DETAIL_CHARS = 300
_REDACTED = "**********"
_TWEAK_WORDS = re.compile(r"\btweaks?\b", re.IGNORECASE)


class LangflowFlow(BaseModel):
    """One LangFlow flow, as the flows API lists it.

    Attributes:
        id: The flow's UUID (what the API takes).
        name: Its display name (unique per user; LangFlow renames duplicates).
        endpoint_name: Its custom endpoint name, if set (the run API takes it too).
        description: Its description.
        updated_at: When it was last saved (ISO 8601, as LangFlow sends it).
        folder_id: The project (folder) it belongs to.
        data: The graph (``nodes`` and ``edges``); None when listed without graphs.

    Example:
        >>> LangflowFlow(id="0b6c...", name="Support bot").resource
        'langflow:flow/Support bot'
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    name: str
    endpoint_name: str | None = None
    description: str | None = None
    updated_at: str | None = None
    folder_id: str | None = None
    data: dict[str, Any] | None = None

    @property
    def resource(self) -> str:
        """``langflow:flow/<name>``, how errors and changes name this flow."""
        return f"langflow:flow/{self.name}"


class LangflowComponent(BaseModel):
    """One component (node) of a flow graph.

    Attributes:
        id: The node id, e.g. ``ChatInput-x1Y2z`` (what tweaks are keyed by).
        type: The component type, e.g. ``ChatInput``.
        display_name: The name shown on the canvas.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    display_name: str | None = None


class LangflowProblem(BaseModel):
    """Something that keeps a flow from running as a scheduled workflow.

    Attributes:
        kind: ``no-graph``, ``no-input``, ``no-output``, ``dangling-edge``,
            ``disconnected`` or ``cycle``.
        detail: Which components or edges, in words.
    """

    model_config = ConfigDict(frozen=True)

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


class LangflowFlowAnalysis(BaseModel):
    """What a flow takes, what it returns, the order it runs in, and what is wrong with it.

    Attributes:
        flow_id: The flow's UUID.
        flow_name: The flow's name.
        inputs: Its input components (`INPUT_COMPONENT_TYPES`).
        outputs: Its output components (`OUTPUT_COMPONENT_TYPES`).
        order: Every component id in dependency order (sources first); components
            caught in a cycle are left out.
        problems: Why it cannot run unattended; empty when it can.
        default_input: The input component's preset text, if any.

    Example:
        >>> analysis = LangflowFlowAnalysis(flow_id="f", flow_name="n", inputs=[], outputs=[],
        ...     order=[], problems=[LangflowProblem(kind="no-input", detail="none")])
        >>> analysis.runnable
        False
    """

    model_config = ConfigDict(frozen=True)

    flow_id: str
    flow_name: str
    inputs: list[LangflowComponent]
    outputs: list[LangflowComponent]
    order: list[str]
    problems: list[LangflowProblem]
    default_input: str | None = None

    @property
    def runnable(self) -> bool:
        """True when the analysis found no problem."""
        return not self.problems

    @property
    def input_type(self) -> str:
        """The run API's ``input_type`` for this flow (its first input's, else ``chat``)."""
        return INPUT_COMPONENT_TYPES.get(self.inputs[0].type, "chat") if self.inputs else "chat"

    @property
    def output_type(self) -> str:
        """The run API's ``output_type``: the outputs' common kind, else ``any``."""
        kinds = {OUTPUT_COMPONENT_TYPES.get(output.type, "any") for output in self.outputs}
        return kinds.pop() if len(kinds) == 1 else "any"


class LangflowRunResult(BaseModel):
    """The answer of one flow run.

    Attributes:
        flow_id: The flow (id or endpoint name) that ran.
        session_id: The session LangFlow used (pass it again to continue a chat).
        output_text: The first output component's text, or None.
        output_texts: Every output component's text, by component id.
        outputs: The structured result, exactly as the run API returned ``outputs``.
        duration_seconds: Wall time of the run request.
    """

    model_config = ConfigDict(frozen=True)

    flow_id: str
    session_id: str | None = None
    output_text: str | None = None
    output_texts: dict[str, str] = Field(default_factory=dict)
    outputs: list[JsonValue] = Field(default_factory=list)
    duration_seconds: float = 0.0


# --- HTTP, errors -------------------------------------------------------------------------


def langflow_connection(langflow: LangflowConnection | str | None) -> LangflowConnection:
    """The connection a job was given: a block, a saved block's name, or None for the environment.

    Args:
        langflow: A `LangflowConnection`, the name of a saved one, or None to read
            ``LANGFLOW_API_URL`` and ``LANGFLOW_API_KEY``.

    Returns:
        The connection.

    Example:
        ```python
        langflow_connection(None).url  # $LANGFLOW_API_URL or http://127.0.0.1:7860
        ```
    """
    if langflow is None:
        return LangflowConnection.from_environment()
    return connection(langflow, LangflowConnection)


def _scrubbed(text: str, conn: LangflowConnection) -> str:
    """A server message cut short and without the API key, should the server echo it."""
    text = " ".join(text.split())
    if conn.api_key is not None:
        secret = conn.api_key.get_secret_value()
        if secret:
            text = text.replace(secret, _REDACTED)
    return text[:_MAX_DETAIL_CHARS]


def _server_detail(response: httpx.Response, conn: LangflowConnection) -> str:
    """LangFlow's ``detail`` (FastAPI's error body), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return _scrubbed(response.text, conn)
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(
        detail, dict
    ):  # e.g. {"error": "Refused tweaks", "message": ..., "fields": [...]}
        parts = [str(detail.get(key)) for key in ("error", "message") if detail.get(key)]
        if isinstance(detail.get("fields"), list):
            parts.append(f"fields: {', '.join(map(str, detail['fields']))}")
        detail = ": ".join(parts) if parts else detail
    elif isinstance(detail, list):  # FastAPI validation errors: [{"loc": [...], "msg": ...}]
        parts = []
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(part) for part in item.get("loc", []) if part != "body")
                parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg")))
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    return _scrubbed(str(detail), conn)


def _hint_for(status: int) -> str:
    if status in (401, 403):
        return "; check the connection's API key (LANGFLOW_API_KEY)"
    return ""


def _send(
    conn: LangflowConnection,
    client: httpx.Client,
    method: str,
    path: str,
    resource: str,
    doing: str,
    **kwargs: Any,
) -> httpx.Response:
    """One API call; its answer, or a typed error about `resource` when it never came."""
    try:
        return client.request(method, f"{API_PREFIX}{path}", **kwargs)
    except httpx.HTTPError as error:
        translated = error_for_exception(resource, error, f"{doing} at {conn.url}")
        if translated is None:
            translated = InvalidInputError(
                resource, f"{doing} at {conn.url} failed ({type(error).__name__})"
            )
        raise translated from None


def _error_for(
    conn: LangflowConnection, response: httpx.Response, resource: str, doing: str
) -> MagicFlowError:
    """The typed error of an error answer, through the one error table."""
    status = response.status_code
    detail = _server_detail(response, conn)
    return error_for_status(
        resource, status, f"{doing}: LangFlow answered {status}: {detail}{_hint_for(status)}"
    )


def _json_of(conn: LangflowConnection, response: httpx.Response, resource: str, doing: str) -> Any:
    if response.status_code >= 400:
        raise _error_for(conn, response, resource, doing)
    if response.status_code in (202, 204) or not response.content:
        return None
    try:
        return response.json()
    except ValueError as error:  # a cut-short answer is retried; anything else is not LangFlow
        raise error_for_exception(resource, error, doing) or InvalidInputError(
            resource, f"{doing}: the answer from {conn.url} is not JSON; is this LangFlow?"
        ) from None


def _call(
    conn: LangflowConnection,
    client: httpx.Client,
    method: str,
    path: str,
    resource: str,
    doing: str,
    **kwargs: Any,
) -> Any:
    """One API call; its JSON answer, or a typed error about `resource`."""
    response = _send(conn, client, method, path, resource, doing, **kwargs)
    return _json_of(conn, response, resource, doing)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _flow_from(item: Any) -> LangflowFlow:
    return LangflowFlow.model_validate(
        {
            **item,
            "id": str(item.get("id")),
            "folder_id": str(item["folder_id"]) if item.get("folder_id") else None,
        }
    )


def _list_flows(
    conn: LangflowConnection, client: httpx.Client, include_graphs: bool
) -> list[LangflowFlow]:
    resource = "langflow:flows"
    params: dict[str, Any] = {
        "remove_example_flows": "true",
        "header_flows": "false" if include_graphs else "true",
        "get_all": "true",
    }
    flows: list[LangflowFlow] = []
    page = 1
    while True:
        answer = _call(conn, client, "GET", "/flows/", resource, "listing flows", params=params)
        # get_all=true answers a plain list; a server that pages answers fastapi-pagination's
        # Page ({"items", "page", "pages"}): follow it to the last page.
        items = answer.get("items", []) if isinstance(answer, dict) else answer
        if not isinstance(items, list):
            raise InvalidInputError(resource, "listing flows: LangFlow's answer is not a list")
        # Saved components are listed with the flows; they are not flows one runs.
        flows.extend(
            _flow_from(item)
            for item in items
            if isinstance(item, dict) and not item.get("is_component")
        )
        pages = answer.get("pages") if isinstance(answer, dict) else None
        if not isinstance(pages, int) or page >= pages:
            return flows
        page += 1
        params = {**params, "get_all": "false", "page": page, "size": answer.get("size", 50)}


@job
def list_langflow_flows(
    langflow: LangflowConnection | str | None = None, include_graphs: bool = False
) -> list[LangflowFlow]:
    """Lists the user's flows, without LangFlow's example flows.

    Args:
        langflow: The connection, a saved one's name, or None for the environment.
        include_graphs: Also fetch each flow's graph (``data``); off, the list is
            small (LangFlow's ``header_flows``).

    Returns:
        The flows, in the server's order. Pages are followed when the server pages.

    Raises:
        PermissionDeniedError: The API key is missing or not accepted.
        TransientError: LangFlow is unreachable or failing (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.langflow import list_langflow_flows

        @flow
        def flow_names() -> list[str]:
            return [f.name for f in list_langflow_flows("langflow")]
        ```
    """
    conn = langflow_connection(langflow)
    with conn.get_client() as client:
        return _list_flows(conn, client, include_graphs)


def _resolve(
    conn: LangflowConnection, client: httpx.Client, flow: str, include_graph: bool
) -> LangflowFlow:
    reference = flow.strip()
    if not reference:
        raise InvalidInputError("langflow:flow/", "name the flow by id, name or endpoint name")
    resource = f"langflow:flow/{reference}"
    if _is_uuid(reference):
        answer = _call(conn, client, "GET", f"/flows/{reference}", resource, "reading the flow")
        found = _flow_from(answer)
        return found if include_graph else found.model_copy(update={"data": None})
    flows = _list_flows(conn, client, include_graphs=False)
    matches = [f for f in flows if f.name == reference] or [
        f for f in flows if f.endpoint_name and f.endpoint_name == reference
    ]
    if not matches:
        known = ", ".join(sorted(repr(f.name) for f in flows)[:10]) or "none"
        raise NotFoundError(resource, f"no flow with this name or endpoint name (flows: {known})")
    if len(matches) > 1:
        ids = ", ".join(f.id for f in matches)
        raise InvalidInputError(
            resource, f"{len(matches)} flows have this name ({ids}); name it by id instead"
        )
    if not include_graph:
        return matches[0]
    answer = _call(conn, client, "GET", f"/flows/{matches[0].id}", resource, "reading the flow")
    return _flow_from(answer)


@job
def get_langflow_flow(
    langflow: LangflowConnection | str | None, flow: str, include_graph: bool = True
) -> LangflowFlow:
    """Reads one flow by id, name or endpoint name.

    The API reads flows by id only, so a name is resolved from the flow list:
    an exact name first, else an endpoint name.

    Args:
        langflow: The connection, a saved one's name, or None for the environment.
        flow: The flow's UUID, name or endpoint name.
        include_graph: Also read its graph (``data``).

    Returns:
        The flow.

    Raises:
        NotFoundError: No flow has this id, name or endpoint name.
        InvalidInputError: An empty reference, or a name several flows share.
        PermissionDeniedError: The API key is missing or not accepted.
        TransientError: LangFlow is unreachable or failing (retried).

    Example:
        ```python
        chat = get_langflow_flow("langflow", "Support bot")
        chat.data["nodes"]
        ```
    """
    conn = langflow_connection(langflow)
    with conn.get_client() as client:
        return _resolve(conn, client, flow, include_graph)


# --- analysis -----------------------------------------------------------------------------


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


# --- runs ---------------------------------------------------------------------------------


def _check_run_input(resource: str, input_type: str, output_type: str, tweaks: Any) -> None:
    if input_type not in INPUT_TYPES:
        raise InvalidInputError(
            resource, f"input_type {input_type!r} must be one of {', '.join(INPUT_TYPES)}"
        )
    if output_type not in OUTPUT_TYPES:
        raise InvalidInputError(
            resource, f"output_type {output_type!r} must be one of {', '.join(OUTPUT_TYPES)}"
        )
    check_tweaks(resource, tweaks)


def check_tweaks(resource: str, tweaks: Any) -> None:
    """Checks the shape of tweaks: component id or name -> an object of field values.

    LangFlow silently ignores a tweak that is not an object; MagicFlow refuses it,
    before any request.

    Args:
        resource: What the tweaks are for, for the error.
        tweaks: The tweaks (None is fine).

    Raises:
        InvalidInputError: Not an object, an empty key, or a value that is not an
            object; the message names the tweak.

    Example:
        >>> check_tweaks("langflow:flow/echo", {"ChatOutput-1": {"sender_name": "Ops"}})
    """
    if tweaks is None:
        return
    if not isinstance(tweaks, dict):
        raise InvalidInputError(
            resource, "tweaks must be an object: component id or name -> {field: value}"
        )
    for name, fields in tweaks.items():
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError(resource, "a tweak must be keyed by a component id or name")
        if not isinstance(fields, dict):
            raise InvalidInputError(
                resource,
                f"tweak {name!r} must be an object of field values, not {type(fields).__name__}",
            )


def _blamed_tweaks(
    response: httpx.Response, tweaks: dict[str, dict[str, Any]] | None
) -> str | None:
    """The tweaks a 4xx answer to a run refuses, or None when it is not about tweaks.

    LangFlow answers a refused tweak with 422 ``{"detail": {"code": "TWEAKS_REFUSED",
    "fields": [...]}}`` and a tweak clashing with the input with 400 naming the
    tweak; the tweaks are named by the keys the caller used.
    """
    if not tweaks or not 400 <= response.status_code < 500 or response.status_code in (401, 403):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict) and detail.get("code") == "TWEAKS_REFUSED":
        fields = {str(field) for field in detail.get("fields") or []}
        names = [name for name, values in tweaks.items() if fields & set(values)]
        return ", ".join(repr(name) for name in names or list(tweaks))
    text = str(detail or "")
    if _TWEAK_WORDS.search(text):
        names = [name for name in tweaks if name in text or "input_value" in tweaks[name]]
        return ", ".join(repr(name) for name in names or list(tweaks))
    return None


def _texts_of(outputs: list[Any]) -> dict[str, str]:
    """Each output component's text, from ``outputs[].outputs[].results.message.text``."""
    texts: dict[str, str] = {}
    for run_output in outputs:
        if not isinstance(run_output, dict):
            continue
        for index, result in enumerate(run_output.get("outputs") or []):
            if not isinstance(result, dict):
                continue
            key = str(result.get("component_id") or index)
            results = _dict(result.get("results"))
            text: Any = None
            for name in ("message", "text"):
                value = results.get(name)
                if isinstance(value, dict) and isinstance(value.get("text"), str):
                    text = value["text"]
                    break
            if text is None:
                messages = result.get("messages")
                if isinstance(messages, list) and messages and isinstance(messages[0], dict):
                    text = messages[0].get("message")
            if isinstance(text, str):
                texts[key] = text
    return texts


@job
def run_langflow_flow(
    langflow: LangflowConnection | str | None,
    flow: str,
    input_value: str | None = None,
    input_type: str = "chat",
    output_type: str = "chat",
    tweaks: dict[str, dict[str, Any]] | None = None,
    session_id: str | None = None,
    timeout_seconds: float | None = None,
) -> LangflowRunResult:
    """Runs a flow once and waits for its answer (``POST /api/v1/run/{flow}?stream=false``).

    Bad input (types, tweak shapes) is rejected before any request. A name is
    resolved to the flow's id first; an id or endpoint name is sent as it is.

    Args:
        langflow: The connection, a saved one's name, or None for the environment.
        flow: The flow's UUID, name or endpoint name.
        input_value: The text given to the input component.
        input_type: ``chat``, ``text`` or ``any``.
        output_type: ``chat``, ``text``, ``any`` or ``debug`` (which outputs to return).
        tweaks: Component id or display name -> field overrides, e.g.
            ``{"ChatOutput-x1Y2z": {"sender_name": "Ops"}}``.
        session_id: Continue this chat session (LangFlow makes one when None).
        timeout_seconds: Longest wait for the answer; the connection's timeout when None.

    Returns:
        The output text, every output's text, and the structured result.

    Raises:
        InvalidInputError: Bad types or tweaks, or LangFlow refused a tweak (the
            error names it).
        NotFoundError: No such flow.
        PermissionDeniedError: The API key is missing or not accepted.
        TransientError: LangFlow is unreachable, timed out or failed with a 5xx
            (retried).

    Example:
        ```python
        answer = run_langflow_flow("langflow", "Support bot", input_value="Is prod up?")
        answer.output_text
        ```
    """
    reference = flow.strip()
    resource = f"langflow:flow/{reference}"
    _check_run_input(resource, input_type, output_type, tweaks)
    conn = langflow_connection(langflow)
    with conn.get_client() as client:
        target = reference
        if not _is_uuid(reference):
            target = _resolve(conn, client, reference, include_graph=False).id
        body: dict[str, Any] = {
            "input_value": input_value,
            "input_type": input_type,
            "output_type": output_type,
            "tweaks": tweaks or None,
        }
        if session_id:
            body["session_id"] = session_id
        timeout = timeout_seconds or conn.timeout_seconds
        started = time.monotonic()
        response = _send(
            conn,
            client,
            "POST",
            f"/run/{target}",
            resource,
            "running the flow",
            params={"stream": "false"},
            json=body,
            timeout=timeout,
        )
        blamed = _blamed_tweaks(response, tweaks)
        if blamed is not None:
            raise InvalidInputError(
                resource,
                f"tweak {blamed} refused: "
                f"{_error_for(conn, response, resource, 'running the flow').cause}",
            )
        answer = _json_of(conn, response, resource, "running the flow")
        duration = time.monotonic() - started
    if not isinstance(answer, dict):
        raise InvalidInputError(resource, "running the flow: LangFlow's answer is not an object")
    outputs = _list(answer.get("outputs"))
    texts = _texts_of(outputs)
    result = LangflowRunResult(
        flow_id=target,
        session_id=answer.get("session_id"),
        output_text=next(iter(texts.values()), None),
        output_texts=texts,
        outputs=outputs,
        duration_seconds=round(duration, 3),
    )
    job_logger().info(
        "%s: ran in %.2fs, %d output(s), session %s",
        resource,
        duration,
        len(texts),
        result.session_id,
    )
    return result

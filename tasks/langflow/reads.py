"""Listing LangFlow's flows and reading one, by name or id, with or without its graph."""

from __future__ import annotations

from typing import Any

import httpx

from blocks.langflow import LangflowConnection
from magicflow import (
    InvalidInputError,
    NotFoundError,
    job,
)
from tasks.langflow.models import (
    LangflowFlow,
)
from tasks.langflow.session import (
    _call,
    _is_uuid,
    langflow_connection,
)


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

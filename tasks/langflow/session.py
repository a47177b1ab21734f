"""LangFlow's HTTP API for the jobs: the connection, calls, and errors through the one table.

The API key travels only in the ``x-api-key`` header; answers from the server are
scrubbed of it before they reach an error.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from blocks.langflow import LangflowConnection
from magicflow import (
    InvalidInputError,
    MagicFlowError,
    connection,
)
from magicflow.errors import error_for_exception, error_for_status
from tasks.langflow.models import (
    _MAX_DETAIL_CHARS,
    _REDACTED,
    API_PREFIX,
)


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

"""Running a LangFlow flow: checking its input and tweaks, and reading its outputs."""

from __future__ import annotations

import time
from typing import Any

import httpx

from blocks.langflow import LangflowConnection
from magicflow import (
    InvalidInputError,
    job,
    job_logger,
)
from tasks.langflow.models import (
    _TWEAK_WORDS,
    INPUT_TYPES,
    OUTPUT_TYPES,
    LangflowRunResult,
)
from tasks.langflow.reads import _resolve
from tasks.langflow.session import (
    _dict,
    _error_for,
    _is_uuid,
    _json_of,
    _list,
    _send,
    langflow_connection,
)


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

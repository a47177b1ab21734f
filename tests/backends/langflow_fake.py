"""A stateful, in-memory fake of the LangFlow REST API (v1.13 shapes), for the default test run.

Run: ``python langflow_fake.py --port P --api-key KEY [--api-key KEY2 ...]``. LangFlow
itself is too heavy for every run (2.4 GB, ~35 s to start); the opt-in integration
test (``-m langflow``) runs the same code against the real server. This fake answers
the routes MagicFlow uses with LangFlow's real shapes, status codes and error bodies:

* ``GET /health`` -> ``{"status": "ok"}`` (no auth).
* ``GET /api/v1/flows/`` with ``remove_example_flows``, ``header_flows``, ``get_all``,
  ``page``, ``size``: with ``get_all=true`` (the default) a plain list of ``FlowRead``
  (graphs included) or, with ``header_flows=true``, of ``FlowHeader`` (no ``data``
  unless the flow is a component). With ``get_all=false``, fastapi-pagination's
  ``{"items", "total", "page", "size", "pages"}`` of the default folder's flows.
  The starter-project example flows (no owner) are listed unless
  ``remove_example_flows=true``.
* ``POST /api/v1/flows/`` (201 ``FlowRead``): a name the user already has is silently
  renamed ``<name> (1)``, ``(2)``...; an endpoint name ``<endpoint>-1``... A missing
  name is FastAPI's 422 ``{"detail": [{"type": "missing", "loc": ["body", "name"], ...}]}``.
* ``GET|PATCH|DELETE /api/v1/flows/{uuid}``: a malformed id is a 422 ``uuid_parsing``;
  an unknown one 404 ``{"detail": "Flow not found"}``.
* ``POST /api/v1/run/{id or endpoint name}?stream=false`` with ``{"input_value",
  "input_type", "output_type", "tweaks", "session_id"}``: 404 ``{"detail": "Flow
  identifier X not found"}``; a tweak setting a ``code`` field is refused with 422
  ``{"detail": {"error": "Refused tweaks", "code": "TWEAKS_REFUSED", "message",
  "fields"}}``; a ChatInput tweak of ``input_value`` with an input value is 400.
  Otherwise the graph is "run": each output component's text is the input value
  (after tweaks of the input's ``input_value``), prefixed by the output's
  ``prefix`` template field if it has one, and the answer nests as LangFlow's:
  ``{"session_id", "outputs": [{"inputs": {"input_value"}, "outputs": [{"results":
  {"message": {"text"}}, "outputs", "messages", "component_id", ...}]}]}``.
* ``POST /api/v1/webhook/{id}`` -> 202 ``{"message": "Task started in the background",
  "status": "in progress"}``.
* ``GET /api/v1/auto_login`` (a bearer token) and ``POST /api/v1/api_key/`` (a new key
  for that bearer), as the real server with ``LANGFLOW_AUTO_LOGIN=true``.

Auth: every ``/api/v1`` route needs the ``x-api-key`` header (or query parameter) to
be a known key, as LangFlow >= 1.5 with ``LANGFLOW_AUTO_LOGIN=true``: missing, 403
with the "requires a valid API key" detail; unknown, 403 ``{"detail": "Invalid API
key"}`` (``"Invalid or missing API key"`` on the run and webhook routes).

TEST-ONLY control endpoints, which LangFlow does not have:

* ``GET /__requests__`` -> ``{"requests": [{"method", "path"}...], "counts": {"GET
  /api/v1/flows/": n, ...}}`` (paths without ids: ``/api/v1/run/*``); ``DELETE``
  clears the log.
* ``POST /__control__`` with ``{"page_size": N}``: list pages of N even with
  ``get_all=true`` (a paging server); ``{"page_size": null}`` turns it off. With
  ``{"unowned_flow": {"name", "data"}}``: adds a flow without owner outside the
  starter projects, which LangFlow lists to everyone under ``AUTO_LOGIN`` (so two
  listed flows can share a name).
* ``POST /__reset__``: deletes every user flow and clears the log and controls.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import secrets
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

API = "/api/v1"
STARTER_FOLDER_ID = "7c1c8e28-0000-4000-8000-00000000f01d"
DEFAULT_FOLDER_ID = "1b3a6b1e-0000-4000-8000-000000000d0f"
USER_ID = "9a0e6f6a-0000-4000-8000-0000000005e1"
PROTECTED_FIELDS = {"code"}
MISSING_KEY = (
    "Since v1.5, LANGFLOW_AUTO_LOGIN requires a valid API key. Set "
    "LANGFLOW_SKIP_AUTH_AUTO_LOGIN=true to skip this check. Please update your "
    "authentication method."
)


class ApiError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def example_graph(prefix: str) -> dict[str, Any]:
    return {
        "nodes": [
            node("ChatInput", f"ChatInput-{prefix}1", "Chat Input"),
            node("ChatOutput", f"ChatOutput-{prefix}2", "Chat Output"),
        ],
        "edges": [edge(f"ChatInput-{prefix}1", f"ChatOutput-{prefix}2")],
        "viewport": {"x": 0, "y": 0, "zoom": 1},
    }


def node(component_type: str, node_id: str, display_name: str) -> dict[str, Any]:
    """A node as LangFlow stores it (the parts that matter here)."""
    return {
        "id": node_id,
        "type": "genericNode",
        "position": {"x": 0, "y": 0},
        "data": {
            "id": node_id,
            "type": component_type,
            "node": {
                "display_name": display_name,
                "template": {
                    "code": {"type": "code", "value": "# component source"},
                    "input_value": {"type": "str", "value": ""},
                    "sender_name": {"type": "str", "value": "AI"},
                },
            },
        },
    }


def edge(source: str, target: str) -> dict[str, Any]:
    return {
        "id": f"reactflow__edge-{source}-{target}",
        "source": source,
        "target": target,
        "sourceHandle": f"{{œdataTypeœ:œ{source.split('-')[0]}œ,œidœ:œ{source}œ}}",
        "targetHandle": f"{{œfieldNameœ:œinput_valueœ,œidœ:œ{target}œ}}",
        "data": {},
    }


class State:
    def __init__(self, api_keys: list[str]) -> None:
        self.lock = threading.Lock()
        self.api_keys = set(api_keys)
        self.tokens: set[str] = set()
        self.flows: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, str]] = []
        self.page_size: int | None = None
        for index, name in enumerate(("Basic Prompting", "Memory Chatbot")):
            flow_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"starter/{name}"))
            self.flows[flow_id] = self.flow_record(
                flow_id,
                {
                    "name": name,
                    "description": "Starter project",
                    "data": example_graph(f"s{index}"),
                },
                user_id=None,
                folder_id=STARTER_FOLDER_ID,
            )

    def reset(self) -> None:
        self.flows = {k: v for k, v in self.flows.items() if v["folder_id"] == STARTER_FOLDER_ID}
        self.requests = []
        self.page_size = None

    @staticmethod
    def flow_record(
        flow_id: str, body: dict[str, Any], user_id: str | None, folder_id: str
    ) -> dict[str, Any]:
        stamp = now()
        return {
            "name": body["name"],
            "description": body.get("description"),
            "icon": body.get("icon"),
            "icon_bg_color": None,
            "gradient": None,
            "data": body.get("data"),
            "is_component": bool(body.get("is_component", False)),
            "updated_at": stamp,
            "webhook": bool(body.get("webhook", False)),
            "endpoint_name": body.get("endpoint_name"),
            "tags": body.get("tags"),
            "locked": False,
            "mcp_enabled": False,
            "action_name": None,
            "action_description": None,
            "access_type": "PRIVATE",
            "flow_type": "workflow",
            "a2a_enabled": False,
            "a2a_card_overrides": None,
            "id": flow_id,
            "user_id": user_id,
            "folder_id": folder_id,
            "workspace_id": None,
            "name_key": None,
            "version_token": str(uuid.uuid4()),
        }

    # --- naming rules of LangFlow's _deduplicate_flow_name / _deduplicate_endpoint_name ---

    def unique_name(self, name: str, skip: str | None = None) -> str:
        mine = [f["name"] for i, f in self.flows.items() if f["user_id"] == USER_ID and i != skip]
        if name not in mine:
            return name
        pattern = re.compile(rf"^{re.escape(name)} \((\d+)\)$")
        numbers = [int(m.group(1)) for other in mine if (m := pattern.search(other))]
        return f"{name} ({max(numbers) + 1})" if numbers else f"{name} (1)"

    def unique_endpoint(self, endpoint: str, skip: str | None = None) -> str:
        mine = [
            f["endpoint_name"]
            for i, f in self.flows.items()
            if f["user_id"] == USER_ID and i != skip and f["endpoint_name"]
        ]
        if endpoint not in mine:
            return endpoint
        numbers = []
        for other in mine:
            if other.startswith(f"{endpoint}-"):
                try:
                    numbers.append(int(other.split("-")[-1]))
                except ValueError:
                    continue
        return f"{endpoint}-{(max(numbers) + 1) if numbers else 1}"


def header_of(flow: dict[str, Any]) -> dict[str, Any]:
    """``FlowHeader``: no graph unless the flow is a component."""
    keys = (
        "id",
        "name",
        "folder_id",
        "is_component",
        "endpoint_name",
        "description",
        "access_type",
        "tags",
        "mcp_enabled",
        "action_name",
        "action_description",
        "updated_at",
    )
    header = {key: flow.get(key) for key in keys}
    header["data"] = flow["data"] if flow["is_component"] else None
    header["flow_type"] = "workflow"
    header["a2a_enabled"] = False
    header["a2a_card_overrides"] = None
    return header


def uuid_or_422(text: str, name: str = "flow_id") -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise ApiError(
            422,
            [
                {
                    "type": "uuid_parsing",
                    "loc": ["path", name],
                    "msg": "Input should be a valid UUID, invalid character: found "
                    f"`{next((c for c in text if c not in '0123456789abcdefABCDEF-'), '?')}`",
                }
            ],
        ) from None


def flag(query: dict[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    return default if value is None else value.lower() in ("true", "1", "yes", "on")


def run_graph(flow: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Answers a run as LangFlow nests it: outputs[0].outputs[i].results.message.text."""
    tweaks = body.get("tweaks") or {}
    input_value = body.get("input_value")
    input_type = body.get("input_type") or "chat"
    output_type = body.get("output_type") or "chat"
    nodes = (flow.get("data") or {}).get("nodes") or []
    by_key = {}
    for item in nodes:
        by_key[item["id"]] = item
        display = item.get("data", {}).get("node", {}).get("display_name")
        if display:
            by_key.setdefault(display, item)
    # endpoints.validate_input_and_tweaks
    for key, value in tweaks.items():
        if not isinstance(value, dict) or value.get("input_value") is None:
            continue
        if any(k in key for k in ("ChatInput", "Chat Input")) and input_value is not None:
            if input_type == "chat":
                raise ApiError(
                    400,
                    "If you pass an input_value to the chat input, you cannot pass a tweak "
                    "with the same name.",
                )
    refused = sorted(
        {
            field
            for key, value in tweaks.items()
            if isinstance(value, dict) and key in by_key
            for field in value
            if field in PROTECTED_FIELDS
        }
    )
    if refused:
        raise ApiError(
            422,
            {
                "error": "Refused tweaks",
                "code": "TWEAKS_REFUSED",
                "message": "The field is protected and keeps the value set by the flow author.",
                "fields": refused,
            },
        )
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in tweaks.items():
        if isinstance(value, dict) and key in by_key:
            overrides.setdefault(by_key[key]["id"], {}).update(value)
    text = input_value if input_value is not None else ""
    for item in nodes:
        if item.get("data", {}).get("type") in ("ChatInput", "TextInput"):
            tweak = overrides.get(item["id"], {}).get("input_value")
            if tweak is not None:
                text = str(tweak)
    session_id = body.get("session_id") or flow["id"]
    results = []
    for item in nodes:
        component_type = item.get("data", {}).get("type", "")
        if component_type not in ("ChatOutput", "TextOutput"):
            continue
        kind = "chat" if component_type == "ChatOutput" else "text"
        if output_type not in ("any", "debug") and output_type != kind:
            continue
        prefix = overrides.get(item["id"], {}).get("prefix") or (
            item["data"]["node"].get("template", {}).get("prefix", {}).get("value") or ""
        )
        sender = overrides.get(item["id"], {}).get("sender_name", "AI")
        answer = f"{prefix}{text}"
        message = {
            "text_key": "text",
            "data": {"text": answer, "sender": "Machine", "sender_name": sender},
            "default_value": "",
            "text": answer,
            "sender": "Machine",
            "sender_name": sender,
            "files": [],
            "session_id": session_id,
            "timestamp": now(),
            "flow_id": flow["id"],
            "error": False,
            "edit": False,
            "properties": {"source": {"id": item["id"]}},
            "category": "message",
            "content_blocks": [],
        }
        results.append(
            {
                "results": {"message": message},
                "artifacts": {"message": answer, "sender": "Machine", "type": "object"},
                "outputs": {"message": {"message": answer, "type": "text"}},
                "logs": {"message": []},
                "messages": [
                    {
                        "message": answer,
                        "sender": "Machine",
                        "sender_name": sender,
                        "session_id": session_id,
                        "stream_url": None,
                        "component_id": item["id"],
                        "files": [],
                        "type": "text",
                    }
                ],
                "timedelta": None,
                "duration": None,
                "component_display_name": item["data"]["node"].get("display_name"),
                "component_id": item["id"],
                "used_frozen_result": False,
            }
        )
    return {
        "session_id": session_id,
        "outputs": [{"inputs": {"input_value": input_value}, "outputs": results}],
    }


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return None
            try:
                return json.loads(raw)
            except ValueError:
                raise ApiError(
                    422,
                    [{"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error"}],
                ) from None

        def handle_any(self, method: str) -> None:
            parts = urlsplit(self.path)
            path = parts.path
            query = dict(parse_qsl(parts.query))
            try:
                status, answer = self.route(method, path, query)
            except ApiError as error:
                self.reply(error.status, {"detail": error.detail})
                return
            except Exception as error:  # the fake's own bug: show it, as a 500
                self.reply(500, {"detail": f"fake error: {error!r}"})
                return
            self.reply(status, answer)

        def record(self, method: str, path: str) -> None:
            with state.lock:
                state.requests.append({"method": method, "path": path})

        def authenticate(self, route: str, query: dict[str, str]) -> None:
            key = self.headers.get("x-api-key") or query.get("x-api-key")
            if not key:
                raise ApiError(403, MISSING_KEY)
            if key not in state.api_keys:
                # The run routes check keys with api_key_security, the others as a user.
                raise ApiError(
                    403,
                    "Invalid or missing API key"
                    if route.startswith(("/run/", "/webhook/"))
                    else "Invalid API key",
                )

        def route(self, method: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
            if path == "/health":
                return 200, {"status": "ok"}
            if path == "/__requests__":
                with state.lock:
                    if method == "DELETE":
                        state.requests = []
                    requests = list(state.requests)
                counts = Counter(f"{r['method']} {r['path']}" for r in requests)
                return 200, {"requests": requests, "counts": counts}
            if path == "/__control__" and method == "POST":
                body = self.body() or {}
                with state.lock:
                    if "page_size" in body:
                        state.page_size = body["page_size"]
                    if "unowned_flow" in body:  # AUTO_LOGIN also lists flows without owner
                        flow_id = str(uuid.uuid4())
                        state.flows[flow_id] = state.flow_record(
                            flow_id, body["unowned_flow"], None, DEFAULT_FOLDER_ID
                        )
                return 200, {"page_size": state.page_size}
            if path == "/__reset__" and method == "POST":
                with state.lock:
                    state.reset()
                return 200, {}
            if not path.startswith(API):
                raise ApiError(404, "Not Found")
            route = path[len(API) :]
            generic = re.sub(r"^/(run|webhook|flows)/[^/]+$", r"/\1/*", route)
            self.record(method, API + generic)
            if route == "/auto_login" and method == "GET":
                token = secrets.token_urlsafe(16)
                with state.lock:
                    state.tokens.add(token)
                return 200, {"access_token": token, "refresh_token": None, "token_type": "bearer"}
            if route == "/api_key/" and method == "POST":
                bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if bearer not in state.tokens:
                    raise ApiError(401, "Could not validate credentials")
                body = self.body() or {}
                key = "sk-" + secrets.token_urlsafe(24)
                with state.lock:
                    state.api_keys.add(key)
                return 200, {
                    "name": body.get("name"),
                    "id": str(uuid.uuid4()),
                    "api_key": key,
                    "created_at": now(),
                    "last_used_at": None,
                    "total_uses": 0,
                    "is_active": True,
                    "user_id": USER_ID,
                }
            self.authenticate(route, query)
            with state.lock:
                return self.api(method, route, query)

        def api(self, method: str, route: str, query: dict[str, str]) -> tuple[int, Any]:
            if route == "/flows/" and method == "GET":
                return 200, self.list_flows(query)
            if route == "/flows/" and method == "POST":
                body = self.body()
                if not isinstance(body, dict) or not body.get("name"):
                    raise ApiError(
                        422,
                        [{"type": "missing", "loc": ["body", "name"], "msg": "Field required"}],
                    )
                flow_id = str(uuid.uuid4())
                body = {**body, "name": state.unique_name(body["name"])}
                if body.get("endpoint_name"):
                    body["endpoint_name"] = state.unique_endpoint(body["endpoint_name"])
                record = state.flow_record(
                    flow_id, body, USER_ID, body.get("folder_id") or DEFAULT_FOLDER_ID
                )
                state.flows[flow_id] = record
                return 201, record
            match = re.match(r"^/flows/([^/]+)$", route)
            if match:
                flow_id = uuid_or_422(unquote(match.group(1)))
                flow = state.flows.get(flow_id)
                if flow is None or flow["user_id"] not in (USER_ID, None):
                    raise ApiError(404, "Flow not found")
                if method == "GET":
                    return 200, flow
                if method == "PATCH":
                    body = self.body() or {}
                    for key in ("description", "data", "folder_id", "locked"):
                        if key in body:
                            flow[key] = body[key]
                    if body.get("name"):
                        flow["name"] = state.unique_name(body["name"], skip=flow_id)
                    if "endpoint_name" in body:
                        flow["endpoint_name"] = body["endpoint_name"] and state.unique_endpoint(
                            body["endpoint_name"], skip=flow_id
                        )
                    flow["updated_at"] = now()
                    return 200, flow
                if method == "DELETE":
                    del state.flows[flow_id]
                    return 200, {"message": "Flow deleted successfully"}
            match = re.match(r"^/(run|webhook)/([^/]+)$", route)
            if match and method == "POST":
                flow = self.find_flow(unquote(match.group(2)))
                body = self.body() or {}
                if match.group(1) == "webhook":
                    return 202, {
                        "message": "Task started in the background",
                        "status": "in progress",
                    }
                if not isinstance(body, dict):
                    raise ApiError(422, [{"type": "dict_type", "loc": ["body"], "msg": "bad"}])
                return 200, run_graph(flow, body)
            raise ApiError(405 if route.startswith("/flows") else 404, "Not Found")

        def find_flow(self, identifier: str) -> dict[str, Any]:
            try:
                flow = state.flows.get(str(uuid.UUID(identifier)))
            except ValueError:
                flow = next(
                    (
                        f
                        for f in state.flows.values()
                        if f["endpoint_name"] == identifier and f["user_id"] == USER_ID
                    ),
                    None,
                )
            if flow is None:
                raise ApiError(404, f"Flow identifier {identifier} not found")
            return flow

        def list_flows(self, query: dict[str, str]) -> Any:
            flows = [f for f in state.flows.values() if f["user_id"] in (USER_ID, None)]
            if flag(query, "remove_example_flows", False):
                flows = [f for f in flows if f["folder_id"] != STARTER_FOLDER_ID]
            if flag(query, "components_only", False):
                flows = [f for f in flows if f["is_component"]]
            shape = header_of if flag(query, "header_flows", False) else dict
            page_size = state.page_size
            if flag(query, "get_all", True) and page_size is None:
                return [shape(f) for f in flows]
            # fastapi-pagination's Page of the default folder's flows.
            if page_size is None:
                flows = [
                    f for f in flows if f["folder_id"] == query.get("folder_id", DEFAULT_FOLDER_ID)
                ]
            size = int(query.get("size") or page_size or 50)
            page = int(query.get("page") or 1)
            items = flows[(page - 1) * size : page * size]
            return {
                "items": [shape(f) for f in items],
                "total": len(flows),
                "page": page,
                "size": size,
                "pages": max(1, math.ceil(len(flows) / size)),
            }

        def do_GET(self) -> None:
            self.handle_any("GET")

        def do_POST(self) -> None:
            self.handle_any("POST")

        def do_PATCH(self) -> None:
            self.handle_any("PATCH")

        def do_DELETE(self) -> None:
            self.handle_any("DELETE")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", action="append", default=[])
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(State(args.api_key)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

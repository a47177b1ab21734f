"""A loopback fake of the Cloud Quotas v1 REST API (nothing else emulates it).

Run: ``python gcp_quota_fake.py --port P``. It speaks the real v1 shapes for the
calls MagicFlow makes, for project parents and the ``global`` location:

* ``GET  /v1/projects/{p}/locations/global/services/{service}/quotaInfos[/{quotaId}]``
* ``GET  /v1/projects/{p}/locations/global/quotaPreferences[/{id}]`` (``pageSize``,
  ``pageToken``; the default page is small so that clients must follow pages)
* ``POST /v1/projects/{p}/locations/global/quotaPreferences?quotaPreferenceId=``
* ``PATCH /v1/projects/{p}/locations/global/quotaPreferences/{id}?updateMask=&allowMissing=``
  (an ``etag`` that does not match answers 409 ABORTED)

int64 fields are JSON strings, as in proto3 JSON; errors use Google's envelope
``{"error": {"code", "message", "status"}}``. How a new or raised preference is
decided depends on how its quota was seeded:

* by default it stays ``reconciling`` with no granted value, like one under review;
* ``autoApprove``: granted in full at once (the quota's value follows);
* ``grantUpTo: N``: decided at once, granted ``min(preferred, N)`` (partially granted
  when that is less; the quota's value follows);
* ``deny``: decided at once and denied: ``grantedValue`` is the value in force,
  which does not change.

A decided preference has ``reconciling: false`` and a ``stateDetail`` saying what
was decided, as Cloud Quotas reports it.

Test-only endpoints:

* ``POST /__fake__/quotaInfos`` ``{"project", "autoApprove", "grantUpTo", "deny",
  "quotaInfo": {...}}`` seeds (or replaces) a QuotaInfo and how its preferences are
  decided; ``name``, ``service`` and ``quotaId`` must be set in it or derivable
  (``service`` and ``quotaId`` are required).
* ``POST /__fake__/quotaPreferences`` ``{"project", "quotaPreference": {...}}``
  seeds a preference as is (``name`` required).
* ``POST /__fake__/reset`` forgets everything; ``GET /__fake__/health`` answers 200.
"""

import argparse
import copy
import json
import re
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PAGE_SIZE = 2
PARENT = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
FORBIDDEN_DIMENSIONS = {"user", "resource"}
STATUS_NAMES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}


class ApiError(Exception):
    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_NAMES.get(code, "UNKNOWN")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        # (project, service, quota_id) -> QuotaInfo JSON; and how its preferences are decided:
        # absent = left under review, else the most that is granted (None = all), or "deny".
        self.quota_infos: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.decisions: dict[tuple[str, str, str], int | str | None] = {}
        # (project, preference_id) -> QuotaPreference JSON, in creation order.
        self.preferences: dict[tuple[str, str], dict[str, Any]] = {}

    # --- quota infos ---

    def quota_info(self, project: str, service: str, quota_id: str) -> dict[str, Any]:
        info = self.quota_infos.get((project, service, quota_id))
        if info is None:
            raise ApiError(404, f"QuotaInfo {quota_id} of service {service} not found.")
        return info

    def seed_quota_info(self, body: dict[str, Any]) -> dict[str, Any]:
        project = body["project"]
        info = copy.deepcopy(body["quotaInfo"])
        key = (project, info["service"], info["quotaId"])
        info.setdefault(
            "name",
            f"projects/{project}/locations/global/services/{key[1]}/quotaInfos/{key[2]}",
        )
        for dimensions_info in info.get("dimensionsInfos", []):
            details = dimensions_info.setdefault("details", {})
            details["value"] = str(details.get("value", "0"))
        self.quota_infos[key] = info
        self.decisions.pop(key, None)
        if body.get("deny"):
            self.decisions[key] = "deny"
        elif body.get("grantUpTo") is not None:
            self.decisions[key] = int(body["grantUpTo"])
        elif body.get("autoApprove"):
            self.decisions[key] = None
        return info

    # --- preferences ---

    def list_preferences(self, project: str) -> list[dict[str, Any]]:
        return [pref for (owner, _), pref in self.preferences.items() if owner == project]

    def preference(self, project: str, preference_id: str) -> dict[str, Any]:
        pref = self.preferences.get((project, preference_id))
        if pref is None:
            raise ApiError(404, f"QuotaPreference {preference_id} not found.")
        return pref

    def create_preference(
        self, project: str, preference_id: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        for field in ("service", "quotaId"):
            if not body.get(field):
                raise ApiError(400, f"Field {field} is required.")
        preferred = preferred_value(body)
        dimensions = dict(body.get("dimensions") or {})
        forbidden = FORBIDDEN_DIMENSIONS & set(dimensions)
        if forbidden:
            raise ApiError(400, f"Dimensions {sorted(forbidden)} cannot be set.")
        info = self.quota_info(project, body["service"], body["quotaId"])
        unknown = set(dimensions) - set(info.get("dimensions", []))
        if unknown:
            raise ApiError(400, f"Unknown dimensions {sorted(unknown)}.")
        for pref in self.list_preferences(project):
            if (pref["service"], pref["quotaId"], pref.get("dimensions", {})) == (
                body["service"],
                body["quotaId"],
                dimensions,
            ):
                raise ApiError(409, f"A preference for these dimensions exists: {pref['name']}.")
        preference_id = preference_id or f"pref-{uuid.uuid4().hex[:12]}"
        if (project, preference_id) in self.preferences:
            raise ApiError(409, f"QuotaPreference {preference_id} already exists.")
        stamp = now()
        pref = {
            "name": f"projects/{project}/locations/global/quotaPreferences/{preference_id}",
            "dimensions": dimensions,
            "quotaConfig": {"preferredValue": str(preferred), "annotations": {}},
            "createTime": stamp,
            "updateTime": stamp,
            "service": body["service"],
            "quotaId": body["quotaId"],
            "justification": body.get("justification", ""),
        }
        self.decide(project, pref)
        self.preferences[(project, preference_id)] = pref
        return pref

    def update_preference(
        self, project: str, preference_id: str, body: dict[str, Any], query: dict[str, str]
    ) -> dict[str, Any]:
        key = (project, preference_id)
        if key not in self.preferences:
            if query.get("allowMissing") == "true":
                return self.create_preference(project, preference_id, body)
            raise ApiError(404, f"QuotaPreference {preference_id} not found.")
        current = self.preferences[key]
        if body.get("etag") and body["etag"] != current["etag"]:
            raise ApiError(409, "The etag does not match: the preference changed.", "ABORTED")
        if "dimensions" in body and dict(body["dimensions"] or {}) != current["dimensions"]:
            raise ApiError(400, "Field dimensions is immutable.")
        mask = [p for p in query.get("updateMask", "").split(",") if p]
        masked = {camel(p) for p in mask} or {"quotaConfig", "justification"}
        updated = copy.deepcopy(current)
        if masked & {"quotaConfig", "quotaConfig.preferredValue"}:
            updated["quotaConfig"]["preferredValue"] = str(preferred_value(body))
        if "justification" in masked:
            updated["justification"] = body.get("justification", "")
        if query.get("validateOnly") == "true":
            return updated
        updated["updateTime"] = now()
        self.decide(project, updated)
        self.preferences[key] = updated
        return updated

    def decide(self, project: str, pref: dict[str, Any]) -> None:
        """Decides the preference as its quota was seeded, or leaves it under review."""
        key = (project, pref["service"], pref["quotaId"])
        config = pref["quotaConfig"]
        pref["etag"] = uuid.uuid4().hex
        if key not in self.decisions:
            config.pop("grantedValue", None)
            config["stateDetail"] = "Pending review."
            config["traceId"] = uuid.uuid4().hex
            pref["reconciling"] = True
            return
        decision = self.decisions[key]
        preferred = int(config["preferredValue"])
        pref["reconciling"] = False
        if decision == "deny":
            config["grantedValue"] = str(value_of(self.quota_infos[key], pref["dimensions"]))
            config["stateDetail"] = "Denied: the request was not approved."
            return
        granted = preferred if decision is None else min(preferred, int(decision))
        config["grantedValue"] = str(granted)
        config["stateDetail"] = (
            "Granted." if granted == preferred else f"Partially granted: {granted}."
        )
        set_value(self.quota_infos[key], pref["dimensions"], str(granted))


def camel(path: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


def preferred_value(body: dict[str, Any]) -> int:
    raw = (body.get("quotaConfig") or {}).get("preferredValue")
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, "Field quotaConfig.preferredValue is required.") from None
    if value < -1:
        raise ApiError(400, "quotaConfig.preferredValue must be >= -1.")
    return value


def value_of(info: dict[str, Any], dimensions: dict[str, str]) -> int:
    """The value in force for exactly these dimensions, else the quota's default (0 if none)."""
    default = 0
    for dimensions_info in info.get("dimensionsInfos", []):
        value = int(dimensions_info.get("details", {}).get("value", 0))
        if dimensions_info.get("dimensions", {}) == dimensions:
            return value
        if not dimensions_info.get("dimensions"):
            default = value
    return default


def set_value(info: dict[str, Any], dimensions: dict[str, str], value: str) -> None:
    for dimensions_info in info.setdefault("dimensionsInfos", []):
        if dimensions_info.get("dimensions", {}) == dimensions:
            dimensions_info["details"] = {"value": value}
            return
    locations = [dimensions.get("region") or dimensions.get("zone") or "global"]
    info["dimensionsInfos"].insert(
        0, {"dimensions": dimensions, "details": {"value": value}, "applicableLocations": locations}
    )


def page(items: list[dict[str, Any]], query: dict[str, str], key: str) -> dict[str, Any]:
    try:
        size = int(query.get("pageSize") or DEFAULT_PAGE_SIZE)
        start = int(query.get("pageToken") or 0)
    except ValueError:
        raise ApiError(400, "Invalid page size or page token.") from None
    chunk = items[start : start + size]
    body: dict[str, Any] = {key: chunk}
    if start + size < len(items):
        body["nextPageToken"] = str(start + size)
    return body


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    routes: list[tuple[str, re.Pattern[str], str]] = [
        ("GET", re.compile(PARENT + r"/services/(?P<service>[^/]+)/quotaInfos"), "list_infos"),
        (
            "GET",
            re.compile(PARENT + r"/services/(?P<service>[^/]+)/quotaInfos/(?P<quota_id>[^/]+)"),
            "get_info",
        ),
        ("GET", re.compile(PARENT + r"/quotaPreferences"), "list_prefs"),
        ("GET", re.compile(PARENT + r"/quotaPreferences/(?P<pref>[^/]+)"), "get_pref"),
        ("POST", re.compile(PARENT + r"/quotaPreferences"), "create_pref"),
        ("PATCH", re.compile(PARENT + r"/quotaPreferences/(?P<pref>[^/]+)"), "update_pref"),
    ]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return self._reply(400, envelope(ApiError(400, "Invalid JSON payload.")))
            try:
                with state.lock:
                    status, answer = self._route(url.path, query, body)
            except ApiError as error:
                return self._reply(error.code, envelope(error))
            return self._reply(status, answer)

        def _route(self, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
            if path.startswith("/__fake__/"):
                return self._control(path, body)
            for method, pattern, name in routes:
                match = pattern.fullmatch(path)
                if method == self.command and match:
                    params = {k: unquote(v) for k, v in match.groupdict().items()}
                    if params["location"] != "global":
                        raise ApiError(400, "The location must be global.")
                    return 200, getattr(self, name)(params, query, body)
            raise ApiError(404, f"No route for {self.command} {path}.")

        def _control(self, path: str, body: Any) -> tuple[int, Any]:
            if path == "/__fake__/health":
                return 200, {"ok": True}
            if self.command == "POST" and path == "/__fake__/reset":
                state.reset()
                return 200, {}
            if self.command == "POST" and path == "/__fake__/quotaInfos":
                return 200, state.seed_quota_info(body)
            if self.command == "POST" and path == "/__fake__/quotaPreferences":
                pref = copy.deepcopy(body["quotaPreference"])
                pref.setdefault("etag", uuid.uuid4().hex)
                state.preferences[(body["project"], pref["name"].rsplit("/", 1)[-1])] = pref
                return 200, pref
            raise ApiError(404, f"No fake control route {path}.")

        def list_infos(self, p: dict[str, str], q: dict[str, str], _: Any) -> Any:
            infos = [
                info
                for (project, service, _), info in state.quota_infos.items()
                if (project, service) == (p["project"], p["service"])
            ]
            return page(infos, q, "quotaInfos")

        def get_info(self, p: dict[str, str], _: dict[str, str], __: Any) -> Any:
            return state.quota_info(p["project"], p["service"], p["quota_id"])

        def list_prefs(self, p: dict[str, str], q: dict[str, str], _: Any) -> Any:
            return page(state.list_preferences(p["project"]), q, "quotaPreferences")

        def get_pref(self, p: dict[str, str], _: dict[str, str], __: Any) -> Any:
            return state.preference(p["project"], p["pref"])

        def create_pref(self, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
            return state.create_preference(p["project"], q.get("quotaPreferenceId"), body)

        def update_pref(self, p: dict[str, str], q: dict[str, str], body: Any) -> Any:
            return state.update_preference(p["project"], p["pref"], body, q)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

    return Handler


def envelope(error: ApiError) -> dict[str, Any]:
    return {"error": {"code": error.code, "message": error.message, "status": error.status}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(State()))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

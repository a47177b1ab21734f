"""An HTTP reverse proxy that can make chosen requests fail, to test retries for real.

Run: ``python fault_proxy.py --port P --upstream http://127.0.0.1:U``. Every request
is forwarded to the upstream server unchanged, except while a fault rule matches:

* ``POST /__faults__`` with ``{"status": 503, "count": 2, "method": "PUT",
  "path": "regex", "action": "CreateAlias", "body": "...", "content_type": "...",
  "delay": 0, "after": 0}`` makes the next ``count`` matching requests (``action``: an
  RPC action, see below; ``after``: let that many matching requests through first) answer
  ``status`` (or, with ``"status": 0``,
  sleep ``delay`` seconds and close the connection unanswered). With
  ``"truncate": N`` instead, the request is forwarded and the backend's answer is
  sent with its full ``Content-Length`` but only its first N body bytes, then
  the connection is closed: an answer cut short on the way.
* ``DELETE /__faults__`` removes all rules.
* ``GET /__faults__`` returns ``{"rules": [...], "injected": N, "forwarded": N}``.

It also records every request it forwards, so tests can count what a job really
sent to the backend (a job's own verdict is not evidence):

* ``GET /__requests__`` returns ``{"requests": [{"method", "path", "query",
  "action", "write", "started", "finished"}, ...]}`` in arrival order. ``started`` is
  when the request arrived and ``finished`` when the backend's answer was read (epoch
  seconds; ``finished`` is null while it is in flight), so a benchmark can see whether
  the requests of concurrent work overlap in time. ``action`` is the operation of an
  RPC-style API (AWS query protocol: the ``Action=`` form field; AWS JSON
  protocol: the ``X-Amz-Target`` header), else null. ``write`` says whether the
  request may change state: for an RPC action, any action not named like a read
  (`READ_ACTION_PREFIXES`); otherwise POST, PUT, PATCH and DELETE (`WRITE_METHODS`).
* ``DELETE /__requests__`` forgets the recorded requests.

Nothing of a request body is kept but the action name.

``--latency-ms N`` adds a fixed delay before each forwarded request (not to the
control endpoints), like the round trip to a cloud API: benchmarks put every
backend behind such a proxy to measure what a workflow's concurrency saves.
"""

import argparse
import http.client
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""HTTP methods that may change state (REST APIs)."""
READ_ACTION_PREFIXES = ("Get", "List", "Describe", "Head", "BatchGet", "Lookup", "Search", "Query")
"""An RPC action starting with one of these only reads (``GetRole``, ``DescribeKey``...)."""
MAX_RECORDED = 100_000


def rpc_action(headers: Any, body: bytes) -> str | None:
    """The operation of an AWS query- or JSON-protocol request, else None.

    Example:
        >>> rpc_action({"X-Amz-Target": "TrentService.CreateKey"}, b"")
        'CreateKey'
        >>> rpc_action({"Content-Type": "application/x-www-form-urlencoded"}, b"Action=GetRole&V=1")
        'GetRole'
    """
    target = headers.get("X-Amz-Target")
    if target:
        return str(target).rsplit(".", 1)[-1]
    if str(headers.get("Content-Type", "")).startswith("application/x-www-form-urlencoded"):
        for key, value in parse_qsl(body.decode(errors="replace")):
            if key == "Action":
                return value
    return None


def is_write(method: str, action: str | None) -> bool:
    """Whether a request may change the backend's state (see the module docstring).

    Example:
        >>> is_write("POST", "DescribeKey"), is_write("POST", "CreateAlias"), is_write("GET", None)
        (False, True, False)
    """
    if action is not None:
        return not action.startswith(READ_ACTION_PREFIXES)
    return method in WRITE_METHODS


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: list[dict[str, Any]] = []
        self.injected = 0
        self.forwarded = 0
        self.requests: list[dict[str, Any]] = []

    def record(self, method: str, target: str, action: str | None) -> dict[str, Any]:
        """Records a request on arrival; the caller sets ``finished`` when it is answered."""
        path, _, query = target.partition("?")
        entry = {
            "method": method,
            "path": path,
            "query": query,
            "action": action,
            "write": is_write(method, action),
            "started": time.time(),
            "finished": None,
        }
        with self.lock:
            if len(self.requests) < MAX_RECORDED:
                self.requests.append(entry)
        return entry

    def take_rule(self, method: str, path: str, action: str | None) -> dict[str, Any] | None:
        with self.lock:
            for rule in self.rules:
                if rule.get("method") not in (None, method):
                    continue
                if rule.get("action") not in (None, action):
                    continue
                if rule.get("path") and not re.search(rule["path"], path):
                    continue
                if rule.get("after", 0) > 0:  # let this many matching requests through first
                    rule["after"] -= 1
                    continue
                rule["count"] -= 1
                if rule["count"] <= 0:
                    self.rules.remove(rule)
                self.injected += 1
                return rule
            self.forwarded += 1
            return None


def make_handler(
    upstream: str, state: State, latency_seconds: float = 0.0
) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
            self.send_response(status)
            length = str(len(body))
            for key, value in headers:
                if key.lower() == "content-length" and self.command == "HEAD":
                    length = value  # a HEAD answer has no body but tells the object's length
                elif key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _control(self, body: bytes) -> None:
            if self.command == "POST":
                rule = {"count": 1, "status": 503, **json.loads(body)}
                with state.lock:
                    state.rules.append(rule)
            elif self.command == "DELETE":
                with state.lock:
                    state.rules.clear()
            with state.lock:
                report = {
                    "rules": state.rules,
                    "injected": state.injected,
                    "forwarded": state.forwarded,
                }
            self._reply(200, json.dumps(report).encode(), [("Content-Type", "application/json")])

        def _recorded(self) -> None:
            if self.command == "DELETE":
                with state.lock:
                    state.requests.clear()
            with state.lock:
                report = {"requests": [dict(entry) for entry in state.requests]}
            self._reply(200, json.dumps(report).encode(), [("Content-Type", "application/json")])

        def _handle(self) -> None:
            body = self._body()
            if self.path.startswith("/__faults__"):
                return self._control(body)
            if self.path.startswith("/__requests__"):
                return self._recorded()
            rule = state.take_rule(self.command, self.path, rpc_action(self.headers, body))
            if rule is not None and "truncate" in rule:
                return self._forward(body, truncate=int(rule["truncate"]))
            if rule is not None:
                time.sleep(rule.get("delay", 0))
                if rule["status"] == 0:
                    self.close_connection = True
                    return None
                content_type = rule.get("content_type", "application/json")
                payload = rule.get("body", json.dumps({"message": "injected fault"}))
                return self._reply(
                    rule["status"], payload.encode(), [("Content-Type", content_type)]
                )
            return self._forward(body)

        def _forward(self, body: bytes, truncate: int | None = None) -> None:
            entry = state.record(self.command, self.path, rpc_action(self.headers, body))
            if latency_seconds:
                time.sleep(latency_seconds)
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
            with state.lock:
                entry["finished"] = time.time()
            if truncate is None:
                return self._reply(response.status, data, response.getheaders())
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:truncate])
            self.wfile.flush()
            self.close_connection = True
            return None

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle
        do_LIST = _handle  # Vault lists with the LIST method

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added before each forwarded request"
    )
    args = parser.parse_args()
    handler = make_handler(args.upstream, State(), args.latency_ms / 1000)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

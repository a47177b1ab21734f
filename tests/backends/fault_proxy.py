"""An HTTP reverse proxy that can make chosen requests fail, to test retries for real.

Run: ``python fault_proxy.py --port P --upstream http://127.0.0.1:U``. Every request
is forwarded to the upstream server unchanged, except while a fault rule matches:

* ``POST /__faults__`` with ``{"status": 503, "count": 2, "method": "PUT",
  "path": "regex", "body": "...", "content_type": "...", "delay": 0}`` makes the
  next ``count`` matching requests answer ``status`` (or, with ``"status": 0``,
  sleep ``delay`` seconds and close the connection unanswered).
* ``DELETE /__faults__`` removes all rules.
* ``GET /__faults__`` returns ``{"rules": [...], "injected": N, "forwarded": N,
  "requests": [[method, path], ...]}``: every request received, in order (the last
  10,000), so a test can count the writes a client sent.
"""

import argparse
import http.client
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rules: list[dict[str, Any]] = []
        self.injected = 0
        self.forwarded = 0
        self.requests: list[tuple[str, str]] = []

    def take_rule(self, method: str, path: str) -> dict[str, Any] | None:
        with self.lock:
            self.requests = [*self.requests[-9_999:], (method, path)]
            for rule in self.rules:
                if rule.get("method") not in (None, method):
                    continue
                if rule.get("path") and not re.search(rule["path"], path):
                    continue
                rule["count"] -= 1
                if rule["count"] <= 0:
                    self.rules.remove(rule)
                self.injected += 1
                return rule
            self.forwarded += 1
            return None


def make_handler(upstream: str, state: State) -> type[BaseHTTPRequestHandler]:
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
            for key, value in headers:
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
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
                    "requests": state.requests,
                }
            self._reply(200, json.dumps(report).encode(), [("Content-Type", "application/json")])

        def _handle(self) -> None:
            body = self._body()
            if self.path.startswith("/__faults__"):
                return self._control(body)
            rule = state.take_rule(self.command, self.path)
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
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
            return self._reply(response.status, data, response.getheaders())

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.upstream, State()))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()

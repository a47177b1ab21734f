"""The fake GitLab's HTTP server: its routing table, request parsing and command line."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from deployments.fakes.gitlab.merge_requests import MergeRequestRoutes
from deployments.fakes.gitlab.model import (
    API_PREFIX,
    AUTO_APPROVER,
    ApiError,
    Request,
    Response,
)
from deployments.fakes.gitlab.projects import ProjectRoutes
from deployments.fakes.gitlab.repository import RepositoryRoutes


class GitLab(ProjectRoutes, RepositoryRoutes, MergeRequestRoutes):
    """All state, and one method per API route. Every call holds the lock."""


Handler = Callable[..., Response]
ROUTES: list[tuple[str, tuple[str, ...], str]] = [
    ("GET", ("user",), "get_user"),
    ("GET", ("version",), "get_version"),
    ("POST", ("projects",), "create_project"),
    ("GET", ("projects", "{project}"), "get_project"),
    ("POST", ("projects", "{project}", "fork"), "fork_project"),
    ("GET", ("projects", "{project}", "approvals"), "get_project_approvals"),
    ("POST", ("projects", "{project}", "approvals"), "set_project_approvals"),
    ("GET", ("projects", "{project}", "repository", "branches"), "list_branches"),
    ("POST", ("projects", "{project}", "repository", "branches"), "create_branch"),
    ("GET", ("projects", "{project}", "repository", "branches", "{branch}"), "get_branch"),
    ("DELETE", ("projects", "{project}", "repository", "branches", "{branch}"), "delete_branch"),
    ("GET", ("projects", "{project}", "repository", "commits"), "list_commits"),
    ("POST", ("projects", "{project}", "repository", "commits"), "create_commit"),
    ("GET", ("projects", "{project}", "repository", "commits", "{sha}"), "get_commit"),
    ("GET", ("projects", "{project}", "repository", "files", "{file_path}"), "get_file"),
    ("HEAD", ("projects", "{project}", "repository", "files", "{file_path}"), "get_file"),
    ("POST", ("projects", "{project}", "repository", "files", "{file_path}"), "write_file"),
    ("PUT", ("projects", "{project}", "repository", "files", "{file_path}"), "write_file"),
    ("DELETE", ("projects", "{project}", "repository", "files", "{file_path}"), "write_file"),
    ("GET", ("projects", "{project}", "repository", "files", "{file_path}", "raw"), "get_raw_file"),
    ("GET", ("projects", "{project}", "merge_requests"), "list_merge_requests"),
    ("POST", ("projects", "{project}", "merge_requests"), "create_merge_request"),
    ("GET", ("projects", "{project}", "merge_requests", "{iid}"), "get_merge_request"),
    ("PUT", ("projects", "{project}", "merge_requests", "{iid}"), "update_merge_request"),
    ("GET", ("projects", "{project}", "merge_requests", "{iid}", "approvals"), "get_approvals"),
    (
        "POST",
        ("projects", "{project}", "merge_requests", "{iid}", "approvals"),
        "set_approvals_required",
    ),
    (
        "GET",
        ("projects", "{project}", "merge_requests", "{iid}", "approval_state"),
        "get_approval_state",
    ),
    ("POST", ("projects", "{project}", "merge_requests", "{iid}", "approve"), "approve"),
    ("POST", ("projects", "{project}", "merge_requests", "{iid}", "unapprove"), "unapprove"),
    ("PUT", ("projects", "{project}", "merge_requests", "{iid}", "merge"), "merge"),
]


def match_route(method: str, segments: list[str]) -> tuple[str, dict[str, str]]:
    """The handler name and captured segments; raises 404/405 like GitLab's router."""
    path_matched = False
    for route_method, pattern, handler in ROUTES:
        if len(pattern) != len(segments):
            continue
        captures: dict[str, str] = {}
        for expected, actual in zip(pattern, segments, strict=True):
            if expected.startswith("{"):
                captures[expected[1:-1]] = actual
            elif expected != actual:
                break
        else:
            path_matched = True
            if route_method == method:
                return handler, captures
    if path_matched:
        raise ApiError(405, {"error": "405 Not Allowed"})
    raise ApiError(404, {"error": "404 Not Found"})


def parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    if content_type.startswith("application/json"):
        try:
            parsed = json.loads(body)
        except ValueError:
            raise ApiError(
                400, {"error": "The provided content-type 'application/json' is not supported."}
            ) from None
        return parsed if isinstance(parsed, dict) else {}
    if content_type.startswith("application/x-www-form-urlencoded"):
        return collect_params(parse_qsl(body.decode(), keep_blank_values=True))
    raise ApiError(415, {"error": f"The provided content-type '{content_type}' is not supported."})


def collect_params(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in pairs:
        if key.endswith("[]"):
            params.setdefault(key, []).append(value)
        else:
            params[key] = value
    return params


def make_handler(gitlab: GitLab) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "nginx"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def send(self, response: Response) -> None:
            if isinstance(response.body, bytes):
                payload = response.body
            elif response.body is None:
                payload = b""
            else:
                payload = json.dumps(response.body).encode()
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            if response.status != 204:
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD" and response.status != 204:
                self.wfile.write(payload)

        def handle_any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            raw_path, _, raw_query = self.path.partition("?")
            if raw_path == "/-/health":
                return self.send(Response(200, b"GitLab OK", content_type="text/plain"))
            if raw_path == "/-/fake/project" and self.command == "POST":
                try:
                    with gitlab.lock:
                        answer = gitlab.configure_project(json.loads(body or b"{}"))
                    return self.send(Response(200, answer))
                except ApiError as error:
                    return self.send(Response(error.status, error.body))
            try:
                if not raw_path.startswith(API_PREFIX):
                    raise ApiError(404, {"error": "404 Not Found"})
                # Split the RAW path first, so that %2F inside a segment stays in it.
                segments = [
                    unquote(part) for part in raw_path[len(API_PREFIX) :].strip("/").split("/")
                ]
                query = parse_qsl(raw_query, keep_blank_values=True)
                params = collect_params(query) | parse_body(
                    self.headers.get("Content-Type", ""), body
                )
                token = self.headers.get("PRIVATE-TOKEN")
                authorization = self.headers.get("Authorization", "")
                if token is None and authorization.startswith("Bearer "):
                    token = authorization[len("Bearer ") :]
                with gitlab.lock:
                    user = gitlab.authenticate(token, self.command)
                    handler, captures = match_route(self.command, segments)
                    request = Request(
                        method=self.command,
                        params=params,
                        user=user,
                        base_url=f"http://{self.headers.get('Host') or '127.0.0.1'}",
                        path=quote(raw_path, safe="/%"),
                        query=query,
                    )
                    response = getattr(gitlab, handler)(request, **captures)
            except ApiError as error:
                response = Response(error.status, error.body)
            return self.send(response)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = handle_any

    return RequestHandler


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deployments.fakes.gitlab",
        description="A stateful, in-memory fake of the GitLab REST API v4, for tests.",
    )
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument(
        "--auto-approve",
        action="store_true",
        help=f"{AUTO_APPROVER} approves every merge request as soon as it opens",
    )
    args = parser.parse_args()
    server = ThreadingHTTPServer(
        ("127.0.0.1", args.port), make_handler(GitLab(auto_approve=args.auto_approve))
    )
    server.daemon_threads = True
    server.serve_forever()

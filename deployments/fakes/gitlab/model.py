"""The fake GitLab's model: users, projects, commits, merge requests, requests and errors."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

API_PREFIX = "/api/v4/"
ROOT_TOKEN = "glpat-root"
READ_ONLY_PREFIX = "glpat-readonly-"
USER_TOKEN_PREFIX = "glpat-"
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PROJECT_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
DRAFT_TITLE = re.compile(r"^\s*(\[draft\]|\(draft\)|draft:|draft\s-\s|\[wip\]|wip:)", re.IGNORECASE)
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
AUTO_APPROVER = "auto-approver"
"""The user who approves every new merge request when the fake runs with --auto-approve."""
MR_STATES = {"opened", "closed", "merged", "locked", "all"}


class ApiError(Exception):
    """An error answer with GitLab's JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def not_found(what: str) -> ApiError:
    return ApiError(404, {"message": f"404 {what} Not Found"})


def bad_request(message: Any) -> ApiError:
    return ApiError(400, {"message": message})


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def blob_sha(content: bytes) -> str:
    """Git's blob object id, as GitLab reports in ``blob_id``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def valid_ref_name(name: str) -> bool:
    """Git's check-ref-format rules for a branch name (what GitLab enforces)."""
    if (
        not name
        or name in {"@", "HEAD"}
        or name.startswith(("-", "/"))
        or name.endswith(("/", ".", ".lock"))
    ):
        return False
    if any(part in name for part in ("..", "//", "@{", "\\")):
        return False
    if any(char in name for char in " ~^:?*[\x7f") or any(ord(char) < 32 for char in name):
        return False
    return not any(part.startswith(".") for part in name.split("/"))


def valid_file_path(path: str) -> bool:
    parts = path.split("/")
    return bool(path) and all(part not in {"", ".", ".."} for part in parts) and "\0" not in path


@dataclass
class User:
    id: int
    username: str
    name: str
    created_at: str = field(default_factory=now)

    def basic(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "name": self.name,
            "state": "active",
            "locked": False,
            "avatar_url": None,
            "web_url": f"{base_url}/{self.username}",
        }


@dataclass
class Commit:
    id: str
    seq: int
    parent_ids: list[str]
    tree: dict[str, bytes]
    message: str
    author: User
    author_name: str
    author_email: str
    created_at: str = field(default_factory=now)

    @property
    def title(self) -> str:
        return self.message.split("\n", 1)[0]


@dataclass
class MergeRequest:
    id: int
    iid: int
    title: str
    description: str
    source_branch: str
    target_branch: str
    author: User
    approvals_required: int
    remove_source_branch: bool
    state: str = "opened"
    approved_by: list[User] = field(default_factory=list)
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    merged_by: User | None = None
    merged_at: str | None = None
    merge_commit_sha: str | None = None
    closed_by: User | None = None
    closed_at: str | None = None
    merged_source_sha: str | None = None
    source_project_id: int | None = None  # None: the merge request's own project
    pending_reads: int = 0  # reads left that show mergeability still being computed


@dataclass
class Project:
    id: int
    name: str
    path: str
    description: str | None
    creator: User
    default_branch: str
    approvals_before_merge: int
    branches: dict[str, str] = field(default_factory=dict)
    merge_requests: dict[int, MergeRequest] = field(default_factory=dict)
    created_at: str = field(default_factory=now)
    last_activity_at: str = field(default_factory=now)
    namespace: str = "root"
    forked_from_id: int | None = None
    tier: str = "premium"  # or "free"
    reset_approvals_on_push: bool = True
    pending_status_reads: int = 0

    @property
    def full_path(self) -> str:
        return f"{self.namespace}/{self.path}"

    @property
    def premium(self) -> bool:
        return self.tier == "premium"


@dataclass
class Request:
    method: str
    params: dict[str, Any]
    user: User
    base_url: str
    path: str
    query: list[tuple[str, str]]


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def param(request: Request, name: str, required: bool = False, default: Any = None) -> Any:
    value = request.params.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, {"error": f"{name} is missing"})
        return default
    return value


def require(request: Request, *names: str) -> None:
    missing = [name for name in names if request.params.get(name) in (None, "")]
    if missing:
        raise ApiError(400, {"error": ", ".join(f"{name} is missing" for name in missing)})


def int_param(request: Request, name: str, default: int | None = None) -> int | None:
    value = request.params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ApiError(400, {"error": f"{name} is invalid"})
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, {"error": f"{name} is invalid"}) from None


def bool_param(request: Request, name: str, default: bool = False) -> bool:
    value = request.params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if str(value).lower() in {"true", "1", "yes"}:
        return True
    if str(value).lower() in {"false", "0", "no"}:
        return False
    raise ApiError(400, {"error": f"{name} is invalid"})

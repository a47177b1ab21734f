"""A stateful, in-memory fake of the GitLab REST API v4, for tests that cannot run GitLab.

Run: ``python -m deployments.fakes.gitlab --port P [--auto-approve]``. It answers
python-gitlab's real requests with GitLab's real response shapes, status codes and
error bodies, for the routes MagicFlow's GitLab jobs use:

* ``GET /user``, ``GET /version``; ``GET /-/health`` (no auth, for readiness).
* ``POST /projects`` (``name``/``path``, ``approvals_before_merge``,
  ``default_branch``): created under the ``root`` namespace with one branch
  (``main``) holding an initial commit; ``GET /projects/:id`` by numeric id or
  URL-encoded path (``root%2Frepo``).
* Branches: list, get, create (``branch``, ``ref``), delete.
* Files: ``GET|HEAD /repository/files/:path?ref=`` (base64 content, ``blob_id``,
  ``last_commit_id``, ``X-Gitlab-*`` headers), ``/raw``, and single-file
  ``POST|PUT|DELETE``.
* Commits: ``POST /repository/commits`` (``branch``, ``start_branch``,
  ``commit_message``, ``actions`` create/update/delete/move/chmod with
  ``content``/``encoding``/``last_commit_id``), list (``ref_name``, ``path``),
  ``GET /repository/commits/:sha`` (a sha, a prefix or a branch name).
* Merge requests: list (``state``, ``source_branch``, ``target_branch``,
  ``iids[]``), create, get, ``PUT`` (``title``, ``description``,
  ``target_branch``, ``state_event=close|reopen``), ``GET|POST /approvals``,
  ``GET /approval_state``, ``POST /approve`` and ``/unapprove`` (as the token's
  user; authors cannot approve their own merge request), ``PUT /merge``.

Authentication is the ``PRIVATE-TOKEN`` header (or ``Authorization: Bearer``):
``glpat-root`` is the administrator, ``glpat-<username>`` is that user (created
on first use), ``glpat-readonly-<username>`` is that user with read access only
(403 on every write); anything else is 401 ``{"message": "401 Unauthorized"}``.

The server routes on the raw request path, so ``%2F`` inside a project path,
file path or branch name stays one path segment, as in GitLab. Lists are
paginated with ``page``/``per_page`` and GitLab's ``X-Page``, ``X-Per-Page``,
``X-Next-Page``, ``X-Prev-Page``, ``X-Total``, ``X-Total-Pages`` and ``Link``
headers. A merge request merges only when it is open, not a draft, has commits,
no conflicts and enough approvals; otherwise ``PUT /merge`` answers 405 (or 406
``Branch cannot be merged`` for conflicts) like GitLab.

What differs between GitLab's tiers and over time is modelled too:

* Tiers (per project, Premium unless set): on Free, approvals are optional: the
  ``/approvals`` answer has no ``approvals_required``/``approvals_left``,
  ``approved`` means "someone approved", and approvals never block a merge.
* ``reset_approvals_on_push`` (Premium, on by default, ``GET|POST
  /projects/:id/approvals``): a push to a merge request's source branch removes
  its approvals.
* Right after a merge request is created, or a push to its branches, GitLab is
  still computing mergeability: with ``pending_status_reads`` set to N, the next N
  reads of it show ``detailed_merge_status`` ``preparing`` then ``checking``.
* Forks: ``POST /projects/:id/fork`` copies a project into the user's namespace;
  a merge request created in a fork with ``target_project_id`` lives in the target
  project with the fork as ``source_project_id``.

With ``--auto-approve`` (what ``magicflow up`` starts), the user ``auto-approver``
approves every merge request as soon as it is opened, so a runbook waiting at its
approval gate goes on at once; without it, someone must approve (``POST /approve``
as another user), as on a real GitLab.

TEST-ONLY control endpoint (GitLab has no such thing): ``POST /-/fake/project``
``{"project": "root/repo", "tier": "free", "pending_status_reads": 2}``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import difflib
import hashlib
import itertools
import json
import math
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

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


class GitLab:
    """All state, and one method per API route. Every call holds the lock."""

    def __init__(self, auto_approve: bool = False) -> None:
        self.auto_approve = auto_approve
        self.lock = threading.RLock()
        self.ids = itertools.count(1)
        self.commit_seq = itertools.count(1)
        self.users: dict[str, User] = {
            "root": User(id=next(self.ids), username="root", name="Administrator")
        }
        self.projects: dict[int, Project] = {}
        self.commits: dict[str, Commit] = {}
        self.mr_ids = itertools.count(1)

    # --- authentication -------------------------------------------------------------

    def authenticate(self, token: str | None, method: str) -> User:
        if not token or not token.startswith(USER_TOKEN_PREFIX):
            raise ApiError(401, {"message": "401 Unauthorized"})
        read_only = token.startswith(READ_ONLY_PREFIX)
        username = token[len(READ_ONLY_PREFIX if read_only else USER_TOKEN_PREFIX) :]
        if not USERNAME.match(username):
            raise ApiError(401, {"message": "401 Unauthorized"})
        user = self.users.get(username)
        if user is None:
            user = User(
                id=next(self.ids), username=username, name=username.replace(".", " ").title()
            )
            self.users[username] = user
        if read_only and method in WRITE_METHODS:
            raise ApiError(403, {"message": "403 Forbidden"})
        return user

    # --- lookups -------------------------------------------------------------------

    def project(self, key: str) -> Project:
        if key.isdigit() and int(key) in self.projects:
            return self.projects[int(key)]
        for project in self.projects.values():
            if project.full_path.lower() == key.lower():
                return project
        raise not_found("Project")

    def merge_request(self, project: Project, iid: str) -> MergeRequest:
        if not iid.isdigit():
            raise ApiError(400, {"error": "merge_request_iid is invalid"})
        mr = project.merge_requests.get(int(iid))
        if mr is None:
            raise not_found("Merge Request")
        return mr

    def resolve(self, project: Project, ref: str) -> Commit | None:
        """A branch name, a full commit sha or an unambiguous sha prefix."""
        if ref in project.branches:
            return self.commits[project.branches[ref]]
        if ref in self.commits and self.reachable_in(project, ref):
            return self.commits[ref]
        if len(ref) >= 4 and re.fullmatch(r"[0-9a-f]+", ref):
            found = [
                sha
                for sha in self.commits
                if sha.startswith(ref) and self.reachable_in(project, sha)
            ]
            if len(found) == 1:
                return self.commits[found[0]]
        return None

    def reachable_in(self, project: Project, sha: str) -> bool:
        return any(sha in self.ancestors(head) for head in project.branches.values()) or any(
            sha == mr.merged_source_sha for mr in project.merge_requests.values()
        )

    def ancestors(self, sha: str) -> set[str]:
        seen: set[str] = set()
        stack = [sha]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.commits[current].parent_ids)
        return seen

    def merge_base(self, left: str, right: str) -> Commit | None:
        common = self.ancestors(left) & self.ancestors(right)
        return max((self.commits[sha] for sha in common), key=lambda c: c.seq, default=None)

    def last_commit_for(self, head: Commit, path: str) -> Commit:
        """The newest commit reachable from head that changed path (first-parent walk)."""
        current = head
        while current.parent_ids:
            parent = self.commits[current.parent_ids[0]]
            if parent.tree.get(path) != current.tree.get(path):
                return current
            current = parent
        return current

    # --- JSON shapes ------------------------------------------------------------------

    def project_web_url(self, request: Request, project: Project) -> str:
        return f"{request.base_url}/{project.full_path}"

    def project_json(self, request: Request, project: Project) -> dict[str, Any]:
        web_url = self.project_web_url(request, project)
        host = urlsplit(request.base_url).netloc
        owner = self.users[project.namespace]
        return {
            "id": project.id,
            "description": project.description,
            "name": project.name,
            "name_with_namespace": f"{owner.name} / {project.name}",
            "path": project.path,
            "path_with_namespace": project.full_path,
            "created_at": project.created_at,
            "default_branch": project.default_branch,
            "tag_list": [],
            "topics": [],
            "ssh_url_to_repo": f"git@{host}:{project.full_path}.git",
            "http_url_to_repo": f"{web_url}.git",
            "web_url": web_url,
            "readme_url": f"{web_url}/-/blob/{project.default_branch}/README.md",
            "avatar_url": None,
            "forks_count": 0,
            "star_count": 0,
            "last_activity_at": project.last_activity_at,
            "namespace": {
                "id": owner.id,
                "name": owner.name,
                "path": owner.username,
                "kind": "user",
                "full_path": owner.username,
                "parent_id": None,
                "avatar_url": None,
                "web_url": f"{request.base_url}/{owner.username}",
            },
            "forked_from_project": (
                {"id": project.forked_from_id} if project.forked_from_id is not None else None
            ),
            "visibility": "private",
            "empty_repo": False,
            "archived": False,
            "merge_requests_enabled": True,
            "merge_method": "merge",
            "approvals_before_merge": project.approvals_before_merge if project.premium else None,
            "only_allow_merge_if_pipeline_succeeds": False,
            "remove_source_branch_after_merge": True,
            "creator_id": project.creator.id,
        }

    def commit_json(self, request: Request, project: Project, commit: Commit) -> dict[str, Any]:
        return {
            "id": commit.id,
            "short_id": commit.id[:8],
            "created_at": commit.created_at,
            "parent_ids": list(commit.parent_ids),
            "title": commit.title,
            "message": commit.message,
            "author_name": commit.author_name,
            "author_email": commit.author_email,
            "authored_date": commit.created_at,
            "committer_name": commit.author_name,
            "committer_email": commit.author_email,
            "committed_date": commit.created_at,
            "trailers": {},
            "extended_trailers": {},
            "web_url": f"{self.project_web_url(request, project)}/-/commit/{commit.id}",
        }

    def commit_detail_json(
        self, request: Request, project: Project, commit: Commit
    ) -> dict[str, Any]:
        parent = self.commits[commit.parent_ids[0]].tree if commit.parent_ids else {}
        additions = deletions = 0
        for path in set(parent) | set(commit.tree):
            old = parent.get(path, b"").decode(errors="replace").splitlines()
            new = commit.tree.get(path, b"").decode(errors="replace").splitlines()
            for line in difflib.ndiff(old, new):
                additions += line.startswith("+ ")
                deletions += line.startswith("- ")
        return {
            **self.commit_json(request, project, commit),
            "stats": {
                "additions": additions,
                "deletions": deletions,
                "total": additions + deletions,
            },
            "status": None,
            "project_id": project.id,
            "last_pipeline": None,
        }

    def branch_json(self, request: Request, project: Project, name: str) -> dict[str, Any]:
        head = project.branches[name]
        default_head = project.branches.get(project.default_branch)
        merged = (
            name != project.default_branch
            and default_head is not None
            and head in self.ancestors(default_head)
        )
        return {
            "name": name,
            "commit": self.commit_json(request, project, self.commits[head]),
            "merged": merged,
            "protected": name == project.default_branch,
            "developers_can_push": False,
            "developers_can_merge": False,
            "can_push": True,
            "default": name == project.default_branch,
            "web_url": f"{self.project_web_url(request, project)}/-/tree/{name}",
        }

    def source_project(self, project: Project, mr: MergeRequest) -> Project:
        """The project holding the merge request's source branch (a fork, or its own)."""
        if mr.source_project_id is None or mr.source_project_id == project.id:
            return project
        return self.projects[mr.source_project_id]

    def source_head(self, project: Project, mr: MergeRequest) -> str | None:
        return self.source_project(project, mr).branches.get(mr.source_branch)

    def conflicts(self, project: Project, mr: MergeRequest) -> tuple[dict[str, bytes], bool]:
        """The tree a merge would produce, and whether the branches conflict."""
        source = self.commits[self.source_head(project, mr) or ""]
        target = self.commits[project.branches[mr.target_branch]]
        base = self.merge_base(source.id, target.id)
        base_tree = base.tree if base else {}
        merged: dict[str, bytes] = {}
        conflict = False
        for path in set(base_tree) | set(source.tree) | set(target.tree):
            ours, theirs, old = target.tree.get(path), source.tree.get(path), base_tree.get(path)
            if ours == theirs or theirs == old:
                result = ours
            elif ours == old:
                result = theirs
            else:
                conflict, result = True, ours
            if result is not None:
                merged[path] = result
        return merged, conflict

    def detailed_merge_status(self, project: Project, mr: MergeRequest) -> str:
        if mr.state != "opened":
            return "not_open"
        if DRAFT_TITLE.match(mr.title):
            return "draft_status"
        source = self.source_head(project, mr)
        if source is None or mr.target_branch not in project.branches:
            return "broken_status"
        target = project.branches[mr.target_branch]
        if source in self.ancestors(target):
            return "commits_status"
        if self.conflicts(project, mr)[1]:
            return "conflict"
        # On Free, approvals are optional: they never block a merge.
        if project.premium and len(mr.approved_by) < mr.approvals_required:
            return "not_approved"
        return "mergeable"

    def pushed(self, project: Project, branch: str) -> None:
        """What GitLab does to open merge requests when a branch they use gets new commits."""
        for target in self.projects.values():
            for mr in target.merge_requests.values():
                if mr.state != "opened":
                    continue
                is_source = (
                    self.source_project(target, mr) is project and mr.source_branch == branch
                )
                is_target = target is project and mr.target_branch == branch
                if is_source and target.premium and target.reset_approvals_on_push:
                    mr.approved_by.clear()
                if is_source or is_target:
                    mr.pending_reads = target.pending_status_reads

    def mr_json(
        self, request: Request, project: Project, mr: MergeRequest, read: bool = False
    ) -> dict[str, Any]:
        """The merge request's JSON; `read` counts a client's read of it (pending statuses)."""
        status = self.detailed_merge_status(project, mr)
        if mr.pending_reads and mr.state == "opened":
            status = "preparing" if mr.pending_reads > 1 else "checking"
            if read:
                mr.pending_reads -= 1
        source_sha = self.source_head(project, mr) or mr.merged_source_sha
        target_sha = project.branches.get(mr.target_branch)
        base = self.merge_base(source_sha, target_sha) if source_sha and target_sha else None
        user = lambda u: u.basic(request.base_url) if u else None  # noqa: E731
        draft = bool(DRAFT_TITLE.match(mr.title))
        return {
            "id": mr.id,
            "iid": mr.iid,
            "project_id": project.id,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "created_at": mr.created_at,
            "updated_at": mr.updated_at,
            "merged_by": user(mr.merged_by),
            "merge_user": user(mr.merged_by),
            "merged_at": mr.merged_at,
            "closed_by": user(mr.closed_by),
            "closed_at": mr.closed_at,
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "user_notes_count": 0,
            "upvotes": 0,
            "downvotes": 0,
            "author": user(mr.author),
            "assignees": [],
            "assignee": None,
            "reviewers": [],
            "source_project_id": self.source_project(project, mr).id,
            "target_project_id": project.id,
            "labels": [],
            "draft": draft,
            "work_in_progress": draft,
            "milestone": None,
            "merge_when_pipeline_succeeds": False,
            "merge_status": (
                "checking"
                if status in ("preparing", "checking")
                else "cannot_be_merged"
                if status == "conflict"
                else "can_be_merged"
            ),
            "detailed_merge_status": status,
            "sha": source_sha,
            "merge_commit_sha": mr.merge_commit_sha,
            "squash_commit_sha": None,
            "discussion_locked": None,
            "should_remove_source_branch": None,
            "force_remove_source_branch": mr.remove_source_branch,
            "prepared_at": mr.created_at,
            "reference": f"!{mr.iid}",
            "references": {
                "short": f"!{mr.iid}",
                "relative": f"!{mr.iid}",
                "full": f"{project.full_path}!{mr.iid}",
            },
            "web_url": f"{self.project_web_url(request, project)}/-/merge_requests/{mr.iid}",
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": None,
                "human_total_time_spent": None,
            },
            "squash": False,
            "squash_on_merge": False,
            "task_completion_status": {"count": 0, "completed_count": 0},
            "has_conflicts": status == "conflict",
            "blocking_discussions_resolved": True,
            "approvals_before_merge": mr.approvals_required if project.premium else None,
            "diff_refs": {
                "base_sha": base.id if base else None,
                "head_sha": source_sha,
                "start_sha": target_sha,
            },
            "first_contribution": False,
            "user": {"can_merge": True},
        }

    def approvals_json(
        self, request: Request, project: Project, mr: MergeRequest
    ) -> dict[str, Any]:
        left = max(0, mr.approvals_required - len(mr.approved_by))
        merge_request = self.mr_json(request, project, mr)
        shared = ("id", "iid", "project_id", "title", "description", "state", "created_at",
                  "updated_at", "merge_status")  # fmt: skip
        if not project.premium:
            # GitLab Free: optional approvals, no counters; "approved" = someone approved.
            return {
                **{key: merge_request[key] for key in shared},
                "approved": bool(mr.approved_by),
                "approved_by": [{"user": u.basic(request.base_url)} for u in mr.approved_by],
                "user_has_approved": request.user in mr.approved_by,
                "user_can_approve": self.can_approve(request.user, mr),
            }
        return {
            **{key: merge_request[key] for key in shared},
            "approved": left == 0,
            "approvals_required": mr.approvals_required,
            "approvals_left": left,
            "require_password_to_approve": False,
            "approved_by": [{"user": user.basic(request.base_url)} for user in mr.approved_by],
            "suggested_approvers": [],
            "approvers": [],
            "approver_groups": [],
            "user_has_approved": request.user in mr.approved_by,
            "user_can_approve": self.can_approve(request.user, mr),
            "approval_rules_left": [{"id": 1, "name": "All Members", "rule_type": "any_approver"}]
            if left
            else [],
            "has_approval_rules": mr.approvals_required > 0,
            "merge_request_approvers_available": True,
            "multiple_approval_rules_available": True,
            "invalid_approvers_rules": [],
        }

    @staticmethod
    def can_approve(user: User, mr: MergeRequest) -> bool:
        # GitLab's default "prevent approval by author" and one approval per user.
        return mr.state == "opened" and user != mr.author and user not in mr.approved_by

    # --- pagination -----------------------------------------------------------------------

    def paginate(self, request: Request, items: list[Any]) -> Response:
        page = max(1, int_param(request, "page", 1) or 1)
        per_page = min(100, max(1, int_param(request, "per_page", 20) or 20))
        total_pages = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]

        def link(number: int) -> str:
            query = [(k, v) for k, v in request.query if k not in {"page", "per_page"}]
            query += [("page", str(number)), ("per_page", str(per_page))]
            return f"{request.base_url}{request.path}?{urlencode(query)}"

        links = []
        if page > 1:
            links.append(f'<{link(page - 1)}>; rel="prev"')
        if page < total_pages:
            links.append(f'<{link(page + 1)}>; rel="next"')
        links += [f'<{link(1)}>; rel="first"', f'<{link(total_pages)}>; rel="last"']
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(len(items)),
            "X-Total-Pages": str(total_pages),
            "X-Next-Page": str(page + 1) if page < total_pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
            "Link": ", ".join(links),
        }
        return Response(200, chunk, headers)

    # --- users ------------------------------------------------------------------------------

    def get_user(self, request: Request) -> Response:
        user = request.user
        return Response(
            200,
            {
                **user.basic(request.base_url),
                "created_at": user.created_at,
                "bio": "",
                "public_email": None,
                "email": f"{user.username}@example.com",
                "is_admin": user.username == "root",
                "can_create_project": True,
            },
        )

    def get_version(self, request: Request) -> Response:
        return Response(200, {"version": "17.5.0-ee", "revision": "magicflow-fake"})

    # --- projects --------------------------------------------------------------------------

    def create_project(self, request: Request) -> Response:
        name, path = param(request, "name"), param(request, "path")
        if name is None and path is None:
            raise ApiError(
                400, {"error": "name, path are missing, at least one parameter must be provided"}
            )
        path = str(path or re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-").lower())
        name = str(name or path)
        if not PROJECT_PATH.match(path) or path.endswith((".git", ".atom")):
            raise bad_request(
                {
                    "path": [
                        "can contain only letters, digits, '_', '-' and '.'. "
                        "Cannot start with '-', end in '.git' or end in '.atom'"
                    ]
                }
            )
        taken = [
            p for p in self.projects.values() if p.path.lower() == path.lower() or p.name == name
        ]
        if taken:
            raise bad_request(
                {"name": ["has already been taken"], "path": ["has already been taken"]}
            )
        approvals = int_param(request, "approvals_before_merge", 0) or 0
        if approvals < 0:
            raise bad_request({"approvals_before_merge": ["must be greater than or equal to 0"]})
        default_branch = str(param(request, "default_branch", default="main"))
        if not valid_ref_name(default_branch):
            raise bad_request({"default_branch": ["is invalid"]})
        project = Project(
            id=next(self.ids),
            name=name,
            path=path,
            description=param(request, "description"),
            creator=request.user,
            default_branch=default_branch,
            approvals_before_merge=approvals,
        )
        initial = self.new_commit(
            [], {"README.md": f"# {name}\n".encode()}, "Initial commit", request.user
        )
        project.branches[default_branch] = initial.id
        self.projects[project.id] = project
        return Response(201, self.project_json(request, project))

    def get_project(self, request: Request, project: str) -> Response:
        return Response(200, self.project_json(request, self.project(project)))

    def fork_project(self, request: Request, project: str) -> Response:
        upstream = self.project(project)
        path = str(param(request, "path", default=upstream.path))
        namespace = request.user.username
        if any(
            p.full_path.lower() == f"{namespace}/{path}".lower() for p in self.projects.values()
        ):
            raise bad_request({"path": ["has already been taken"]})
        fork = Project(
            id=next(self.ids),
            name=str(param(request, "name", default=upstream.name)),
            path=path,
            description=upstream.description,
            creator=request.user,
            default_branch=upstream.default_branch,
            approvals_before_merge=upstream.approvals_before_merge,
            branches=dict(upstream.branches),
            namespace=namespace,
            forked_from_id=upstream.id,
            tier=upstream.tier,
        )
        self.projects[fork.id] = fork
        return Response(201, self.project_json(request, fork))

    def project_approvals_json(self, project: Project) -> dict[str, Any]:
        return {
            "approvers": [],
            "approver_groups": [],
            "approvals_before_merge": project.approvals_before_merge,
            "reset_approvals_on_push": project.reset_approvals_on_push,
            "disable_overriding_approvers_per_merge_request": False,
            "merge_requests_author_approval": False,
            "merge_requests_disable_committers_approval": False,
            "require_password_to_approve": False,
        }

    def get_project_approvals(self, request: Request, project: str) -> Response:
        return Response(200, self.project_approvals_json(self.project(project)))

    def set_project_approvals(self, request: Request, project: str) -> Response:
        found = self.project(project)
        if not found.premium:
            raise ApiError(403, {"message": "403 Forbidden"})
        if request.params.get("approvals_before_merge") is not None:
            found.approvals_before_merge = int_param(request, "approvals_before_merge") or 0
        if request.params.get("reset_approvals_on_push") is not None:
            found.reset_approvals_on_push = bool_param(request, "reset_approvals_on_push")
        return Response(201, self.project_approvals_json(found))

    def configure_project(self, params: dict[str, Any]) -> dict[str, Any]:
        """The test-only control endpoint: a project's tier and pending status reads."""
        found = self.project(str(params["project"]))
        if "tier" in params:
            if params["tier"] not in ("free", "premium"):
                raise bad_request("tier is free or premium")
            found.tier = str(params["tier"])
        if "pending_status_reads" in params:
            found.pending_status_reads = int(params["pending_status_reads"])
        return {"project": found.full_path, "tier": found.tier,
                "pending_status_reads": found.pending_status_reads}  # fmt: skip

    # --- branches --------------------------------------------------------------------------

    def list_branches(self, request: Request, project: str) -> Response:
        found = self.project(project)
        search = str(param(request, "search", default=""))
        names = sorted(name for name in found.branches if search.lower() in name.lower())
        response = self.paginate(request, names)
        response.body = [self.branch_json(request, found, name) for name in response.body]
        return response

    def get_branch(self, request: Request, project: str, branch: str) -> Response:
        found = self.project(project)
        if branch not in found.branches:
            raise not_found("Branch")
        return Response(200, self.branch_json(request, found, branch))

    def create_branch(self, request: Request, project: str) -> Response:
        found = self.project(project)
        require(request, "branch", "ref")
        name, ref = str(request.params["branch"]), str(request.params["ref"])
        if not valid_ref_name(name):
            raise bad_request("Branch name is invalid")
        if name in found.branches:
            raise bad_request("Branch already exists")
        commit = self.resolve(found, ref)
        if commit is None:
            raise bad_request(f"Invalid reference name: {ref}")
        found.branches[name] = commit.id
        found.last_activity_at = now()
        return Response(201, self.branch_json(request, found, name))

    def delete_branch(self, request: Request, project: str, branch: str) -> Response:
        found = self.project(project)
        if branch not in found.branches:
            raise not_found("Branch")
        if branch == found.default_branch:
            raise bad_request("The default branch of a project cannot be deleted.")
        del found.branches[branch]
        return Response(204)

    # --- commits -----------------------------------------------------------------------------

    def new_commit(
        self,
        parents: list[str],
        tree: dict[str, bytes],
        message: str,
        author: User,
        author_name: str | None = None,
        author_email: str | None = None,
    ) -> Commit:
        seq = next(self.commit_seq)
        digest = hashlib.sha1(
            json.dumps(
                [seq, parents, sorted((p, blob_sha(c)) for p, c in tree.items()), message]
            ).encode()
        ).hexdigest()
        commit = Commit(
            id=digest,
            seq=seq,
            parent_ids=parents,
            tree=tree,
            message=message,
            author=author,
            author_name=author_name or author.name,
            author_email=author_email or f"{author.username}@example.com",
        )
        self.commits[digest] = commit
        return commit

    def apply_actions(
        self, base: dict[str, bytes], head: Commit | None, actions: Any
    ) -> dict[str, bytes]:
        if not isinstance(actions, list) or not actions:
            raise ApiError(
                400, {"error": "actions is missing" if not actions else "actions is invalid"}
            )
        tree = dict(base)
        for index, action in enumerate(actions):
            if not isinstance(action, dict):
                raise ApiError(400, {"error": f"actions[{index}] is invalid"})
            kind = action.get("action")
            if kind not in {"create", "update", "delete", "move", "chmod"}:
                raise ApiError(
                    400, {"error": f"actions[{index}][action] does not have a valid value"}
                )
            path = action.get("file_path")
            if not path:
                raise ApiError(400, {"error": f"actions[{index}][file_path] is missing"})
            if not valid_file_path(str(path)):
                raise bad_request(
                    f"Your changes could not be committed, because the file path {path} is invalid"
                )
            encoding = action.get("encoding") or "text"
            if encoding not in {"text", "base64"}:
                raise ApiError(
                    400, {"error": f"actions[{index}][encoding] does not have a valid value"}
                )
            content: bytes | None = None
            if action.get("content") is not None:
                raw = str(action["content"])
                try:
                    content = (
                        base64.b64decode(raw, validate=True)
                        if encoding == "base64"
                        else raw.encode()
                    )
                except binascii.Error:
                    raise bad_request(
                        "Your changes could not be committed, "
                        "because the content is not valid base64"
                    ) from None
            last_commit_id = action.get("last_commit_id")
            if (
                kind in {"update", "delete", "move", "chmod"}
                and last_commit_id
                and head is not None
            ):
                source = str(action.get("previous_path") or path) if kind == "move" else str(path)
                if source in head.tree and self.last_commit_for(head, source).id != last_commit_id:
                    raise bad_request(
                        "You are attempting to update a file that has changed "
                        "since you started editing it."
                    )
            if kind == "create":
                if path in tree:
                    raise bad_request("A file with this name already exists")
                tree[path] = content or b""
            elif kind == "move":
                previous = action.get("previous_path")
                if not previous:
                    raise ApiError(400, {"error": f"actions[{index}][previous_path] is missing"})
                if previous not in tree:
                    raise bad_request("A file with this name doesn't exist")
                if path in tree:
                    raise bad_request("A file with this name already exists")
                old = tree.pop(previous)
                tree[path] = content if content is not None else old
            else:
                if path not in tree:
                    raise bad_request("A file with this name doesn't exist")
                if kind == "delete":
                    del tree[path]
                elif kind == "update":
                    tree[path] = content or b""
        return tree

    def commit_on_branch(self, request: Request, project: Project, actions: Any) -> Commit:
        """Commits actions on ``branch`` (made from ``start_branch`` when new)."""
        require(request, "branch", "commit_message")
        branch = str(request.params["branch"])
        start = param(request, "start_branch") or param(request, "start_sha")
        if start is not None and str(start) != branch:
            if not valid_ref_name(branch):
                raise bad_request("Branch name is invalid")
            if branch in project.branches and not bool_param(request, "force"):
                raise bad_request("Branch already exists")
            head = self.resolve(project, str(start))
            if head is None:
                raise bad_request(f"Invalid reference name: {start}")
        else:
            if branch not in project.branches:
                raise bad_request("You can only create or edit files when you are on a branch")
            head = self.commits[project.branches[branch]]
        tree = self.apply_actions(head.tree, head, actions)
        commit = self.new_commit(
            [head.id],
            tree,
            str(request.params["commit_message"]),
            request.user,
            param(request, "author_name"),
            param(request, "author_email"),
        )
        project.branches[branch] = commit.id
        project.last_activity_at = now()
        self.pushed(project, branch)
        return commit

    def create_commit(self, request: Request, project: str) -> Response:
        found = self.project(project)
        require(request, "branch", "commit_message", "actions")
        commit = self.commit_on_branch(request, found, request.params["actions"])
        return Response(201, self.commit_detail_json(request, found, commit))

    def list_commits(self, request: Request, project: str) -> Response:
        found = self.project(project)
        ref = str(param(request, "ref_name", default=found.default_branch))
        head = self.resolve(found, ref)
        if head is None:
            raise not_found("Commit")
        commits = sorted(
            (self.commits[sha] for sha in self.ancestors(head.id)), key=lambda c: -c.seq
        )
        path = param(request, "path")
        if path is not None:
            commits = [
                c
                for c in commits
                if c.tree.get(path)
                != (self.commits[c.parent_ids[0]].tree.get(path) if c.parent_ids else None)
            ]
        response = self.paginate(request, commits)
        response.body = [self.commit_json(request, found, c) for c in response.body]
        return response

    def get_commit(self, request: Request, project: str, sha: str) -> Response:
        found = self.project(project)
        commit = self.resolve(found, sha)
        if commit is None:
            raise not_found("Commit")
        return Response(200, self.commit_detail_json(request, found, commit))

    # --- files ---------------------------------------------------------------------------------

    def file_at(
        self, request: Request, project: Project, file_path: str, ref: str | None
    ) -> tuple[dict[str, Any], bytes]:
        head = self.resolve(project, ref or project.default_branch)
        if head is None:
            raise not_found("Commit")
        if file_path not in head.tree:
            raise not_found("File")
        content = head.tree[file_path]
        meta = {
            "file_name": file_path.rsplit("/", 1)[-1],
            "file_path": file_path,
            "size": len(content),
            "encoding": "base64",
            "content_sha256": hashlib.sha256(content).hexdigest(),
            "ref": ref or project.default_branch,
            "blob_id": blob_sha(content),
            "commit_id": head.id,
            "last_commit_id": self.last_commit_for(head, file_path).id,
            "execute_filemode": False,
        }
        return meta, content

    @staticmethod
    def file_headers(meta: dict[str, Any]) -> dict[str, str]:
        return {
            f"X-Gitlab-{key.title().replace('_', '-')}": json.dumps(value)
            if isinstance(value, bool)
            else str(value)
            for key, value in meta.items()
        }

    def get_file(self, request: Request, project: str, file_path: str) -> Response:
        require(request, "ref")
        meta, content = self.file_at(
            request, self.project(project), file_path, str(request.params["ref"])
        )
        body = {**meta, "content": base64.b64encode(content).decode()}
        return Response(200, body, self.file_headers(meta))

    def get_raw_file(self, request: Request, project: str, file_path: str) -> Response:
        ref = param(request, "ref")
        meta, content = self.file_at(request, self.project(project), file_path, ref)
        return Response(
            200, content, self.file_headers(meta), content_type="text/plain; charset=utf-8"
        )

    def write_file(self, request: Request, project: str, file_path: str) -> Response:
        found = self.project(project)
        kind = {"POST": "create", "PUT": "update", "DELETE": "delete"}[request.method]
        if kind != "delete":
            require(request, "branch", "content", "commit_message")
        action = {
            "action": kind,
            "file_path": file_path,
            "content": request.params.get("content"),
            "encoding": request.params.get("encoding"),
            "last_commit_id": request.params.get("last_commit_id"),
        }
        self.commit_on_branch(request, found, [action])
        if kind == "delete":
            return Response(204)
        return Response(
            201 if kind == "create" else 200,
            {"file_path": file_path, "branch": request.params["branch"]},
        )

    # --- merge requests ------------------------------------------------------------------------

    def list_merge_requests(self, request: Request, project: str) -> Response:
        found = self.project(project)
        state = str(param(request, "state", default="all"))
        if state not in MR_STATES:
            raise ApiError(400, {"error": "state does not have a valid value"})
        iids = request.params.get("iids[]") or request.params.get("iids")
        wanted_iids = (
            {int(i) for i in (iids if isinstance(iids, list) else [iids])} if iids else None
        )
        mrs = [
            mr
            for mr in found.merge_requests.values()
            if (state == "all" or mr.state == state)
            and param(request, "source_branch") in (None, mr.source_branch)
            and param(request, "target_branch") in (None, mr.target_branch)
            and (wanted_iids is None or mr.iid in wanted_iids)
            and str(param(request, "search", default="")).lower()
            in f"{mr.title}\n{mr.description}".lower()
        ]
        order_by = str(param(request, "order_by", default="created_at"))
        mrs.sort(key=lambda mr: (getattr(mr, order_by, mr.created_at), mr.id))
        if str(param(request, "sort", default="desc")) == "desc":
            mrs.reverse()
        response = self.paginate(request, mrs)
        response.body = [self.mr_json(request, found, mr, read=True) for mr in response.body]
        return response

    def check_open_duplicate(self, project: Project, mr: MergeRequest) -> None:
        source = self.source_project(project, mr)
        for other in project.merge_requests.values():
            if (
                other is not mr
                and other.state == "opened"
                and self.source_project(project, other) is source
                and (other.source_branch, other.target_branch)
                == (mr.source_branch, mr.target_branch)
            ):
                raise ApiError(
                    409,
                    {
                        "message": [
                            "Another open merge request already exists "
                            f"for this source branch: !{other.iid}"
                        ]
                    },
                )

    def create_merge_request(self, request: Request, project: str) -> Response:
        source_project = self.project(project)
        require(request, "source_branch", "target_branch", "title")
        source, target = str(request.params["source_branch"]), str(request.params["target_branch"])
        target_id = int_param(request, "target_project_id", source_project.id)
        if target_id not in self.projects:
            raise not_found("Project")
        found = self.projects[int(target_id or source_project.id)]
        title = str(request.params["title"]).strip()
        if source == target and found is source_project:
            raise ApiError(
                422, {"message": ["You can't use same project/branch for source and target"]}
            )
        if source not in source_project.branches:
            raise bad_request({"source_branch": ["does not exist"]})
        if target not in found.branches:
            raise bad_request({"target_branch": ["does not exist"]})
        approvals = int_param(request, "approvals_before_merge", found.approvals_before_merge)
        mr = MergeRequest(
            id=next(self.mr_ids),
            iid=max(found.merge_requests, default=0) + 1,
            title=title,
            description=str(param(request, "description", default="")),
            source_branch=source,
            target_branch=target,
            author=request.user,
            approvals_required=max(0, approvals or 0),
            remove_source_branch=bool_param(request, "remove_source_branch"),
            source_project_id=source_project.id,
            pending_reads=found.pending_status_reads,
        )
        self.check_open_duplicate(found, mr)
        found.merge_requests[mr.iid] = mr
        if self.auto_approve:
            mr.approved_by.append(self.authenticate(f"{USER_TOKEN_PREFIX}{AUTO_APPROVER}", "POST"))
        return Response(201, self.mr_json(request, found, mr))

    def get_merge_request(self, request: Request, project: str, iid: str) -> Response:
        found = self.project(project)
        mr = self.merge_request(found, iid)
        return Response(200, self.mr_json(request, found, mr, read=True))

    def update_merge_request(self, request: Request, project: str, iid: str) -> Response:
        found = self.project(project)
        mr = self.merge_request(found, iid)
        fields = (
            "title",
            "description",
            "state_event",
            "target_branch",
            "remove_source_branch",
            "labels",
        )
        if all(request.params.get(name) is None for name in fields):
            raise ApiError(
                400,
                {
                    "error": f"{', '.join(fields)} are missing, "
                    "at least one parameter must be provided"
                },
            )
        if request.params.get("title") is not None and not str(request.params["title"]).strip():
            raise bad_request({"title": ["can't be blank"]})
        state_event = param(request, "state_event")
        if state_event not in (None, "close", "reopen"):
            raise ApiError(400, {"error": "state_event does not have a valid value"})
        target = param(request, "target_branch")
        if target is not None and target not in found.branches:
            raise bad_request({"target_branch": ["does not exist"]})
        if state_event == "reopen" and mr.state == "closed":
            candidate = MergeRequest(**{**mr.__dict__, "target_branch": target or mr.target_branch})
            self.check_open_duplicate(found, candidate)
        if request.params.get("title") is not None:
            mr.title = str(request.params["title"]).strip()
        if request.params.get("description") is not None:
            mr.description = str(request.params["description"])
        if target is not None:
            mr.target_branch = str(target)
        if request.params.get("remove_source_branch") is not None:
            mr.remove_source_branch = bool_param(request, "remove_source_branch")
        # GitLab's state machine ignores transitions that do not apply (closing a merged MR).
        if state_event == "close" and mr.state == "opened":
            mr.state, mr.closed_by, mr.closed_at = "closed", request.user, now()
        elif state_event == "reopen" and mr.state == "closed":
            mr.state, mr.closed_by, mr.closed_at = "opened", None, None
        mr.updated_at = now()
        return Response(200, self.mr_json(request, found, mr))

    def get_approvals(self, request: Request, project: str, iid: str) -> Response:
        found = self.project(project)
        return Response(200, self.approvals_json(request, found, self.merge_request(found, iid)))

    def set_approvals_required(self, request: Request, project: str, iid: str) -> Response:
        found = self.project(project)
        mr = self.merge_request(found, iid)
        if not found.premium:
            raise ApiError(403, {"message": "403 Forbidden"})
        required = int_param(request, "approvals_required")
        if required is None:
            raise ApiError(400, {"error": "approvals_required is missing"})
        if required < 0:
            raise bad_request({"approvals_required": ["must be greater than or equal to 0"]})
        mr.approvals_required = required
        return Response(201, self.approvals_json(request, found, mr))

    def get_approval_state(self, request: Request, project: str, iid: str) -> Response:
        found = self.project(project)
        mr = self.merge_request(found, iid)
        approved_by = [user.basic(request.base_url) for user in mr.approved_by]
        rules = []
        if mr.approvals_required:
            rules.append(
                {
                    "id": 1,
                    "name": "All Members",
                    "rule_type": "any_approver",
                    "report_type": None,
                    "eligible_approvers": [],
                    "approvals_required": mr.approvals_required,
                    "users": [],
                    "groups": [],
                    "contains_hidden_groups": False,
                    "approved_by": approved_by,
                    "source_rule": None,
                    "approved": len(mr.approved_by) >= mr.approvals_required,
                    "overridden": mr.approvals_required != found.approvals_before_merge,
                    "code_owner": False,
                    "section": None,
                }
            )
        overwritten = mr.approvals_required != found.approvals_before_merge
        return Response(200, {"approval_rules_overwritten": overwritten, "rules": rules})

    def check_sha(self, request: Request, project: Project, mr: MergeRequest) -> None:
        sha = param(request, "sha")
        head = self.source_head(project, mr)
        if sha is not None and sha != head:
            raise ApiError(409, {"message": f"SHA does not match HEAD of source branch: {head}"})

    def approve(self, request: Request, project: str, iid: str) -> Response:
        found = self.project(project)
        mr = self.merge_request(found, iid)
        if not self.can_approve(request.user, mr):
            raise ApiError(401, {"message": "401 Unauthorized"})
        self.check_sha(request, found, mr)
        mr.approved_by.append(request.user)
        mr.updated_at = now()
        return Response(201, self.approvals_json(request, found, mr))

    def unapprove(self, request: Request, project: str, iid: str) -> Response:
        found = self.project(project)
        mr = self.merge_request(found, iid)
        if request.user not in mr.approved_by:
            raise ApiError(404, {"message": "404 Not Found"})
        mr.approved_by.remove(request.user)
        mr.updated_at = now()
        return Response(201, self.approvals_json(request, found, mr))

    def merge(self, request: Request, project: str, iid: str) -> Response:
        found = self.project(project)
        mr = self.merge_request(found, iid)
        status = self.detailed_merge_status(found, mr)
        if status == "conflict":
            raise ApiError(406, {"message": "Branch cannot be merged"})
        if status != "mergeable":
            raise ApiError(405, {"message": "405 Method Not Allowed"})
        self.check_sha(request, found, mr)
        tree, _ = self.conflicts(found, mr)
        source_sha, target_sha = self.source_head(found, mr), found.branches[mr.target_branch]
        assert source_sha is not None  # mergeable: the source branch exists
        message = param(request, "merge_commit_message") or (
            f"Merge branch '{mr.source_branch}' into '{mr.target_branch}'\n\n{mr.title}\n\n"
            f"See merge request {found.full_path}!{mr.iid}"
        )
        commit = self.new_commit([target_sha, source_sha], tree, str(message), request.user)
        found.branches[mr.target_branch] = commit.id
        mr.state, mr.merged_by, mr.merged_at = "merged", request.user, now()
        mr.merge_commit_sha, mr.merged_source_sha, mr.updated_at = commit.id, source_sha, now()
        if bool_param(request, "should_remove_source_branch", mr.remove_source_branch):
            self.source_project(found, mr).branches.pop(mr.source_branch, None)
        self.pushed(found, mr.target_branch)
        found.last_activity_at = now()
        return Response(200, self.mr_json(request, found, mr))


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
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


if __name__ == "__main__":
    main()

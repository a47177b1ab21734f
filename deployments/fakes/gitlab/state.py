"""The fake GitLab's state: lookups, the commit graph, and GitLab's JSON shapes.

`GitLabState` holds everything; the route mixins (`projects`, `repository`,
`merge_requests`) add one method per API route on top of it.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import re
import threading
from typing import Any
from urllib.parse import urlencode, urlsplit

from deployments.fakes.gitlab.model import (
    DRAFT_TITLE,
    READ_ONLY_PREFIX,
    USER_TOKEN_PREFIX,
    USERNAME,
    WRITE_METHODS,
    ApiError,
    Commit,
    MergeRequest,
    Project,
    Request,
    Response,
    User,
    blob_sha,
    int_param,
    not_found,
)


class GitLabState:
    """All the fake's state, its lookups and JSON shapes. Every call holds the lock."""

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

"""The fake GitLab's repository routes: branches, commits and files."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from deployments.fakes.gitlab.model import (
    ApiError,
    Commit,
    Project,
    Request,
    Response,
    bad_request,
    blob_sha,
    bool_param,
    not_found,
    now,
    param,
    require,
    valid_file_path,
    valid_ref_name,
)
from deployments.fakes.gitlab.state import GitLabState


class RepositoryRoutes(GitLabState):
    """Branches, commits (with their actions) and single files."""

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

"""The fake GitLab's routes for users, the version and projects (and forks and approval rules)."""

from __future__ import annotations

import re
from typing import Any

from deployments.fakes.gitlab.model import (
    PROJECT_PATH,
    ApiError,
    Project,
    Request,
    Response,
    bad_request,
    bool_param,
    int_param,
    param,
    valid_ref_name,
)
from deployments.fakes.gitlab.state import GitLabState


class ProjectRoutes(GitLabState):
    """Users, the version, projects, forks, approval rules and the test-only control."""

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

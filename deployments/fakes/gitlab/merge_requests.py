"""The fake GitLab's merge request routes: merge requests, their approvals and merges."""

from __future__ import annotations

from deployments.fakes.gitlab.model import (
    AUTO_APPROVER,
    MR_STATES,
    USER_TOKEN_PREFIX,
    ApiError,
    MergeRequest,
    Project,
    Request,
    Response,
    bad_request,
    bool_param,
    int_param,
    not_found,
    now,
    param,
    require,
)
from deployments.fakes.gitlab.state import GitLabState


class MergeRequestRoutes(GitLabState):
    """Merge requests, their approvals, approval state and merges."""

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

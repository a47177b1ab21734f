"""GitLab merge request jobs: open one, wait for its approval, merge it, close it."""

import re
import time
from typing import Any

from gitlab.v4.objects import Project
from pydantic import BaseModel, ConfigDict

from blocks import GitLabConnection
from magicflow import (
    Action,
    Change,
    ConflictError,
    DeadlineExceededError,
    InvalidInputError,
    NotFoundError,
    TransientError,
    job,
    job_logger,
    report,
)
from tasks.gitlab.session import (
    check_branch_name,
    check_iid,
    check_project_path,
    get_or_none,
    open_project,
    translated_errors,
)

_MAX_TITLE_LENGTH = 255
# detailed_merge_status values GitLab is still computing: worth a retry, not a failure.
_PENDING_MERGE_STATUSES = frozenset({"checking", "unchecked", "preparing", "approvals_syncing"})


class MergeRequestApproval(BaseModel):
    """Approval status of one merge request, as read from GitLab.

    GitLab Premium says how many approvals a merge request needs. GitLab Free has
    optional approvals only: its answer has no counters and nothing is required,
    so a merge request there is ``approved`` (needs no more approvals) at once;
    ``approvers`` still lists who approved.

    Attributes:
        resource: ``gitlab:project/<path>/merge_request/<iid>``.
        iid: The merge request's number in its project.
        state: ``opened``, ``closed``, ``locked`` or ``merged``.
        approved: True when no more approvals are required.
        approvals_required: How many approvals the merge request needs (0 on Free).
        approvals_left: How many approvals are still missing.
        approvers: Usernames of the users who approved, in approval order.
        head_sha: The source branch's head these approvals were read for: pass it to
            `merge_merge_request` as ``approved_sha`` so that a later push is not merged.
        web_url: The merge request's page.

    Example:
        >>> MergeRequestApproval(resource="gitlab:project/a/b/merge_request/1", iid=1,
        ...     state="opened", approved=False, approvals_required=1, approvals_left=1,
        ...     approvers=[], head_sha="0a1b2c", web_url="https://gitlab.example.com").approved
        False
    """

    model_config = ConfigDict(frozen=True)

    resource: str
    iid: int
    state: str
    approved: bool
    approvals_required: int
    approvals_left: int
    approvers: list[str]
    head_sha: str | None
    web_url: str


@job
def ensure_merge_request(
    gitlab: GitLabConnection | str,
    project: str,
    source_branch: str,
    target_branch: str,
    title: str,
    description: str = "",
    dry_run: bool = False,
) -> Change:
    """Ensures an open merge request from `source_branch` into `target_branch` with this text.

    The open merge request from this project's own `source_branch` to
    `target_branch` is reused (GitLab allows only one; a fork's merge request from a
    branch of the same name is not it); its title and description are updated when
    they differ.

    Args:
        gitlab: The GitLab connection, or the name of a saved one.
        project: Full path of the project, e.g. ``platform/tenants``.
        source_branch: Branch with the changes.
        target_branch: Branch to merge into.
        title: Title of the merge request (at most 255 characters).
        description: Description (Markdown).
        dry_run: Read only and report what would be done. A dry run does not
            fail on missing branches (an earlier dry-run job may not have made
            them); it lists them in ``detail["missing_branches"]``.

    Returns:
        A `Change` on ``gitlab:project/<project>/merge_request/<iid>``
        (``.../merge_request/<source>-><target>`` for one a dry run would
        create): ``created``, ``updated`` (detail ``changed`` lists the fields)
        or ``unchanged``; detail has ``iid`` and ``web_url`` once it exists.

    Raises:
        InvalidInputError: Malformed names, equal branches or a bad title.
        NotFoundError: The project or one of the branches does not exist.
        ConflictError: Someone opened the same merge request at the same moment.
        PermissionDeniedError: The token may not read or write merge requests.
        TransientError: GitLab is unreachable or failing (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.gitlab import ensure_merge_request

        @flow
        def propose_tenant():
            ensure_merge_request(
                "gitlab-prod",
                project="platform/tenants",
                source_branch="tenant/acme",
                target_branch="main",
                title="Add tenant acme",
            )
        ```
    """
    resource = f"gitlab:project/{project}/merge_request/{source_branch}->{target_branch}"
    check_project_path(project)
    check_branch_name(resource, source_branch, "source_branch")
    check_branch_name(resource, target_branch, "target_branch")
    if source_branch == target_branch:
        raise InvalidInputError(resource, "source_branch and target_branch must differ")
    if not title.strip() or len(title) > _MAX_TITLE_LENGTH:
        raise InvalidInputError(resource, f"title must have 1 to {_MAX_TITLE_LENGTH} characters")
    repo = open_project(gitlab, project)
    with translated_errors(resource):
        # A fork's merge request from a branch of the same name is listed too: only one
        # from this project's own branch is ours.
        open_requests = [
            merge_request
            for merge_request in repo.mergerequests.list(
                state="opened",
                source_branch=source_branch,
                target_branch=target_branch,
                get_all=True,
            )
            if merge_request.source_project_id == repo.id
        ]
        if not open_requests:
            missing = [
                b
                for b in (source_branch, target_branch)
                if get_or_none(repo.branches.get, b) is None
            ]
            if dry_run:
                detail: dict[str, Any] = {"missing_branches": missing} if missing else {}
                return report(
                    Change(resource=resource, action=Action.CREATED, dry_run=True, detail=detail)
                )
            if missing:
                raise NotFoundError(resource, f"branches do not exist: {', '.join(missing)}")
            created = repo.mergerequests.create(
                {
                    "source_branch": source_branch,
                    "target_branch": target_branch,
                    "title": title,
                    "description": description,
                }
            )
            return report(
                Change(
                    resource=f"gitlab:project/{project}/merge_request/{created.iid}",
                    action=Action.CREATED,
                    detail={"iid": created.iid, "web_url": created.web_url},
                )
            )
    merge_request = open_requests[0]
    resource = f"gitlab:project/{project}/merge_request/{merge_request.iid}"
    wanted = {"title": title, "description": description}
    changed = [
        name for name, value in wanted.items() if (getattr(merge_request, name) or "") != value
    ]
    detail = {"iid": merge_request.iid, "web_url": merge_request.web_url}
    if not changed:
        return report(
            Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail=detail)
        )
    detail["changed"] = changed
    if dry_run:
        return report(Change(resource=resource, action=Action.UPDATED, dry_run=True, detail=detail))
    with translated_errors(resource):
        for name in changed:
            setattr(merge_request, name, wanted[name])
        merge_request.save()
    return report(Change(resource=resource, action=Action.UPDATED, detail=detail))


_MAX_APPROVAL_READS = 5


def _read_approval(repo: Project, project: str, merge_request_iid: int) -> MergeRequestApproval:
    """Reads a merge request's approvals, and the source head they hold for.

    The merge request is read before and after its approvals; a push in between
    (which may reset the approvals) makes it read again, so ``head_sha`` is the head
    the approvals were given for.
    """
    resource = f"gitlab:project/{project}/merge_request/{merge_request_iid}"
    with translated_errors(resource):
        merge_request = repo.mergerequests.get(merge_request_iid)
        for _ in range(_MAX_APPROVAL_READS):
            approvals = merge_request.approvals.get()
            again = repo.mergerequests.get(merge_request_iid)
            stable = again.sha == merge_request.sha
            merge_request = again
            if stable:
                break
        else:
            raise TransientError(resource, "the source branch kept moving while reading approvals")
    answer = approvals.attributes
    approvers = [entry["user"]["username"] for entry in answer.get("approved_by", [])]
    if "approvals_required" in answer:  # Premium: GitLab counts what is required
        required = int(answer.get("approvals_required") or 0)
        left = int(answer.get("approvals_left") or 0)
    else:  # Free: optional approvals; "approved" there only means someone approved
        required = left = 0
    return MergeRequestApproval(
        resource=resource,
        iid=merge_request.iid,
        state=merge_request.state,
        approved=left == 0,
        approvals_required=required,
        approvals_left=left,
        approvers=approvers,
        head_sha=merge_request.sha,
        web_url=merge_request.web_url,
    )


@job
def get_merge_request_approval(
    gitlab: GitLabConnection | str, project: str, merge_request_iid: int
) -> MergeRequestApproval:
    """Reads whether a merge request has the approvals it needs.

    Args:
        gitlab: The GitLab connection, or the name of a saved one.
        project: Full path of the project, e.g. ``platform/tenants``.
        merge_request_iid: The merge request's number in the project (``!7`` -> 7).

    Returns:
        The merge request's `MergeRequestApproval`.

    Raises:
        InvalidInputError: A malformed project path or iid.
        NotFoundError: The project or merge request does not exist.
        PermissionDeniedError: The token may not read the merge request.
        TransientError: GitLab is unreachable or failing (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.gitlab import get_merge_request_approval

        @flow
        def is_acme_approved() -> bool:
            return get_merge_request_approval("gitlab-prod", "platform/tenants", 7).approved
        ```
    """
    check_project_path(project)
    check_iid(f"gitlab:project/{project}/merge_request/{merge_request_iid}", merge_request_iid)
    return _read_approval(open_project(gitlab, project), project, merge_request_iid)


@job
def wait_for_merge_request_approval(
    gitlab: GitLabConnection | str,
    project: str,
    merge_request_iid: int,
    interval_seconds: float = 30.0,
    timeout_seconds: float = 3600.0,
) -> MergeRequestApproval:
    """Waits until a merge request is approved, checking every `interval_seconds`.

    Every check that finds it not yet approved is logged with the approvals so
    far. A transient failure of one check fails the job, and Prefect's retry
    starts the wait again with a full timeout.

    Args:
        gitlab: The GitLab connection, or the name of a saved one.
        project: Full path of the project, e.g. ``platform/tenants``.
        merge_request_iid: The merge request's number in the project.
        interval_seconds: Seconds between two checks (> 0).
        timeout_seconds: Seconds after which to give up (>= 0; 0 checks once).

    Returns:
        The `MergeRequestApproval` that showed it approved; its ``head_sha`` is the
        source head that was approved (give it to `merge_merge_request`). On GitLab
        Free nothing requires an approval, so the first check returns.

    Raises:
        InvalidInputError: A malformed project path or iid, or bad durations.
        ConflictError: The merge request was closed, or merged without the
            required approvals; no approval can come any more.
        DeadlineExceededError: Still not approved after `timeout_seconds`.
        NotFoundError: The project or merge request does not exist.
        PermissionDeniedError: The token may not read the merge request.
        TransientError: GitLab is unreachable or failing (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.gitlab import merge_merge_request, wait_for_merge_request_approval

        @flow
        def merge_when_approved(iid: int):
            approval = wait_for_merge_request_approval(
                "gitlab-prod", "platform/tenants", iid, interval_seconds=60, timeout_seconds=86400
            )
            merge_merge_request("gitlab-prod", "platform/tenants", iid,
                                approved_sha=approval.head_sha)
        ```
    """
    resource = f"gitlab:project/{project}/merge_request/{merge_request_iid}"
    check_project_path(project)
    check_iid(resource, merge_request_iid)
    if not interval_seconds > 0:
        raise InvalidInputError(resource, "interval_seconds must be greater than 0")
    if not timeout_seconds >= 0:
        raise InvalidInputError(resource, "timeout_seconds must not be negative")
    repo = open_project(gitlab, project)
    logger = job_logger()
    deadline = time.monotonic() + timeout_seconds
    while True:
        approval = _read_approval(repo, project, merge_request_iid)
        given = f"{len(approval.approvers)} of {approval.approvals_required} approvals"
        if approval.state == "closed":
            raise ConflictError(
                resource, f"merge request was closed before it was approved ({given})"
            )
        if approval.approved:
            logger.info(
                "%s: approved (%s: %s)",
                resource,
                given,
                ", ".join(approval.approvers) or "none needed",
            )
            return approval
        if approval.state == "merged":
            raise ConflictError(
                resource, f"merge request was merged without the required approvals ({given})"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError(
                resource, f"not approved after {timeout_seconds:g} s ({given})"
            )
        logger.info(
            "%s: waiting for approval, %s, next check in %g s",
            resource,
            given,
            min(interval_seconds, remaining),
        )
        time.sleep(min(interval_seconds, remaining))


@job
def merge_merge_request(
    gitlab: GitLabConnection | str,
    project: str,
    merge_request_iid: int,
    approved_sha: str | None = None,
    merge_commit_message: str | None = None,
    remove_source_branch: bool = False,
    dry_run: bool = False,
) -> Change:
    """Ensures a merge request is merged, merging it when it is open and mergeable.

    Give ``approved_sha`` (the ``head_sha`` of the approval the workflow waited
    for): the merge is then pinned to it, so a push made after the approval fails
    with a conflict instead of merging unreviewed changes. Without it the merge is
    pinned to the head this job reads.

    Args:
        gitlab: The GitLab connection, or the name of a saved one.
        project: Full path of the project, e.g. ``platform/tenants``.
        merge_request_iid: The merge request's number in the project.
        approved_sha: The source head that was approved; the merge refuses any other.
        merge_commit_message: Message of the merge commit; GitLab's default when None.
        remove_source_branch: Delete the source branch after the merge.
        dry_run: Read only and report what would be done.

    Returns:
        A `Change` on ``gitlab:project/<project>/merge_request/<iid>``:
        ``updated`` when merged now, ``unchanged`` when it already was; detail
        has ``iid``, ``web_url`` and ``merge_commit_sha`` (not in a dry run).

    Raises:
        InvalidInputError: A malformed project path or iid, or an empty message.
        ConflictError: The merge request is closed, or not mergeable (not
            approved, draft, conflicts, no commits, pipeline...), or its source
            branch moved after the approval (``approved_sha``) or during the merge.
        NotFoundError: The project or merge request does not exist.
        PermissionDeniedError: The token may not merge.
        TransientError: GitLab is unreachable, failing or still computing
            mergeability (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.gitlab import merge_merge_request, wait_for_merge_request_approval

        @flow
        def merge_acme():
            approval = wait_for_merge_request_approval("gitlab-prod", "platform/tenants", 7)
            merge_merge_request("gitlab-prod", "platform/tenants", 7,
                                approved_sha=approval.head_sha, remove_source_branch=True)
        ```
    """
    resource = f"gitlab:project/{project}/merge_request/{merge_request_iid}"
    check_project_path(project)
    check_iid(resource, merge_request_iid)
    if merge_commit_message is not None and not merge_commit_message.strip():
        raise InvalidInputError(resource, "merge_commit_message must not be empty when given")
    if approved_sha is not None and not re.fullmatch(r"[0-9a-f]{7,64}", approved_sha):
        raise InvalidInputError(resource, "approved_sha must be a commit sha")
    repo = open_project(gitlab, project)
    with translated_errors(resource):
        merge_request = repo.mergerequests.get(merge_request_iid)
    detail: dict[str, Any] = {"iid": merge_request.iid, "web_url": merge_request.web_url}
    if merge_request.state == "merged":
        detail["merge_commit_sha"] = merge_request.merge_commit_sha
        return report(
            Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail=detail)
        )
    if merge_request.state != "opened":
        raise ConflictError(
            resource, f"merge request is {merge_request.state}, it cannot be merged"
        )
    status = str(getattr(merge_request, "detailed_merge_status", "mergeable"))
    if approved_sha is not None and merge_request.sha != approved_sha:
        raise ConflictError(
            resource,
            f"the source branch moved after the approval (approved {approved_sha[:12]}, "
            f"head {str(merge_request.sha)[:12]}); nothing was merged, approve the new head",
        )
    if status in _PENDING_MERGE_STATUSES:
        raise TransientError(resource, f"GitLab is still checking mergeability ({status})")
    if status != "mergeable":
        raise ConflictError(resource, f"merge request is not mergeable ({status})")
    if dry_run:
        return report(Change(resource=resource, action=Action.UPDATED, dry_run=True, detail=detail))
    with translated_errors(resource):
        merged = merge_request.merge(
            merge_commit_message=merge_commit_message,
            should_remove_source_branch=remove_source_branch or None,
            # GitLab refuses the merge if the head is not this sha (a push in between).
            sha=approved_sha or merge_request.sha,
        )
    detail["merge_commit_sha"] = merged["merge_commit_sha"]
    return report(Change(resource=resource, action=Action.UPDATED, detail=detail))


@job
def close_merge_request(
    gitlab: GitLabConnection | str, project: str, merge_request_iid: int, dry_run: bool = False
) -> Change:
    """Closes an open merge request (runbooks use it to undo one they opened).

    Args:
        gitlab: The GitLab connection, or the name of a saved one.
        project: Full path of the project, e.g. ``platform/tenants``.
        merge_request_iid: The merge request's number in the project.
        dry_run: Read only and report what would be done.

    Returns:
        A `Change` on ``gitlab:project/<project>/merge_request/<iid>``: ``updated``
        when closed now, ``unchanged`` when it was already closed.

    Raises:
        InvalidInputError: A malformed project path or iid.
        ConflictError: The merge request is already merged.
        NotFoundError: The project or merge request does not exist.
        PermissionDeniedError: The token may not update the merge request.
        TransientError: GitLab is unreachable or failing (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.gitlab import close_merge_request

        @flow
        def withdraw():
            close_merge_request("gitlab-prod", "platform/tenants", 7)
        ```
    """
    resource = f"gitlab:project/{project}/merge_request/{merge_request_iid}"
    check_project_path(project)
    check_iid(resource, merge_request_iid)
    repo = open_project(gitlab, project)
    with translated_errors(resource):
        merge_request = repo.mergerequests.get(merge_request_iid)
        detail = {"iid": merge_request.iid, "web_url": merge_request.web_url}
        if merge_request.state == "closed":
            return report(
                Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail=detail)
            )
        if merge_request.state == "merged":
            raise ConflictError(resource, "the merge request is merged; it cannot be closed")
        if not dry_run:
            merge_request.state_event = "close"
            merge_request.save()
    return report(Change(resource=resource, action=Action.UPDATED, dry_run=dry_run, detail=detail))

"""A change to a GitOps repository, proposed as a merge request and merged once approved.

Both tenant runbooks keep the tenant's config file in a GitOps project: they
propose the new content on a branch with a merge request, wait (bounded) for its
approval, and merge it. Nothing is proposed when the target branch already holds
the content, so a rerun opens no second merge request.
"""

from __future__ import annotations

from prefect.futures import PrefectFuture

from blocks import GitLabConnection
from flows.runbook import Runbook, undo_with
from flows.tenant_spec import GitOpsTarget
from magicflow import Action, Change
from tasks import (
    RepositoryFile,
    close_merge_request,
    commit_files,
    delete_branch,
    ensure_branch,
    ensure_merge_request,
    merge_merge_request,
    wait_for_merge_request_approval,
)


def propose_file_change(
    runbook: Runbook,
    gitlab: GitLabConnection,
    gitops: GitOpsTarget,
    path: str,
    content: str,
    current: RepositoryFile,
    branch: str,
    title: str,
    description: str,
    dry_run: bool,
) -> PrefectFuture[Change] | None:
    """Submits the steps that propose `content` for `path`: branch, commit, merge request.

    Args:
        runbook: The run the steps belong to.
        gitlab: The GitLab connection.
        gitops: The project and target branch.
        path: The file to change.
        content: Its wanted content.
        current: The file as read on the target branch.
        branch: The branch to propose it on (created from the target branch).
        title: The merge request's title (also the commit message).
        description: The merge request's description (Markdown).
        dry_run: Plan only.

    Returns:
        The merge request step's future, or None when the target branch already holds
        `content` (recorded as ``unchanged``; there is nothing to merge).
    """
    project, target = gitops.project, gitops.target_branch
    if current.exists and current.content == content:
        runbook.found(
            Change(
                resource=f"gitlab:project/{project}/file/{path}@{target}",
                action=Action.UNCHANGED,
                dry_run=dry_run,
                detail={"commit": current.last_commit_id},
            ),
            job="read_repository_file",
        )
        return None
    branch_step = runbook.submit(
        f"gitlab:project/{project}/branch/{branch}",
        ensure_branch,
        gitlab,
        project,
        branch,
        ref=target,
        dry_run=dry_run,
        undo=undo_with(delete_branch, gitlab, project, branch),
    )
    commit_step = runbook.submit(
        f"gitlab:project/{project}/branch/{branch}",
        commit_files,
        gitlab,
        project,
        branch,
        {path: content},
        title,
        # In a dry run the branch may not exist yet: read the files from the target.
        start_branch=target if dry_run else None,
        dry_run=dry_run,
        wait_for=[branch_step],
    )
    return runbook.submit(
        f"gitlab:project/{project}/merge_request/{branch}->{target}",
        ensure_merge_request,
        gitlab,
        project,
        branch,
        target,
        title,
        description,
        dry_run=dry_run,
        undo=lambda change: undo_with(
            close_merge_request, gitlab, project, int(str(change.detail["iid"]))
        )(change),
        wait_for=[commit_step],
    )


def merge_when_approved(
    runbook: Runbook,
    gitlab: GitLabConnection,
    gitops: GitOpsTarget,
    merge_request: Change,
    dry_run: bool,
) -> None:
    """Submits the gate: wait for the merge request's approval (bounded), then merge it.

    The wait fails with `DeadlineExceededError` at ``gitops.approval_timeout_seconds``
    and with `ConflictError` as soon as the merge request is closed. The merge is
    pinned to the source head that was approved: a push after the approval (which
    GitLab may not reset approvals for) fails the merge with `ConflictError`.

    Args:
        runbook: The run the steps belong to.
        gitlab: The GitLab connection.
        gitops: The project and the approval wait's timing.
        merge_request: The merge request step's change (its detail has the ``iid``).
        dry_run: Plan only: the gate is then skipped (a dry run never waits or merges).
    """
    if dry_run or "iid" not in merge_request.detail:
        runbook.skip(
            merge_request.resource,
            "dry run: a real run waits for the merge request's approval, then merges it",
        )
        return
    iid = int(str(merge_request.detail["iid"]))
    approval = runbook.submit(
        merge_request.resource,
        wait_for_merge_request_approval,
        gitlab,
        gitops.project,
        iid,
        interval_seconds=gitops.approval_interval_seconds,
        timeout_seconds=gitops.approval_timeout_seconds,
    )
    approved = runbook.result_of(approval)
    if approved is None:
        runbook.never_started(
            merge_request.resource, "merge_merge_request", "the merge request was not approved"
        )
        return
    # Pinned to the head that was approved: a push after the approval is refused, not merged.
    runbook.submit(
        merge_request.resource,
        merge_merge_request,
        gitlab,
        gitops.project,
        iid,
        approved_sha=approved.head_sha,
        remove_source_branch=True,
    )

"""GitLab jobs: branches, commits of files, merge requests and their approvals.

Every job takes a `GitLabConnection` (or the name of a saved one), reads the
current state first and writes only what differs, so a second run reports
``unchanged``. Resources are named ``gitlab:project/<path>/...``:

* ``gitlab:project/platform/tenants/branch/tenant-acme`` for a branch (and for
  the files committed to it),
* ``gitlab:project/platform/tenants/merge_request/7`` for a merge request (a
  merge request a dry run would create is ``.../merge_request/<source>-><target>``).

python-gitlab's errors go through the one error table (`magicflow.errors`):
`_gitlab_answer` reads the status and GitLab's short message, and gives GitLab's
own answers their meaning: 405/406 on a merge and the 400 "already exists" /
"changed since you started editing" answers are conflicts. Transport failures
(timeouts, refused or reset connections, TLS, invalid URLs) follow the table.
"""

import re
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from gitlab.exceptions import GitlabError, RedirectError
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
    connection,
    job,
    job_logger,
    report,
)
from magicflow.errors import HttpAnswer, typed_errors

T = TypeVar("T")

_PROJECT_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$")
_FORBIDDEN_IN_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|//|@\{")
_MAX_TITLE_LENGTH = 255
# GitLab answers 400 to these, but they mean someone else changed the same thing first.
_CONFLICT_MESSAGES = (
    "already exists",
    "has changed since you started editing",
    "does not match HEAD",
)
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


def _gitlab_answer(error: Exception) -> HttpAnswer | None:
    """Status and cause of a python-gitlab error answer (the rest goes to the error table).

    GitLab-specific meanings: a 400 saying that something "already exists" or
    "changed since you started editing" means someone else changed it first (409);
    405 and 406 on a merge mean the merge request's state forbids it (409).
    """
    if isinstance(error, RedirectError):
        return (
            400,
            "GitLab redirected the request; use the final URL (often https://) in the connection",
        )
    if not isinstance(error, GitlabError) or error.response_code is None:
        # No status: an unreadable answer (the error table follows its cause).
        return None
    code = error.response_code
    message = " ".join(str(error.error_message or "").split())[:200]
    cause = f"GitLab answered {code}: {message}" if message else f"GitLab answered {code}"
    if code in (405, 406) or (code == 400 and any(text in message for text in _CONFLICT_MESSAGES)):
        return 409, cause
    return code, cause


def _translated_errors(
    resource: str, doing: str = "calling GitLab"
) -> AbstractContextManager[None]:
    """Raises python-gitlab and transport errors inside the block as typed errors about `resource`.

    The cause quotes GitLab's short error message, never a request or response body.
    """
    return typed_errors(resource, doing, _gitlab_answer)


def _get_or_none(read: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Calls a python-gitlab read; None when GitLab answers 404."""
    try:
        return read(*args, **kwargs)
    except GitlabError as error:
        if error.response_code == 404:
            return None
        raise


def _open_project(gitlab: GitLabConnection | str, project: str) -> Project:
    """The project, read from GitLab (so that a missing project fails clearly and early)."""
    client = connection(gitlab, GitLabConnection).get_client()
    with _translated_errors(f"gitlab:project/{project}"):
        return client.projects.get(project)


def _check_project_path(project: str) -> None:
    if not _PROJECT_PATH.match(project) or project.endswith((".git", ".atom")):
        raise InvalidInputError(
            f"gitlab:project/{project}", "project must be a full path such as 'group/repo'"
        )


def _check_branch_name(resource: str, name: str, what: str = "branch") -> None:
    """Git's ref-name rules (``git check-ref-format``), which GitLab enforces."""
    if (
        not name
        or name in {"@", "HEAD"}
        or name.startswith(("-", "/"))
        or name.endswith(("/", ".", ".lock"))
        or _FORBIDDEN_IN_REF.search(name)
        or any(part.startswith(".") for part in name.split("/"))
    ):
        raise InvalidInputError(resource, f"{what} {name!r} is not a valid git branch name")


def _check_file_path(resource: str, path: str) -> None:
    if not path or "\0" in path or any(part in {"", ".", ".."} for part in path.split("/")):
        raise InvalidInputError(
            resource, f"file path {path!r} must be relative, without '.' or '..'"
        )


def _check_iid(resource: str, merge_request_iid: int) -> None:
    if (
        isinstance(merge_request_iid, bool)
        or not isinstance(merge_request_iid, int)
        or merge_request_iid < 1
    ):
        raise InvalidInputError(resource, "merge_request_iid must be a positive integer")


@job
def ensure_branch(
    gitlab: GitLabConnection | str,
    project: str,
    branch: str,
    ref: str = "main",
    dry_run: bool = False,
) -> Change:
    """Ensures a branch exists, creating it from `ref` when it does not.

    An existing branch is left as it is, wherever it points.

    Args:
        gitlab: The GitLab connection, or the name of a saved one.
        project: Full path of the project, e.g. ``platform/tenants``.
        branch: Name of the branch.
        ref: Branch, tag or commit sha to create the branch from.
        dry_run: Read only and report what would be done.

    Returns:
        A `Change` on ``gitlab:project/<project>/branch/<branch>``: ``created`` or
        ``unchanged``; detail has the branch's ``commit`` (and the ``ref`` it was made from).

    Raises:
        InvalidInputError: A malformed project path, branch name or ref.
        NotFoundError: The project or `ref` does not exist.
        PermissionDeniedError: The token may not read or create branches.
        TransientError: GitLab is unreachable or failing (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.gitlab import ensure_branch

        @flow
        def prepare_tenant_branch():
            ensure_branch("gitlab-prod", project="platform/tenants", branch="tenant/acme")
        ```
    """
    resource = f"gitlab:project/{project}/branch/{branch}"
    _check_project_path(project)
    _check_branch_name(resource, branch)
    if not ref.strip():
        raise InvalidInputError(resource, "ref must not be empty")
    repo = _open_project(gitlab, project)
    with _translated_errors(resource):
        existing = _get_or_none(repo.branches.get, branch)
        if existing is not None:
            return report(
                Change(
                    resource=resource,
                    action=Action.UNCHANGED,
                    dry_run=dry_run,
                    detail={"commit": existing.commit["id"]},
                )
            )
        start = _get_or_none(repo.commits.get, ref)
        if start is None:
            raise NotFoundError(resource, f"ref {ref!r} does not exist")
        detail = {"ref": ref, "commit": start.id}
        if dry_run:
            return report(
                Change(resource=resource, action=Action.CREATED, dry_run=True, detail=detail)
            )
        # Create from the sha we read, so the branch is exactly what we report.
        repo.branches.create({"branch": branch, "ref": start.id})
    return report(Change(resource=resource, action=Action.CREATED, detail=detail))


@job
def commit_files(
    gitlab: GitLabConnection | str,
    project: str,
    branch: str,
    files: dict[str, str],
    commit_message: str,
    start_branch: str | None = None,
    dry_run: bool = False,
) -> Change:
    """Ensures files on a branch have the given contents, in one commit.

    Files whose content already matches are left out; when all match, nothing
    is committed. Files not listed are never touched.

    Args:
        gitlab: The GitLab connection, or the name of a saved one.
        project: Full path of the project, e.g. ``platform/tenants``.
        branch: Branch to commit to.
        files: Path in the repository -> wanted text content (UTF-8).
        commit_message: Message of the commit, when one is needed.
        start_branch: When `branch` does not exist, create it from this branch
            (in the same commit). Without it a missing branch is an error.
        dry_run: Read only and report what would be done.

    Returns:
        A `Change` on ``gitlab:project/<project>/branch/<branch>``: ``created``
        when the commit only adds files (or creates the branch), ``updated`` when
        it changes at least one existing file, ``unchanged`` when no commit was
        needed. Detail lists the ``created`` and ``updated`` paths and the
        ``commit`` sha (the new commit, or the branch head when unchanged).

    Raises:
        InvalidInputError: A malformed project, branch, file path or an empty
            file list or commit message.
        NotFoundError: The project, the branch (without `start_branch`) or
            `start_branch` does not exist.
        ConflictError: A file changed on GitLab between our read and the commit.
        PermissionDeniedError: The token may not read or push.
        TransientError: GitLab is unreachable or failing (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.gitlab import commit_files

        @flow
        def publish_tenant_config():
            commit_files(
                "gitlab-prod",
                project="platform/tenants",
                branch="tenant/acme",
                start_branch="main",
                files={"tenants/acme.yaml": "name: acme"},
                commit_message="Add tenant acme",
            )
        ```
    """
    resource = f"gitlab:project/{project}/branch/{branch}"
    _check_project_path(project)
    _check_branch_name(resource, branch)
    if start_branch is not None:
        _check_branch_name(resource, start_branch, "start_branch")
    if not files:
        raise InvalidInputError(resource, "files must name at least one file")
    for path, content in files.items():
        _check_file_path(resource, path)
        if not isinstance(content, str):
            raise InvalidInputError(resource, f"content of {path!r} must be text")
    if not commit_message.strip():
        raise InvalidInputError(resource, "commit_message must not be empty")
    repo = _open_project(gitlab, project)
    with _translated_errors(resource):
        head = _get_or_none(repo.branches.get, branch)
        if head is None:
            if start_branch is None:
                raise NotFoundError(
                    resource, "branch does not exist (pass start_branch to create it)"
                )
            start = _get_or_none(repo.branches.get, start_branch)
            if start is None:
                raise NotFoundError(resource, f"start_branch {start_branch!r} does not exist")
            base_sha = start.commit["id"]
        else:
            base_sha = head.commit["id"]
        created: list[str] = []
        updated: list[str] = []
        actions: list[dict[str, str]] = []
        # Read every file at one commit, so the comparison sees one consistent tree.
        for path, content in sorted(files.items()):
            current = _get_or_none(repo.files.get, path, ref=base_sha)
            if current is None:
                created.append(path)
                actions.append({"action": "create", "file_path": path, "content": content})
            elif current.decode() != content.encode():
                updated.append(path)
                # last_commit_id makes GitLab refuse the update if someone changed the file since.
                actions.append(
                    {
                        "action": "update",
                        "file_path": path,
                        "content": content,
                        "last_commit_id": current.last_commit_id,
                    }
                )
        if head is not None and not actions:
            return report(
                Change(
                    resource=resource,
                    action=Action.UNCHANGED,
                    dry_run=dry_run,
                    detail={"commit": base_sha, "created": [], "updated": []},
                )
            )
        action = Action.UPDATED if updated else Action.CREATED
        paths: dict[str, Any] = {"created": created, "updated": updated}
        if dry_run:
            return report(
                Change(
                    resource=resource,
                    action=action,
                    dry_run=True,
                    detail=paths,
                )
            )
        if actions:
            data: dict[str, Any] = {
                "branch": branch,
                "commit_message": commit_message,
                "actions": actions,
            }
            if head is None:
                data["start_sha"] = base_sha
            commit_sha = repo.commits.create(data).id
        else:
            # A new branch whose files already match its start: only the branch is missing.
            commit_sha = repo.branches.create({"branch": branch, "ref": base_sha}).commit["id"]
    return report(
        Change(
            resource=resource,
            action=action,
            detail={"commit": commit_sha, **paths},
        )
    )


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
    _check_project_path(project)
    _check_branch_name(resource, source_branch, "source_branch")
    _check_branch_name(resource, target_branch, "target_branch")
    if source_branch == target_branch:
        raise InvalidInputError(resource, "source_branch and target_branch must differ")
    if not title.strip() or len(title) > _MAX_TITLE_LENGTH:
        raise InvalidInputError(resource, f"title must have 1 to {_MAX_TITLE_LENGTH} characters")
    repo = _open_project(gitlab, project)
    with _translated_errors(resource):
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
                if _get_or_none(repo.branches.get, b) is None
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
    with _translated_errors(resource):
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
    with _translated_errors(resource):
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
    _check_project_path(project)
    _check_iid(f"gitlab:project/{project}/merge_request/{merge_request_iid}", merge_request_iid)
    return _read_approval(_open_project(gitlab, project), project, merge_request_iid)


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
    _check_project_path(project)
    _check_iid(resource, merge_request_iid)
    if not interval_seconds > 0:
        raise InvalidInputError(resource, "interval_seconds must be greater than 0")
    if not timeout_seconds >= 0:
        raise InvalidInputError(resource, "timeout_seconds must not be negative")
    repo = _open_project(gitlab, project)
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
    _check_project_path(project)
    _check_iid(resource, merge_request_iid)
    if merge_commit_message is not None and not merge_commit_message.strip():
        raise InvalidInputError(resource, "merge_commit_message must not be empty when given")
    if approved_sha is not None and not re.fullmatch(r"[0-9a-f]{7,64}", approved_sha):
        raise InvalidInputError(resource, "approved_sha must be a commit sha")
    repo = _open_project(gitlab, project)
    with _translated_errors(resource):
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
    with _translated_errors(resource):
        merged = merge_request.merge(
            merge_commit_message=merge_commit_message,
            should_remove_source_branch=remove_source_branch or None,
            # GitLab refuses the merge if the head is not this sha (a push in between).
            sha=approved_sha or merge_request.sha,
        )
    detail["merge_commit_sha"] = merged["merge_commit_sha"]
    return report(Change(resource=resource, action=Action.UPDATED, detail=detail))


class RepositoryFile(BaseModel):
    """One file of a repository at a ref, as read by `read_repository_file`.

    Attributes:
        resource: ``gitlab:project/<path>/file/<file path>@<ref>``.
        exists: False when the file does not exist at that ref.
        content: The file's text (UTF-8); empty when it does not exist.
        last_commit_id: The last commit that changed the file.
    """

    model_config = ConfigDict(frozen=True)

    resource: str
    exists: bool
    content: str = ""
    last_commit_id: str | None = None


@job
def read_repository_file(
    gitlab: GitLabConnection | str, project: str, path: str, ref: str = "main"
) -> RepositoryFile:
    """Reads a text file of a repository at a branch, tag or commit (a read job).

    Args:
        gitlab: The GitLab connection, or the name of a saved one.
        project: Full path of the project, e.g. ``platform/tenants``.
        path: Path of the file in the repository, e.g. ``tenants/acme.yaml``.
        ref: Branch, tag or commit sha to read it at.

    Returns:
        A `RepositoryFile`; ``exists`` is False when the file is not there.

    Raises:
        InvalidInputError: A malformed project path, file path or ref, or a file that
            is not UTF-8 text.
        NotFoundError: The project or `ref` does not exist.
        PermissionDeniedError: The token may not read the repository.
        TransientError: GitLab is unreachable or failing (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.gitlab import read_repository_file

        @flow
        def tenant_config(tenant: str) -> str:
            return read_repository_file("gitlab-prod", "platform/tenants",
                                        f"tenants/{tenant}.yaml").content
        ```
    """
    resource = f"gitlab:project/{project}/file/{path}@{ref}"
    _check_project_path(project)
    _check_file_path(resource, path)
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInputError(resource, "ref must not be empty")
    repo = _open_project(gitlab, project)
    with _translated_errors(resource):
        if _get_or_none(repo.commits.get, ref) is None:
            raise NotFoundError(resource, f"ref {ref!r} does not exist")
        found = _get_or_none(repo.files.get, path, ref=ref)
    if found is None:
        return RepositoryFile(resource=resource, exists=False)
    try:
        content = found.decode().decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(resource, "the file is not UTF-8 text") from None
    return RepositoryFile(
        resource=resource, exists=True, content=content, last_commit_id=found.last_commit_id
    )


@job
def delete_branch(
    gitlab: GitLabConnection | str, project: str, branch: str, dry_run: bool = False
) -> Change:
    """Deletes a branch (runbooks use it to undo a branch they created).

    Args:
        gitlab: The GitLab connection, or the name of a saved one.
        project: Full path of the project, e.g. ``platform/tenants``.
        branch: Name of the branch.
        dry_run: Read only and report what would be done.

    Returns:
        A `Change` on ``gitlab:project/<project>/branch/<branch>``: ``deleted``, or
        ``unchanged`` (detail ``absent``) when there is no such branch.

    Raises:
        InvalidInputError: A malformed project path or branch name.
        ConflictError: The branch is protected or is the default branch.
        NotFoundError: The project does not exist.
        PermissionDeniedError: The token may not delete branches.
        TransientError: GitLab is unreachable or failing (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.gitlab import delete_branch

        @flow
        def drop_tenant_branch():
            delete_branch("gitlab-prod", "platform/tenants", "tenant/acme")
        ```
    """
    resource = f"gitlab:project/{project}/branch/{branch}"
    _check_project_path(project)
    _check_branch_name(resource, branch)
    repo = _open_project(gitlab, project)
    with _translated_errors(resource):
        existing = _get_or_none(repo.branches.get, branch)
        if existing is None:
            return report(
                Change(
                    resource=resource,
                    action=Action.UNCHANGED,
                    dry_run=dry_run,
                    detail={"absent": True},
                )
            )
        if branch == repo.default_branch or getattr(existing, "protected", False):
            raise ConflictError(resource, "the branch is the default or a protected branch")
        detail = {"commit": existing.commit["id"]}
        if not dry_run:
            repo.branches.delete(branch)
    return report(Change(resource=resource, action=Action.DELETED, dry_run=dry_run, detail=detail))


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
    _check_project_path(project)
    _check_iid(resource, merge_request_iid)
    repo = _open_project(gitlab, project)
    with _translated_errors(resource):
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

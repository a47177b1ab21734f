"""GitLab repository jobs: branches, files and commits."""

from typing import Any

from pydantic import BaseModel, ConfigDict

from blocks import GitLabConnection
from magicflow import Action, Change, ConflictError, InvalidInputError, NotFoundError, job, report
from tasks.gitlab.session import (
    check_branch_name,
    check_file_path,
    check_project_path,
    get_or_none,
    open_project,
    translated_errors,
)


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
    check_project_path(project)
    check_branch_name(resource, branch)
    if not ref.strip():
        raise InvalidInputError(resource, "ref must not be empty")
    repo = open_project(gitlab, project)
    with translated_errors(resource):
        existing = get_or_none(repo.branches.get, branch)
        if existing is not None:
            return report(
                Change(
                    resource=resource,
                    action=Action.UNCHANGED,
                    dry_run=dry_run,
                    detail={"commit": existing.commit["id"]},
                )
            )
        start = get_or_none(repo.commits.get, ref)
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
    check_project_path(project)
    check_branch_name(resource, branch)
    if start_branch is not None:
        check_branch_name(resource, start_branch, "start_branch")
    if not files:
        raise InvalidInputError(resource, "files must name at least one file")
    for path, content in files.items():
        check_file_path(resource, path)
        if not isinstance(content, str):
            raise InvalidInputError(resource, f"content of {path!r} must be text")
    if not commit_message.strip():
        raise InvalidInputError(resource, "commit_message must not be empty")
    repo = open_project(gitlab, project)
    with translated_errors(resource):
        head = get_or_none(repo.branches.get, branch)
        if head is None:
            if start_branch is None:
                raise NotFoundError(
                    resource, "branch does not exist (pass start_branch to create it)"
                )
            start = get_or_none(repo.branches.get, start_branch)
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
            current = get_or_none(repo.files.get, path, ref=base_sha)
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
    check_project_path(project)
    check_file_path(resource, path)
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInputError(resource, "ref must not be empty")
    repo = open_project(gitlab, project)
    with translated_errors(resource):
        if get_or_none(repo.commits.get, ref) is None:
            raise NotFoundError(resource, f"ref {ref!r} does not exist")
        found = get_or_none(repo.files.get, path, ref=ref)
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
    check_project_path(project)
    check_branch_name(resource, branch)
    repo = open_project(gitlab, project)
    with translated_errors(resource):
        existing = get_or_none(repo.branches.get, branch)
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

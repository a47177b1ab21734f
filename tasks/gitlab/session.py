"""What every GitLab job shares: errors through the one error table, the project, name rules.

python-gitlab's errors go through the one error table (`magicflow.errors`):
`_gitlab_answer` reads the status and GitLab's short message, and gives GitLab's
own answers their meaning: 405/406 on a merge and the 400 "already exists" /
"changed since you started editing" answers are conflicts. Transport failures
(timeouts, refused or reset connections, TLS, invalid URLs) follow the table.
"""

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from gitlab.exceptions import GitlabError, RedirectError
from gitlab.v4.objects import Project

from blocks import GitLabConnection
from magicflow import InvalidInputError, connection
from magicflow.errors import HttpAnswer, typed_errors

T = TypeVar("T")

_PROJECT_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$")
_FORBIDDEN_IN_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|//|@\{")
# GitLab answers 400 to these, but they mean someone else changed the same thing first.
_CONFLICT_MESSAGES = (
    "already exists",
    "has changed since you started editing",
    "does not match HEAD",
)


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


def translated_errors(resource: str, doing: str = "calling GitLab") -> AbstractContextManager[None]:
    """Raises python-gitlab and transport errors inside the block as typed errors about `resource`.

    The cause quotes GitLab's short error message, never a request or response body.
    """
    return typed_errors(resource, doing, _gitlab_answer)


def get_or_none(read: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Calls a python-gitlab read; None when GitLab answers 404."""
    try:
        return read(*args, **kwargs)
    except GitlabError as error:
        if error.response_code == 404:
            return None
        raise


def open_project(gitlab: GitLabConnection | str, project: str) -> Project:
    """The project, read from GitLab (so that a missing project fails clearly and early)."""
    client = connection(gitlab, GitLabConnection).get_client()
    with translated_errors(f"gitlab:project/{project}"):
        return client.projects.get(project)


def check_project_path(project: str) -> None:
    """Raises `InvalidInputError` unless `project` is a full path such as ``group/repo``."""
    if not _PROJECT_PATH.match(project) or project.endswith((".git", ".atom")):
        raise InvalidInputError(
            f"gitlab:project/{project}", "project must be a full path such as 'group/repo'"
        )


def check_branch_name(resource: str, name: str, what: str = "branch") -> None:
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


def check_file_path(resource: str, path: str) -> None:
    """Raises `InvalidInputError` unless `path` is relative, without ``.`` or ``..`` parts."""
    if not path or "\0" in path or any(part in {"", ".", ".."} for part in path.split("/")):
        raise InvalidInputError(
            resource, f"file path {path!r} must be relative, without '.' or '..'"
        )


def check_iid(resource: str, merge_request_iid: int) -> None:
    """Raises `InvalidInputError` unless the merge request number is a positive integer."""
    if (
        isinstance(merge_request_iid, bool)
        or not isinstance(merge_request_iid, int)
        or merge_request_iid < 1
    ):
        raise InvalidInputError(resource, "merge_request_iid must be a positive integer")

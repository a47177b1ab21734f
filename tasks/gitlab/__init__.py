"""GitLab jobs: branches, commits of files, merge requests and their approvals.

Every job takes a `GitLabConnection` (or the name of a saved one), reads the
current state first and writes only what differs, so a second run reports
``unchanged``. Resources are named ``gitlab:project/<path>/...``:

* ``gitlab:project/platform/tenants/branch/tenant-acme`` for a branch (and for
  the files committed to it),
* ``gitlab:project/platform/tenants/merge_request/7`` for a merge request (a
  merge request a dry run would create is ``.../merge_request/<source>-><target>``).

* `tasks.gitlab.repository`: `ensure_branch`, `commit_files`, `read_repository_file`,
  `delete_branch`
* `tasks.gitlab.merge_requests`: `ensure_merge_request`, `get_merge_request_approval`,
  `wait_for_merge_request_approval`, `merge_merge_request`, `close_merge_request`
* `tasks.gitlab.session`: python-gitlab's errors through the one error table, the
  project, and GitLab's name rules.
"""

from tasks.gitlab.merge_requests import (
    MergeRequestApproval,
    close_merge_request,
    ensure_merge_request,
    get_merge_request_approval,
    merge_merge_request,
    wait_for_merge_request_approval,
)
from tasks.gitlab.repository import (
    RepositoryFile,
    commit_files,
    delete_branch,
    ensure_branch,
    read_repository_file,
)

__all__ = [
    "MergeRequestApproval",
    "RepositoryFile",
    "close_merge_request",
    "commit_files",
    "delete_branch",
    "ensure_branch",
    "ensure_merge_request",
    "get_merge_request_approval",
    "merge_merge_request",
    "read_repository_file",
    "wait_for_merge_request_approval",
]

"""A stateful, in-memory fake of the GitLab REST API v4, for tests that cannot run GitLab.

Run: ``python -m deployments.fakes.gitlab --port P [--auto-approve]``. It answers
python-gitlab's real requests with GitLab's real response shapes, status codes and
error bodies, for the routes MagicFlow's GitLab jobs use:

* ``GET /user``, ``GET /version``; ``GET /-/health`` (no auth, for readiness).
* ``POST /projects`` (``name``/``path``, ``approvals_before_merge``,
  ``default_branch``): created under the ``root`` namespace with one branch
  (``main``) holding an initial commit; ``GET /projects/:id`` by numeric id or
  URL-encoded path (``root%2Frepo``).
* Branches: list, get, create (``branch``, ``ref``), delete.
* Files: ``GET|HEAD /repository/files/:path?ref=`` (base64 content, ``blob_id``,
  ``last_commit_id``, ``X-Gitlab-*`` headers), ``/raw``, and single-file
  ``POST|PUT|DELETE``.
* Commits: ``POST /repository/commits`` (``branch``, ``start_branch``,
  ``commit_message``, ``actions`` create/update/delete/move/chmod with
  ``content``/``encoding``/``last_commit_id``), list (``ref_name``, ``path``),
  ``GET /repository/commits/:sha`` (a sha, a prefix or a branch name).
* Merge requests: list (``state``, ``source_branch``, ``target_branch``,
  ``iids[]``), create, get, ``PUT`` (``title``, ``description``,
  ``target_branch``, ``state_event=close|reopen``), ``GET|POST /approvals``,
  ``GET /approval_state``, ``POST /approve`` and ``/unapprove`` (as the token's
  user; authors cannot approve their own merge request), ``PUT /merge``.

Authentication is the ``PRIVATE-TOKEN`` header (or ``Authorization: Bearer``):
``glpat-root`` is the administrator, ``glpat-<username>`` is that user (created
on first use), ``glpat-readonly-<username>`` is that user with read access only
(403 on every write); anything else is 401 ``{"message": "401 Unauthorized"}``.

The server routes on the raw request path, so ``%2F`` inside a project path,
file path or branch name stays one path segment, as in GitLab. Lists are
paginated with ``page``/``per_page`` and GitLab's ``X-Page``, ``X-Per-Page``,
``X-Next-Page``, ``X-Prev-Page``, ``X-Total``, ``X-Total-Pages`` and ``Link``
headers. A merge request merges only when it is open, not a draft, has commits,
no conflicts and enough approvals; otherwise ``PUT /merge`` answers 405 (or 406
``Branch cannot be merged`` for conflicts) like GitLab.

What differs between GitLab's tiers and over time is modelled too:

* Tiers (per project, Premium unless set): on Free, approvals are optional: the
  ``/approvals`` answer has no ``approvals_required``/``approvals_left``,
  ``approved`` means "someone approved", and approvals never block a merge.
* ``reset_approvals_on_push`` (Premium, on by default, ``GET|POST
  /projects/:id/approvals``): a push to a merge request's source branch removes
  its approvals.
* Right after a merge request is created, or a push to its branches, GitLab is
  still computing mergeability: with ``pending_status_reads`` set to N, the next N
  reads of it show ``detailed_merge_status`` ``preparing`` then ``checking``.
* Forks: ``POST /projects/:id/fork`` copies a project into the user's namespace;
  a merge request created in a fork with ``target_project_id`` lives in the target
  project with the fork as ``source_project_id``.

With ``--auto-approve`` (what ``magicflow up`` starts), the user ``auto-approver``
approves every merge request as soon as it is opened, so a runbook waiting at its
approval gate goes on at once; without it, someone must approve (``POST /approve``
as another user), as on a real GitLab.

TEST-ONLY control endpoint (GitLab has no such thing): ``POST /-/fake/project``
``{"project": "root/repo", "tier": "free", "pending_status_reads": 2}``.

The fake is a package: `deployments.fakes.gitlab.model` (the records and errors),
`.state` (lookups, the commit graph, JSON shapes), one module of routes per area
(`.projects`, `.repository`, `.merge_requests`) and `.server` (the routing table,
the HTTP handler and the command line).
"""

from deployments.fakes.gitlab.server import ROUTES, GitLab, main, make_handler

__all__ = ["ROUTES", "GitLab", "main", "make_handler"]

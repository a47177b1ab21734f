"""GitLab jobs against the GitLab fake over HTTP, read back with an independent client."""

import threading
import time
import uuid
from collections.abc import Callable

import gitlab as python_gitlab
import pytest
from gitlab.v4.objects import Project
from prefect import flow

from blocks import GitLabConnection
from magicflow import (
    Change,
    ConflictError,
    DeadlineExceededError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    TransientError,
)
from tasks.gitlab import (
    MergeRequestApproval,
    commit_files,
    ensure_branch,
    ensure_merge_request,
    get_merge_request_approval,
    merge_merge_request,
    wait_for_merge_request_approval,
)
from tests.fixtures.gitlab import (
    GITLAB_ROOT_TOKEN,
    configure_gitlab_project,
    gitlab_connection_for,
)

# --- helpers -------------------------------------------------------------------------------


def independent_client(server: str, username: str = "root") -> python_gitlab.Gitlab:
    """A python-gitlab client built here, not by the block: the tests' own eyes on GitLab."""
    return python_gitlab.Gitlab(server, private_token=f"glpat-{username}")


@pytest.fixture
def api(gitlab_server: str, gitlab_project: str) -> Project:
    """The test's project, read through the independent client."""
    return independent_client(gitlab_server).projects.get(gitlab_project)


def head(api: Project, branch: str) -> str:
    return str(api.branches.get(branch).commit["id"])


def branch_names(api: Project) -> set[str]:
    return {branch.name for branch in api.branches.list(get_all=True)}


def push_branch(api: Project, branch: str, files: dict[str, str]) -> str:
    """A branch from main with one commit adding `files`; returns the commit sha."""
    api.branches.create({"branch": branch, "ref": "main"})
    actions = [{"action": "create", "file_path": p, "content": c} for p, c in files.items()]
    return str(
        api.commits.create({"branch": branch, "commit_message": "work", "actions": actions}).id
    )


def open_merge_request(api: Project, branch: str = "feature") -> int:
    """An open merge request from a branch with one new file into main; returns its iid."""
    push_branch(api, branch, {f"{branch}.txt": "change\n"})
    mr = api.mergerequests.create(
        {"source_branch": branch, "target_branch": "main", "title": "Change"}
    )
    return int(mr.iid)


def approve_as(server: str, project: str, iid: int, username: str = "alice") -> None:
    # lazy: a POST only, no read of the merge request (reads count down pending statuses).
    reviewer = independent_client(server, username).projects.get(project)
    reviewer.mergerequests.get(iid, lazy=True).approve()


def push(api: Project, branch: str, path: str = "late.txt") -> str:
    """A commit on `branch` (a push); returns its sha."""
    return str(
        api.commits.create(
            {
                "branch": branch,
                "commit_message": "late push",
                "actions": [{"action": "create", "file_path": path, "content": "late\n"}],
            }
        ).id
    )


def later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    """Runs `action` on another thread after `seconds` (a reviewer acting during a wait)."""
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()), daemon=True)
    thread.start()
    return thread


def fast(job):
    return job.with_options(retry_delay_seconds=0)


class Faults:
    """Faults injected by the session-wide proxy during one test (its counter is cumulative)."""

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.url = proxy.url
        self.start = proxy.injected

    @property
    def injected(self) -> int:
        return self.proxy.injected - self.start

    def fail(self, **rule) -> None:
        self.proxy.fail(**rule)


@pytest.fixture
def faults(gitlab_server, fault_proxy_factory) -> Faults:
    """A fault proxy in front of the GitLab fake, with this test's injection count."""
    return Faults(fault_proxy_factory(gitlab_server))


# --- ensure_branch -------------------------------------------------------------------------


def test_ensure_branch_creates_then_is_unchanged(gitlab, gitlab_project, api) -> None:
    main = head(api, "main")

    first = ensure_branch(gitlab, gitlab_project, "release/1.0")
    assert first.action == "created"
    assert first.resource == f"gitlab:project/{gitlab_project}/branch/release/1.0"
    assert first.detail == {"ref": "main", "commit": main}
    assert head(api, "release/1.0") == main

    second = ensure_branch(gitlab, gitlab_project, "release/1.0")
    assert second.action == "unchanged"
    assert second.detail == {"commit": main}


def test_ensure_branch_from_another_ref_and_existing_branch_left_alone(
    gitlab, gitlab_project, api
) -> None:
    feature_head = push_branch(api, "feature", {"a.txt": "a\n"})
    created = ensure_branch(gitlab, gitlab_project, "hotfix", ref="feature")
    assert created.action == "created"
    assert head(api, "hotfix") == feature_head

    # A changed ref on an existing branch does not move it: the job only ensures existence.
    again = ensure_branch(gitlab, gitlab_project, "hotfix", ref="main")
    assert again.action == "unchanged"
    assert head(api, "hotfix") == feature_head


def test_ensure_branch_dry_run_writes_nothing(gitlab, gitlab_project, api) -> None:
    change = ensure_branch(gitlab, gitlab_project, "planned", dry_run=True)
    assert (change.action, change.dry_run) == ("created", True)
    assert change.detail["commit"] == head(api, "main")
    assert "planned" not in branch_names(api)


@pytest.mark.parametrize(
    ("project", "branch", "ref"),
    [
        ("root/x", "bad..name", "main"),
        ("root/x", "-leading", "main"),
        ("no-namespace", "ok", "main"),
        ("root/x", "ok", " "),
    ],
)
def test_ensure_branch_rejects_invalid_input_before_any_request(project, branch, ref) -> None:
    # The connection points at nothing: a request would fail as transient, not as invalid input.
    unreachable = gitlab_connection_for("http://127.0.0.1:9")
    with pytest.raises(InvalidInputError):
        ensure_branch(unreachable, project, branch, ref=ref)


def test_ensure_branch_missing_ref_or_project_is_not_found(gitlab, gitlab_project, api) -> None:
    before = branch_names(api)
    with pytest.raises(NotFoundError, match="ref 'nope' does not exist"):
        ensure_branch(gitlab, gitlab_project, "x", ref="nope")
    with pytest.raises(NotFoundError, match="gitlab:project/root/missing-project"):
        ensure_branch(gitlab, "root/missing-project", "x")
    assert branch_names(api) == before


def test_ensure_branch_transient_error_is_retried(
    gitlab_server, gitlab_project, api, faults
) -> None:
    faults.fail(status=503, count=2, method="POST", path=r"/repository/branches$")
    change = fast(ensure_branch)(gitlab_connection_for(faults.url), gitlab_project, "retried")
    assert change.action == "created"
    assert faults.injected == 2
    assert "retried" in branch_names(api)


def test_ensure_branch_permanent_error_is_not_retried(
    gitlab_server, gitlab_project, api, faults
) -> None:
    faults.fail(status=403, count=5, method="POST", path=r"/repository/branches$")
    with pytest.raises(PermissionDeniedError, match="GitLab answered 403"):
        fast(ensure_branch)(gitlab_connection_for(faults.url), gitlab_project, "denied")
    assert faults.injected == 1
    assert "denied" not in branch_names(api)


def test_read_only_token_is_permission_denied(gitlab_server, gitlab_project, api) -> None:
    reader = gitlab_connection_for(gitlab_server, token="glpat-readonly-carol")
    with pytest.raises(PermissionDeniedError, match=f"gitlab:project/{gitlab_project}/branch/ro"):
        ensure_branch(reader, gitlab_project, "ro")
    assert "ro" not in branch_names(api)


# --- commit_files --------------------------------------------------------------------------


def test_commit_files_creates_in_one_commit_then_is_unchanged(gitlab, gitlab_project, api) -> None:
    main = head(api, "main")
    files = {"tenants/acme.yaml": "name: acme\n", "tenants/globex.yaml": "name: globex\n"}

    first = commit_files(gitlab, gitlab_project, "main", files, "Add tenants")
    assert first.action == "created"
    assert first.resource == f"gitlab:project/{gitlab_project}/branch/main"
    assert first.detail["created"] == ["tenants/acme.yaml", "tenants/globex.yaml"]
    assert first.detail["updated"] == []
    commit = api.commits.get(head(api, "main"))
    assert first.detail["commit"] == commit.id
    assert commit.parent_ids == [main]  # one commit for both files
    assert commit.message == "Add tenants"
    for path, content in files.items():
        assert api.files.get(path, ref="main").decode() == content.encode()

    second = commit_files(gitlab, gitlab_project, "main", files, "Add tenants")
    assert second.action == "unchanged"
    assert second.detail == {"commit": commit.id, "created": [], "updated": []}
    assert head(api, "main") == commit.id


def test_commit_files_updates_only_what_differs(gitlab, gitlab_project, api) -> None:
    commit_files(gitlab, gitlab_project, "main", {"a.txt": "1\n", "b.txt": "1\n"}, "v1")
    before = head(api, "main")

    change = commit_files(
        gitlab, gitlab_project, "main", {"a.txt": "2\n", "b.txt": "1\n", "c.txt": "new\n"}, "v2"
    )
    assert change.action == "updated"
    assert (change.detail["created"], change.detail["updated"]) == (["c.txt"], ["a.txt"])
    commit = api.commits.get(head(api, "main"))
    assert commit.parent_ids == [before]
    assert api.files.get("a.txt", ref="main").decode() == b"2\n"
    assert api.files.get("c.txt", ref="main").decode() == b"new\n"
    # b.txt was not rewritten: its last commit is still the first one.
    assert api.files.get("b.txt", ref="main").last_commit_id == before


def test_commit_files_dry_run_writes_nothing(gitlab, gitlab_project, api) -> None:
    commit_files(gitlab, gitlab_project, "main", {"a.txt": "1\n"}, "v1")
    before = head(api, "main")
    change = commit_files(
        gitlab, gitlab_project, "main", {"a.txt": "2\n", "b.txt": "x\n"}, "v2", dry_run=True
    )
    assert (change.action, change.dry_run) == ("updated", True)
    assert change.detail == {"created": ["b.txt"], "updated": ["a.txt"]}
    assert head(api, "main") == before
    assert api.files.get("a.txt", ref="main").decode() == b"1\n"


def test_commit_files_creates_a_missing_branch_from_start_branch(
    gitlab, gitlab_project, api
) -> None:
    main = head(api, "main")
    with pytest.raises(NotFoundError, match="pass start_branch"):
        commit_files(gitlab, gitlab_project, "tenant/acme", {"acme.yaml": "a\n"}, "Add acme")
    planned = commit_files(
        gitlab,
        gitlab_project,
        "tenant/acme",
        {"acme.yaml": "a\n"},
        "Add acme",
        start_branch="main",
        dry_run=True,
    )
    assert (planned.action, planned.dry_run) == ("created", True)
    assert "tenant/acme" not in branch_names(api)

    change = commit_files(
        gitlab, gitlab_project, "tenant/acme", {"acme.yaml": "a\n"}, "Add acme", start_branch="main"
    )
    assert change.action == "created"
    assert api.commits.get(head(api, "tenant/acme")).parent_ids == [main]
    assert head(api, "main") == main
    again = commit_files(
        gitlab, gitlab_project, "tenant/acme", {"acme.yaml": "a\n"}, "Add acme", start_branch="main"
    )
    assert again.action == "unchanged"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "msg"),
        ({"../etc/passwd": "x"}, "msg"),
        ({"/abs.txt": "x"}, "msg"),
        ({"a//b": "x"}, "msg"),
        ({"ok.txt": "x"}, "  "),
    ],
)
def test_commit_files_rejects_invalid_input(gitlab, gitlab_project, api, files, message) -> None:
    before = head(api, "main")
    with pytest.raises(InvalidInputError):
        commit_files(gitlab, gitlab_project, "main", files, message)
    assert head(api, "main") == before


def test_commit_files_transient_error_is_retried_and_commits_once(
    gitlab_server, gitlab_project, api, faults
) -> None:
    before = head(api, "main")
    faults.fail(status=502, count=1, method="POST", path=r"/repository/commits$")
    change = fast(commit_files)(
        gitlab_connection_for(faults.url), gitlab_project, "main", {"a.txt": "1\n"}, "v1"
    )
    assert change.action == "created"
    assert faults.injected == 1
    assert api.commits.get(head(api, "main")).parent_ids == [before]


def test_commit_files_concurrent_edit_is_a_conflict_not_retried(
    gitlab_server, gitlab_project, api, faults
) -> None:
    commit_files(
        gitlab_connection_for(gitlab_server), gitlab_project, "main", {"a.txt": "1\n"}, "v1"
    )
    before = head(api, "main")
    # GitLab's answer when last_commit_id no longer matches the file.
    body = (
        '{"message": "You are attempting to update a file that has changed '
        'since you started editing it."}'
    )
    faults.fail(status=400, count=3, method="POST", path=r"/repository/commits$", body=body)
    with pytest.raises(ConflictError, match="changed since you started editing"):
        fast(commit_files)(
            gitlab_connection_for(faults.url), gitlab_project, "main", {"a.txt": "2\n"}, "v2"
        )
    assert faults.injected == 1
    assert head(api, "main") == before


def test_commit_files_really_refuses_a_stale_update(
    gitlab, gitlab_server, gitlab_project, api
) -> None:
    """The fake enforces last_commit_id like GitLab: the job's update carries it."""
    commit_files(gitlab, gitlab_project, "main", {"a.txt": "1\n"}, "v1")
    stale = api.files.get("a.txt", ref="main").last_commit_id
    api.commits.create(
        {
            "branch": "main",
            "commit_message": "other",
            "actions": [{"action": "update", "file_path": "a.txt", "content": "other\n"}],
        }
    )
    with pytest.raises(python_gitlab.GitlabCreateError, match="changed since you started editing"):
        api.commits.create(
            {
                "branch": "main",
                "commit_message": "stale",
                "actions": [
                    {
                        "action": "update",
                        "file_path": "a.txt",
                        "content": "2\n",
                        "last_commit_id": stale,
                    }
                ],
            }
        )


# --- ensure_merge_request ------------------------------------------------------------------


def test_ensure_merge_request_creates_then_unchanged_then_updates(
    gitlab, gitlab_project, api
) -> None:
    push_branch(api, "feature", {"f.txt": "f\n"})

    created = ensure_merge_request(
        gitlab, gitlab_project, "feature", "main", "Add f", "Why: tests."
    )
    iid = created.detail["iid"]
    assert created.action == "created"
    assert created.resource == f"gitlab:project/{gitlab_project}/merge_request/{iid}"
    mr = api.mergerequests.get(iid)
    assert (mr.title, mr.description, mr.state, mr.source_branch, mr.target_branch) == (
        "Add f",
        "Why: tests.",
        "opened",
        "feature",
        "main",
    )
    assert created.detail["web_url"] == mr.web_url

    same = ensure_merge_request(gitlab, gitlab_project, "feature", "main", "Add f", "Why: tests.")
    assert (same.action, same.detail["iid"]) == ("unchanged", iid)

    renamed = ensure_merge_request(
        gitlab, gitlab_project, "feature", "main", "Add f (v2)", "Why: tests."
    )
    assert (renamed.action, renamed.detail["iid"], renamed.detail["changed"]) == (
        "updated",
        iid,
        ["title"],
    )
    mr = api.mergerequests.get(iid)
    assert (mr.title, mr.description) == ("Add f (v2)", "Why: tests.")
    assert len(api.mergerequests.list(get_all=True)) == 1


def test_ensure_merge_request_dry_runs_write_nothing(gitlab, gitlab_project, api) -> None:
    push_branch(api, "feature", {"f.txt": "f\n"})
    planned = ensure_merge_request(gitlab, gitlab_project, "feature", "main", "Add f", dry_run=True)
    assert (planned.action, planned.dry_run) == ("created", True)
    assert planned.resource == f"gitlab:project/{gitlab_project}/merge_request/feature->main"
    assert api.mergerequests.list(get_all=True) == []

    iid = ensure_merge_request(gitlab, gitlab_project, "feature", "main", "Add f").detail["iid"]
    update = ensure_merge_request(
        gitlab, gitlab_project, "feature", "main", "New", "New text", dry_run=True
    )
    assert (update.action, update.dry_run, update.detail["changed"]) == (
        "updated",
        True,
        ["title", "description"],
    )
    assert api.mergerequests.get(iid).title == "Add f"

    # A dry run composes with earlier dry-run jobs: a branch they would make is reported, not fatal.
    ahead = ensure_merge_request(gitlab, gitlab_project, "not-yet", "main", "Later", dry_run=True)
    assert (ahead.action, ahead.detail) == ("created", {"missing_branches": ["not-yet"]})


def test_ensure_merge_request_ignores_closed_ones(gitlab, gitlab_project, api) -> None:
    iid = open_merge_request(api)
    mr = api.mergerequests.get(iid)
    mr.state_event = "close"
    mr.save()
    change = ensure_merge_request(gitlab, gitlab_project, "feature", "main", "Change")
    assert change.action == "created"
    assert change.detail["iid"] != iid
    assert [m.iid for m in api.mergerequests.list(state="opened", get_all=True)] == [
        change.detail["iid"]
    ]


@pytest.mark.parametrize(
    ("source", "target", "title"),
    [
        ("feature", "feature", "t"),
        ("feature", "main", ""),
        ("feature", "main", "x" * 256),
        ("a b", "main", "t"),
    ],
)
def test_ensure_merge_request_rejects_invalid_input(
    gitlab, gitlab_project, api, source, target, title
) -> None:
    with pytest.raises(InvalidInputError):
        ensure_merge_request(gitlab, gitlab_project, source, target, title)
    assert api.mergerequests.list(get_all=True) == []


def test_ensure_merge_request_missing_branch_is_not_found(gitlab, gitlab_project, api) -> None:
    with pytest.raises(NotFoundError, match="branches do not exist: ghost"):
        ensure_merge_request(gitlab, gitlab_project, "ghost", "main", "Boo")
    assert api.mergerequests.list(get_all=True) == []


def test_ensure_merge_request_transient_error_is_retried(
    gitlab_server, gitlab_project, api, faults
) -> None:
    push_branch(api, "feature", {"f.txt": "f\n"})
    faults.fail(status=503, count=2, method="POST", path=r"/merge_requests$")
    change = fast(ensure_merge_request)(
        gitlab_connection_for(faults.url), gitlab_project, "feature", "main", "T"
    )
    assert change.action == "created"
    assert faults.injected == 2
    assert len(api.mergerequests.list(get_all=True)) == 1


def test_ensure_merge_request_permanent_error_is_not_retried(
    gitlab_server, gitlab_project, api
) -> None:
    push_branch(api, "feature", {"f.txt": "f\n"})
    reader = gitlab_connection_for(gitlab_server, token="glpat-readonly-dave")
    with pytest.raises(PermissionDeniedError, match="403"):
        fast(ensure_merge_request)(reader, gitlab_project, "feature", "main", "T")
    assert api.mergerequests.list(get_all=True) == []


# --- approvals -----------------------------------------------------------------------------


def test_get_merge_request_approval_reflects_approvals(
    gitlab, gitlab_server, gitlab_project, api
) -> None:
    iid = open_merge_request(api)
    before = get_merge_request_approval(gitlab, gitlab_project, iid)
    assert isinstance(before, MergeRequestApproval)
    assert before.model_dump(exclude={"web_url"}) == {
        "resource": f"gitlab:project/{gitlab_project}/merge_request/{iid}",
        "iid": iid,
        "state": "opened",
        "approved": False,
        "approvals_required": 1,
        "approvals_left": 1,
        "approvers": [],
        "head_sha": api.mergerequests.get(iid).sha,
    }
    assert before.web_url == api.mergerequests.get(iid).web_url

    approve_as(gitlab_server, gitlab_project, iid, "alice")
    after = get_merge_request_approval(gitlab, gitlab_project, iid)
    assert (after.approved, after.approvals_left, after.approvers) == (True, 0, ["alice"])


def test_get_merge_request_approval_errors(
    gitlab, gitlab_server, gitlab_project, api, faults
) -> None:
    with pytest.raises(InvalidInputError):
        get_merge_request_approval(gitlab, gitlab_project, 0)
    with pytest.raises(NotFoundError, match="merge_request/99: GitLab answered 404"):
        get_merge_request_approval(gitlab, gitlab_project, 99)
    iid = open_merge_request(api)
    faults.fail(status=500, count=1, method="GET", path=r"/approvals$")
    assert (
        fast(get_merge_request_approval)(
            gitlab_connection_for(faults.url), gitlab_project, iid
        ).approved
        is False
    )
    assert faults.injected == 1


def test_wait_returns_when_a_reviewer_approves_during_the_wait(
    gitlab, gitlab_server, gitlab_project, api, captured_logs
) -> None:
    iid = open_merge_request(api)
    reviewer = later(0.8, lambda: approve_as(gitlab_server, gitlab_project, iid, "bob"))
    started = time.monotonic()
    result = wait_for_merge_request_approval(
        gitlab, gitlab_project, iid, interval_seconds=0.2, timeout_seconds=20
    )
    reviewer.join()
    assert (result.approved, result.approvers, result.state) == (True, ["bob"], "opened")
    assert 0.8 <= time.monotonic() - started < 10
    assert "waiting for approval, 0 of 1 approvals" in captured_logs.text
    assert "approved (1 of 1 approvals: bob)" in captured_logs.text


def test_wait_times_out_without_retry(gitlab, gitlab_project, api, captured_logs) -> None:
    iid = open_merge_request(api)
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError, match=r"not approved after 1 s \(0 of 1 approvals\)"):
        fast(wait_for_merge_request_approval)(
            gitlab, gitlab_project, iid, interval_seconds=0.2, timeout_seconds=1
        )
    assert time.monotonic() - started < 5  # one wait, no retry of it
    assert captured_logs.text.count("waiting for approval") >= 2


def test_wait_fails_when_the_merge_request_is_closed(
    gitlab, gitlab_server, gitlab_project, api
) -> None:
    iid = open_merge_request(api)

    def close() -> None:
        mr = independent_client(gitlab_server).projects.get(gitlab_project).mergerequests.get(iid)
        mr.state_event = "close"
        mr.save()

    closer = later(0.5, close)
    with pytest.raises(ConflictError, match="closed before it was approved"):
        fast(wait_for_merge_request_approval)(
            gitlab, gitlab_project, iid, interval_seconds=0.2, timeout_seconds=20
        )
    closer.join()


def test_wait_rejects_bad_durations(gitlab, gitlab_project) -> None:
    with pytest.raises(InvalidInputError, match="interval_seconds"):
        wait_for_merge_request_approval(gitlab, gitlab_project, 1, interval_seconds=0)
    with pytest.raises(InvalidInputError, match="timeout_seconds"):
        wait_for_merge_request_approval(gitlab, gitlab_project, 1, timeout_seconds=-1)


# --- merge_merge_request -------------------------------------------------------------------


def test_merge_refuses_until_approved_then_merges_once(
    gitlab, gitlab_server, gitlab_project, api
) -> None:
    iid = open_merge_request(api)
    with pytest.raises(ConflictError, match=r"not mergeable \(not_approved\)"):
        merge_merge_request(gitlab, gitlab_project, iid)
    assert api.mergerequests.get(iid).state == "opened"

    approve_as(gitlab_server, gitlab_project, iid)
    planned = merge_merge_request(gitlab, gitlab_project, iid, dry_run=True)
    assert (planned.action, planned.dry_run) == ("updated", True)
    assert api.mergerequests.get(iid).state == "opened"

    merged = merge_merge_request(gitlab, gitlab_project, iid, remove_source_branch=True)
    assert merged.action == "updated"
    assert merged.resource == f"gitlab:project/{gitlab_project}/merge_request/{iid}"
    mr = api.mergerequests.get(iid)
    assert mr.state == "merged"
    assert merged.detail["merge_commit_sha"] == mr.merge_commit_sha == head(api, "main")
    assert api.files.get("feature.txt", ref="main").decode() == b"change\n"
    assert "feature" not in branch_names(api)

    again = merge_merge_request(gitlab, gitlab_project, iid)
    assert again.action == "unchanged"
    assert again.detail["merge_commit_sha"] == mr.merge_commit_sha


def test_merge_of_a_closed_merge_request_is_a_conflict(
    gitlab, gitlab_server, gitlab_project, api
) -> None:
    iid = open_merge_request(api)
    approve_as(gitlab_server, gitlab_project, iid)
    mr = api.mergerequests.get(iid)
    mr.state_event = "close"
    mr.save()
    with pytest.raises(ConflictError, match="merge request is closed"):
        merge_merge_request(gitlab, gitlab_project, iid)
    assert api.mergerequests.get(iid).state == "closed"


def test_merge_transient_error_is_retried(gitlab_server, gitlab_project, api, faults) -> None:
    iid = open_merge_request(api)
    approve_as(gitlab_server, gitlab_project, iid)
    faults.fail(status=503, count=1, method="PUT", path=r"/merge(\?|$)")
    change = fast(merge_merge_request)(gitlab_connection_for(faults.url), gitlab_project, iid)
    assert change.action == "updated"
    assert faults.injected == 1
    assert api.mergerequests.get(iid).state == "merged"


def test_merge_source_moved_is_a_conflict_not_retried(
    gitlab_server, gitlab_project, api, faults
) -> None:
    iid = open_merge_request(api)
    approve_as(gitlab_server, gitlab_project, iid)
    faults.fail(
        status=409,
        count=3,
        method="PUT",
        path=r"/merge(\?|$)",
        body='{"message": "SHA does not match HEAD of source branch: 0123abc"}',
    )
    with pytest.raises(ConflictError, match="SHA does not match"):
        fast(merge_merge_request)(gitlab_connection_for(faults.url), gitlab_project, iid)
    assert faults.injected == 1
    assert api.mergerequests.get(iid).state == "opened"


def test_merge_sends_the_checked_sha(gitlab_server, gitlab_project, api) -> None:
    """A push between the job's read and its merge request is refused by GitLab's sha check."""
    api.approvals.update(reset_approvals_on_push=False)  # else the push alone blocks the merge
    iid = open_merge_request(api)
    approve_as(gitlab_server, gitlab_project, iid)
    checked = api.mergerequests.get(iid).sha
    pushed: list[str] = []

    class PushAfterRead(GitLabConnection):
        """The job's own client, but someone pushes right after its read of the merge request."""

        _block_type_name = "MagicFlow Test Push After Read GitLab Connection"

        def get_client(self) -> python_gitlab.Gitlab:
            client = super().get_client()

            def push_after_read(response, *args, **kwargs) -> None:
                if (
                    response.request.method == "GET"
                    and response.request.path_url.endswith(f"/merge_requests/{iid}")
                    and not pushed
                ):
                    pushed.append(push(api, "feature"))

            client.session.hooks["response"].append(push_after_read)
            return client

    racing = PushAfterRead(url=gitlab_server, token=GITLAB_ROOT_TOKEN, timeout_seconds=10)
    with pytest.raises(ConflictError, match="SHA does not match HEAD of source branch") as refused:
        fast(merge_merge_request)(racing, gitlab_project, iid)
    assert pushed and pushed[0] in str(refused.value)
    mr = api.mergerequests.get(iid)
    assert mr.state == "opened"  # the pushed, unreviewed commit was not merged
    assert pushed and mr.sha == pushed[0] != checked


def test_merge_refuses_a_head_pushed_after_the_approval(
    gitlab, gitlab_server, gitlab_project, api, recording_proxies
) -> None:
    # With reset_approvals_on_push off, an approval survives a push: the dangerous case.
    api.approvals.update(reset_approvals_on_push=False)
    iid = open_merge_request(api)
    approve_as(gitlab_server, gitlab_project, iid)
    approval = get_merge_request_approval(gitlab, gitlab_project, iid)
    assert approval.approved and approval.head_sha == api.mergerequests.get(iid).sha
    late = push(api, "feature")
    assert get_merge_request_approval(gitlab, gitlab_project, iid).approved  # still approved

    proxied = recording_proxies.gitlab()
    with recording_proxies.no_writes():
        with pytest.raises(ConflictError, match="source branch moved after the approval"):
            fast(merge_merge_request)(proxied, gitlab_project, iid, approved_sha=approval.head_sha)
    assert api.mergerequests.get(iid).state == "opened"
    # Approving the new head again lets it merge, pinned to that head.
    fresh = get_merge_request_approval(gitlab, gitlab_project, iid)
    assert fresh.head_sha == late
    merged = merge_merge_request(gitlab, gitlab_project, iid, approved_sha=fresh.head_sha)
    assert merged.action == "updated"
    assert api.mergerequests.get(iid).state == "merged"


def test_a_push_resets_approvals_by_default_and_the_gate_waits_again(
    gitlab, gitlab_server, gitlab_project, api
) -> None:
    assert api.approvals.get().reset_approvals_on_push is True
    iid = open_merge_request(api)
    approve_as(gitlab_server, gitlab_project, iid)
    assert get_merge_request_approval(gitlab, gitlab_project, iid).approved
    push(api, "feature")
    after = get_merge_request_approval(gitlab, gitlab_project, iid)
    assert (after.approved, after.approvals_left, after.approvers) == (False, 1, [])
    with pytest.raises(DeadlineExceededError, match="0 of 1 approvals"):
        fast(wait_for_merge_request_approval)(
            gitlab, gitlab_project, iid, interval_seconds=0.1, timeout_seconds=0.3
        )
    with pytest.raises(ConflictError, match="not_approved"):
        merge_merge_request(gitlab, gitlab_project, iid)


def test_on_gitlab_free_the_gate_opens_at_once_and_approvers_are_still_reported(
    gitlab, gitlab_server, gitlab_project, api
) -> None:
    configure_gitlab_project(gitlab_server, gitlab_project, tier="free")
    iid = open_merge_request(api)
    raw = api.mergerequests.get(iid).approvals.get().attributes
    assert "approvals_required" not in raw and raw["approved"] is False  # Free's answer

    started = time.monotonic()
    approval = fast(wait_for_merge_request_approval)(
        gitlab, gitlab_project, iid, interval_seconds=5, timeout_seconds=600
    )
    assert time.monotonic() - started < 5  # the first check passed: no wait for a deadline
    assert (approval.approved, approval.approvals_required, approval.approvers) == (True, 0, [])
    approve_as(gitlab_server, gitlab_project, iid, "bob")
    assert get_merge_request_approval(gitlab, gitlab_project, iid).approvers == ["bob"]
    merged = merge_merge_request(gitlab, gitlab_project, iid, approved_sha=approval.head_sha)
    assert merged.action == "updated"


def test_merge_waits_out_the_checking_status_gitlab_shows_after_creation(
    gitlab, gitlab_server, gitlab_project, api, captured_logs
) -> None:
    configure_gitlab_project(gitlab_server, gitlab_project, pending_status_reads=2)
    iid = open_merge_request(api)
    approve_as(gitlab_server, gitlab_project, iid)
    merged = fast(merge_merge_request)(gitlab, gitlab_project, iid)
    assert merged.action == "updated"
    assert "still checking mergeability (preparing)" in captured_logs.text
    assert "still checking mergeability (checking)" in captured_logs.text
    assert api.mergerequests.get(iid).state == "merged"


def test_a_forks_merge_request_from_a_branch_of_the_same_name_is_not_ours(
    gitlab, gitlab_server, gitlab_project, api
) -> None:
    upstream_id = api.id
    alice = independent_client(gitlab_server, "alice")
    fork = alice.projects.get(alice.projects.get(gitlab_project).forks.create({}).id)
    push_branch(fork, "feature", {"fork.txt": "from a fork\n"})
    theirs = fork.mergerequests.create(
        {
            "source_branch": "feature",
            "target_branch": "main",
            "title": "From a fork",
            "target_project_id": upstream_id,
        }
    )
    push_branch(api, "feature", {"ours.txt": "ours\n"})

    ours = ensure_merge_request(gitlab, gitlab_project, "feature", "main", "Ours")
    assert ours.action == "created"
    assert ours.detail["iid"] != theirs.iid
    listed = api.mergerequests.list(state="opened", get_all=True)
    assert {(m.iid, m.source_project_id, m.title) for m in listed} == {
        (theirs.iid, fork.id, "From a fork"),
        (ours.detail["iid"], upstream_id, "Ours"),
    }
    again = ensure_merge_request(gitlab, gitlab_project, "feature", "main", "Ours")
    assert (again.action, again.detail["iid"]) == ("unchanged", ours.detail["iid"])


# --- secrets and composition -----------------------------------------------------------------


def test_token_and_file_contents_never_leak(gitlab_server, gitlab_project, captured_logs) -> None:
    token = f"glpat-{uuid.uuid4().hex}"  # a valid user of the fake
    content = f"password: {uuid.uuid4().hex}\n"
    gitlab = gitlab_connection_for(gitlab_server, token=token)
    changes = [
        ensure_branch(gitlab, gitlab_project, "config"),
        commit_files(gitlab, gitlab_project, "config", {"app.env": content}, "Add config"),
        ensure_merge_request(gitlab, gitlab_project, "config", "main", "Config"),
    ]
    bad_token = f"glpat-!{uuid.uuid4().hex}"  # rejected with 401
    with pytest.raises(PermissionDeniedError) as error:
        commit_files(
            gitlab_connection_for(gitlab_server, bad_token),
            gitlab_project,
            "config",
            {"app.env": content},
            "Again",
        )
    texts = [captured_logs.text, str(error.value), *(c.model_dump_json() for c in changes)]
    for secret in (token, bad_token, content.strip(), content.split()[1]):
        assert all(secret not in text for text in texts)
    assert "401" in str(error.value)


@flow
def propose_config(gitlab: GitLabConnection, project: str) -> list[Change]:
    """A runbook in miniature: branch, files, merge request."""
    return [
        ensure_branch(gitlab, project, "tenant/acme"),
        commit_files(
            gitlab, project, "tenant/acme", {"tenants/acme.yaml": "name: acme\n"}, "Add acme"
        ),
        ensure_merge_request(gitlab, project, "tenant/acme", "main", "Add tenant acme"),
    ]


def test_jobs_compose_in_a_flow_and_a_second_run_changes_nothing(
    gitlab, gitlab_server, gitlab_project, api
) -> None:
    first = propose_config(gitlab, gitlab_project)
    assert [c.action for c in first] == ["created", "created", "created"]
    second = propose_config(gitlab, gitlab_project)
    assert [c.action for c in second] == ["unchanged", "unchanged", "unchanged"]
    iid = first[2].detail["iid"]
    assert [m.iid for m in api.mergerequests.list(state="opened", get_all=True)] == [iid]
    approve_as(gitlab_server, gitlab_project, iid)
    assert wait_for_merge_request_approval(
        gitlab, gitlab_project, iid, interval_seconds=0.1
    ).approved
    assert merge_merge_request(gitlab, gitlab_project, iid).action == "updated"
    assert api.files.get("tenants/acme.yaml", ref="main").decode() == b"name: acme\n"


# --- failures go through the one error table -------------------------------------------------


@pytest.mark.parametrize("url", ["gitlab.example.com", "http://", "http://:80", "127.0.0.1:9"])
def test_an_invalid_url_is_invalid_input_and_not_retried(url, captured_logs) -> None:
    with pytest.raises(InvalidInputError, match="the endpoint URL is not valid"):
        fast(ensure_branch)(gitlab_connection_for(url), "root/any", "x")
    assert " - Retry " not in captured_logs.text


def test_a_tls_failure_is_invalid_input_and_not_retried(faults, captured_logs) -> None:
    # The proxy speaks plain HTTP: a TLS handshake with it fails like a wrong certificate.
    tls_url = faults.url.replace("http://", "https://")
    with pytest.raises(InvalidInputError, match=r"TLS failed .*\(SSLError\)"):
        fast(ensure_branch)(gitlab_connection_for(tls_url), "root/any", "x")
    assert " - Retry " not in captured_logs.text


def test_a_truncated_answer_is_retried(gitlab_project, api, faults) -> None:
    faults.fail(count=1, method="GET", path=r"/repository/branches/", truncate=10)
    change = fast(ensure_branch)(gitlab_connection_for(faults.url), gitlab_project, "cut")
    assert change.action == "created"
    assert faults.injected == 1
    assert "cut" in branch_names(api)


def test_a_refused_connection_is_transient() -> None:
    from tests.backends import free_port

    nowhere = gitlab_connection_for(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientError, match="unreachable"):
        ensure_branch.with_options(retries=0)(nowhere, "root/any", "x")


# --- idempotency at the wire: a second run and a dry run send no write -----------------------


def test_ensure_branch_second_run_and_dry_run_send_no_writes(
    recording_proxies, gitlab_project
) -> None:
    gitlab = recording_proxies.gitlab()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_branch(gitlab, gitlab_project, "release/1.0", **kw)
    )
    assert [(w.method, w.path.rsplit("/", 2)[-2:]) for w in writes] == [
        ("POST", ["repository", "branches"])
    ]


def test_commit_files_second_run_and_dry_run_send_no_writes(
    recording_proxies, gitlab_project
) -> None:
    gitlab = recording_proxies.gitlab()
    files = {"tenants/acme.yaml": "name: acme\n", "tenants/globex.yaml": "name: globex\n"}
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: commit_files(gitlab, gitlab_project, "main", commit_message="Add", **kw),
        wanted={"files": files},
        changed={"files": {**files, "tenants/acme.yaml": "name: acme\nquota: 5\n"}},
    )
    assert [w.method for w in writes] == ["POST"]  # one commit for both files


def test_ensure_merge_request_second_run_and_dry_run_send_no_writes(
    recording_proxies, gitlab_project, api
) -> None:
    gitlab = recording_proxies.gitlab()
    push_branch(api, "feature", {"f.txt": "f\n"})
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_merge_request(gitlab, gitlab_project, "feature", "main", **kw),
        wanted={"title": "Add f", "description": "Why"},
        changed={"title": "Add f (v2)", "description": "Why"},
    )
    assert [w.method for w in writes] == ["POST"]


def test_merge_merge_request_second_run_and_dry_run_send_no_writes(
    recording_proxies, gitlab_server, gitlab_project, api
) -> None:
    gitlab = recording_proxies.gitlab()
    iid = open_merge_request(api)
    approve_as(gitlab_server, gitlab_project, iid)
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: merge_merge_request(gitlab, gitlab_project, iid, **kw), first="updated"
    )
    assert [(w.method, w.path.rsplit("/", 1)[-1]) for w in writes] == [("PUT", "merge")]

"""One real round trip through `GitLabConnection` against the GitLab fake over HTTP."""

import gitlab as python_gitlab
import pytest

from blocks import GitLabConnection


def test_merge_request_created_then_read_back(
    gitlab: GitLabConnection, gitlab_project: str
) -> None:
    client = gitlab.get_client()
    project = client.projects.get(gitlab_project)
    project.branches.create({"branch": "feature/smoke", "ref": "main"})
    project.commits.create(
        {
            "branch": "feature/smoke",
            "commit_message": "Add smoke file",
            "actions": [{"action": "create", "file_path": "docs/smoke.md", "content": "hello\n"}],
        }
    )
    created = project.mergerequests.create(
        {"source_branch": "feature/smoke", "target_branch": "main", "title": "Smoke"}
    )

    # Read back through a fresh client, by path (URL-encoded as root%2F...) and by filters.
    reader = gitlab.get_client().projects.get(gitlab_project)
    read = reader.mergerequests.get(created.iid)
    assert (read.title, read.state, read.source_branch, read.target_branch) == (
        "Smoke",
        "opened",
        "feature/smoke",
        "main",
    )
    assert read.detailed_merge_status == "not_approved"
    listed = reader.mergerequests.list(state="opened", source_branch="feature/smoke", get_all=True)
    assert [mr.iid for mr in listed] == [created.iid]
    assert reader.files.get("docs/smoke.md", ref="feature/smoke").decode() == b"hello\n"
    assert reader.files.raw("docs/smoke.md", ref="feature/smoke") == b"hello\n"


def test_wrong_token_is_rejected_like_gitlab(gitlab_server: str) -> None:
    client = GitLabConnection(url=gitlab_server, token="not-a-gitlab-token").get_client()
    with pytest.raises(python_gitlab.GitlabAuthenticationError) as error:
        client.auth()
    assert error.value.response_code == 401


def test_client_surfaces_rate_limiting_at_once(gitlab_server: str, fault_proxy_factory) -> None:
    """Prefect is the only retry layer: python-gitlab must not retry a 429 itself."""
    from tests.fixtures.gitlab import gitlab_connection_for

    proxy = fault_proxy_factory(gitlab_server)
    before = proxy.injected
    proxy.fail(
        status=429,
        count=2,
        method="GET",
        path=r"^/api/v4/user$",
        body='{"message": "429 Too Many Requests"}',
    )
    with pytest.raises(python_gitlab.exceptions.GitlabError) as raised:
        gitlab_connection_for(proxy.url).get_client().auth()
    assert raised.value.response_code == 429
    assert proxy.injected - before == 1

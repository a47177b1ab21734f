"""`GitLabConnection` builds the client MagicFlow relies on: its URL, its token, its timeout
and no retries of its own, checked against the GitLab fake over HTTP and read back raw."""

import json
import urllib.request
from urllib.parse import quote

import gitlab as python_gitlab
import pytest
import requests

from blocks import GitLabConnection
from tests.fixtures.gitlab import GITLAB_ROOT_TOKEN, gitlab_connection_for


def raw_get(server: str, path: str) -> dict:
    """GitLab's answer read with plain urllib as root: not through the block."""
    request = urllib.request.Request(
        f"{server}/api/v4/{path}", headers={"PRIVATE-TOKEN": GITLAB_ROOT_TOKEN}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return dict(json.loads(response.read()))


def test_the_block_client_writes_as_its_token_at_its_url(
    gitlab_server: str, gitlab_project: str, recording_proxies
) -> None:
    block = recording_proxies.gitlab(token="glpat-carol")
    project = block.get_client().projects.get(gitlab_project)
    commit = project.commits.create(
        {
            "branch": "main",
            "commit_message": "Smoke",
            "actions": [{"action": "create", "file_path": "smoke.md", "content": "hello\n"}],
        }
    )
    # What reached GitLab: one write, at the block's URL (the proxy), to the project's API.
    assert [str(w) for w in recording_proxies.writes("gitlab")] == [
        f"POST /api/v4/projects/{project.id}/repository/commits"
    ]
    # Read back without the block: the commit is there, made by the token's user.
    stored = raw_get(
        gitlab_server, f"projects/{quote(gitlab_project, safe='')}/repository/commits/main"
    )
    assert (stored["id"], stored["author_name"], stored["title"]) == (commit.id, "Carol", "Smoke")


def test_wrong_token_is_rejected_like_gitlab(gitlab_server: str) -> None:
    client = GitLabConnection(url=gitlab_server, token="not-a-gitlab-token").get_client()
    with pytest.raises(python_gitlab.GitlabAuthenticationError) as error:
        client.auth()
    assert error.value.response_code == 401


def test_client_surfaces_rate_limiting_at_once(gitlab_server: str, fault_proxy_factory) -> None:
    """Prefect is the only retry layer: python-gitlab must not retry a 429 itself."""
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


def test_client_gives_up_after_the_blocks_timeout(gitlab_server: str, fault_proxy_factory) -> None:
    proxy = fault_proxy_factory(gitlab_server)
    before = proxy.injected
    # The proxy holds the request five times longer than the block waits, then drops it.
    proxy.fail(status=0, count=1, method="GET", path=r"^/api/v4/user$", delay=5)
    slow = GitLabConnection(url=proxy.url, token=GITLAB_ROOT_TOKEN, timeout_seconds=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        slow.get_client().auth()
    assert proxy.injected - before == 1  # and the client did not try again

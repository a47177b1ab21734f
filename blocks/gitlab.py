"""GitLab connection block: instance URL, access token, TLS verification."""

from typing import Any

import gitlab
from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class _GitlabWithoutOwnRetries(gitlab.Gitlab):
    """python-gitlab retries 429 answers itself whatever ``retry_transient_errors`` says.

    Prefect's task retries are MagicFlow's only retry layer, so the client must
    surface a 429 at once.
    """

    def http_request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("obey_rate_limit", False)
        return super().http_request(*args, **kwargs)


class GitLabConnection(Block):
    """Connection to a GitLab instance with a personal, project or group access token.

    Attributes:
        url: Base URL of the GitLab instance.
        token: Access token with the ``api`` scope.
        verify_tls: Verify the server's TLS certificate.
        ca_cert_path: Path of a CA bundle for a private CA (implies verification).
        timeout_seconds: Timeout of one HTTP request.

    Example:
        Load a saved GitLab connection:
        ```python
        from blocks import GitLabConnection

        gitlab = GitLabConnection.load("BLOCK_NAME")
        project = gitlab.get_client().projects.get("platform/tenants")
        ```
    """

    _block_type_name = "MagicFlow GitLab Connection"
    _logo_url = "https://about.gitlab.com/images/press/logo/png/gitlab-icon-rgb.png"  # type: ignore[assignment]
    _documentation_url = "https://python-gitlab.readthedocs.io/en/stable/api-usage.html"  # type: ignore[assignment]

    url: str = Field(
        default="https://gitlab.com", title="URL", description="Base URL of the GitLab instance."
    )
    token: SecretStr = Field(title="Access token", description="Token with the api scope.")
    verify_tls: bool = Field(
        default=True, title="Verify TLS", description="Verify the server's TLS certificate."
    )
    ca_cert_path: str | None = Field(
        default=None, title="CA bundle path", description="CA bundle for a private CA."
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, title="Timeout (s)", description="Timeout of one HTTP request."
    )

    def get_client(self) -> gitlab.Gitlab:
        """Builds a python-gitlab client.

        Retries are left to Prefect (see the job contract), so the client's own
        retries (of 5xx and of 429) are off.

        Returns:
            A ``gitlab.Gitlab`` client; no request is made until it is used.
        """
        verify: bool | str = self.ca_cert_path or self.verify_tls
        return _GitlabWithoutOwnRetries(
            url=self.url,
            private_token=self.token.get_secret_value(),
            ssl_verify=verify,
            timeout=self.timeout_seconds,
            retry_transient_errors=False,
        )

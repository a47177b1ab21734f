"""LangFlow connection block: server URL and API key."""

import os
from collections.abc import Mapping
from typing import ClassVar

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr


class LangflowConnection(Block):
    """Connection to a LangFlow server's REST API.

    Attributes:
        url: Base URL of the LangFlow server.
        api_key: LangFlow API key, sent as the ``x-api-key`` header.
        verify_tls: Verify the server's TLS certificate.
        timeout_seconds: Timeout of one HTTP request (a flow run can be slow).

    Example:
        Load a saved LangFlow connection:
        ```python
        from blocks import LangflowConnection

        langflow = LangflowConnection.load("BLOCK_NAME")
        http = langflow.get_client()
        ```
    """

    _block_type_name = "MagicFlow Langflow Connection"
    _logo_url = "https://avatars.githubusercontent.com/u/128686189"  # type: ignore[assignment]
    _documentation_url = "https://docs.langflow.org/api-reference-api-examples"  # type: ignore[assignment]

    url: str = Field(
        default="http://127.0.0.1:7860", title="URL", description="Base URL of the server."
    )
    api_key: SecretStr | None = Field(
        default=None, title="API key", description="LangFlow API key (x-api-key header)."
    )
    verify_tls: bool = Field(
        default=True, title="Verify TLS", description="Verify the server's TLS certificate."
    )
    timeout_seconds: float = Field(
        default=120.0, gt=0, title="Timeout (s)", description="Timeout of one HTTP request."
    )

    URL_ENV: ClassVar[str] = "LANGFLOW_API_URL"
    """Environment variable with the server URL (the name LangFlow's own tooling reads)."""
    API_KEY_ENV: ClassVar[str] = "LANGFLOW_API_KEY"
    """Environment variable with the API key (the name LangFlow's own tooling reads)."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "LangflowConnection":
        """Builds a connection from ``LANGFLOW_API_URL`` and ``LANGFLOW_API_KEY``.

        The same variables LangFlow's own tooling reads, so a shell already set up
        for LangFlow needs nothing else. An unset URL means the local default.

        Args:
            environ: Where to read the variables (defaults to ``os.environ``).

        Returns:
            An unsaved connection; ``.save(name)`` it to make it a block.

        Example:
            >>> LangflowConnection.from_environment(
            ...     {"LANGFLOW_API_URL": "http://lf:7860", "LANGFLOW_API_KEY": "sk-1"}
            ... ).url
            'http://lf:7860'
        """
        environ = os.environ if environ is None else environ
        url = environ.get(cls.URL_ENV, "").strip() or cls.model_fields["url"].default
        api_key = environ.get(cls.API_KEY_ENV, "").strip()
        return cls(url=url, api_key=SecretStr(api_key) if api_key else None)

    def get_client(self) -> httpx.Client:
        """Builds an HTTP client for the LangFlow API.

        Returns:
            An ``httpx.Client`` whose base URL is `url`, sending the API key.
        """
        headers = {"x-api-key": self.api_key.get_secret_value()} if self.api_key else {}
        return httpx.Client(
            base_url=self.url,
            headers=headers,
            verify=self.verify_tls,
            timeout=self.timeout_seconds,
        )

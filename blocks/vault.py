"""Vault (or OpenBao) connection block: address, token or AppRole, namespace, KV mount."""

from typing import Any

import hvac
import hvac.exceptions
from hvac.adapters import JSONAdapter
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator


class _StatusKeepingAdapter(JSONAdapter):
    """hvac's JSON adapter, whose errors also carry the HTTP status as ``status_code``.

    hvac names only some statuses by exception class (405, 409, 412, 413, 504... all
    become ``UnexpectedError``); MagicFlow's error table needs the status itself.
    """

    def _raise_for_error(self, method: str, url: str, response: Any) -> None:
        try:
            super()._raise_for_error(method, url, response)
        except hvac.exceptions.VaultError as error:
            error.status_code = response.status_code
            raise


class VaultConnection(Block):
    """Connection to HashiCorp Vault or OpenBao, authenticated by token or AppRole.

    Give either `token`, or both `approle_role_id` and `approle_secret_id`.

    Attributes:
        url: Address of the server.
        token: A Vault token.
        approle_role_id: AppRole role id.
        approle_secret_id: AppRole secret id.
        approle_mount: Mount path of the AppRole auth method.
        namespace: Vault Enterprise / OpenBao namespace, if any.
        kv_mount: Mount path of the KV version 2 secrets engine.
        verify_tls: Verify the server's TLS certificate.
        ca_cert_path: Path of a CA bundle for a private CA (implies verification).
        timeout_seconds: Timeout of one HTTP request.

    Example:
        Load a saved Vault connection:
        ```python
        from blocks import VaultConnection

        vault = VaultConnection.load("BLOCK_NAME")
        client = vault.get_client()
        ```
    """

    _block_type_name = "MagicFlow Vault Connection"
    _logo_url = "https://www.vectorlogo.zone/logos/vaultproject/vaultproject-icon.svg"  # type: ignore[assignment]
    _documentation_url = "https://python-hvac.org/en/stable/usage/index.html"  # type: ignore[assignment]

    url: str = Field(
        default="http://127.0.0.1:8200", title="URL", description="Address of the server."
    )
    token: SecretStr | None = Field(default=None, title="Token", description="A Vault token.")
    approle_role_id: str | None = Field(
        default=None, title="AppRole role id", description="Role id for AppRole login."
    )
    approle_secret_id: SecretStr | None = Field(
        default=None, title="AppRole secret id", description="Secret id for AppRole login."
    )
    approle_mount: str = Field(
        default="approle", title="AppRole mount", description="Mount path of AppRole auth."
    )
    namespace: str | None = Field(
        default=None, title="Namespace", description="Enterprise or OpenBao namespace."
    )
    kv_mount: str = Field(
        default="secret", title="KV mount", description="Mount path of the KV v2 engine."
    )
    verify_tls: bool = Field(
        default=True, title="Verify TLS", description="Verify the server's TLS certificate."
    )
    ca_cert_path: str | None = Field(
        default=None, title="CA bundle path", description="CA bundle for a private CA."
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, title="Timeout (s)", description="Timeout of one HTTP request."
    )

    @model_validator(mode="after")
    def _check_auth(self) -> "VaultConnection":
        approle = (self.approle_role_id, self.approle_secret_id)
        if self.token is None and None in approle:
            raise ValueError("give a token, or both approle_role_id and approle_secret_id")
        if self.token is not None and approle != (None, None):
            raise ValueError("give a token or AppRole credentials, not both")
        return self

    def get_client(self) -> hvac.Client:
        """Builds an authenticated hvac client (AppRole logs in here).

        Returns:
            An ``hvac.Client``.
        """
        verify: bool | str = self.ca_cert_path or self.verify_tls
        client = hvac.Client(
            url=self.url,
            token=self.token.get_secret_value() if self.token else None,
            namespace=self.namespace,
            verify=verify,
            timeout=self.timeout_seconds,
            adapter=_StatusKeepingAdapter,
        )
        if self.token is None:
            assert self.approle_role_id and self.approle_secret_id  # noqa: S101 - validated
            client.auth.approle.login(
                role_id=self.approle_role_id,
                secret_id=self.approle_secret_id.get_secret_value(),
                mount_point=self.approle_mount,
            )
        return client

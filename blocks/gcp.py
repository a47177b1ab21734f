"""GCP connection block: prefect-gcp credentials plus endpoint overrides for emulators."""

from typing import Any

from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import secretmanager
from google.cloud.storage import Client as StorageClient
from prefect_gcp import GcpCredentials
from pydantic import Field


class GcpConnection(GcpCredentials):
    """prefect-gcp `GcpCredentials` that can also point at local emulators.

    Everything `GcpCredentials` does works unchanged. The extra fields let the
    same jobs talk to fake-gcs-server, a Secret Manager emulator or a quota fake
    without code changes: only the block differs.

    Attributes:
        storage_endpoint: Cloud Storage API endpoint; Google's when empty.
        secret_manager_endpoint: Secret Manager REST endpoint; Google's when empty.
        cloud_quotas_endpoint: Cloud Quotas API endpoint.
        anonymous: Use anonymous credentials (emulators only).

    Example:
        Load a saved GCP connection:
        ```python
        from blocks import GcpConnection

        gcp = GcpConnection.load("BLOCK_NAME")
        storage = gcp.get_cloud_storage_client()
        ```
    """

    _block_type_name = "MagicFlow GCP Connection"
    _documentation_url = "https://cloud.google.com/python/docs/reference"

    storage_endpoint: str | None = Field(
        default=None, title="Storage endpoint", description="Cloud Storage API endpoint override."
    )
    secret_manager_endpoint: str | None = Field(
        default=None,
        title="Secret Manager endpoint",
        description="Secret Manager REST endpoint override.",
    )
    cloud_quotas_endpoint: str = Field(
        default="https://cloudquotas.googleapis.com",
        title="Cloud Quotas endpoint",
        description="Cloud Quotas API endpoint.",
    )
    anonymous: bool = Field(
        default=False,
        title="Anonymous",
        description="Use anonymous credentials (for local emulators only).",
    )

    def block_initialization(self) -> None:
        """Skips prefect-gcp's credential discovery in anonymous mode (there is none)."""
        if not self.anonymous:
            super().block_initialization()

    def get_credentials_from_service_account(self) -> Credentials:
        """Returns anonymous credentials in anonymous mode, else prefect-gcp's.

        Returns:
            Google credentials for every client this block builds.
        """
        if self.anonymous:
            return AnonymousCredentials()
        return super().get_credentials_from_service_account()

    def get_cloud_storage_client(self, project: str | None = None) -> StorageClient:
        """Builds a Cloud Storage client for `storage_endpoint` or Google's.

        Args:
            project: Overrides the block's project.

        Returns:
            A ``google.cloud.storage.Client``.
        """
        options: dict[str, Any] = {}
        if self.storage_endpoint:
            options["api_endpoint"] = self.storage_endpoint
        return StorageClient(
            project=project or self.project,
            credentials=self.get_credentials_from_service_account(),
            client_options=options or None,
        )

    def get_secret_manager_client(self) -> secretmanager.SecretManagerServiceClient:
        """Builds a Secret Manager client (REST transport) for the configured endpoint.

        Returns:
            A ``SecretManagerServiceClient``.
        """
        options: dict[str, Any] = {}
        if self.secret_manager_endpoint:
            options["api_endpoint"] = self.secret_manager_endpoint
        return secretmanager.SecretManagerServiceClient(
            credentials=self.get_credentials_from_service_account(),
            transport="rest",
            client_options=options or None,
        )

    def get_authorized_session(self) -> AuthorizedSession:
        """Builds a ``requests`` session that adds Google auth, for REST APIs without a client.

        Returns:
            A ``google.auth.transport.requests.AuthorizedSession``.
        """
        return AuthorizedSession(self.get_credentials_from_service_account())

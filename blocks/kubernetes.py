"""Kubernetes connection block: API server, bearer token and CA, or a kubeconfig."""

import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator

from magicflow.errors import InvalidInputError


class KubernetesConnection(Block):
    """Connection to a Kubernetes API server.

    Give either `api_server_url` (with `token` and `ca_cert_pem` or
    `insecure_skip_tls_verify`), or a whole `kubeconfig` and optionally its `context`.
    MagicFlow's Kubernetes jobs use the synchronous ``kubernetes`` client; the
    prefect-kubernetes blocks build ``kubernetes_asyncio`` clients for its workers.

    Attributes:
        api_server_url: URL of the API server, e.g. ``https://10.0.0.1:6443``.
        token: Bearer token of a service account.
        ca_cert_pem: PEM CA certificate of the API server.
        insecure_skip_tls_verify: Skip TLS verification (local clusters only).
        kubeconfig: A whole kubeconfig file's YAML (it may hold credentials).
        context: The kubeconfig context to use; its current context when empty.

    Example:
        Load a saved Kubernetes connection:
        ```python
        from blocks import KubernetesConnection

        kubernetes = KubernetesConnection.load("BLOCK_NAME")
        api_client = kubernetes.get_client()
        ```
    """

    _block_type_name = "MagicFlow Kubernetes Connection"
    _logo_url = "https://kubernetes.io/images/favicon.png"  # type: ignore[assignment]
    _documentation_url = "https://github.com/kubernetes-client/python"  # type: ignore[assignment]

    api_server_url: str | None = Field(
        default=None, title="API server URL", description="URL of the Kubernetes API server."
    )
    token: SecretStr | None = Field(
        default=None, title="Bearer token", description="Service-account bearer token."
    )
    ca_cert_pem: str | None = Field(
        default=None, title="CA certificate", description="PEM CA certificate of the server."
    )
    insecure_skip_tls_verify: bool = Field(
        default=False,
        title="Skip TLS verification",
        description="Do not verify the server's certificate (local clusters only).",
    )
    kubeconfig: SecretStr | None = Field(
        default=None, title="Kubeconfig", description="A whole kubeconfig file's YAML."
    )
    context: str | None = Field(
        default=None, title="Context", description="Kubeconfig context; the current one if empty."
    )

    @model_validator(mode="after")
    def _check_target(self) -> "KubernetesConnection":
        if (self.api_server_url is None) == (self.kubeconfig is None):
            raise ValueError("give exactly one of api_server_url or kubeconfig")
        return self

    def get_client(self) -> k8s_client.ApiClient:
        """Builds an API client for the configured cluster.

        The CA certificate is handed to the client in memory: nothing is written to
        disk, so no other user of the machine can plant a CA for it to trust.

        Returns:
            A ``kubernetes.client.ApiClient`` to pass to ``CoreV1Api`` and friends.

        Raises:
            InvalidInputError: The kubeconfig is not valid YAML or cannot be used; the
                message gives the line and column, never the kubeconfig's content.
        """
        # retries=0: Prefect's task retries are the only retry layer (urllib3 would
        # otherwise retry connection errors 3 times under every Prefect attempt).
        configuration = k8s_client.Configuration(retries=0)
        if self.kubeconfig is not None:
            return self._client_from_kubeconfig(configuration)
        configuration.host = str(self.api_server_url)  # set: the validator requires it
        if self.token is not None:
            configuration.api_key = {"BearerToken": f"Bearer {self.token.get_secret_value()}"}
        configuration.verify_ssl = not self.insecure_skip_tls_verify
        if self.ca_cert_pem:
            configuration.ca_cert_data = self.ca_cert_pem
        return k8s_client.ApiClient(configuration)

    def _client_from_kubeconfig(
        self, configuration: k8s_client.Configuration
    ) -> k8s_client.ApiClient:
        """A client from the kubeconfig; errors name the place, never the content (tokens)."""
        resource = f"k8s:kubeconfig/{self.context or 'current-context'}"
        assert self.kubeconfig is not None  # noqa: S101 - checked by the caller
        try:
            config = yaml.safe_load(self.kubeconfig.get_secret_value())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise InvalidInputError(resource, f"the kubeconfig is not valid YAML{where}") from None
        if not isinstance(config, dict):
            raise InvalidInputError(resource, "the kubeconfig is not a YAML mapping")
        try:
            return k8s_config.new_client_from_config_dict(
                config, context=self.context, client_configuration=configuration
            )
        except (ConfigException, KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvalidInputError(
                resource, f"the kubeconfig cannot be used ({type(error).__name__})"
            ) from None

"""Kubernetes connection block: API server, bearer token and CA, or a kubeconfig."""

import hashlib
import tempfile
from pathlib import Path

import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator


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
        ```python
        from blocks import KubernetesConnection
        from kubernetes import client

        conn = KubernetesConnection(api_server_url="https://10.0.0.1:6443", token="eyJ...",
                                    ca_cert_pem=open("ca.crt").read())
        client.CoreV1Api(conn.get_client()).list_namespace()
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

        Returns:
            A ``kubernetes.client.ApiClient`` to pass to ``CoreV1Api`` and friends.
        """
        # retries=0: Prefect's task retries are the only retry layer (urllib3 would
        # otherwise retry connection errors 3 times under every Prefect attempt).
        configuration = k8s_client.Configuration(retries=0)
        if self.kubeconfig is not None:
            config = yaml.safe_load(self.kubeconfig.get_secret_value())
            return k8s_config.new_client_from_config_dict(
                config, context=self.context, client_configuration=configuration
            )
        configuration.host = str(self.api_server_url)  # set: the validator requires it
        if self.token is not None:
            configuration.api_key = {"BearerToken": f"Bearer {self.token.get_secret_value()}"}
        configuration.verify_ssl = not self.insecure_skip_tls_verify
        if self.ca_cert_pem:
            configuration.ssl_ca_cert = str(_ca_file(self.ca_cert_pem))
        return k8s_client.ApiClient(configuration)


def _ca_file(pem: str) -> Path:
    """The kubernetes client reads its CA from a file; keep one per distinct CA."""
    path = (
        Path(tempfile.gettempdir())
        / f"magicflow-k8s-ca-{hashlib.sha256(pem.encode()).hexdigest()[:16]}.pem"
    )
    if not path.exists():
        path.write_text(pem)
    return path

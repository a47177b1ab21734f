"""Connection blocks: one module per external system, every secret a ``SecretStr``.

AWS jobs take prefect-aws `AwsCredentials` (point it at a local endpoint with
``aws_client_parameters.endpoint_url``); GCP jobs take `GcpConnection`, a
prefect-gcp `GcpCredentials` with endpoint overrides.

Example:
    >>> from blocks import VaultConnection
    >>> VaultConnection(token="s3cr3t")
    VaultConnection(url='http://127.0.0.1:8200', token=SecretStr('**********'), ...)
"""

from prefect_aws import AwsClientParameters, AwsCredentials

from blocks.gcp import GcpConnection
from blocks.gitlab import GitLabConnection
from blocks.kafka import KafkaConnection
from blocks.kubernetes import KubernetesConnection
from blocks.langflow import LangflowConnection
from blocks.vault import VaultConnection

ALL_BLOCKS = (
    GcpConnection,
    GitLabConnection,
    KafkaConnection,
    KubernetesConnection,
    LangflowConnection,
    VaultConnection,
)
"""MagicFlow's own block types, registered by ``prefect block register -m blocks``."""

__all__ = [
    "ALL_BLOCKS",
    "AwsClientParameters",
    "AwsCredentials",
    "GcpConnection",
    "GitLabConnection",
    "KafkaConnection",
    "KubernetesConnection",
    "LangflowConnection",
    "VaultConnection",
]

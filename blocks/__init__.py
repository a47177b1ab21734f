"""Connection blocks: one module per external system, every secret a ``SecretStr``.

AWS jobs take prefect-aws `AwsCredentials` (point it at a local endpoint with
``aws_client_parameters.endpoint_url``); GCP jobs take `GcpConnection`, a
prefect-gcp `GcpCredentials` with endpoint overrides.

Each block is imported on first use, so ``from blocks import KafkaConnection``
loads no cloud SDK.

Example:
    >>> from blocks import VaultConnection
    >>> VaultConnection(token="s3cr3t")
    VaultConnection(url='http://127.0.0.1:8200', token=SecretStr('**********'), ...)
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_aws import AwsClientParameters, AwsCredentials

    from blocks.gcp import GcpConnection
    from blocks.gitlab import GitLabConnection
    from blocks.kafka import KafkaConnection
    from blocks.kubernetes import KubernetesConnection
    from blocks.langflow import LangflowConnection
    from blocks.vault import VaultConnection

_EXPORTS = {
    "AwsClientParameters": "prefect_aws",
    "AwsCredentials": "prefect_aws",
    "GcpConnection": "blocks.gcp",
    "GitLabConnection": "blocks.gitlab",
    "KafkaConnection": "blocks.kafka",
    "KubernetesConnection": "blocks.kubernetes",
    "LangflowConnection": "blocks.langflow",
    "VaultConnection": "blocks.vault",
}

OWN_BLOCK_MODULES = (
    "blocks.gcp",
    "blocks.gitlab",
    "blocks.kafka",
    "blocks.kubernetes",
    "blocks.langflow",
    "blocks.vault",
)
"""Modules holding MagicFlow's own block types (``prefect block register -m blocks`` finds
them through `ALL_BLOCKS`)."""

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


def __getattr__(name: str) -> Any:
    if name == "ALL_BLOCKS":
        value: Any = tuple(
            getattr(import_module(module), attribute)
            for attribute, module in sorted(_EXPORTS.items())
            if module in OWN_BLOCK_MODULES
        )
    elif name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'blocks' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

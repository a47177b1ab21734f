"""Every connection block is documented, saves and loads, and never shows a secret."""

import json
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prefect.blocks.core import Block
from pydantic import SecretStr

from blocks import (
    ALL_BLOCKS,
    AwsClientParameters,
    AwsCredentials,
    GcpConnection,
    GitLabConnection,
    KafkaConnection,
    KubernetesConnection,
    LangflowConnection,
    VaultConnection,
)

SECRET = "sentinel-" + uuid.uuid4().hex
"""A value that must never show up anywhere but inside a SecretStr."""

PRIVATE_KEY = (
    rsa.generate_private_key(public_exponent=65537, key_size=2048)
    .private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    .decode()
)
"""A service account's private key: GCP's secret, held in a ``SecretDict``."""
SERVICE_ACCOUNT = {
    "type": "service_account",
    "project_id": "acme",
    "private_key_id": "0123456789abcdef",
    "private_key": PRIVATE_KEY,
    "client_email": "magicflow@acme.iam.gserviceaccount.com",
    "client_id": "1234567890",
    "token_uri": "https://oauth2.googleapis.com/token",
}

SAMPLES: dict[type[Block], dict] = {
    KafkaConnection: {
        "bootstrap_servers": "broker-1:9093,broker-2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "magicflow",
        "sasl_password": SECRET,
        "signing_secret": SECRET,
    },
    GitLabConnection: {"url": "https://gitlab.example.com", "token": SECRET},
    VaultConnection: {
        "url": "https://vault.example.com",
        "approle_role_id": "role",
        "approle_secret_id": SECRET,
    },
    KubernetesConnection: {"api_server_url": "https://10.0.0.1:6443", "token": SECRET},
    LangflowConnection: {"url": "https://langflow.example.com", "api_key": SECRET},
    GcpConnection: {
        "project": "acme",
        "service_account_info": SERVICE_ACCOUNT,
        "storage_endpoint": "http://127.0.0.1:4443",
    },
}


def secret_values(sample: dict) -> list[str]:
    """The secret values a sample holds: whole fields, or a service account's private key."""
    found = [value for value in sample.values() if value == SECRET]
    found += [v["private_key"] for v in sample.values() if isinstance(v, dict)]
    return found


def test_every_block_has_a_sample_holding_a_secret() -> None:
    assert set(ALL_BLOCKS) == set(SAMPLES)
    # Otherwise the test that secrets stay hidden could not fail for that block.
    assert all(secret_values(sample) for sample in SAMPLES.values())


@pytest.mark.parametrize("block_type", ALL_BLOCKS, ids=lambda b: b.__name__)
def test_block_is_documented(block_type: type[Block]) -> None:
    assert block_type.get_description(), "the class docstring is the block's description"
    assert block_type._documentation_url
    assert block_type._logo_url
    assert block_type.get_block_type_slug().startswith("magicflow-")
    own_fields = set(block_type.model_fields) - set(block_type.__mro__[1].model_fields)
    for name in own_fields or block_type.model_fields:
        field = block_type.model_fields[name]
        assert field.description, f"{block_type.__name__}.{name} has no description"
        assert field.title, f"{block_type.__name__}.{name} has no title"
        assert f"{name}:" in (block_type.__doc__ or ""), f"{name} missing from the Attributes docs"


@pytest.mark.parametrize("block_type", ALL_BLOCKS, ids=lambda b: b.__name__)
def test_block_saves_loads_and_hides_secrets(block_type: type[Block], captured_logs) -> None:
    block = block_type(**SAMPLES[block_type])
    name = f"standards-{uuid.uuid4().hex[:8]}"
    block.save(name)
    loaded = block_type.load(name)

    assert loaded.model_dump() == block.model_dump()
    for field, value in SAMPLES[block_type].items():
        if value == SECRET or isinstance(value, dict):
            assert getattr(loaded, field).get_secret_value() == value
    shown = [
        repr(loaded),
        str(loaded),
        loaded.model_dump_json(),
        json.dumps(loaded.model_dump(mode="json")),
        captured_logs.text,
    ]
    for secret in secret_values(SAMPLES[block_type]):
        assert not any(secret in text for text in shown)
        # The key's body, not only the whole PEM: a reformatted key would leak it too.
        assert not any(secret.splitlines()[1] in text for text in shown if "\n" in secret)


def test_aws_credentials_point_at_a_local_endpoint_without_code_changes() -> None:
    credentials = AwsCredentials(
        aws_access_key_id="id",
        aws_secret_access_key=SECRET,
        region_name="eu-west-1",
        aws_client_parameters=AwsClientParameters(endpoint_url="http://127.0.0.1:5000"),
    )
    assert credentials.get_s3_client().meta.endpoint_url == "http://127.0.0.1:5000"
    assert SECRET not in repr(credentials)


def test_kafka_connection_requires_sasl_credentials_with_a_sasl_protocol() -> None:
    with pytest.raises(ValueError, match="sasl_mechanism, sasl_username, sasl_password"):
        KafkaConnection(security_protocol="SASL_SSL")


def test_kafka_connection_client_options_carry_the_sasl_password() -> None:
    options = KafkaConnection(**SAMPLES[KafkaConnection]).client_options()
    assert options["sasl_plain_password"] == SECRET
    assert options["ssl_context"] is not None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give a token, or both"),
        ({"token": "t", "approle_role_id": "r", "approle_secret_id": "s"}, "not both"),
    ],
)
def test_vault_connection_needs_exactly_one_auth_method(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VaultConnection(**kwargs)


def test_vault_approle_login_is_real(vault: VaultConnection) -> None:
    root = vault.get_client()
    if "approle/" not in root.sys.list_auth_methods():
        root.sys.enable_auth_method("approle")
    root.auth.approle.create_or_update_approle("magicflow-test", token_policies=["default"])
    role_id = root.auth.approle.read_role_id("magicflow-test")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("magicflow-test")["data"]["secret_id"]

    approle = VaultConnection(
        url=vault.url, approle_role_id=role_id, approle_secret_id=SecretStr(secret_id)
    )
    client = approle.get_client()
    assert client.is_authenticated()
    assert secret_id not in repr(approle)


def test_kubernetes_connection_needs_exactly_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        KubernetesConnection()


def test_kubernetes_connection_from_kubeconfig_uses_its_server_and_token() -> None:
    kubeconfig = f"""
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://10.1.2.3:6443"}}}}]
users: [{{name: u, user: {{token: {SECRET}}}}}]
contexts: [{{name: ctx, context: {{cluster: c, user: u}}}}]
current-context: ctx
"""
    block = KubernetesConnection(kubeconfig=kubeconfig)
    configuration = block.get_client().configuration
    assert configuration.host == "https://10.1.2.3:6443"
    assert configuration.auth_settings()["BearerToken"]["value"] == f"Bearer {SECRET}"
    assert SECRET not in repr(block)


def test_kubernetes_connection_sends_its_bearer_token() -> None:
    block = KubernetesConnection(api_server_url="https://10.0.0.1:6443", token=SECRET)
    assert (
        block.get_client().configuration.auth_settings()["BearerToken"]["value"]
        == f"Bearer {SECRET}"
    )


def test_langflow_client_sends_the_api_key_header() -> None:
    with LangflowConnection(api_key=SECRET).get_client() as client:
        assert client.headers["x-api-key"] == SECRET


@pytest.mark.parametrize("block_type", ALL_BLOCKS, ids=lambda b: b.__name__)
def test_block_code_example_follows_prefects_ui_convention(block_type: type[Block]) -> None:
    """The block's page in the UI shows how to load it: an import and ``.load("BLOCK_NAME")``."""
    name = block_type.__name__
    example = block_type.get_code_example() or ""
    code = example.split("```python\n", 1)[-1].split("```", 1)[0]
    lines = code.splitlines()
    assert lines[0] == f"from blocks import {name}", example
    assert any(line.endswith(f' = {name}.load("BLOCK_NAME")') for line in lines[1:3]), example
    compile(code, f"<{name} example>", "exec")  # it is Python

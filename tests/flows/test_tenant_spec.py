"""TenantSpec: strict, documented, and its config file reads back to the same spec."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows import TenantSpec
from flows.tenant_spec import load_tenant_spec, parse_config_file
from magicflow import InvalidInputError

MINIMAL = {"name": "acme", "environment": "prod", "owners": ["alice@example.com"]}


def with_fields(**fields: object) -> dict[str, object]:
    return {**MINIMAL, **fields}


def test_a_full_spec_round_trips_through_its_config_file() -> None:
    spec = load_tenant_spec(
        with_fields(
            quotas={
                "hard": {"requests.cpu": "4", "requests.memory": "8Gi"},
                "limit_range": [{"type": "Container", "defaultRequest": {"cpu": "100m"}}],
            },
            kubernetes={"connection": "prod-cluster", "labels": {"team": "payments"}},
            vault={"connection": "vault"},
            aws={"connection": "aws", "region": "eu-west-1", "bucket": "acme-prod-data"},
            gcp={"connection": "gcp", "project": "acme-prod", "bucket": "acme-prod-files"},
            gitops={"connection": "gitlab", "project": "platform/tenants"},
            secrets=[{"name": "db", "stores": ["kubernetes", "aws-ssm", "gcp"]}],
        )
    )
    text = spec.config_file()
    assert text == spec.config_file()  # deterministic: a rerun commits nothing
    assert "defaultRequest:" in text
    assert parse_config_file(text, "file") == spec
    assert spec.config_path == "tenants/acme.yaml"
    assert spec.quotas is not None and spec.quotas.limit_range is not None
    assert spec.quotas.limit_range[0].as_api_item() == {
        "type": "Container",
        "defaultRequest": {"cpu": "100m"},
    }


@pytest.mark.parametrize(
    ("fields", "field", "cause"),
    [
        ({"name": "a" * 64}, "name", "at most 63 characters"),
        ({"name": "-acme"}, "name", "should match pattern"),
        ({"owners": ["not an owner"]}, "owners.0", "should match pattern"),
        ({"quotas": {"hard": {}}}, "quotas.hard", "at least 1 item"),
        ({"quotas": {"hard": {"cpu": "four"}}}, "quotas.hard.cpu", "not a Kubernetes quantity"),
        ({"quotas": {"hard": {"bad key!": "1"}}}, "quotas.hard", "not a Kubernetes resource"),
        ({"quotas": {"hard": {"pods": 20}}}, "quotas.hard.pods", "valid string"),
        ({"aws": {"connection": "aws", "region": "mars-1"}}, "aws.region", "should match"),
        (
            {"aws": {"connection": "aws", "region": "eu-west-1", "bucket": "192.168.1.1"}},
            "aws.bucket",
            "is not an IP address",
        ),
        ({"gcp": {"connection": "gcp", "bucket": "google-files"}}, "gcp.bucket", "google"),
        ({"kubernetes": {"connection": "Prod Cluster"}}, "kubernetes.connection", "pattern"),
        ({"kubernetes": {"connection": "k", "extra": 1}}, "kubernetes.extra", "not permitted"),
        (
            {"vault": {"connection": "v"}, "secrets": [{"name": "db"}, {"name": "db"}]},
            "secrets",
            "two secrets have the same name",
        ),
        (
            {"vault": {"connection": "v"}, "secrets": [{"name": "db", "length": 8}]},
            "secrets.0.length",
            "greater than or equal to 16",
        ),
        (
            {"gitops": {"connection": "g", "project": "tenants"}},
            "gitops.project",
            "should match pattern",
        ),
    ],
)
def test_bad_fields_are_named_in_a_typed_error(fields: dict, field: str, cause: str) -> None:
    with pytest.raises(InvalidInputError) as failure:
        load_tenant_spec(with_fields(**fields))
    message = str(failure.value)
    assert message.startswith("tenant-spec")
    assert f"{field}: " in message and cause in message, message


def test_the_spec_is_strict_and_documented() -> None:
    with pytest.raises(ValidationError):
        TenantSpec.model_validate(with_fields(environment=7))
    schema = TenantSpec.model_json_schema()
    for name, model in schema["$defs"].items():
        for field, definition in model["properties"].items():
            assert definition.get("description"), f"{name}.{field} is not documented"
    assert all(definition.get("description") for definition in schema["properties"].values())


def test_a_config_file_that_is_not_a_spec_is_a_typed_error() -> None:
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        parse_config_file("name: [", "gitlab:project/p/file/tenants/acme.yaml@main")
    with pytest.raises(InvalidInputError, match="not a valid spec: environment"):
        parse_config_file("name: acme\nowners: [a]\n", "f")

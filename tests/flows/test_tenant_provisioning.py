"""provision_tenant end to end on the real local backends, read back with independent clients."""

from __future__ import annotations

import base64

import pytest

from flows import TenantSpec, provision_tenant
from flows.tenant_provisioning import LIMIT_RANGE_NAME, RESOURCE_QUOTA_NAME
from magicflow import Action, Change
from tests.fixtures.tenants import (
    TRUST_POLICY,
    Reviewer,
    TenantSystems,
    everything_prefect_keeps,
    tenant_runs,
)


def by_action(changes: list[Change]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for change in changes:
        grouped.setdefault(change.action.value, []).append(change.resource)
    return grouped


def generated_values(systems: TenantSystems, spec: TenantSpec) -> dict[str, str]:
    """The credentials as Vault holds them, read with the tests' own client."""
    values = {}
    for secret in spec.secrets:
        data = systems.vault_secret(f"tenants/{spec.name}/{secret.name}")
        assert data is not None, f"no {secret.name} in Vault"
        values[secret.name] = data[secret.key]
    return values


def assert_tenant_exists(systems: TenantSystems, spec: TenantSpec, values: dict[str, str]) -> None:
    """Every resource of the spec, read from its backend with an independent client."""
    name = spec.name
    namespace = systems.namespace(name)
    assert namespace is not None
    assert namespace["metadata"]["labels"]["tenant"] == name
    assert namespace["metadata"]["annotations"]["magicflow.io/owners"] == "alice@example.com,bob"
    quota = systems.core.read_namespaced_resource_quota(RESOURCE_QUOTA_NAME, name)
    assert quota.spec.hard == {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20"}
    limits = systems.core.read_namespaced_limit_range(LIMIT_RANGE_NAME, name)
    assert limits.spec.limits[0].default == {"cpu": "500m", "memory": "512Mi"}
    for secret in spec.secrets:
        k8s_secret = systems.core.read_namespaced_secret(secret.name, name)
        assert base64.b64decode(k8s_secret.data[secret.key]).decode() == values[secret.name]

    s3 = systems.aws("s3")
    assert s3.get_bucket_versioning(Bucket=f"{name}-data")["Status"] == "Enabled"
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=f"{name}-data")["TagSet"]}
    assert tags == spec.labels
    role = systems.aws("iam").get_role(RoleName=f"{name}-app")["Role"]
    assert role["AssumeRolePolicyDocument"] == TRUST_POLICY
    ssm = systems.aws("ssm")
    plain = ssm.get_parameter(Name=f"/tenants/{name}/environment")["Parameter"]
    assert (plain["Type"], plain["Value"]) == ("String", "test")
    secure = ssm.get_parameter(Name=f"/tenants/{name}/db", WithDecryption=True)["Parameter"]
    assert (secure["Type"], secure["Value"]) == ("SecureString", values["db"])
    stored = systems.aws("secretsmanager").get_secret_value(SecretId=f"tenants/{name}/db")
    assert stored["SecretString"] == values["db"]

    bucket = systems.gcs().get_bucket(f"{name}-files")
    assert dict(bucket.labels) == spec.labels
    assert systems.gcp_secret_value(f"tenants-{name}-db") == values["db"]

    project = systems.gitlab()
    config = project.files.get(f"tenants/{name}.yaml", ref="main").decode().decode()
    assert config == spec.config_file()
    merged = project.mergerequests.list(state="merged", source_branch=f"tenant/{name}")
    assert len(merged) == 1
    assert merged[0].description.startswith(f"Tenant **{name}** (test)")


def test_provisioning_creates_every_resource_and_a_rerun_changes_nothing(
    tenant_systems: TenantSystems, reviewer: Reviewer, captured_logs
) -> None:
    spec = tenant_systems.spec()
    with reviewer.approving():
        first = provision_tenant(spec)

    values = generated_values(tenant_systems, spec)
    assert_tenant_exists(tenant_systems, spec, values)
    actions = by_action(first)
    assert set(actions) == {"created", "updated"}, actions
    # "updated": the merge of the merge request the run opened.
    assert actions["updated"] == [f"gitlab:project/{tenant_systems.gitlab_project}/merge_request/1"]
    assert len(actions["created"]) == 17

    second = provision_tenant(spec)
    assert {change.action for change in second} == {Action.UNCHANGED}, by_action(second)
    assert generated_values(tenant_systems, spec) == values, "a rerun must not rotate secrets"
    assert_tenant_exists(tenant_systems, spec, values)

    runs = tenant_runs(spec.name)
    assert sorted(run.name for run in runs) == [f"provision-tenant/{spec.name}"] * 2
    assert all(run.state is not None and run.state.is_completed() for run in runs)
    kept = everything_prefect_keeps([run.id for run in runs])
    texts = {
        "prefect": kept,
        "logs": captured_logs.text,
        "results": "".join(change.model_dump_json() for change in [*first, *second]),
    }
    for secret_name, value in values.items():
        for where, text in texts.items():
            assert value not in text, f"the {secret_name} credential leaked into {where}"
    assert "provision-tenant" in kept and spec.name in kept  # the scan read real records


def test_rotate_secrets_writes_new_values_everywhere(
    tenant_systems: TenantSystems, reviewer: Reviewer
) -> None:
    spec = tenant_systems.spec(gitops=None)
    provision_tenant(spec)
    before = generated_values(tenant_systems, spec)

    changes = provision_tenant(spec, rotate_secrets=True)

    after = generated_values(tenant_systems, spec)
    assert all(after[name] != before[name] for name in before)
    assert_stores_hold(tenant_systems, spec, after)
    updated = by_action(changes)["updated"]
    assert f"vault:kv/secret/tenants/{spec.name}/db" in updated
    assert f"aws:ssm:parameter//tenants/{spec.name}/db" in updated


def assert_stores_hold(systems: TenantSystems, spec: TenantSpec, values: dict[str, str]) -> None:
    name = spec.name
    k8s_secret = systems.core.read_namespaced_secret("db", name)
    assert base64.b64decode(k8s_secret.data["password"]).decode() == values["db"]
    ssm = systems.aws("ssm")
    secure = ssm.get_parameter(Name=f"/tenants/{name}/db", WithDecryption=True)["Parameter"]
    assert secure["Value"] == values["db"]
    assert systems.gcp_secret_value(f"tenants-{name}-db") == values["db"]


@pytest.mark.parametrize("missing", ["kubernetes", "aws", "gcp", "gitops"])
def test_a_system_left_out_is_skipped_with_its_reason(
    tenant_systems: TenantSystems, missing: str
) -> None:
    spec = tenant_systems.spec(**{missing: None, "gitops": None})
    changes = provision_tenant(spec)
    skipped = {c.resource: c.detail["reason"] for c in changes if c.action is Action.SKIPPED}
    system = {"kubernetes": "k8s:namespace", "aws": "aws:tenant", "gcp": "gcp:tenant"}
    if missing == "gitops":
        assert skipped == {f"gitlab:tenant/{spec.name}": "the spec has no gitops section"}
        return
    assert skipped[f"{system[missing]}/{spec.name}"] == f"the spec has no {missing} section"
    # The credential stores on that system are skipped too, each by name.
    stores = {
        "kubernetes": [f"k8s:secret/{spec.name}/db", f"k8s:secret/{spec.name}/api"],
        "aws": [
            f"aws:ssm:parameter//tenants/{spec.name}/db",
            f"aws:secretsmanager:secret/tenants/{spec.name}/db",
        ],
        "gcp": [f"gcp:secret/secrets/tenants-{spec.name}-db"],
    }[missing]
    for store in stores:
        assert skipped[store] == f"the spec has no {missing} section"
    if missing == "kubernetes":
        assert tenant_systems.namespace(spec.name) is None

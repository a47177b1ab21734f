"""provision_tenant end to end on the real local backends, read back with independent clients."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun
from prefect.settings import (
    PREFECT_LOCAL_STORAGE_PATH,
    PREFECT_RESULTS_PERSIST_BY_DEFAULT,
    temporary_settings,
)
from pydantic import ValidationError

from flows import TenantSpec, provision_tenant
from flows.tenant_provisioning import LIMIT_RANGE_NAME, RESOURCE_QUOTA_NAME
from magicflow import Action, Change, InvalidInputError, NotFoundError, PermissionDeniedError
from tests.fixtures.processes import FaultProxy
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
    tenant_systems: TenantSystems, reviewer: Reviewer, captured_logs, tmp_path: Path
) -> None:
    spec = tenant_systems.spec()
    # As deployed (prefect.yaml's flow-run env): every result is persisted.
    results = tmp_path / "results"
    persisted = {PREFECT_RESULTS_PERSIST_BY_DEFAULT: True, PREFECT_LOCAL_STORAGE_PATH: results}
    with reviewer.approving(), temporary_settings(persisted):
        first = provision_tenant(spec)
    wire = tenant_systems.wire
    first_writes = {backend: len(wire.writes(backend)) for backend in wire.proxies}

    values = generated_values(tenant_systems, spec)
    assert_tenant_exists(tenant_systems, spec, values)
    actions = by_action(first)
    assert set(actions) == {"created", "updated"}, actions
    # "updated": the merge of the merge request the run opened.
    assert actions["updated"] == [f"gitlab:project/{tenant_systems.gitlab_project}/merge_request/1"]
    assert len(actions["created"]) == 17

    # Every backend saw writes the first time (the proxies are in the path) ...
    assert {b for b, n in first_writes.items() if n} == {
        "kubernetes",
        "vault",
        "aws",
        "secret_manager",  # drongo: Cloud Storage and Secret Manager
        "gitlab",
    }, first_writes
    # ... and none at all the second time, nor in a dry run.
    with tenant_systems.wire.no_writes():
        second = provision_tenant(spec)
    assert {change.action for change in second} == {Action.UNCHANGED}, by_action(second)
    with tenant_systems.wire.no_writes():
        plan = provision_tenant(spec, dry_run=True)
    assert [(c.resource, c.action, c.dry_run) for c in plan] == [
        (c.resource, c.action, True) for c in second
    ]
    assert generated_values(tenant_systems, spec) == values, "a rerun must not rotate secrets"
    assert_tenant_exists(tenant_systems, spec, values)

    runs = tenant_runs(spec.name)
    assert sorted(run.name for run in runs) == [f"provision-tenant/{spec.name}"] * 3
    assert all(run.state is not None and run.state.is_completed() for run in runs)
    kept = everything_prefect_keeps([run.id for run in runs])
    texts = {
        "prefect": kept,
        "logs": captured_logs.text,
        "results": "".join(change.model_dump_json() for change in [*first, *second, *plan]),
        "result storage": "".join(
            path.read_bytes().decode(errors="replace")
            for path in results.rglob("*")
            if path.is_file()
        ),
    }
    secrets = {
        **values,
        **{f"block secret {i}": v for i, v in enumerate(tenant_systems.block_secrets)},
    }
    assert len(secrets) == 5
    for secret_name, value in secrets.items():
        for where, text in texts.items():
            assert value not in text, f"the {secret_name} leaked into {where}"
    assert "provision-tenant" in kept and spec.name in kept  # the scan read real records
    assert list(results.rglob("*")), "nothing was persisted where the scan looked"


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


def test_systems_left_out_are_skipped_each_with_its_reason(tenant_systems: TenantSystems) -> None:
    spec = tenant_systems.spec(kubernetes=None, aws=None, gcp=None, gitops=None)

    changes = provision_tenant(spec)

    name = spec.name
    skipped = {c.resource: c.detail["reason"] for c in changes if c.action is Action.SKIPPED}
    assert skipped == {
        f"k8s:namespace/{name}": "the spec has no kubernetes section",
        f"aws:tenant/{name}": "the spec has no aws section",
        f"gcp:tenant/{name}": "the spec has no gcp section",
        f"gitlab:tenant/{name}": "the spec has no gitops section",
        # Each credential store on a system left out is skipped too, by name.
        f"k8s:secret/{name}/db": "the spec has no kubernetes section",
        f"k8s:secret/{name}/api": "the spec has no kubernetes section",
        f"aws:ssm:parameter//tenants/{name}/db": "the spec has no aws section",
        f"aws:secretsmanager:secret/tenants/{name}/db": "the spec has no aws section",
        f"gcp:secret/secrets/tenants-{name}-db": "the spec has no gcp section",
    }
    # Vault, the one system in the spec, got the credentials.
    assert by_action(changes)["created"] == [
        f"vault:kv/secret/tenants/{name}/db",
        f"vault:kv/secret/tenants/{name}/api",
    ]
    assert set(generated_values(tenant_systems, spec)) == {"db", "api"}
    assert tenant_systems.namespace(name) is None
    assert tenant_systems.aws("s3").list_buckets()["Buckets"] == []


def test_dry_run_writes_nothing_and_reports_the_plan(tenant_systems: TenantSystems) -> None:
    spec = tenant_systems.spec()
    project = tenant_systems.gitlab()
    branches_before = {branch.name for branch in project.branches.list(get_all=True)}

    with tenant_systems.wire.no_writes():
        plan = provision_tenant(spec, dry_run=True)

    assert all(change.dry_run for change in plan)
    actions = by_action(plan)
    assert len(actions["created"]) == 17, actions
    assert actions["skipped"] == [
        f"gitlab:project/{tenant_systems.gitlab_project}/merge_request/tenant/{spec.name}->main"
    ]
    (gate,) = [change for change in plan if change.action is Action.SKIPPED]
    assert gate.detail["reason"].startswith("dry run:")
    # Nothing exists anywhere.
    assert tenant_systems.namespace(spec.name) is None
    assert all(
        tenant_systems.vault_secret(f"tenants/{spec.name}/{s.name}") is None for s in spec.secrets
    )
    assert tenant_systems.aws("s3").list_buckets()["Buckets"] == []
    assert tenant_systems.aws("iam").list_roles()["Roles"] == []
    assert tenant_systems.aws("ssm").describe_parameters()["Parameters"] == []
    assert tenant_systems.aws("secretsmanager").list_secrets()["SecretList"] == []
    assert tenant_systems.gcs().lookup_bucket(f"{spec.name}-files") is None
    assert tenant_systems.gcp_secret_value(f"tenants-{spec.name}-db") is None
    assert {branch.name for branch in project.branches.list(get_all=True)} == branches_before
    assert project.mergerequests.list(get_all=True) == []


INVALID_FIELDS = [
    ("name", "Acme_Corp", "name: String should match pattern"),
    (
        "quotas",
        {"hard": {"requests.cpu": "-2"}},
        "quotas.hard.requests.cpu: Value error, '-2' is negative",
    ),
    (
        "aws",
        {"connection": "aws", "region": "eu-west-1", "bucket": "Tenant_Data"},
        "aws.bucket: Value error, aws:s3:bucket/Tenant_Data: a bucket name has only "
        "lowercase letters",
    ),
    ("owners", [], "owners: List should have at least 1 item"),
    ("secrets", [{"name": "db", "stores": ["kubernetes"]}], "secrets: Value error, generated"),
]


def test_an_invalid_spec_fails_before_any_write_naming_the_field(
    tenant_systems: TenantSystems,
) -> None:
    for field, bad_value, message in INVALID_FIELDS:
        document = tenant_systems.spec(name="acme-bad").model_dump(mode="json", by_alias=True)
        document[field] = bad_value
        if field == "secrets":
            document["vault"] = None
        with pytest.raises(InvalidInputError, match=re.escape(message)):
            provision_tenant(document)
        with pytest.raises(ValidationError, match=re.escape(field)):
            TenantSpec.model_validate(document)
    assert tenant_systems.namespace("acme-bad") is None
    assert tenant_systems.aws("s3").list_buckets()["Buckets"] == []
    assert tenant_systems.vault_secret("tenants/acme-bad/db") is None
    assert tenant_systems.gitlab().mergerequests.list(get_all=True) == []
    assert tenant_systems.wire.requests() == [], "an invalid spec reached a backend"


def test_a_missing_block_fails_before_any_write_with_its_name_and_how_to_create_it(
    tenant_systems: TenantSystems,
) -> None:
    spec = tenant_systems.spec()
    aws = spec.aws.model_copy(update={"connection": "no-such-aws"})  # type: ignore[union-attr]
    with pytest.raises(NotFoundError) as failure:
        provision_tenant(spec.model_copy(update={"aws": aws}))
    assert str(failure.value) == (
        f"tenant-spec:{spec.name}: aws.connection: no AwsCredentials block is saved as "
        "'no-such-aws'; create it with AwsCredentials(...).save('no-such-aws') or in the "
        "Prefect UI under Blocks"
    )
    assert tenant_systems.namespace(spec.name) is None
    assert tenant_systems.vault_secret(f"tenants/{spec.name}/db") is None
    assert tenant_systems.wire.requests() == [], "a spec naming a missing block reached a backend"


@pytest.fixture
def failing_gcs(tenant_systems: TenantSystems) -> Iterator[FaultProxy]:
    """Cloud Storage's proxy answers bucket creation with 403 (a permanent failure,
    never retried) until the test clears it."""
    proxy = tenant_systems.wire.proxies["secret_manager"]  # drongo: Storage and Secret Manager
    proxy.fail(status=403, count=1000, method="POST", path=r"^/storage/v1/b\?")
    yield proxy
    proxy.clear()


def run_failure(spec: TenantSpec, **options: object) -> tuple[BaseException, FlowRun]:
    state = provision_tenant(spec, return_state=True, **options)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, BaseException)
    (run,) = [r for r in tenant_runs(spec.name) if r.state and r.state.is_failed()]
    return error, run


def report_of(run: FlowRun, spec: TenantSpec) -> str:
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    (report,) = [a for a in artifacts if a.key == f"provision-tenant-{spec.name}-report"]
    return str(report.data)


def test_a_failed_branch_with_rollback_undoes_only_what_the_run_created(
    tenant_systems: TenantSystems, reviewer: Reviewer, failing_gcs: FaultProxy
) -> None:
    spec = tenant_systems.spec()
    # Existed before the run: the db credential, with its value and version.
    tenant_systems.vault_kv.create_or_update_secret(
        path=f"tenants/{spec.name}/db", secret={"password": "kept-before-the-run"}
    )

    tenant_systems.wire.reset()

    error, run = run_failure(spec, rollback_on_failure=True)

    assert isinstance(error, PermissionDeniedError)
    assert str(error).startswith(
        f"tenant:{spec.name}: 1 step(s) failed, first gcp:gcs:bucket/{spec.name}-files: "
        "PermissionDeniedError:"
    )
    report = report_of(run, spec)
    assert "## Failed" in report and f"`gcp:gcs:bucket/{spec.name}-files`" in report
    assert "## Rolled back" in report
    # What existed before is untouched ...
    db = tenant_systems.vault_kv.read_secret_version(
        path=f"tenants/{spec.name}/db", mount_point="secret", raise_on_deleted_version=True
    )["data"]
    assert (db["data"], db["metadata"]["version"]) == ({"password": "kept-before-the-run"}, 1)
    vault_writes = [str(r) for r in tenant_systems.wire.writes("vault")]
    assert not [w for w in vault_writes if w.endswith(f"/tenants/{spec.name}/db")], vault_writes
    # ... and everything the run created is gone.
    assert tenant_systems.namespace(spec.name) is None
    assert tenant_systems.vault_secret(f"tenants/{spec.name}/api") is None
    assert tenant_systems.aws("s3").list_buckets()["Buckets"] == []
    assert tenant_systems.aws("iam").list_roles()["Roles"] == []
    assert tenant_systems.aws("ssm").describe_parameters()["Parameters"] == []
    assert tenant_systems.aws("secretsmanager").list_secrets()["SecretList"] == []
    assert tenant_systems.gcp_secret_value(f"tenants-{spec.name}-db") is None
    project = tenant_systems.gitlab()
    assert f"tenant/{spec.name}" not in {b.name for b in project.branches.list(get_all=True)}
    assert [mr.state for mr in project.mergerequests.list(get_all=True)] == ["closed"]
    # Newest first: the namespace, created before what lives in it, is undone last.
    undone = undo_order(run)
    assert undone[-1] == f"undo k8s:namespace/{spec.name}"
    assert undone.index(f"undo k8s:resourcequota/{spec.name}/tenant-quota") < len(undone) - 1
    assert reviewer.acted_on == []  # never reached the gate


def undo_order(run: FlowRun) -> list[str]:
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
            task_run_filter=TaskRunFilter(tags=TaskRunFilterTags(all_=["rollback"])),
        )
    return [t.name for t in sorted(task_runs, key=lambda t: t.start_time or t.expected_start_time)]


def test_a_failed_branch_without_rollback_keeps_its_work_and_a_rerun_converges(
    tenant_systems: TenantSystems, reviewer: Reviewer, failing_gcs: FaultProxy
) -> None:
    spec = tenant_systems.spec()

    error, run = run_failure(spec)

    assert isinstance(error, PermissionDeniedError)
    report = report_of(run, spec)
    assert "## Created by this run" in report and "## Rolled back" not in report
    assert tenant_systems.namespace(spec.name) is not None
    assert tenant_systems.gcs().lookup_bucket(f"{spec.name}-files") is None

    failing_gcs.clear()
    with reviewer.approving():
        changes = provision_tenant(spec)

    values = generated_values(tenant_systems, spec)
    assert_tenant_exists(tenant_systems, spec, values)
    actions = by_action(changes)
    assert actions["created"] == [f"gcp:gcs:bucket/{spec.name}-files"]

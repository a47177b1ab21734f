"""adjust_quota end to end: the GitLab fake, the Kubernetes emulator and both quota fakes."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows import QuotaChange, adjust_quota
from flows.tenant_provisioning import RESOURCE_QUOTA_NAME
from flows.tenant_spec import AwsQuota, GcpQuota, GitOpsTarget, TenantSpec
from magicflow import Action, ConflictError, InvalidInputError, NotFoundError
from tests.fixtures.aws import fake_state, seed_fake
from tests.fixtures.gcp import CloudQuotasFake
from tests.fixtures.tenants import Reviewer, TenantSystems
from tests.tasks.test_aws import quota
from tests.tasks.test_gcp import COMPUTE, CPUS, cpus_quota

REASON = "Black Friday load test"


@pytest.fixture
def tenant(
    tenant_systems: TenantSystems,
    quota_fake: str,
    cloud_quotas: CloudQuotasFake,
) -> dict[str, Any]:
    """A provisioned tenant, set up with the tests' own clients: its config file on main,
    its namespace and quota in the cluster, and quotas in both clouds' fakes."""
    spec = tenant_systems.spec(secrets=[], vault=None)
    project = tenant_systems.gitlab()
    project.commits.create(
        {
            "branch": "main",
            "commit_message": "Add tenant",
            "actions": [
                {"action": "create", "file_path": spec.config_path, "content": spec.config_file()}
            ],
        }
    )
    tenant_systems.core.create_namespace({"metadata": {"name": spec.name}})
    tenant_systems.core.create_namespaced_resource_quota(
        spec.name,
        {"metadata": {"name": RESOURCE_QUOTA_NAME}, "spec": {"hard": dict(spec.quotas.hard)}},  # type: ignore[union-attr]
    )
    quotas_block = f"aws-quotas-{spec.name}"
    tenant_systems.wire.aws_quotas().save(quotas_block, overwrite=True)  # empties the fake
    seed_fake(quota_fake, {"quotas": [quota("L-1216C47A", 32)]})
    cloud_quotas.seed_quota_info(cpus_quota())
    tenant_systems.wire.reset()
    return {
        "spec": spec,
        "gitops": spec.gitops,
        "aws_connection": quotas_block,
        "quota_fake": quota_fake,
        "cloud_quotas": cloud_quotas,
    }


def main_file(systems: TenantSystems, spec: TenantSpec) -> str:
    return systems.gitlab().files.get(spec.config_path, ref="main").decode().decode()


def live_hard(systems: TenantSystems, spec: TenantSpec) -> dict[str, str]:
    return dict(
        systems.core.read_namespaced_resource_quota(RESOURCE_QUOTA_NAME, spec.name).spec.hard
    )


def request() -> QuotaChange:
    return QuotaChange(
        kubernetes={"requests.cpu": "8"},
        aws=[AwsQuota(service_code="ec2", quota_code="L-1216C47A", value=64)],
        gcp=[
            GcpQuota(service=COMPUTE, quota_id=CPUS, value=96, dimensions={"region": "us-central1"})
        ],
    )


def test_adjustment_is_proposed_approved_merged_and_applied(
    tenant_systems: TenantSystems, tenant: dict[str, Any], reviewer: Reviewer
) -> None:
    spec: TenantSpec = tenant["spec"]
    with reviewer.approving():
        changes = adjust_quota(
            spec.name,
            request(),
            REASON,
            gitops=tenant["gitops"],
            aws_connection=tenant["aws_connection"],
            contact_email="ops@example.com",
        )

    # The merge request: opened with the reason, approved by the reviewer, merged.
    project = tenant_systems.gitlab()
    (merge_request,) = project.mergerequests.list(state="merged", get_all=True)
    assert REASON in merge_request.description
    assert "| `k8s:resourcequota/" in merge_request.description
    assert [a["user"]["username"] for a in merge_request.approvals.get().approved_by] == ["alice"]
    recorded = TenantSpec.model_validate(yaml.safe_load(main_file(tenant_systems, spec)))
    assert recorded.quotas is not None
    assert recorded.quotas.hard == {**spec.quotas.hard, "requests.cpu": "8"}  # type: ignore[union-attr]
    assert [q.value for q in recorded.quotas.aws] == [64]
    assert [q.value for q in recorded.quotas.gcp] == [96]
    # Applied, as each backend sees it.
    assert live_hard(tenant_systems, spec) == {**spec.quotas.hard, "requests.cpu": "8"}  # type: ignore[union-attr]
    (aws_request,) = fake_state(tenant["quota_fake"])["requests"]
    assert (aws_request["QuotaCode"], aws_request["DesiredValue"]) == ("L-1216C47A", 64)
    (preference,) = tenant["cloud_quotas"].preferences()
    assert preference["quotaConfig"]["preferredValue"] == "96"
    assert preference["justification"] == REASON
    actions = {c.resource: c.action for c in changes}
    assert actions[f"k8s:resourcequota/{spec.name}/{RESOURCE_QUOTA_NAME}"] is Action.UPDATED
    assert actions["aws:servicequotas:quota/ec2/L-1216C47A"] is Action.CREATED
    # The before/after table.
    table = quota_table(spec)
    assert {(row["before"], row["requested"]) for row in table} == {
        ("4", "8"),
        ("32", "64"),
        ("48", "96"),
    }

    # The same request again: the file holds it and every request is filed, so no
    # second merge request and no second quota request.
    with tenant_systems.wire.no_writes():
        again = adjust_quota(
            spec.name,
            request(),
            REASON,
            gitops=tenant["gitops"],
            aws_connection=tenant["aws_connection"],
        )
    assert {c.action for c in again} == {Action.UNCHANGED}, again
    assert len(project.mergerequests.list(get_all=True)) == 1
    assert len(fake_state(tenant["quota_fake"])["requests"]) == 1
    assert len(tenant["cloud_quotas"].preferences()) == 1


def quota_table(spec: TenantSpec) -> list[dict[str, str]]:
    with get_client(sync_client=True) as client:
        (artifact, *_) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"adjust-quota-{spec.name}-quotas"])
            ),
            sort="CREATED_DESC",
        )
    data = artifact.data
    return list(json.loads(data) if isinstance(data, str) else data)


def test_a_request_that_changes_nothing_opens_no_merge_request(
    tenant_systems: TenantSystems, tenant: dict[str, Any]
) -> None:
    spec: TenantSpec = tenant["spec"]
    file_before = main_file(tenant_systems, spec)

    with tenant_systems.wire.no_writes():
        changes = adjust_quota(
            spec.name, QuotaChange(kubernetes={"pods": "20"}), REASON, gitops=tenant["gitops"]
        )

    assert [(c.resource, c.action) for c in changes] == [
        (f"k8s:resourcequota/{spec.name}/{RESOURCE_QUOTA_NAME}#pods", Action.UNCHANGED)
    ]
    assert tenant_systems.gitlab().mergerequests.list(get_all=True) == []
    assert main_file(tenant_systems, spec) == file_before
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"adjust-quota-{spec.name}-quotas"])
            )
        )
    assert artifact.description == (
        f"Quotas of tenant {spec.name}: nothing to change, no merge request was opened"
    )

    with tenant_systems.wire.no_writes():
        plan = adjust_quota(
            spec.name,
            request(),
            REASON,
            dry_run=True,
            gitops=tenant["gitops"],
            aws_connection=tenant["aws_connection"],
        )
    assert all(c.dry_run for c in plan)
    assert tenant_systems.gitlab().mergerequests.list(get_all=True) == []
    assert live_hard(tenant_systems, spec) == dict(spec.quotas.hard)  # type: ignore[union-attr]
    assert fake_state(tenant["quota_fake"])["requests"] == []
    assert tenant["cloud_quotas"].preferences() == []


def test_a_closed_merge_request_fails_the_run_and_applies_nothing(
    tenant_systems: TenantSystems, tenant: dict[str, Any], reviewer: Reviewer
) -> None:
    spec: TenantSpec = tenant["spec"]
    file_before = main_file(tenant_systems, spec)

    with reviewer.closing(), pytest.raises(ConflictError, match="closed before it was approved"):
        adjust_quota(
            spec.name,
            request(),
            REASON,
            gitops=tenant["gitops"],
            aws_connection=tenant["aws_connection"],
        )

    # The run proposed the change (GitLab writes) and applied nothing anywhere else.
    assert tenant_systems.wire.writes("gitlab")
    for backend in ("kubernetes", "aws_quotas", "cloud_quotas"):
        assert tenant_systems.wire.writes(backend) == [], backend

    assert [mr.state for mr in tenant_systems.gitlab().mergerequests.list(get_all=True)] == [
        "closed"
    ]
    assert main_file(tenant_systems, spec) == file_before
    assert live_hard(tenant_systems, spec) == dict(spec.quotas.hard)  # type: ignore[union-attr]
    assert fake_state(tenant["quota_fake"])["requests"] == []
    assert tenant["cloud_quotas"].preferences() == []


def test_bad_requests_fail_before_anything_is_read_or_written(
    tenant_systems: TenantSystems, tenant: dict[str, Any]
) -> None:
    spec: TenantSpec = tenant["spec"]
    gitops: GitOpsTarget = tenant["gitops"]
    with pytest.raises(InvalidInputError, match=re.escape("kubernetes.requests.cpu: Value error")):
        adjust_quota(spec.name, {"kubernetes": {"requests.cpu": "-1"}}, REASON, gitops=gitops)
    with pytest.raises(InvalidInputError, match="name at least one quota"):
        adjust_quota(spec.name, {}, REASON, gitops=gitops)
    with pytest.raises(InvalidInputError, match="reason"):
        adjust_quota(spec.name, {"kubernetes": {"pods": "30"}}, " ", gitops=gitops)
    with pytest.raises(NotFoundError, match=re.escape("no config file tenants/ghost.yaml")):
        adjust_quota("ghost", {"kubernetes": {"pods": "30"}}, REASON, gitops=gitops)
    assert tenant_systems.gitlab().mergerequests.list(get_all=True) == []
    assert live_hard(tenant_systems, spec) == dict(spec.quotas.hard)  # type: ignore[union-attr]

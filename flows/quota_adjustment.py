"""Quota adjustment: the runbook that changes a tenant's quotas through a reviewed merge request.

`adjust_quota` reads the tenant's config file (written by `provision_tenant`) and its
live quotas, proposes the change as a merge request with the reason, waits for the
approval, then applies it. Its docstring is the runbook.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity
from prefect import tags
from prefect.artifacts import create_table_artifact
from prefect.futures import PrefectFuture
from pydantic import Field, ValidationError, model_validator

from blocks import AwsCredentials, GcpConnection, GitLabConnection, KubernetesConnection
from flows.gitops import merge_when_approved, propose_file_change
from flows.registry import describe_validation_errors
from flows.runbook import Runbook, connection_for, runbook_flow, tag_current_run, tenant_lock
from flows.tenant_provisioning import RESOURCE_QUOTA_NAME
from flows.tenant_spec import (
    DNS_LABEL,
    AwsQuota,
    GcpQuota,
    GitOpsTarget,
    Quantities,
    TenantQuotas,
    TenantSpec,
    _Spec,
    parse_config_file,
)
from magicflow import Action, Change, InvalidInputError, NotFoundError, job_logger
from tasks import (
    RepositoryFile,
    ensure_resource_quota,
    get_gcp_quota,
    get_resource_quota,
    get_service_quota,
    read_repository_file,
    request_gcp_quota_increase,
    request_service_quota_increase,
)

WORKFLOW_NAME = "adjust-quota"
"""The flow's name; its deployment is ``adjust-quota/quota-adjustment``."""


class QuotaChange(_Spec):
    """The quotas a request asks for; at least one.

    Attributes:
        kubernetes: ResourceQuota hard limits to set (resource name -> quantity); limits
            not named keep their value.
        aws: AWS service quota values to ask for (increases only: AWS does not lower a
            quota on request).
        gcp: GCP quota values to ask for.
    """

    kubernetes: Quantities = Field(
        default_factory=dict, description="ResourceQuota hard limits to set."
    )
    aws: list[AwsQuota] = Field(default_factory=list, description="AWS quotas to ask for.")
    gcp: list[GcpQuota] = Field(default_factory=list, description="GCP quotas to ask for.")

    @model_validator(mode="after")
    def _asks_for_something(self) -> QuotaChange:
        if not (self.kubernetes or self.aws or self.gcp):
            raise ValueError("name at least one quota (kubernetes, aws or gcp)")
        return self


def _validated(
    tenant: Any, quotas: Any, reason: Any, dry_run: Any, gitops: Any
) -> tuple[str, QuotaChange, str, bool, GitOpsTarget]:
    """The parameters, checked as strictly as a request's, or an `InvalidInputError`."""
    resource = f"workflow:{WORKFLOW_NAME}"
    if not isinstance(tenant, str) or len(tenant) > 63 or not re.fullmatch(DNS_LABEL, tenant):
        raise InvalidInputError(resource, "tenant: must be a tenant name (a DNS label)")
    resource = f"tenant:{tenant}"
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 2000:
        raise InvalidInputError(resource, "reason: say why, in 1 to 2000 characters")
    if not isinstance(dry_run, bool):
        raise InvalidInputError(resource, "dry_run: must be true or false")
    try:
        change = quotas if isinstance(quotas, QuotaChange) else QuotaChange.model_validate(quotas)
        target = gitops if isinstance(gitops, GitOpsTarget) else GitOpsTarget.model_validate(gitops)
    except ValidationError as error:
        raise InvalidInputError(resource, describe_validation_errors(error, "(request)")) from None
    return tenant, change, reason.strip(), dry_run, target


@runbook_flow(WORKFLOW_NAME, lambda parameters: parameters.get("tenant"))
def adjust_quota(
    tenant: str,
    quotas: QuotaChange,
    reason: str,
    dry_run: bool = False,
    *,
    gitops: GitOpsTarget,
    aws_connection: str | None = None,
    gcp_connection: str | None = None,
    contact_email: str | None = None,
) -> list[Change]:
    """Adjusts a tenant's quotas: the runbook, step by step.

    1. Check the request and take the tenant's lock (no provisioning or other
       adjustment of the tenant runs meanwhile).
    2. Read the tenant's config file from the GitOps project's target branch (a
       tenant that was never provisioned fails here), and the live values: the
       Kubernetes ResourceQuota ``tenant-quota``, and each AWS or GCP quota named.
    3. Compute the change. When nothing would change (the file already says so and
       every live value already meets it), open no merge request, say so in the
       report and stop.
    4. Propose the new config file on the branch ``quota/<tenant>-<hash>`` with a
       merge request whose description gives the reason and the before/after table.
    5. Wait for its approval (bounded by ``gitops.approval_timeout_seconds``). A
       closed merge request, or no approval in time, fails the run: nothing is
       applied. Then merge it.
    6. Apply: the ResourceQuota's hard limits, and an increase request for each cloud
       quota below its new value (AWS Service Quotas, GCP Cloud Quotas).
    7. Publish the before/after table.

    Args:
        tenant: The tenant's name.
        quotas: The quotas asked for (a `QuotaChange`, or its JSON from a request).
        reason: Why; it goes into the merge request and the increase requests.
        dry_run: Read everything and report the plan: no merge request, nothing applied.
        gitops: Where the tenant's config file lives (connection, project, branch).
        aws_connection: AwsCredentials block for Service Quotas; the tenant's AWS
            connection when omitted.
        gcp_connection: GcpConnection block for Cloud Quotas; the tenant's GCP
            connection when omitted.
        contact_email: Who Google may ask about a GCP quota request.

    Returns:
        The changes: the config file's proposal and merge, the ResourceQuota, and one
        per cloud quota (``created`` when an increase was requested, ``unchanged`` when
        the quota already allows the value).

    Raises:
        InvalidInputError: A bad request, or a quota on a system the tenant does not use.
        NotFoundError: The tenant has no config file.
        ConflictError: The merge request was closed before it was approved.
        DeadlineExceededError: No approval before the deadline.

    Example:
        ```python
        from flows import QuotaChange, adjust_quota
        from flows.tenant_spec import GitOpsTarget

        adjust_quota(
            "acme",
            QuotaChange(kubernetes={"requests.cpu": "8"}),
            "Black Friday load test",
            gitops=GitOpsTarget(connection="gitlab", project="platform/tenants"),
        )
        ```
    """
    tenant, change, reason, dry_run, gitops = _validated(tenant, quotas, reason, dry_run, gitops)
    gitlab = connection_for(
        f"tenant:{tenant}", "gitops.connection", gitops.connection, GitLabConnection
    )
    tag_current_run([f"tenant:{tenant}"])
    with tenant_lock(tenant), tags(f"tenant:{tenant}"):
        runbook = Runbook(WORKFLOW_NAME, tenant, dry_run)
        current, spec = _read_config(runbook, tenant, gitlab, gitops)
        plan = _Plan.read(runbook, spec, change, aws_connection, gcp_connection)
        runbook.raise_on_failure()
        new_file = plan.new_spec().config_file()
        if new_file == current.content and not plan.live_changes():
            for row in plan.rows():
                runbook.found(
                    Change(resource=row["quota"], action=Action.UNCHANGED, dry_run=dry_run),
                    job="read",
                )
            job_logger().info("Nothing to change: no merge request was opened")
            plan.publish_table("nothing to change, no merge request was opened")
            return runbook.complete()
        merge_request = propose_file_change(
            runbook,
            gitlab,
            gitops,
            spec.config_path,
            new_file,
            current,
            branch=f"quota/{tenant}-{hashlib.sha256(new_file.encode()).hexdigest()[:8]}",
            title=f"Quotas of tenant {tenant}",
            description=plan.description(reason),
            dry_run=dry_run,
        )
        runbook.raise_on_failure()
        if merge_request is not None:
            merge_when_approved(runbook, gitlab, gitops, merge_request.result(), dry_run)
            runbook.raise_on_failure()
        plan.apply(runbook, reason, contact_email, dry_run)
        runbook.raise_on_failure()
        plan.publish_table("the plan (dry run)" if dry_run else "applied")
        return runbook.complete()


def _read_config(
    runbook: Runbook, tenant: str, gitlab: GitLabConnection, gitops: GitOpsTarget
) -> tuple[RepositoryFile, TenantSpec]:
    """The tenant's config file on the target branch, and the spec it holds."""
    path = gitops.file_path or f"tenants/{tenant}.yaml"
    read = runbook.submit(
        f"gitlab:project/{gitops.project}/file/{path}@{gitops.target_branch}",
        read_repository_file,
        gitlab,
        gitops.project,
        path,
        ref=gitops.target_branch,
    )
    runbook.raise_on_failure()
    found = read.result()
    if not found.exists:
        raise NotFoundError(
            f"tenant:{tenant}",
            f"no config file {path} on {gitops.project}@{gitops.target_branch}; "
            "provision the tenant first",
        )
    spec = parse_config_file(found.content, found.resource)
    if spec.name != tenant:
        raise InvalidInputError(found.resource, f"the file describes tenant {spec.name!r}")
    return found, spec


def _same_quantity(left: str | None, right: str | None) -> bool:
    if left is None or right is None:
        return left == right
    try:
        return Decimal(parse_quantity(left)) == Decimal(parse_quantity(right))
    except (ValueError, TypeError):
        return False


class _Plan:
    """The live values read, and the change computed from them."""

    def __init__(
        self,
        spec: TenantSpec,
        change: QuotaChange,
        kubernetes: KubernetesConnection | None,
        aws: AwsCredentials | None,
        gcp: GcpConnection | None,
    ) -> None:
        self.spec = spec
        self.change = change
        self.kubernetes = kubernetes
        self.aws = aws
        self.gcp = gcp
        self.live_hard: dict[str, str] = {}
        self.aws_before: dict[tuple[str, str], float] = {}
        self.gcp_before: dict[tuple[str, str, str], int] = {}
        self.after: dict[str, str] = {}

    @classmethod
    def read(
        cls,
        runbook: Runbook,
        spec: TenantSpec,
        change: QuotaChange,
        aws_connection: str | None,
        gcp_connection: str | None,
    ) -> _Plan:
        """Loads the connections the change needs and reads the live values at once."""
        resource = f"tenant:{spec.name}"
        kubernetes = aws = gcp = None
        if change.kubernetes:
            if spec.kubernetes is None:
                raise InvalidInputError(resource, "quotas.kubernetes: the tenant has no cluster")
            kubernetes = connection_for(
                resource, "kubernetes.connection", spec.kubernetes.connection, KubernetesConnection
            )
        if change.aws:
            name = aws_connection or (spec.aws.connection if spec.aws else None)
            if name is None:
                raise InvalidInputError(resource, "quotas.aws: the tenant has no AWS connection")
            aws = connection_for(resource, "aws_connection", name, AwsCredentials)
        if change.gcp:
            name = gcp_connection or (spec.gcp.connection if spec.gcp else None)
            if name is None:
                raise InvalidInputError(resource, "quotas.gcp: the tenant has no GCP connection")
            gcp = connection_for(resource, "gcp_connection", name, GcpConnection)
            if spec.gcp and spec.gcp.project and not gcp_connection:
                gcp = gcp.model_copy(update={"project": spec.gcp.project})
        plan = cls(spec, change, kubernetes, aws, gcp)
        reads: list[tuple[Any, PrefectFuture[Any]]] = []
        if kubernetes is not None:
            reads.append(
                (
                    "kubernetes",
                    runbook.submit(
                        plan.quota_resource,
                        get_resource_quota,
                        kubernetes,
                        spec.name,
                        RESOURCE_QUOTA_NAME,
                    ),
                )
            )
        for quota in change.aws:
            reads.append(
                (
                    quota,
                    runbook.submit(
                        _aws_resource(quota),
                        get_service_quota,
                        aws,
                        quota.service_code,
                        quota.quota_code,
                    ),
                )
            )
        for gcp_quota in change.gcp:
            reads.append(
                (
                    gcp_quota,
                    runbook.submit(
                        _gcp_resource(gcp_quota),
                        get_gcp_quota,
                        gcp,
                        gcp_quota.service,
                        gcp_quota.quota_id,
                        location=gcp_quota.dimensions.get(
                            "region", gcp_quota.dimensions.get("zone", "global")
                        ),
                    ),
                )
            )
        for what, future in reads:
            found = runbook.result_of(future)
            if found is None:
                continue
            if what == "kubernetes":
                plan.live_hard = dict(found.hard)
            elif isinstance(what, AwsQuota):
                plan.aws_before[(what.service_code, what.quota_code)] = found.value
            else:
                plan.gcp_before[_gcp_key(what)] = found.value
        return plan

    @property
    def quota_resource(self) -> str:
        return f"k8s:resourcequota/{self.spec.name}/{RESOURCE_QUOTA_NAME}"

    def wanted_hard(self) -> dict[str, str]:
        """The new hard limits: the file's, with the requested ones replaced."""
        current = dict(self.spec.quotas.hard) if self.spec.quotas else {}
        return {**current, **self.change.kubernetes}

    def new_spec(self) -> TenantSpec:
        """The tenant's spec with the requested quotas recorded."""
        old = self.spec.quotas
        aws = {(q.service_code, q.quota_code): q for q in (old.aws if old else [])}
        aws.update({(q.service_code, q.quota_code): q for q in self.change.aws})
        gcp = {_gcp_key(q): q for q in (old.gcp if old else [])}
        gcp.update({_gcp_key(q): q for q in self.change.gcp})
        quotas = TenantQuotas(
            hard=self.wanted_hard(),
            limit_range=old.limit_range if old else None,
            aws=list(aws.values()),
            gcp=list(gcp.values()),
        )
        return self.spec.model_copy(update={"quotas": quotas})

    def live_changes(self) -> list[str]:
        """The quotas whose live value does not meet the request."""
        changed = []
        if self.change.kubernetes:
            wanted = self.wanted_hard()
            if set(wanted) != set(self.live_hard) or not all(
                _same_quantity(self.live_hard.get(key), value) for key, value in wanted.items()
            ):
                changed.append(self.quota_resource)
        changed += [
            _aws_resource(q)
            for q in self.change.aws
            if self.aws_before.get((q.service_code, q.quota_code), 0) < q.value
        ]
        changed += [
            _gcp_resource(q)
            for q in self.change.gcp
            if not _gcp_grants(self.gcp_before.get(_gcp_key(q), 0), q.value)
        ]
        return changed

    def rows(self) -> list[dict[str, str]]:
        """The before/after table: one row per quota asked for."""
        rows = []
        for key, value in sorted(self.change.kubernetes.items()):
            rows.append(
                {
                    "quota": f"{self.quota_resource}#{key}",
                    "before": self.live_hard.get(key, "(none)"),
                    "requested": value,
                    "after": self.after.get(f"k8s:{key}", "-"),
                }
            )
        for q in self.change.aws:
            before = self.aws_before.get((q.service_code, q.quota_code))
            rows.append(
                {
                    "quota": _aws_resource(q),
                    "before": "?" if before is None else f"{before:g}",
                    "requested": f"{q.value:g}",
                    "after": self.after.get(_aws_resource(q), "-"),
                }
            )
        for g in self.change.gcp:
            rows.append(
                {
                    "quota": _gcp_resource(g),
                    "before": str(self.gcp_before.get(_gcp_key(g), "?")),
                    "requested": str(g.value),
                    "after": self.after.get(_gcp_resource(g), "-"),
                }
            )
        return rows

    def description(self, reason: str) -> str:
        """The merge request's description: the reason and the before/after table."""
        lines = [
            f"Quota change for tenant **{self.spec.name}**, opened by MagicFlow's "
            f"`{WORKFLOW_NAME}` runbook.",
            "",
            f"**Reason:** {reason}",
            "",
            "| quota | before | requested |",
            "| --- | --- | --- |",
        ]
        lines += [f"| `{r['quota']}` | {r['before']} | {r['requested']} |" for r in self.rows()]
        lines += ["", "Merging it lets the waiting run apply the change."]
        return "\n".join(lines)

    def apply(
        self, runbook: Runbook, reason: str, contact_email: str | None, dry_run: bool
    ) -> None:
        """Submits the ResourceQuota and the cloud quota requests, and records the results."""
        applied: list[tuple[str, PrefectFuture[Change]]] = []
        if self.kubernetes is not None:
            applied.append(
                (
                    "kubernetes",
                    runbook.submit(
                        self.quota_resource,
                        ensure_resource_quota,
                        self.kubernetes,
                        self.spec.name,
                        RESOURCE_QUOTA_NAME,
                        self.wanted_hard(),
                        dry_run=dry_run,
                    ),
                )
            )
        for q in self.change.aws:
            applied.append(
                (
                    _aws_resource(q),
                    runbook.submit(
                        _aws_resource(q),
                        request_service_quota_increase,
                        self.aws,
                        q.service_code,
                        q.quota_code,
                        q.value,
                        dry_run=dry_run,
                    ),
                )
            )
        for g in self.change.gcp:
            applied.append(
                (
                    _gcp_resource(g),
                    runbook.submit(
                        _gcp_resource(g),
                        request_gcp_quota_increase,
                        self.gcp,
                        g.service,
                        g.quota_id,
                        g.value,
                        dimensions=g.dimensions or None,
                        contact_email=contact_email,
                        justification=reason[:1000],
                        dry_run=dry_run,
                    ),
                )
            )
        for key, future in applied:
            result = runbook.result_of(future)
            if result is None:
                continue
            if key == "kubernetes":
                for name, value in self.wanted_hard().items():
                    self.after[f"k8s:{name}"] = value if not dry_run else f"{value} (plan)"
            else:
                self.after[key] = _after_cloud(result)

    def publish_table(self, outcome: str) -> None:
        """Publishes the before/after table artifact."""
        create_table_artifact(
            self.rows(),
            key=f"{WORKFLOW_NAME}-{self.spec.name}-quotas",
            description=f"Quotas of tenant {self.spec.name}: {outcome}",
        )


def _after_cloud(change: Change) -> str:
    detail: Mapping[str, Any] = change.detail
    if change.action is Action.UNCHANGED:
        return f"already allowed ({detail.get('value', detail.get('current_value', '?'))})"
    status = detail.get("status") or ("requested" if not change.dry_run else "would request")
    return f"{status} ({detail.get('requested_value', detail.get('preferred_value', '?'))})"


def _dimensions(quota: GcpQuota) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(quota.dimensions.items()))


def _gcp_key(quota: GcpQuota) -> tuple[str, str, str]:
    return (quota.service, quota.quota_id, _dimensions(quota))


def _gcp_grants(current: int, wanted: int) -> bool:
    return current == -1 or (wanted != -1 and current >= wanted)


def _aws_resource(quota: AwsQuota) -> str:
    return f"aws:servicequotas:quota/{quota.service_code}/{quota.quota_code}"


def _gcp_resource(quota: GcpQuota) -> str:
    dimensions = _dimensions(quota)
    return f"gcp:quota/services/{quota.service}/quotaInfos/{quota.quota_id}" + (
        f"[{dimensions}]" if dimensions else ""
    )

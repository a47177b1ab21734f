"""Tenant provisioning: the runbook that gives a team its tenant on every system.

`provision_tenant` takes a `TenantSpec` and converges Kubernetes, Vault, AWS, GCP and
the GitOps repository to it, with existing jobs only. Its docstring is the runbook.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any, TypeVar

from prefect import tags
from prefect.blocks.core import Block
from prefect.futures import PrefectFuture
from pydantic import SecretStr

from blocks import (
    AwsCredentials,
    GcpConnection,
    GitLabConnection,
    KubernetesConnection,
    VaultConnection,
)
from flows.gitops import merge_when_approved, propose_file_change
from flows.runbook import (
    Runbook,
    connection_for,
    runbook_flow,
    tag_current_run,
    tenant_lock,
    undo_with,
)
from flows.tenant_spec import GeneratedSecret, SecretStore, TenantSpec, load_tenant_spec
from magicflow import Action, Change, InvalidInputError
from tasks import (
    delete_gcp_secret,
    delete_gcs_bucket,
    delete_iam_role,
    delete_kv_secret,
    delete_namespace,
    delete_namespaced_object,
    delete_s3_bucket,
    delete_secretsmanager_secret,
    delete_ssm_parameter,
    ensure_gcp_secret,
    ensure_gcs_bucket,
    ensure_generated_kv_secret,
    ensure_iam_role,
    ensure_limit_range,
    ensure_namespace,
    ensure_resource_quota,
    ensure_s3_bucket,
    ensure_secret,
    ensure_secretsmanager_secret,
    put_ssm_parameter,
    read_kv_secret,
    read_repository_file,
    rotate_generated_kv_secret,
)

WORKFLOW_NAME = "provision-tenant"
"""The flow's name; its deployment is ``provision-tenant/tenant-provisioning``."""

RESOURCE_QUOTA_NAME = "tenant-quota"
"""Name of the tenant's ResourceQuota in its namespace."""

LIMIT_RANGE_NAME = "tenant-limits"
"""Name of the tenant's LimitRange in its namespace."""

B = TypeVar("B", bound=Block)


@dataclass(frozen=True)
class Connections:
    """The spec's connections, loaded (None for a system the spec leaves out)."""

    kubernetes: KubernetesConnection | None
    vault: VaultConnection | None
    aws: AwsCredentials | None
    gcp: GcpConnection | None
    gitlab: GitLabConnection | None


def _load_block(spec: TenantSpec, field: str, block_type: type[B], name: str) -> B:
    return connection_for(f"tenant-spec:{spec.name}", f"{field}.connection", name, block_type)


def load_connections(spec: TenantSpec) -> Connections:
    """Loads every connection the spec names, before anything is written.

    The AWS block is used in the spec's region, the GCP block in the spec's project.

    Args:
        spec: The tenant's spec.

    Returns:
        The loaded blocks.

    Raises:
        NotFoundError: A named block does not exist; the message names the spec's
            field, the block and how to create it.
        InvalidInputError: A name is that of a block of another type.
    """
    aws = gcp = None
    if spec.aws is not None:
        aws = _load_block(spec, "aws", AwsCredentials, spec.aws.connection).model_copy(
            update={"region_name": spec.aws.region}
        )
    if spec.gcp is not None:
        gcp = _load_block(spec, "gcp", GcpConnection, spec.gcp.connection)
        if spec.gcp.project:
            gcp = gcp.model_copy(update={"project": spec.gcp.project})
    return Connections(
        kubernetes=(
            _load_block(spec, "kubernetes", KubernetesConnection, spec.kubernetes.connection)
            if spec.kubernetes
            else None
        ),
        vault=_load_block(spec, "vault", VaultConnection, spec.vault.connection)
        if spec.vault
        else None,
        aws=aws,
        gcp=gcp,
        gitlab=_load_block(spec, "gitops", GitLabConnection, spec.gitops.connection)
        if spec.gitops
        else None,
    )


def _tenant_of(parameters: dict[str, Any]) -> object:
    spec = parameters.get("spec")
    return spec.name if isinstance(spec, TenantSpec) else (spec or {}).get("name")


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"workflow:{WORKFLOW_NAME}", f"{name} must be true or false")
    return value


@runbook_flow(WORKFLOW_NAME, _tenant_of)
def provision_tenant(
    spec: TenantSpec,
    dry_run: bool = False,
    rollback_on_failure: bool = False,
    rotate_secrets: bool = False,
) -> list[Change]:
    """Provisions a tenant: the runbook, step by step.

    1. Check the spec and load every connection it names. A bad spec fails here,
       before anything is written, with an `InvalidInputError` naming the field; a
       missing block with a `NotFoundError` naming the field, the block and how to
       create it.
    2. Take the tenant's lock: another provisioning or quota adjustment of the same
       tenant waits until this run ends; other tenants run in parallel.
    3. Run the independent branches at once (a system the spec leaves out is
       reported ``skipped``, with the reason):

       - Kubernetes: the namespace (named after the tenant, with its labels and
         owners), then its ResourceQuota ``tenant-quota`` and LimitRange
         ``tenant-limits``.
       - AWS: the S3 bucket, the IAM role, the plain SSM parameters.
       - GCP: the Cloud Storage bucket.
       - Vault: each generated credential at ``<path_prefix>/<tenant>/<secret>``,
         generated on the first run only (a rerun never rotates it; with
         ``rotate_secrets=True`` a new value is written), then read back.
       - GitOps: the tenant's config file (the spec as YAML) on the branch
         ``tenant/<tenant>``, in one commit, and a merge request to the target
         branch; nothing when the target branch already has it.

    4. Copy each credential from Vault to the stores the spec names: a Kubernetes
       Secret in the namespace, an SSM SecureString ``/<prefix>/<tenant>/<secret>``,
       a Secrets Manager secret ``<prefix>/<tenant>/<secret>``, a GCP secret
       ``<prefix>-<tenant>-<secret>``.
    5. Gate, last: wait for the merge request's approval (bounded by the spec's
       ``approval_timeout_seconds``; a closed merge request fails at once), then
       merge it.

    If a step fails, the run finishes the steps already running, publishes its
    report (a Markdown artifact and a table: what was created, what failed and
    why, what never started) and fails. With ``rollback_on_failure`` it first
    undoes, newest first, what this run created, and nothing else. Without it, a
    rerun converges.

    Args:
        spec: The tenant (a `TenantSpec`, or its JSON from a request).
        dry_run: Read everything, write nothing, and report the plan; the gate is
            skipped.
        rollback_on_failure: On failure, undo what this run created.
        rotate_secrets: Write new values for the generated credentials (and copy them
            to their stores) instead of keeping the existing ones.

    Returns:
        Every step's `Change`, in plan order: ``created``/``updated``/``unchanged``
        and ``skipped`` (with the reason in ``detail``). A second run with the same
        spec reports only ``unchanged`` and ``skipped``.

    Raises:
        InvalidInputError: The spec or a flag is not valid.
        NotFoundError: A block the spec names does not exist (the message says which
            field, and how to create the block).
        MagicFlowError: A step failed (of that step's error type); see the report.

    Example:
        ```python
        from flows import TenantSpec, provision_tenant
        from flows.tenant_spec import KubernetesTarget, TenantQuotas

        spec = TenantSpec(
            name="acme",
            environment="prod",
            owners=["alice@example.com"],
            quotas=TenantQuotas(hard={"requests.cpu": "4", "pods": "20"}),
            kubernetes=KubernetesTarget(connection="prod-cluster"),
        )
        provision_tenant(spec, dry_run=True)  # the plan
        provision_tenant(spec)
        ```
    """
    spec = load_tenant_spec(spec)
    dry_run = _check_flag("dry_run", dry_run)
    rollback_on_failure = _check_flag("rollback_on_failure", rollback_on_failure)
    rotate_secrets = _check_flag("rotate_secrets", rotate_secrets)
    tenant_tag = f"tenant:{spec.name}"
    tag_current_run([tenant_tag])
    connections = load_connections(spec)
    with tenant_lock(spec.name), tags(tenant_tag):
        runbook = Runbook(WORKFLOW_NAME, spec.name, dry_run)
        merge_request = _provision(runbook, spec, connections, dry_run, rotate_secrets)
        runbook.raise_on_failure(rollback_on_failure)
        if merge_request is not None:
            assert spec.gitops is not None and connections.gitlab is not None  # noqa: S101
            merge_when_approved(
                runbook, connections.gitlab, spec.gitops, merge_request.result(), dry_run
            )
            runbook.raise_on_failure(rollback_on_failure)
        return runbook.complete()


def _provision(
    runbook: Runbook,
    spec: TenantSpec,
    connections: Connections,
    dry_run: bool,
    rotate_secrets: bool,
) -> PrefectFuture[Change] | None:
    """Submits every branch; returns the merge request step (None when there is none)."""
    namespace = _kubernetes(runbook, spec, connections.kubernetes, dry_run)
    _aws(runbook, spec, connections.aws, dry_run)
    _gcp(runbook, spec, connections.gcp, dry_run)
    config = None
    if spec.gitops is None or connections.gitlab is None:
        runbook.skip(f"gitlab:tenant/{spec.name}", "the spec has no gitops section")
    else:
        config = runbook.submit(
            f"gitlab:project/{spec.gitops.project}/file/{spec.config_path}"
            f"@{spec.gitops.target_branch}",
            read_repository_file,
            connections.gitlab,
            spec.gitops.project,
            spec.config_path,
            ref=spec.gitops.target_branch,
        )
    generated = _generate_secrets(runbook, spec, connections.vault, dry_run, rotate_secrets)
    merge_request = None
    if config is not None:
        assert spec.gitops is not None and connections.gitlab is not None  # noqa: S101
        current = runbook.result_of(config)
        if current is not None:
            merge_request = propose_file_change(
                runbook,
                connections.gitlab,
                spec.gitops,
                spec.config_path,
                spec.config_file(),
                current,
                branch=f"tenant/{spec.name}",
                title=f"Tenant {spec.name} ({spec.environment})",
                description=_merge_request_description(spec),
                dry_run=dry_run,
            )
    _copy_secrets(runbook, spec, connections, generated, namespace, dry_run)
    return merge_request


def _kubernetes(
    runbook: Runbook,
    spec: TenantSpec,
    kubernetes: KubernetesConnection | None,
    dry_run: bool,
) -> PrefectFuture[Change] | None:
    name = spec.name
    if spec.kubernetes is None or kubernetes is None:
        runbook.skip(f"k8s:namespace/{name}", "the spec has no kubernetes section")
        return None
    namespace = runbook.submit(
        f"k8s:namespace/{name}",
        ensure_namespace,
        kubernetes,
        name,
        labels={**spec.labels, **spec.kubernetes.labels},
        annotations={"magicflow.io/owners": ",".join(spec.owners)},
        dry_run=dry_run,
        undo=undo_with(delete_namespace, kubernetes, name),
    )
    if spec.quotas is not None:
        runbook.submit(
            f"k8s:resourcequota/{name}/{RESOURCE_QUOTA_NAME}",
            ensure_resource_quota,
            kubernetes,
            name,
            RESOURCE_QUOTA_NAME,
            dict(spec.quotas.hard),
            dry_run=dry_run,
            wait_for=[namespace],
            undo=undo_with(
                delete_namespaced_object, kubernetes, "ResourceQuota", name, RESOURCE_QUOTA_NAME
            ),
        )
        if spec.quotas.limit_range:
            runbook.submit(
                f"k8s:limitrange/{name}/{LIMIT_RANGE_NAME}",
                ensure_limit_range,
                kubernetes,
                name,
                LIMIT_RANGE_NAME,
                [item.as_api_item() for item in spec.quotas.limit_range],
                dry_run=dry_run,
                wait_for=[namespace],
                undo=undo_with(
                    delete_namespaced_object, kubernetes, "LimitRange", name, LIMIT_RANGE_NAME
                ),
            )
    return namespace


def _aws(runbook: Runbook, spec: TenantSpec, aws: AwsCredentials | None, dry_run: bool) -> None:
    if spec.aws is None or aws is None:
        runbook.skip(f"aws:tenant/{spec.name}", "the spec has no aws section")
        return
    if spec.aws.bucket:
        runbook.submit(
            f"aws:s3:bucket/{spec.aws.bucket}",
            ensure_s3_bucket,
            aws,
            spec.aws.bucket,
            region=spec.aws.region,
            tags=spec.labels,
            dry_run=dry_run,
            undo=undo_with(delete_s3_bucket, aws, spec.aws.bucket),
        )
    if spec.aws.role:
        role = spec.aws.role
        runbook.submit(
            f"aws:iam:role/{role.name}",
            ensure_iam_role,
            aws,
            role.name,
            role.trust_policy,
            role.managed_policy_arns,
            tags=spec.labels,
            description=role.description or f"Tenant {spec.name} ({spec.environment})",
            dry_run=dry_run,
            undo=undo_with(delete_iam_role, aws, role.name),
        )
    for parameter, value in spec.aws.ssm_parameters.items():
        runbook.submit(
            f"aws:ssm:parameter/{parameter}",
            put_ssm_parameter,
            aws,
            parameter,
            SecretStr(value),
            type="String",
            tags=spec.labels,
            dry_run=dry_run,
            undo=undo_with(delete_ssm_parameter, aws, parameter),
        )


def _gcp(runbook: Runbook, spec: TenantSpec, gcp: GcpConnection | None, dry_run: bool) -> None:
    if spec.gcp is None or gcp is None:
        runbook.skip(f"gcp:tenant/{spec.name}", "the spec has no gcp section")
        return
    if spec.gcp.bucket:
        runbook.submit(
            f"gcp:gcs:bucket/{spec.gcp.bucket}",
            ensure_gcs_bucket,
            gcp,
            spec.gcp.bucket,
            location=spec.gcp.bucket_location,
            versioning=spec.gcp.bucket_versioning,
            labels=spec.labels,
            dry_run=dry_run,
            undo=undo_with(delete_gcs_bucket, gcp, spec.gcp.bucket),
        )


def _vault_path(spec: TenantSpec, secret: GeneratedSecret) -> str:
    assert spec.vault is not None  # noqa: S101 - the spec requires vault for secrets
    return f"{spec.vault.path_prefix}/{spec.name}/{secret.name}"


def _generate_secrets(
    runbook: Runbook,
    spec: TenantSpec,
    vault: VaultConnection | None,
    dry_run: bool,
    rotate: bool,
) -> list[tuple[GeneratedSecret, PrefectFuture[Change]]]:
    if spec.vault is None or vault is None:
        runbook.skip(f"vault:tenant/{spec.name}", "the spec has no vault section")
        return []
    generate = rotate_generated_kv_secret if rotate else ensure_generated_kv_secret
    return [
        (
            secret,
            runbook.submit(
                f"vault:kv/{vault.kv_mount}/{_vault_path(spec, secret)}",
                generate,
                vault,
                _vault_path(spec, secret),
                key=secret.key,
                length=secret.length,
                dry_run=dry_run,
                undo=undo_with(delete_kv_secret, vault, _vault_path(spec, secret)),
            ),
        )
        for secret in spec.secrets
    ]


def _secret_value(
    runbook: Runbook,
    spec: TenantSpec,
    vault: VaultConnection,
    secret: GeneratedSecret,
    generated: PrefectFuture[Change],
    dry_run: bool,
) -> SecretStr | None:
    """The credential as Vault holds it; None when generating it failed."""
    change = runbook.result_of(generated)
    if change is None:
        return None
    if dry_run and change.action is not Action.UNCHANGED:
        # Nothing was generated: plan the stores with a value that exists nowhere, as
        # the real run's new value would (stores that hold another value are "updated").
        alphabet = string.ascii_letters + string.digits
        return SecretStr("".join(secrets.choice(alphabet) for _ in range(secret.length)))
    path = _vault_path(spec, secret)
    read = runbook.submit(f"vault:kv/{vault.kv_mount}/{path}", read_kv_secret, vault, path)
    found = runbook.result_of(read)
    return found.data.get(secret.key) if found is not None else None


def _store_resource(
    spec: TenantSpec, connections: Connections, secret: GeneratedSecret, store: SecretStore
) -> str:
    assert spec.vault is not None  # noqa: S101 - the spec requires vault for secrets
    prefix = spec.vault.path_prefix
    if store == "kubernetes":
        return f"k8s:secret/{spec.name}/{secret.name}"
    if store == "aws-ssm":
        return f"aws:ssm:parameter/{_ssm_name(spec, secret)}"
    if store == "aws-secretsmanager":
        return f"aws:secretsmanager:secret/{prefix}/{spec.name}/{secret.name}"
    project = f"projects/{connections.gcp.project}/" if connections.gcp else ""
    return f"gcp:secret/{project}secrets/{_gcp_secret_id(spec, secret)}"


def _ssm_name(spec: TenantSpec, secret: GeneratedSecret) -> str:
    return f"/{_vault_path(spec, secret)}"


def _gcp_secret_id(spec: TenantSpec, secret: GeneratedSecret) -> str:
    return _vault_path(spec, secret).replace("/", "-")


def _copy_secrets(
    runbook: Runbook,
    spec: TenantSpec,
    connections: Connections,
    generated: list[tuple[GeneratedSecret, PrefectFuture[Change]]],
    namespace: PrefectFuture[Change] | None,
    dry_run: bool,
) -> None:
    """Submits, per credential and store, the copy of Vault's value to that store."""
    systems = {
        "kubernetes": (connections.kubernetes, "kubernetes"),
        "aws-ssm": (connections.aws, "aws"),
        "aws-secretsmanager": (connections.aws, "aws"),
        "gcp": (connections.gcp, "gcp"),
    }
    for secret, generation in generated:
        assert connections.vault is not None  # noqa: S101 - secrets need vault
        value = _secret_value(runbook, spec, connections.vault, secret, generation, dry_run)
        for store in secret.stores:
            resource = _store_resource(spec, connections, secret, store)
            block, section = systems[store]
            if block is None:
                runbook.skip(resource, f"the spec has no {section} section")
            elif value is None:
                runbook.never_started(
                    resource, f"copy to {store}", "the credential could not be read from Vault"
                )
            else:
                _copy_secret(
                    runbook, spec, secret, store, resource, block, value, namespace, dry_run
                )


def _copy_secret(
    runbook: Runbook,
    spec: TenantSpec,
    secret: GeneratedSecret,
    store: SecretStore,
    resource: str,
    block: Any,
    value: SecretStr,
    namespace: PrefectFuture[Change] | None,
    dry_run: bool,
) -> None:
    if store == "kubernetes":
        runbook.submit(
            resource,
            ensure_secret,
            block,
            spec.name,
            secret.name,
            {secret.key: value},
            labels=spec.labels,
            dry_run=dry_run,
            wait_for=[namespace] if namespace is not None else [],
            undo=undo_with(delete_namespaced_object, block, "Secret", spec.name, secret.name),
        )
    elif store == "aws-ssm":
        name = _ssm_name(spec, secret)
        runbook.submit(
            resource,
            put_ssm_parameter,
            block,
            name,
            value,
            type="SecureString",
            tags=spec.labels,
            dry_run=dry_run,
            undo=undo_with(delete_ssm_parameter, block, name),
        )
    elif store == "aws-secretsmanager":
        name = _vault_path(spec, secret)
        runbook.submit(
            resource,
            ensure_secretsmanager_secret,
            block,
            name,
            value,
            tags=spec.labels,
            dry_run=dry_run,
            undo=undo_with(delete_secretsmanager_secret, block, name),
        )
    else:
        secret_id = _gcp_secret_id(spec, secret)
        runbook.submit(
            resource,
            ensure_gcp_secret,
            block,
            secret_id,
            value,
            labels=spec.labels,
            dry_run=dry_run,
            undo=undo_with(delete_gcp_secret, block, secret_id),
        )


def _merge_request_description(spec: TenantSpec) -> str:
    systems = [
        system
        for system in ("kubernetes", "vault", "aws", "gcp")
        if getattr(spec, system) is not None
    ]
    return "\n".join(
        [
            f"Tenant **{spec.name}** ({spec.environment}), opened by MagicFlow's "
            f"`{WORKFLOW_NAME}` runbook.",
            "",
            f"- Owners: {', '.join(spec.owners)}",
            f"- Systems: {', '.join(systems) or 'none'}",
            f"- Secrets: {', '.join(s.name for s in spec.secrets) or 'none'} "
            "(generated in Vault; never in this repository)",
            "",
            "Merging it completes the provisioning run, which waits for this approval.",
        ]
    )

"""What a tenant is: `TenantSpec`, the input of the tenant runbooks and their GitOps file.

A spec names the tenant, its owners and quotas, and, per system, the connection (a
saved block's name) and what to create there. Every system is optional: a system
the spec leaves out is reported ``skipped`` by the runbooks, never silently
omitted. The spec holds no secret: credentials are generated in Vault and copied
from there to the stores the spec names.

Models are strict (a wrong type is an error, never coerced) and forbid unknown
fields, so a typo fails before any write. `load_tenant_spec` turns a request's JSON
into a spec, or into an `InvalidInputError` that names the bad fields.

Example:
    >>> spec = TenantSpec(
    ...     name="acme",
    ...     environment="prod",
    ...     owners=["alice@example.com"],
    ...     quotas=TenantQuotas(hard={"requests.cpu": "4", "pods": "20"}),
    ...     kubernetes=KubernetesTarget(connection="prod-cluster"),
    ... )
    >>> spec.config_path
    'tenants/acme.yaml'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

import yaml
from kubernetes.utils import parse_quantity
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from flows.registry import describe_validation_errors
from magicflow.errors import InvalidInputError
from tasks.aws.s3 import validate_bucket_name as validate_s3_bucket_name
from tasks.gcp.storage import validate_bucket_name as validate_gcs_bucket_name
from tasks.kubernetes import MANAGED_BY_LABEL, TENANT_LABEL

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""An RFC 1123 DNS label (what Kubernetes requires of a namespace name)."""

_QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)

SecretStore = Literal["kubernetes", "aws-ssm", "aws-secretsmanager", "gcp"]
"""Where a generated credential is copied from Vault: a Kubernetes Secret in the tenant's
namespace, an SSM SecureString parameter, a Secrets Manager secret, or a GCP Secret
Manager secret."""


def _quantity(value: str) -> str:
    """A Kubernetes quantity (``4``, ``500m``, ``8Gi``) that is not negative."""
    try:
        number = parse_quantity(value)
    except (ValueError, TypeError):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 4, 500m, 8Gi)") from None
    if number < Decimal(0):
        raise ValueError(f"{value!r} is negative; a quota or limit is 0 or more")
    return value


def _resource_names(quantities: dict[str, str]) -> dict[str, str]:
    for name in quantities:
        if len(name) > 316 or not _QUALIFIED_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a Kubernetes resource name (e.g. requests.cpu)")
    return quantities


Quantity = Annotated[str, AfterValidator(_quantity)]
Quantities = Annotated[dict[str, Quantity], AfterValidator(_resource_names)]
BlockName = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        max_length=100,
        description="The name of a saved block (lowercase letters, digits and dashes).",
    ),
]


class _Spec(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)


class LimitRangeItem(_Spec):
    """One item of a LimitRange, in the Kubernetes API's own form and names."""

    type: Literal["Container", "Pod", "PersistentVolumeClaim"] = Field(
        description="What the item limits."
    )
    max: Quantities | None = Field(default=None, description="Largest allowed, per resource.")
    min: Quantities | None = Field(default=None, description="Smallest allowed, per resource.")
    default: Quantities | None = Field(
        default=None, description="Default limits of containers that set none."
    )
    default_request: Quantities | None = Field(
        default=None,
        alias="defaultRequest",
        description="Default requests of containers that set none.",
    )
    max_limit_request_ratio: Quantities | None = Field(
        default=None,
        alias="maxLimitRequestRatio",
        description="Largest allowed limit / request ratio, per resource.",
    )

    def as_api_item(self) -> dict[str, Any]:
        """The item as the Kubernetes API (and `ensure_limit_range`) takes it."""
        return self.model_dump(by_alias=True, exclude_none=True)


class AwsQuota(_Spec):
    """An AWS service quota value (Service Quotas)."""

    service_code: str = Field(
        pattern=r"^[a-zA-Z][a-zA-Z0-9-]{1,62}$", description="The service, e.g. ec2."
    )
    quota_code: str = Field(
        pattern=r"^[a-zA-Z][a-zA-Z0-9-]{1,127}$", description="The quota, e.g. L-1216C47A."
    )
    value: float = Field(gt=0, le=10_000_000_000, description="The value asked for.")


class GcpQuota(_Spec):
    """A GCP quota value (Cloud Quotas)."""

    service: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+$",
        description="The service, e.g. compute.googleapis.com.",
    )
    quota_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
        description="The quota, e.g. CPUS-per-project-region.",
    )
    value: int = Field(ge=-1, description="The value asked for; -1 for unlimited.")
    dimensions: dict[str, str] = Field(
        default_factory=dict, description="Which slice, e.g. {'region': 'europe-west1'}."
    )


class TenantQuotas(_Spec):
    """The tenant's quotas.

    Provisioning applies the Kubernetes ones (``hard`` and ``limit_range``). The cloud
    ones (``aws``, ``gcp``) record what quota adjustments asked the providers for; the
    quota-adjustment runbook files those requests, provisioning leaves them alone.
    """

    hard: Quantities = Field(
        min_length=1,
        description="ResourceQuota ``spec.hard``: resource name -> quantity, "
        "e.g. {'requests.cpu': '4', 'requests.memory': '8Gi', 'pods': '20'}.",
    )
    limit_range: list[LimitRangeItem] | None = Field(
        default=None, min_length=1, description="LimitRange items; none when omitted."
    )
    aws: list[AwsQuota] = Field(
        default_factory=list, description="AWS service quotas asked for by quota adjustments."
    )
    gcp: list[GcpQuota] = Field(
        default_factory=list, description="GCP quotas asked for by quota adjustments."
    )


class KubernetesTarget(_Spec):
    """The tenant's Kubernetes cluster: a namespace named after the tenant."""

    connection: BlockName = Field(description="Name of a saved KubernetesConnection block.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels of the tenant's namespace."
    )


class VaultTarget(_Spec):
    """Vault, the source of truth of the tenant's generated credentials."""

    connection: BlockName = Field(description="Name of a saved VaultConnection block.")
    path_prefix: str = Field(
        default="tenants",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="Secrets live at <path_prefix>/<tenant>/<secret> in the block's KV mount.",
    )


class IamRoleSpec(_Spec):
    """The tenant's IAM role."""

    name: str = Field(pattern=r"^[\w+=,.@-]{1,64}$", description="The role name.")
    trust_policy: dict[str, Any] = Field(
        description="Who may assume the role (an IAM policy document)."
    )
    managed_policy_arns: list[str] = Field(
        default_factory=list, max_length=20, description="Managed policies to attach."
    )
    description: str = Field(default="", max_length=1000, description="The role's description.")

    @field_validator("trust_policy")
    @classmethod
    def _is_a_policy(cls, policy: dict[str, Any]) -> dict[str, Any]:
        if policy.get("Version") not in ("2012-10-17", "2008-10-17") or not isinstance(
            policy.get("Statement"), list | dict
        ):
            raise ValueError("a policy document has a Version (2012-10-17) and a Statement")
        return policy


class AwsTarget(_Spec):
    """The tenant's AWS resources."""

    connection: BlockName = Field(description="Name of a saved AwsCredentials block.")
    region: str = Field(
        pattern=r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$",
        description="The region of every AWS resource of the tenant, e.g. eu-west-1.",
    )
    bucket: str | None = Field(default=None, description="An S3 bucket to create.")
    role: IamRoleSpec | None = Field(default=None, description="An IAM role to create.")
    ssm_parameters: dict[str, str] = Field(
        default_factory=dict,
        description="Plain (non-secret) SSM String parameters: name (/...) -> value.",
    )

    @field_validator("bucket")
    @classmethod
    def _s3_accepts_the_name(cls, bucket: str | None) -> str | None:
        if bucket is not None:
            validate_s3_bucket_name(f"aws:s3:bucket/{bucket}", bucket)
        return bucket

    @field_validator("ssm_parameters")
    @classmethod
    def _parameter_names(cls, parameters: dict[str, str]) -> dict[str, str]:
        for name, value in parameters.items():
            if not re.fullmatch(r"/[A-Za-z0-9_.\-/]{1,1000}", name) or name.count("/") > 15:
                raise ValueError(f"{name!r} is not an SSM parameter name starting with /")
            if not value or len(value.encode()) > 4096:
                raise ValueError(f"{name}: a value has 1 to 4096 bytes")
        return parameters


class GcpTarget(_Spec):
    """The tenant's GCP resources."""

    connection: BlockName = Field(description="Name of a saved GcpConnection block.")
    project: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$",
        description="The tenant's project; the connection's project when omitted.",
    )
    bucket: str | None = Field(default=None, description="A Cloud Storage bucket to create.")
    bucket_location: str = Field(
        default="EU",
        pattern=r"^[A-Za-z][A-Za-z0-9-]{1,62}$",
        description="Where the bucket lives: multi-region, dual-region or region.",
    )
    bucket_versioning: bool = Field(
        default=True, description="Keep noncurrent object generations in the bucket."
    )

    @field_validator("bucket")
    @classmethod
    def _gcs_accepts_the_name(cls, bucket: str | None) -> str | None:
        if bucket is not None:
            validate_gcs_bucket_name(bucket)
        return bucket


class GitOpsTarget(_Spec):
    """Where the tenant's config file lives, and how long its merge request may wait."""

    connection: BlockName = Field(description="Name of a saved GitLabConnection block.")
    project: str = Field(
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+$",
        description="Full path of the GitOps project, e.g. platform/tenants.",
    )
    file_path: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$",
        description="The tenant's config file; tenants/<tenant>.yaml when omitted.",
    )
    target_branch: str = Field(
        default="main",
        pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$",
        description="The branch merge requests go to.",
    )
    approval_timeout_seconds: float = Field(
        default=86400.0, gt=0, le=30 * 86400, description="How long to wait for the approval."
    )
    approval_interval_seconds: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds between two approval checks."
    )


def _default_stores() -> list[SecretStore]:
    return ["kubernetes"]


class GeneratedSecret(_Spec):
    """A credential generated once in Vault and copied to the stores named."""

    name: str = Field(
        pattern=DNS_LABEL, max_length=63, description="The secret's name, e.g. db (a DNS label)."
    )
    key: str = Field(
        default="password",
        pattern=r"^[-._a-zA-Z0-9]{1,253}$",
        description="The key holding the value in Vault and in a Kubernetes Secret.",
    )
    length: int = Field(default=32, ge=16, le=4096, description="Characters to generate.")
    stores: list[SecretStore] = Field(
        default_factory=_default_stores,
        description="Where to copy it besides Vault (each needs that system in the spec).",
    )

    @field_validator("stores")
    @classmethod
    def _unique(cls, stores: list[SecretStore]) -> list[SecretStore]:
        if len(set(stores)) != len(stores):
            raise ValueError("a store is named twice")
        return stores


class TenantSpec(_Spec):
    """A tenant: who owns it, its quotas, and what it gets on each system.

    Every system (``kubernetes``, ``vault``, ``aws``, ``gcp``, ``gitops``) is optional
    and names its connection block; a system left out is skipped, with the reason.
    Generated ``secrets`` need ``vault``: it is their source of truth, so a spec that
    asks for secrets without Vault is rejected before anything is written.
    """

    name: str = Field(
        pattern=DNS_LABEL,
        max_length=63,
        description="The tenant's name, a DNS label; also its namespace's name.",
    )
    environment: str = Field(
        pattern=r"^[a-z][a-z0-9-]{0,19}$", description="e.g. dev, staging or prod."
    )
    owners: list[
        Annotated[str, Field(pattern=r"^[A-Za-z0-9._%+-]+(@[A-Za-z0-9.-]+\.[A-Za-z]{2,})?$")]
    ] = Field(min_length=1, max_length=20, description="Usernames or e-mail addresses.")
    quotas: TenantQuotas | None = Field(default=None, description="Kubernetes quotas.")
    kubernetes: KubernetesTarget | None = Field(default=None, description="The cluster.")
    vault: VaultTarget | None = Field(default=None, description="Where credentials are made.")
    aws: AwsTarget | None = Field(default=None, description="AWS resources.")
    gcp: GcpTarget | None = Field(default=None, description="GCP resources.")
    gitops: GitOpsTarget | None = Field(default=None, description="The tenant's config file.")
    secrets: list[GeneratedSecret] = Field(
        default_factory=list, max_length=20, description="Credentials to generate."
    )

    @field_validator("secrets")
    @classmethod
    def _secrets_need_vault(
        cls, secrets: list[GeneratedSecret], info: ValidationInfo
    ) -> list[GeneratedSecret]:
        if secrets and info.data.get("vault") is None:
            raise ValueError(
                "generated credentials need a vault section (Vault is their source of "
                "truth; without it a rerun could not find them again)"
            )
        names = [secret.name for secret in secrets]
        if len(set(names)) != len(names):
            raise ValueError("two secrets have the same name")
        return secrets

    @property
    def config_path(self) -> str:
        """Path of the tenant's config file in the GitOps project."""
        if self.gitops is not None and self.gitops.file_path:
            return self.gitops.file_path
        return f"tenants/{self.name}.yaml"

    @property
    def labels(self) -> dict[str, str]:
        """Labels and tags every resource of the tenant carries."""
        managed_by, magicflow = MANAGED_BY_LABEL
        return {TENANT_LABEL: self.name, "environment": self.environment, managed_by: magicflow}

    def config_file(self) -> str:
        """The tenant's config file: this spec as YAML, as the GitOps repository keeps it.

        Returns:
            Deterministic YAML text (same spec, same bytes), so a rerun commits nothing.
        """
        document = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return CONFIG_FILE_HEADER + yaml.safe_dump(document, sort_keys=False)


CONFIG_FILE_HEADER = (
    "# A MagicFlow tenant (flows.tenant_spec.TenantSpec). Change it through the\n"
    "# tenant-provisioning or quota-adjustment runbooks, which open merge requests.\n"
)


def load_tenant_spec(value: TenantSpec | Mapping[str, Any]) -> TenantSpec:
    """Validates a spec given as a model or as JSON-like data (a request's parameter).

    Args:
        value: A `TenantSpec`, or a mapping with its fields.

    Returns:
        The spec.

    Raises:
        InvalidInputError: The spec is not valid; the message names every bad field
            (``aws.bucket: ...``), never the values given.

    Example:
        >>> load_tenant_spec({"name": "Acme", "environment": "prod", "owners": ["a"]})
        Traceback (most recent call last):
        ...
        magicflow.errors.InvalidInputError: tenant-spec: name: String should match pattern ...
    """
    if isinstance(value, TenantSpec):
        return value
    name = value.get("name") if isinstance(value, Mapping) else None
    resource = (
        f"tenant-spec:{name}"
        if isinstance(name, str) and re.fullmatch(DNS_LABEL, name)
        else "tenant-spec"
    )
    try:
        return TenantSpec.model_validate(value)
    except ValidationError as error:
        raise InvalidInputError(resource, describe_validation_errors(error, "(spec)")) from None


def parse_config_file(text: str, resource: str) -> TenantSpec:
    """Reads a tenant's config file back into its spec.

    Args:
        text: The file's content (see `TenantSpec.config_file`).
        resource: The file, for error messages.

    Returns:
        The spec.

    Raises:
        InvalidInputError: The file is not YAML or not a valid spec.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InvalidInputError(resource, "the tenant's config file is not valid YAML") from None
    if not isinstance(document, dict):
        raise InvalidInputError(resource, "the tenant's config file is not a YAML mapping")
    try:
        return TenantSpec.model_validate(document)
    except ValidationError as error:
        problems = describe_validation_errors(error, "(spec)")
        raise InvalidInputError(
            resource, f"the tenant's config file is not a valid spec: {problems}"
        ) from None

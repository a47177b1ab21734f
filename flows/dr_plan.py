"""A failover plan: the typed, idempotent steps `invoke-dr` plans, gets approved and applies.

Each step is one job: restore or copy a data store into the DR region, or repoint a
piece of configuration at the DR endpoints. Steps run in the order given; every job
reads first and writes only what differs, so a rerun after a partial failure reports
the steps already done as ``unchanged``. A step's ``plan`` is the same job in dry-run
mode, read live from the backends; it also pins what "latest" means (the snapshot the
approver saw is the one restored).

| kind | job | what it ensures |
| --- | --- | --- |
| ``rds-restore`` | `restore_rds_instance_from_snapshot` | a DR instance from the source's latest snapshot in the DR region |
| ``s3-copy`` | `copy_s3_objects` | the objects under a prefix copied to the DR bucket |
| ``gcs-copy`` | `copy_gcs_objects` | the objects under a prefix copied to the DR bucket |
| ``ssm-parameter`` | `repoint_ssm_parameter` | an existing parameter holds the DR value |
| ``vault-kv`` | `set_kv_secret_keys` | keys of an existing secret hold the DR values |
| ``k8s-configmap`` | `set_config_map_keys` | keys of an existing ConfigMap hold the DR values |

A plan travels as a flow-run parameter, which Prefect stores in plain text: its values
are endpoints and names, never secrets (connections are saved blocks, by name).

Example:
    >>> plan = parse_plan({"name": "orders-eu-central", "steps": [
    ...     {"kind": "ssm-parameter", "name": "db-host", "connection": "aws",
    ...      "parameter": "/orders/db/host", "value": "orders-dr.internal"}]})
    >>> plan.steps[0].resource
    'aws:ssm:parameter//orders/db/host'
"""  # noqa: E501 - the table is read as a table

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from typing_extensions import override

from flows.dr_targets import describe_validation_error
from magicflow import Change, InvalidInputError, MagicFlowError, NotFoundError
from tasks.aws import (
    copy_s3_objects,
    list_rds_snapshots,
    repoint_ssm_parameter,
    restore_rds_instance_from_snapshot,
)
from tasks.gcp import copy_gcs_objects
from tasks.kubernetes import set_config_map_keys
from tasks.vault import set_kv_secret_keys

StepName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class _Step(BaseModel):
    """What every step has: a name, and the connection block that reaches its system."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StepName = Field(description="Unique name of the step in the plan, e.g. db-host.")
    connection: str = Field(min_length=1, description="Name of the saved connection block.")

    @property
    def resource(self) -> str:
        """What the step changes, in `Change.resource` form."""
        raise NotImplementedError

    def pinned(self) -> Self:
        """The step with "latest" resolved from the live backends (itself by default)."""
        return self

    def run(self, dry_run: bool) -> Change:
        """Runs the step's job (a dry run reads only and reports the plan)."""
        raise NotImplementedError


class RestoreRdsStep(_Step):
    """A DB instance in the DR region restored from the latest snapshot of the source."""

    kind: Literal["rds-restore"] = "rds-restore"
    source_db_instance_identifier: str = Field(description="Whose snapshots to restore from.")
    db_instance_identifier: str = Field(description="The DR instance to create.")
    db_instance_class: str | None = Field(default=None, description="The DR instance's class.")
    region: str | None = Field(default=None, description="The DR region; the block's if empty.")
    snapshot_id: str | None = Field(
        default=None, description="The snapshot; the latest available one when empty."
    )

    @property
    @override
    def resource(self) -> str:
        return f"aws:rds:db/{self.db_instance_identifier}"

    @override
    def pinned(self) -> Self:
        if self.snapshot_id:
            return self
        snapshots = list_rds_snapshots(
            self.connection, self.source_db_instance_identifier, self.region
        )
        latest = next((s for s in snapshots if s.status == "available"), None)
        if latest is None:
            raise NotFoundError(
                f"aws:rds:db/{self.source_db_instance_identifier}",
                f"no available snapshot in {self.region or 'the connection region'}",
            )
        return self.model_copy(update={"snapshot_id": latest.identifier})

    @override
    def run(self, dry_run: bool) -> Change:
        step = self.pinned()
        return restore_rds_instance_from_snapshot(
            step.connection,
            str(step.snapshot_id),
            step.db_instance_identifier,
            step.db_instance_class,
            step.region,
            dry_run=dry_run,
        )


class _CopyObjectsStep(_Step):
    """What the S3 and GCS copy steps share: the objects under a prefix, bucket to bucket."""

    source_bucket: str
    destination_bucket: str
    prefix: str = ""

    system: ClassVar[str]
    """Where the buckets live, in `Change.resource` form (``aws:s3``, ``gcp:gcs``)."""

    @property
    @override
    def resource(self) -> str:
        return f"{self.system}:bucket/{self.destination_bucket}/{self.prefix}*"

    @override
    def run(self, dry_run: bool) -> Change:
        return self.copy_job()(
            self.connection,
            self.source_bucket,
            self.destination_bucket,
            self.prefix,
            dry_run=dry_run,
        )

    def copy_job(self) -> Callable[..., Change]:
        """The job that copies the objects."""
        raise NotImplementedError


class CopyS3Step(_CopyObjectsStep):
    """The objects under a prefix copied to a bucket in the DR region."""

    kind: Literal["s3-copy"] = "s3-copy"
    system: ClassVar[str] = "aws:s3"

    @override
    def copy_job(self) -> Callable[..., Change]:
        return copy_s3_objects


class CopyGcsStep(_CopyObjectsStep):
    """The objects under a prefix copied to a Cloud Storage bucket in the DR region."""

    kind: Literal["gcs-copy"] = "gcs-copy"
    system: ClassVar[str] = "gcp:gcs"

    @override
    def copy_job(self) -> Callable[..., Change]:
        return copy_gcs_objects


class RepointSsmStep(_Step):
    """An existing SSM parameter set to its DR value (type, description, tags kept)."""

    kind: Literal["ssm-parameter"] = "ssm-parameter"
    parameter: str = Field(description="The parameter name, e.g. /orders/db/host.")
    value: str = Field(min_length=1, description="The DR value (an endpoint, not a secret).")
    region: str | None = None

    @property
    @override
    def resource(self) -> str:
        return f"aws:ssm:parameter/{self.parameter}"

    @override
    def run(self, dry_run: bool) -> Change:
        return repoint_ssm_parameter(
            self.connection, self.parameter, self.value, self.region, dry_run=dry_run
        )


class SetVaultKeysStep(_Step):
    """Keys of an existing Vault KV secret set to their DR values (other keys kept)."""

    kind: Literal["vault-kv"] = "vault-kv"
    path: str = Field(description="The secret's path in the connection's KV mount.")
    values: dict[str, str] = Field(min_length=1, description="Key -> DR value (not secrets).")

    @property
    @override
    def resource(self) -> str:
        return f"vault:kv/{self.path}"

    @override
    def run(self, dry_run: bool) -> Change:
        return set_kv_secret_keys(self.connection, self.path, self.values, dry_run=dry_run)


class SetConfigMapKeysStep(_Step):
    """Keys of an existing Kubernetes ConfigMap set to their DR values (other keys kept)."""

    kind: Literal["k8s-configmap"] = "k8s-configmap"
    namespace: str
    config_map: str = Field(description="The ConfigMap's name.")
    values: dict[str, str] = Field(min_length=1, description="Key -> DR value.")

    @property
    @override
    def resource(self) -> str:
        return f"k8s:configmap/{self.namespace}/{self.config_map}"

    @override
    def run(self, dry_run: bool) -> Change:
        return set_config_map_keys(
            self.connection, self.namespace, self.config_map, self.values, dry_run=dry_run
        )


DrStep = Annotated[
    RestoreRdsStep
    | CopyS3Step
    | CopyGcsStep
    | RepointSsmStep
    | SetVaultKeysStep
    | SetConfigMapKeysStep,
    Field(discriminator="kind"),
]
"""One step of a failover; ``kind`` says which."""

STEP_KINDS = (
    "rds-restore",
    "s3-copy",
    "gcs-copy",
    "ssm-parameter",
    "vault-kv",
    "k8s-configmap",
)


class DrPlan(BaseModel):
    """A failover, step by step.

    Attributes:
        name: The plan's name (lowercase letters, digits, dashes); keys its artifacts.
        description: What the failover is for, shown to the approver.
        steps: The steps, applied in this order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StepName = Field(description="The plan's name, e.g. orders-to-eu-central-1.")
    description: str = Field(default="", max_length=2000, description="Shown to the approver.")
    steps: list[DrStep] = Field(min_length=1, description="The steps, in order.")


_ONE_STEP: TypeAdapter[Any] = TypeAdapter(DrStep)


def parse_plan(raw: Any) -> DrPlan:
    """Checks a plan, naming the step in every error, before anything is read or written.

    Args:
        raw: The plan as a dict (JSON) or a `DrPlan`.

    Returns:
        The plan.

    Raises:
        InvalidInputError: About ``dr:step/<name>`` (or ``#<position>``): an unknown
            kind, a missing or malformed field, a name given twice; about
            ``dr:plan/<name>`` for the plan's own fields.

    Example:
        >>> parse_plan({"name": "p", "steps": [{"kind": "dns", "name": "www"}]})
        Traceback (most recent call last):
        ...
        magicflow.errors.InvalidInputError: dr:step/www: unknown kind 'dns'; one of rds-restore, s3-copy, gcs-copy, ssm-parameter, vault-kv, k8s-configmap
    """  # noqa: E501 - a doctest line
    data = raw.model_dump() if isinstance(raw, BaseModel) else raw
    if not isinstance(data, dict):
        raise InvalidInputError("dr:plan", "a plan is an object with a name and steps")
    resource = f"dr:plan/{data.get('name') or '?'}"
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise InvalidInputError(resource, "steps: give a list of at least one step")
    for index, step in enumerate(steps):
        name = step.get("name") if isinstance(step, dict) else None
        where = f"dr:step/{name if isinstance(name, str) and name else f'#{index + 1}'}"
        if not isinstance(step, dict) or step.get("kind") not in STEP_KINDS:
            kind = step.get("kind") if isinstance(step, dict) else None
            raise InvalidInputError(where, f"unknown kind {kind!r}; one of {', '.join(STEP_KINDS)}")
        try:
            _ONE_STEP.validate_python(step)
        except ValidationError as error:
            raise InvalidInputError(where, describe_validation_error(error)) from None
    try:
        plan = DrPlan.model_validate(data)
    except ValidationError as error:
        raise InvalidInputError(resource, describe_validation_error(error)) from None
    names = [step.name for step in plan.steps]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise InvalidInputError(f"dr:step/{twice[0]}", "this name is given to two steps")
    return plan


def step_error(step: _Step, error: MagicFlowError) -> MagicFlowError:
    """The same kind of error, about the step: ``dr:step/<name>: <resource>: <cause>``."""
    return type(error)(f"dr:step/{step.name}", str(error))

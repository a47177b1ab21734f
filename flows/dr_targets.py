"""What DR validation validates: one typed target per kind of backup, and its steps.

A target names a backup (where it lives and through which saved connection block),
its RPO, and knows the jobs that find its newest recovery point, restore that point
into a scratch resource, check the copy and delete the scratch resource again:

| kind | newest recovery point | restore test (into scratch) | check |
| --- | --- | --- | --- |
| ``s3-versions`` | newest object version under a prefix | copy of that version into a scratch bucket | size, MD5, SHA-256 recorded by the writer |
| ``gcs-generations`` | newest object generation under a prefix | copy of that generation into a scratch bucket | size, MD5, CRC32C, SHA-256 recorded by the writer |
| ``vault-kv`` | newest readable version of a secret | that version under a scratch KV mount | keys and values, compared in memory |
| ``rds-snapshots`` | newest snapshot of a DB instance | a scratch DB instance from it | status, engine, version, storage, encryption |
| ``ebs-snapshots`` | newest snapshot of a volume | a scratch volume from it | state, size, encryption, source snapshot |
| ``aws-backup`` | newest recovery point of a vault | none: AWS Backup's own report of the point | status, data, retention, resource, encryption |

Targets are given as dicts (from a deployment, a Kafka request or the UI) or as the
models below; `parse_targets` checks them and names the target in every error.

Example:
    >>> from datetime import timedelta
    >>> [target] = parse_targets(
    ...     [{"kind": "s3-versions", "name": "orders-dumps", "connection": "aws",
    ...       "bucket": "acme-backups", "prefix": "orders/", "rpo": "PT26H"}]
    ... )
    >>> target.rpo == timedelta(hours=26), target.resource
    (True, 'aws:s3:bucket/acme-backups/orders/*')
"""  # noqa: E501 - the table is read as a table

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from typing_extensions import override

from magicflow import Change, InvalidInputError
from magicflow.recovery import RestoreCheck
from tasks.aws import (
    check_backup_recovery_point,
    delete_ebs_scratch_volumes,
    delete_rds_scratch_instances,
    delete_s3_scratch_buckets,
    list_backup_recovery_points,
    list_ebs_snapshots,
    list_rds_snapshots,
    list_s3_object_versions,
    restore_ebs_volume_from_snapshot,
    restore_rds_instance_from_snapshot,
    restore_s3_object_version,
    verify_ebs_restore,
    verify_rds_restore,
    verify_s3_restore,
)
from tasks.gcp import (
    delete_gcs_scratch_buckets,
    list_gcs_object_generations,
    restore_gcs_object_generation,
    verify_gcs_restore,
)
from tasks.vault import (
    delete_kv_scratch_secrets,
    list_kv_secret_versions,
    restore_kv_secret_version,
    verify_kv_restore,
)

_EPOCH = datetime.min.replace(tzinfo=UTC)

TargetName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,47}$")]
"""Lowercase letters, digits and dashes: it keys the target's artifact in Prefect."""


class RecoveryPoint(BaseModel):
    """The newest recovery point found for a target.

    Attributes:
        id: What identifies it in its system: ``<key>?versionId=<id>``, ``<name>#<generation>``,
            ``version <n>``, a snapshot id or a recovery point ARN.
        created: When it was taken.
        locator: What the restore jobs need to find it (key, version, generation...).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    created: datetime | None
    locator: dict[str, str | int] = Field(default_factory=dict)


class _Target(BaseModel):
    """What every target has: a name, an RPO and the connection to reach its backups."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: TargetName = Field(description="Unique name of the target, e.g. orders-db.")
    rpo: timedelta = Field(
        description="Recovery point objective: the newest backup must be younger than this."
    )
    connection: str = Field(
        min_length=1, description="Name of the saved connection block (AWS, GCP or Vault)."
    )

    @field_validator("rpo")
    @classmethod
    def _rpo_is_positive(cls, rpo: timedelta) -> timedelta:
        if rpo <= timedelta(0):
            raise ValueError(f"the RPO must be longer than zero, not {rpo}")
        return rpo

    @property
    def resource(self) -> str:
        """What is backed up, in `Change.resource` form."""
        raise NotImplementedError

    def newest_recovery_point(self) -> RecoveryPoint | None:
        """The newest recovery point (in-progress ones excluded), or None when there is none."""
        raise NotImplementedError

    def restore(self, point: RecoveryPoint, scratch: str) -> Change | None:
        """Restores the point into the scratch resource `scratch` (None: nothing to restore)."""
        raise NotImplementedError

    def verify(self, point: RecoveryPoint, scratch: str) -> RestoreCheck:
        """Checks the restored copy (or the point itself) against what the source recorded."""
        raise NotImplementedError

    def delete_scratch(self, prefix: str, created_before: datetime | None = None) -> Change | None:
        """Deletes the scratch resources named with `prefix` (None: this kind makes none)."""
        raise NotImplementedError


class ObjectRestoreJobs(NamedTuple):
    """The restore-test jobs of an object store: S3's or Cloud Storage's."""

    restore: Callable[..., Change]
    verify: Callable[..., RestoreCheck]
    delete_scratch: Callable[..., Change]


class _ObjectVersionsTarget(_Target):
    """What S3 and GCS targets share: the objects under a prefix of a versioned bucket."""

    bucket: str = Field(description="The versioned bucket holding the backups.")
    prefix: str = Field(default="", description="Only objects whose names start with it.")
    checksum_metadata_key: str | None = Field(
        default="sha256",
        description="Key of the object's own metadata (S3 user metadata, GCS custom "
        "metadata) holding the writer's hex SHA-256.",
    )

    def object_jobs(self) -> ObjectRestoreJobs:
        """The jobs that restore, check and clean up this store's objects."""
        raise NotImplementedError

    def located(self, point: RecoveryPoint) -> tuple[str, str | int]:
        """The object's name and version (S3 version id, GCS generation) of a point."""
        raise NotImplementedError

    @override
    def restore(self, point: RecoveryPoint, scratch: str) -> Change | None:
        name, version = self.located(point)
        return self.object_jobs().restore(self.connection, self.bucket, name, version, scratch)

    @override
    def verify(self, point: RecoveryPoint, scratch: str) -> RestoreCheck:
        name, version = self.located(point)
        return self.object_jobs().verify(
            self.connection, self.bucket, name, version, scratch, self.checksum_metadata_key
        )

    @override
    def delete_scratch(self, prefix: str, created_before: datetime | None = None) -> Change | None:
        return self.object_jobs().delete_scratch(self.connection, prefix, created_before)


class S3VersionsTarget(_ObjectVersionsTarget):
    """Object versions under a prefix of a versioned S3 bucket (e.g. nightly dumps).

    The restore test copies the newest version into a scratch bucket and checks it
    against its size, MD5 and the SHA-256 its writer stored in the user metadata
    ``checksum_metadata_key``.
    """

    kind: Literal["s3-versions"] = "s3-versions"

    @property
    @override
    def resource(self) -> str:
        return f"aws:s3:bucket/{self.bucket}/{self.prefix}*"

    @override
    def newest_recovery_point(self) -> RecoveryPoint | None:
        versions = list_s3_object_versions(self.connection, self.bucket, self.prefix)
        newest = next((v for v in versions if not v.is_delete_marker), None)
        if newest is None:
            return None
        return RecoveryPoint(
            id=f"{newest.key}?versionId={newest.version_id}",
            created=newest.created,
            locator={"key": newest.key, "version_id": newest.version_id},
        )

    @override
    def located(self, point: RecoveryPoint) -> tuple[str, str | int]:
        return str(point.locator["key"]), str(point.locator["version_id"])

    @override
    def object_jobs(self) -> ObjectRestoreJobs:
        return ObjectRestoreJobs(
            restore_s3_object_version, verify_s3_restore, delete_s3_scratch_buckets
        )


class GcsGenerationsTarget(_ObjectVersionsTarget):
    """Object generations under a prefix of a versioned Cloud Storage bucket.

    The restore test copies the newest generation into a scratch bucket (in the
    source bucket's location) and checks it against its size, MD5, CRC32C and the
    SHA-256 its writer stored in the custom metadata ``checksum_metadata_key``.
    """

    kind: Literal["gcs-generations"] = "gcs-generations"

    @property
    @override
    def resource(self) -> str:
        return f"gcp:gcs:bucket/{self.bucket}/{self.prefix}*"

    @override
    def newest_recovery_point(self) -> RecoveryPoint | None:
        listed = list_gcs_object_generations(self.connection, self.bucket, self.prefix)
        candidates = [(obj.name, gen) for obj in listed.objects for gen in obj.generations]
        if not candidates:
            return None
        name, newest = max(
            candidates, key=lambda pair: (pair[1].updated or _EPOCH, pair[1].generation)
        )
        return RecoveryPoint(
            id=f"{name}#{newest.generation}",
            created=newest.updated,
            locator={"name": name, "generation": newest.generation},
        )

    @override
    def located(self, point: RecoveryPoint) -> tuple[str, str | int]:
        return str(point.locator["name"]), int(point.locator["generation"])

    @override
    def object_jobs(self) -> ObjectRestoreJobs:
        return ObjectRestoreJobs(
            restore_gcs_object_generation, verify_gcs_restore, delete_gcs_scratch_buckets
        )


class VaultKvTarget(_Target):
    """The versions of a Vault KV v2 secret (the connection's ``kv_mount``).

    The restore test writes the newest readable version under ``scratch_mount``, a
    separate KV v2 mount for restore tests (the source mount is never written), and
    compares it key by key.
    """

    kind: Literal["vault-kv"] = "vault-kv"
    path: str = Field(description="The secret's path inside the connection's KV mount.")
    scratch_mount: str = Field(
        default="dr-scratch", description="A KV v2 mount for restore tests (not the source's)."
    )

    @property
    @override
    def resource(self) -> str:
        return f"vault:kv/{self.path}"

    @override
    def newest_recovery_point(self) -> RecoveryPoint | None:
        versions = list_kv_secret_versions(self.connection, self.path)
        newest = next((v for v in versions if v.readable), None)
        if newest is None:
            return None
        return RecoveryPoint(
            id=f"version {newest.version}",
            created=newest.created,
            locator={"version": newest.version},
        )

    def _scratch_path(self, scratch: str) -> str:
        return f"{scratch}/{self.path}"

    @override
    def restore(self, point: RecoveryPoint, scratch: str) -> Change | None:
        return restore_kv_secret_version(
            self.connection,
            self.path,
            int(point.locator["version"]),
            self.scratch_mount,
            self._scratch_path(scratch),
        )

    @override
    def verify(self, point: RecoveryPoint, scratch: str) -> RestoreCheck:
        return verify_kv_restore(
            self.connection,
            self.path,
            int(point.locator["version"]),
            self.scratch_mount,
            self._scratch_path(scratch),
        )

    @override
    def delete_scratch(self, prefix: str, created_before: datetime | None = None) -> Change | None:
        return delete_kv_scratch_secrets(
            self.connection, self.scratch_mount, prefix, created_before
        )


class RdsSnapshotsTarget(_Target):
    """The snapshots of an RDS DB instance.

    The restore test restores the newest available snapshot into a scratch instance
    (``db_instance_class``, small by default), waits until RDS reports it, and
    compares the instance's reported properties with the snapshot's.
    """

    kind: Literal["rds-snapshots"] = "rds-snapshots"
    db_instance_identifier: str = Field(description="The DB instance whose snapshots to check.")
    db_instance_class: str = Field(
        default="db.t3.micro", description="Class of the scratch instance."
    )
    region: str | None = Field(default=None, description="The region; the block's when empty.")

    @property
    @override
    def resource(self) -> str:
        return f"aws:rds:db/{self.db_instance_identifier}"

    @override
    def newest_recovery_point(self) -> RecoveryPoint | None:
        snapshots = list_rds_snapshots(self.connection, self.db_instance_identifier, self.region)
        newest = next((s for s in snapshots if s.status != "creating" and s.created), None)
        if newest is None:
            return None
        return RecoveryPoint(
            id=newest.identifier, created=newest.created, locator={"snapshot": newest.identifier}
        )

    @override
    def restore(self, point: RecoveryPoint, scratch: str) -> Change | None:
        return restore_rds_instance_from_snapshot(
            self.connection,
            str(point.locator["snapshot"]),
            scratch,
            self.db_instance_class,
            self.region,
        )

    @override
    def verify(self, point: RecoveryPoint, scratch: str) -> RestoreCheck:
        return verify_rds_restore(
            self.connection, scratch, str(point.locator["snapshot"]), self.region
        )

    @override
    def delete_scratch(self, prefix: str, created_before: datetime | None = None) -> Change | None:
        return delete_rds_scratch_instances(self.connection, prefix, created_before, self.region)


class EbsSnapshotsTarget(_Target):
    """The snapshots of an EBS volume.

    The restore test creates a scratch volume from the newest completed snapshot and
    compares what EC2 reports about it with the snapshot.
    """

    kind: Literal["ebs-snapshots"] = "ebs-snapshots"
    volume_id: str = Field(description="The volume whose snapshots to check.")
    availability_zone: str | None = Field(
        default=None, description="Zone of the scratch volume; zone a of the region when empty."
    )

    @property
    @override
    def resource(self) -> str:
        return f"aws:ec2:volume/{self.volume_id}"

    @override
    def newest_recovery_point(self) -> RecoveryPoint | None:
        snapshots = list_ebs_snapshots(self.connection, self.volume_id)
        newest = next((s for s in snapshots if s.state not in ("pending",) and s.created), None)
        if newest is None:
            return None
        return RecoveryPoint(
            id=newest.snapshot_id, created=newest.created, locator={"snapshot": newest.snapshot_id}
        )

    @override
    def restore(self, point: RecoveryPoint, scratch: str) -> Change | None:
        return restore_ebs_volume_from_snapshot(
            self.connection, str(point.locator["snapshot"]), scratch, self.availability_zone
        )

    @override
    def verify(self, point: RecoveryPoint, scratch: str) -> RestoreCheck:
        return verify_ebs_restore(self.connection, scratch, str(point.locator["snapshot"]))

    @override
    def delete_scratch(self, prefix: str, created_before: datetime | None = None) -> Change | None:
        return delete_ebs_scratch_volumes(self.connection, prefix, created_before)


class BackupVaultTarget(_Target):
    """The recovery points of an AWS Backup vault (optionally of one resource).

    Checked by what AWS Backup reports about the newest point (status, data,
    retention, resource, encryption); restoring through AWS Backup creates a
    resource of the backed-up type, which that type's own target tests.
    """

    kind: Literal["aws-backup"] = "aws-backup"
    backup_vault_name: str = Field(description="The backup vault.")
    resource_arn: str | None = Field(
        default=None, description="Only recovery points of this resource."
    )
    require_encrypted: bool = Field(default=False, description="Points must be encrypted.")

    @property
    @override
    def resource(self) -> str:
        return f"aws:backup:vault/{self.backup_vault_name}"

    @override
    def newest_recovery_point(self) -> RecoveryPoint | None:
        points = list_backup_recovery_points(self.connection, self.backup_vault_name)
        newest = next(
            (
                p
                for p in points
                if p.status != "CREATING"
                and p.created
                and self.resource_arn in (None, p.resource_arn)
            ),
            None,
        )
        if newest is None:
            return None
        return RecoveryPoint(
            id=newest.recovery_point_arn,
            created=newest.created,
            locator={"arn": newest.recovery_point_arn},
        )

    @override
    def restore(self, point: RecoveryPoint, scratch: str) -> Change | None:
        return None

    @override
    def verify(self, point: RecoveryPoint, scratch: str) -> RestoreCheck:
        return check_backup_recovery_point(
            self.connection,
            self.backup_vault_name,
            str(point.locator["arn"]),
            self.resource_arn,
            self.require_encrypted,
        )

    @override
    def delete_scratch(self, prefix: str, created_before: datetime | None = None) -> Change | None:
        return None


DrTarget = Annotated[
    S3VersionsTarget
    | GcsGenerationsTarget
    | VaultKvTarget
    | RdsSnapshotsTarget
    | EbsSnapshotsTarget
    | BackupVaultTarget,
    Field(discriminator="kind"),
]
"""One backup to validate; ``kind`` says which."""

TARGET_KINDS = (
    "s3-versions",
    "gcs-generations",
    "vault-kv",
    "rds-snapshots",
    "ebs-snapshots",
    "aws-backup",
)
_ONE_TARGET: TypeAdapter[Any] = TypeAdapter(DrTarget)


def describe_validation_error(error: ValidationError) -> str:
    """Which fields are wrong and why, without the values given (they may be anything)."""
    problems = [
        f"{'.'.join(str(part) for part in problem['loc'][1:] or problem['loc'])}: {problem['msg']}"
        for problem in error.errors(include_url=False, include_input=False, include_context=False)
    ]
    return "; ".join(problems[:5]) + (
        f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    )


def parse_targets(raw: Sequence[Any]) -> list[DrTarget]:
    """Checks the targets, naming the target in every error, before anything runs.

    Args:
        raw: Targets as dicts (JSON) or as target models.

    Returns:
        The targets as models.

    Raises:
        InvalidInputError: About ``dr:target/<name>`` (or ``#<position>``): an unknown
            kind, a missing or malformed field, an RPO of zero or less, a name given
            twice; about ``dr:targets`` when there is no target at all.

    Example:
        >>> parse_targets([{"kind": "tape", "name": "old"}])
        Traceback (most recent call last):
        ...
        magicflow.errors.InvalidInputError: dr:target/old: unknown kind 'tape'; one of s3-versions, gcs-generations, vault-kv, rds-snapshots, ebs-snapshots, aws-backup
    """  # noqa: E501 - a doctest line
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence) or not raw:
        raise InvalidInputError("dr:targets", "give a list of at least one target")
    parsed: list[DrTarget] = []
    for index, item in enumerate(raw):
        data = item.model_dump() if isinstance(item, BaseModel) else item
        name = data.get("name") if isinstance(data, dict) else None
        resource = f"dr:target/{name if isinstance(name, str) and name else f'#{index + 1}'}"
        if not isinstance(data, dict):
            raise InvalidInputError(resource, "a target is an object with a kind")
        if data.get("kind") not in TARGET_KINDS:
            raise InvalidInputError(
                resource, f"unknown kind {data.get('kind')!r}; one of {', '.join(TARGET_KINDS)}"
            )
        try:
            parsed.append(_ONE_TARGET.validate_python(data))
        except ValidationError as error:
            raise InvalidInputError(resource, describe_validation_error(error)) from None
    names = [target.name for target in parsed]
    if twice := sorted({name for name in names if names.count(name) > 1}):
        raise InvalidInputError(f"dr:target/{twice[0]}", "this name is given to two targets")
    return parsed

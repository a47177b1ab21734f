"""RDS for disaster recovery: DB snapshots, instances restored from them, and their checks.

A restore test restores a snapshot into a scratch instance, checks the instance's
reported properties against the snapshot's, and deletes it; a failover restores the
latest snapshot into the DR region.
"""

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ConfigDict

from blocks import AwsCredentials
from magicflow import Action, Change, ConflictError, connection, job
from magicflow.recovery import RestoreCheck, check_scratch_name, compare_restore
from tasks.aws.inputs import (
    Dated,
    newest_first,
    require,
    tag_dict,
    tag_list,
    validate_region,
    validate_tags,
)
from tasks.aws.session import (
    aws_client,
    aws_errors,
    call_or_none,
    delete_each,
    paginate,
    report_change,
    wait_until_settled,
)

_RDS_INSTANCE_ID = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")


class RdsSnapshot(Dated):
    """An RDS DB snapshot.

    Attributes:
        identifier: The snapshot identifier.
        db_instance_identifier: The instance it was taken of.
        status: For example ``available`` or ``creating``.
        snapshot_type: ``manual``, ``automated`` or ``awsbackup``.
        engine: The database engine.
        encrypted: Whether the snapshot is encrypted.
        allocated_storage_gib: The instance's storage when the snapshot was taken.
        created: When the snapshot was taken (None while it is being created).
    """

    model_config = ConfigDict(frozen=True)

    identifier: str
    db_instance_identifier: str | None = None
    status: str | None = None
    snapshot_type: str | None = None
    engine: str | None = None
    encrypted: bool = False
    allocated_storage_gib: int | None = None


@job
def list_rds_snapshots(
    aws_credentials: AwsCredentials | str,
    db_instance_identifier: str | None = None,
    region: str | None = None,
) -> list[RdsSnapshot]:
    """Lists RDS DB snapshots, newest first.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        db_instance_identifier: Only snapshots of this DB instance; all when omitted.
        region: The region to list; the block's when omitted.

    Returns:
        The snapshots, newest first (snapshots still being created come first).

    Raises:
        InvalidInputError: Malformed instance identifier.
        PermissionDeniedError: The credentials may not describe snapshots.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import list_rds_snapshots

        @flow
        def latest_db_snapshot():
            return list_rds_snapshots("prod-aws", "acme-db")[0].created
        ```
    """
    resource = f"aws:rds:db/{db_instance_identifier or '*'}"
    require(
        db_instance_identifier is None or bool(_RDS_INSTANCE_ID.fullmatch(db_instance_identifier)),
        resource,
        "a DB instance identifier is a letter then up to 62 of [A-Za-z0-9-]",
    )
    validate_region(resource, region)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        rds = aws_client(credentials, "rds", region)
        query = {"DBInstanceIdentifier": db_instance_identifier} if db_instance_identifier else {}
        snapshots = paginate(rds, "describe_db_snapshots", "DBSnapshots", **query)
    return newest_first(
        [
            RdsSnapshot(
                identifier=snapshot["DBSnapshotIdentifier"],
                db_instance_identifier=snapshot.get("DBInstanceIdentifier"),
                status=snapshot.get("Status"),
                snapshot_type=snapshot.get("SnapshotType"),
                engine=snapshot.get("Engine"),
                encrypted=bool(snapshot.get("Encrypted")),
                allocated_storage_gib=snapshot.get("AllocatedStorage"),
                created=snapshot.get("SnapshotCreateTime"),
            )
            for snapshot in snapshots
        ]
    )


_RESTORED_FROM_TAG = "magicflow:restored-from"
_GONE = {"deleting", "deleted"}
_SETTLED = {"available", "failed", "incompatible-restore", "incompatible-parameters",
            "storage-full", "inaccessible-encryption-credentials", "stopped"}  # fmt: skip


def _check_instance_id(resource: str, identifier: str) -> None:
    require(
        isinstance(identifier, str) and bool(_RDS_INSTANCE_ID.fullmatch(identifier)),
        resource,
        "a DB instance identifier is a letter then up to 62 of [A-Za-z0-9-]",
    )


def _instance(rds: Any, identifier: str) -> dict[str, Any] | None:
    found = call_or_none(
        {"DBInstanceNotFound", "DBInstanceNotFoundFault"},
        rds.describe_db_instances,
        DBInstanceIdentifier=identifier,
    )
    return dict(found["DBInstances"][0]) if found and found.get("DBInstances") else None


def _snapshot(rds: Any, snapshot_id: str) -> dict[str, Any]:
    snapshots = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot_id)["DBSnapshots"]
    return dict(snapshots[0])


@job
def restore_rds_instance_from_snapshot(
    aws_credentials: AwsCredentials | str,
    snapshot_id: str,
    db_instance_identifier: str,
    db_instance_class: str | None = None,
    region: str | None = None,
    tags: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> Change:
    """Ensures a DB instance restored from a snapshot exists.

    An instance of that name that already exists is left as it is and reported
    ``unchanged`` (its ``restored_from`` detail says which snapshot made it): a rerun
    never restores twice. Restore tests use a scratch name; failovers the DR name.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        snapshot_id: The DB snapshot to restore; it must be ``available``.
        db_instance_identifier: The new instance's identifier.
        db_instance_class: For example ``db.r6g.large``; the snapshot's instance's when omitted.
        region: Where the snapshot and the new instance are; the block's when omitted.
        tags: Tags of the new instance (``magicflow:restored-from`` is added).
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:rds:db/<db_instance_identifier>``: ``created`` or ``unchanged``.

    Raises:
        InvalidInputError: Malformed identifiers, region or tags.
        NotFoundError: The snapshot does not exist.
        ConflictError: The snapshot is not ``available`` yet.
        PermissionDeniedError: The credentials may not describe or restore.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import restore_rds_instance_from_snapshot

        @flow
        def fail_over_orders(snapshot_id: str):
            restore_rds_instance_from_snapshot(
                "prod-aws", snapshot_id, "orders-dr", "db.r6g.large", region="eu-central-1"
            )
        ```
    """
    resource = f"aws:rds:db/{db_instance_identifier}"
    _check_instance_id(resource, db_instance_identifier)
    require(bool(snapshot_id), resource, "a snapshot id is required")
    validate_region(resource, region)
    wanted_tags = {**validate_tags(resource, tags), _RESTORED_FROM_TAG: snapshot_id}
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        rds = aws_client(credentials, "rds", region)
        existing = _instance(rds, db_instance_identifier)
        if existing is not None and existing.get("DBInstanceStatus") not in _GONE:
            made_from = tag_dict(existing.get("TagList", [])).get(_RESTORED_FROM_TAG)
            return report_change(
                resource,
                Action.UNCHANGED,
                dry_run=dry_run,
                status=existing.get("DBInstanceStatus"),
                restored_from=made_from,
            )
        snapshot = _snapshot(rds, snapshot_id)
        if snapshot.get("Status") != "available":
            raise ConflictError(
                resource, f"snapshot {snapshot_id} is {snapshot.get('Status')}, not available"
            )
        if not dry_run:
            rds.restore_db_instance_from_db_snapshot(
                DBInstanceIdentifier=db_instance_identifier,
                DBSnapshotIdentifier=snapshot_id,
                **({"DBInstanceClass": db_instance_class} if db_instance_class else {}),
                Tags=tag_list(wanted_tags),
            )
    return report_change(resource, Action.CREATED, dry_run=dry_run, restored_from=snapshot_id)


@job
def verify_rds_restore(
    aws_credentials: AwsCredentials | str,
    db_instance_identifier: str,
    snapshot_id: str,
    region: str | None = None,
    timeout_seconds: float = 3600,
    poll_seconds: float = 15,
) -> RestoreCheck:
    """Checks an instance restored from a snapshot by what RDS reports about both.

    Waits until the instance has settled (RDS takes minutes to restore), then
    compares its status (``available``), engine, engine version, allocated storage
    and encryption with the snapshot's. RDS does not expose the data itself: these
    reported properties are what a restore test can check without connecting to
    the database.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        db_instance_identifier: The restored instance.
        snapshot_id: The snapshot it was restored from.
        region: Where they are; the block's when omitted.
        timeout_seconds: Longest wait for the instance to settle.
        poll_seconds: Time between two reads while waiting.

    Returns:
        A `RestoreCheck` of ``status``, ``engine``, ``engine_version``,
        ``allocated_storage_gib`` and ``encrypted``.

    Raises:
        NotFoundError: The instance or the snapshot does not exist.
        DeadlineExceededError: The instance did not settle in time.
        PermissionDeniedError: The credentials may not describe them.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import verify_rds_restore

        @flow
        def check_restore(snapshot_id: str) -> bool:
            return verify_rds_restore("prod-aws", "magicflow-dr-scratch-1", snapshot_id).passed
        ```
    """
    resource = f"aws:rds:db/{db_instance_identifier}"
    _check_instance_id(resource, db_instance_identifier)
    validate_region(resource, region)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        rds = aws_client(credentials, "rds", region)
        snapshot = _snapshot(rds, snapshot_id)
        instance = wait_until_settled(
            resource,
            lambda: _instance(rds, db_instance_identifier),
            "DBInstanceStatus",
            lambda status: status in _SETTLED,
            timeout_seconds,
            poll_seconds,
        )
    expected: dict[str, Any] = {
        "status": "available",
        "engine": snapshot.get("Engine"),
        "engine_version": snapshot.get("EngineVersion"),
        "allocated_storage_gib": snapshot.get("AllocatedStorage"),
        "encrypted": bool(snapshot.get("Encrypted")),
    }
    found: dict[str, Any] = {
        "status": instance.get("DBInstanceStatus"),
        "engine": instance.get("Engine"),
        "engine_version": instance.get("EngineVersion"),
        "allocated_storage_gib": instance.get("AllocatedStorage"),
        "encrypted": bool(instance.get("StorageEncrypted")),
    }
    return compare_restore(resource, f"aws:rds:snapshot/{snapshot_id}", expected, found)


@job
def delete_rds_scratch_instances(
    aws_credentials: AwsCredentials | str,
    name_prefix: str,
    created_before: datetime | None = None,
    region: str | None = None,
    dry_run: bool = False,
) -> Change:
    """Deletes scratch DB instances by identifier prefix, without a final snapshot.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name_prefix: Instances whose identifiers start with it; it must start with
            ``magicflow-dr-scratch-``, so no other instance can ever be deleted.
        created_before: Only instances created before this time.
        region: Where they are; the block's when omitted.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:rds:db/<name_prefix>*``: ``deleted`` (``detail["instances"]``)
        or ``unchanged`` when none is left (instances already being deleted count as gone).

    Raises:
        InvalidInputError: The prefix is not a scratch prefix.
        PermissionDeniedError: The credentials may not describe or delete instances.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import delete_rds_scratch_instances

        @flow
        def clean_up(scratch: str):
            delete_rds_scratch_instances("prod-aws", scratch)
        ```
    """
    resource = f"aws:rds:db/{name_prefix}*"
    check_scratch_name(resource, name_prefix)
    validate_region(resource, region)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        rds = aws_client(credentials, "rds", region)
        names = sorted(
            instance["DBInstanceIdentifier"]
            for instance in paginate(rds, "describe_db_instances", "DBInstances")
            if instance["DBInstanceIdentifier"].startswith(name_prefix)
            and instance.get("DBInstanceStatus") not in _GONE
            and (created_before is None or instance["InstanceCreateTime"] < created_before)
        )
        return delete_each(
            resource,
            names,
            lambda name: call_or_none(
                {"DBInstanceNotFound", "DBInstanceNotFoundFault"},
                rds.delete_db_instance,
                DBInstanceIdentifier=name,
                SkipFinalSnapshot=True,
                DeleteAutomatedBackups=True,
            ),
            dry_run=dry_run,
            listed_as="instances",
        )

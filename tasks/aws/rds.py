"""RDS reads for disaster recovery: DB snapshots, newest first."""

import re

from pydantic import ConfigDict

from blocks import AwsCredentials
from magicflow import connection, job
from tasks.aws.inputs import (
    Dated,
    newest_first,
    require,
)
from tasks.aws.session import aws_client, aws_errors, paginate

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
    aws_credentials: AwsCredentials | str, db_instance_identifier: str | None = None
) -> list[RdsSnapshot]:
    """Lists RDS DB snapshots, newest first.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        db_instance_identifier: Only snapshots of this DB instance; all when omitted.

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
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        rds = aws_client(credentials, "rds")
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

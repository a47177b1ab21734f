"""AWS Backup reads for disaster recovery: recovery points of a vault, and their checks."""

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import ConfigDict

from blocks import AwsCredentials
from magicflow import connection, job
from magicflow.recovery import RestoreCheck, compare_restore
from tasks.aws.inputs import (
    Dated,
    newest_first,
    require,
)
from tasks.aws.session import aws_client, aws_errors, paginate

_BACKUP_VAULT_NAME = re.compile(r"^[a-zA-Z0-9_-]{2,50}$")


class BackupRecoveryPoint(Dated):
    """An AWS Backup recovery point.

    Attributes:
        recovery_point_arn: The recovery point's ARN.
        backup_vault_name: The vault that holds it.
        resource_arn: The resource it backs up.
        resource_type: For example ``EBS`` or ``RDS``.
        status: ``COMPLETED``, ``PARTIAL``, ``CREATING``...
        completed: When the backup job finished.
        backup_size_bytes: The backup's size.
        created: When the recovery point was created.
    """

    model_config = ConfigDict(frozen=True)

    recovery_point_arn: str
    backup_vault_name: str | None = None
    resource_arn: str | None = None
    resource_type: str | None = None
    status: str | None = None
    completed: datetime | None = None
    backup_size_bytes: int | None = None


@job
def list_backup_recovery_points(
    aws_credentials: AwsCredentials | str, backup_vault_name: str
) -> list[BackupRecoveryPoint]:
    """Lists the recovery points in an AWS Backup vault, newest first.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        backup_vault_name: The backup vault.

    Returns:
        The recovery points, newest first.

    Raises:
        InvalidInputError: Malformed vault name.
        NotFoundError: No such vault.
        PermissionDeniedError: The credentials may not list recovery points.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import list_backup_recovery_points

        @flow
        def last_backup_status():
            return list_backup_recovery_points("prod-aws", "acme-vault")[0].status
        ```
    """
    resource = f"aws:backup:vault/{backup_vault_name}"
    require(
        bool(_BACKUP_VAULT_NAME.fullmatch(backup_vault_name)),
        resource,
        "a vault name has 2 to 50 of [A-Za-z0-9_-]",
    )
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        backup = aws_client(credentials, "backup")
        points = paginate(
            backup,
            "list_recovery_points_by_backup_vault",
            "RecoveryPoints",
            BackupVaultName=backup_vault_name,
        )
    return newest_first(
        [
            BackupRecoveryPoint(
                recovery_point_arn=point["RecoveryPointArn"],
                backup_vault_name=point.get("BackupVaultName"),
                resource_arn=point.get("ResourceArn"),
                resource_type=point.get("ResourceType"),
                status=point.get("Status"),
                completed=point.get("CompletionDate"),
                backup_size_bytes=point.get("BackupSizeInBytes"),
                created=point.get("CreationDate"),
            )
            for point in points
        ]
    )


@job
def check_backup_recovery_point(
    aws_credentials: AwsCredentials | str,
    backup_vault_name: str,
    recovery_point_arn: str,
    resource_arn: str | None = None,
    require_encrypted: bool = False,
) -> RestoreCheck:
    """Checks a recovery point by what AWS Backup reports about it (``DescribeRecoveryPoint``).

    A restore through AWS Backup creates a new resource of the backed-up type (a
    volume, a DB instance, a file system), which is then checked and deleted as that
    type's own restore test does. This check reads what Backup itself knows: the
    point is ``COMPLETED``, holds data, is not past its deletion date, backs up the
    expected resource and, when required, is encrypted.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        backup_vault_name: The vault that holds the point.
        recovery_point_arn: The recovery point.
        resource_arn: The resource it must back up; not checked when omitted.
        require_encrypted: Whether the point must be encrypted.

    Returns:
        A `RestoreCheck` of ``status``, ``has_data``, ``retained`` and, when asked,
        ``resource_arn`` and ``encrypted``.

    Raises:
        InvalidInputError: Malformed vault name.
        NotFoundError: The vault or the recovery point does not exist.
        PermissionDeniedError: The credentials may not describe it.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import check_backup_recovery_point, list_backup_recovery_points

        @flow
        def newest_backup_is_sound() -> bool:
            point = list_backup_recovery_points("prod-aws", "acme-vault")[0]
            return check_backup_recovery_point(
                "prod-aws", "acme-vault", point.recovery_point_arn
            ).passed
        ```
    """
    resource = f"aws:backup:vault/{backup_vault_name}"
    require(
        bool(_BACKUP_VAULT_NAME.fullmatch(backup_vault_name)),
        resource,
        "a vault name has 2 to 50 of [A-Za-z0-9_-]",
    )
    require(bool(recovery_point_arn), resource, "a recovery point ARN is required")
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(f"{resource}/{recovery_point_arn}"):
        point = aws_client(credentials, "backup").describe_recovery_point(
            BackupVaultName=backup_vault_name, RecoveryPointArn=recovery_point_arn
        )
    delete_at = (point.get("CalculatedLifecycle") or {}).get("DeleteAt")
    expected: dict[str, Any] = {
        "status": "COMPLETED",
        "has_data": True,
        "retained": True,
        "resource_arn": resource_arn,
        "encrypted": True if require_encrypted else None,
    }
    found: dict[str, Any] = {
        "status": point.get("Status"),
        "has_data": (point.get("BackupSizeInBytes") or 0) > 0,
        "retained": delete_at is None or delete_at > datetime.now(UTC),
        "resource_arn": point.get("ResourceArn"),
        "encrypted": bool(point.get("IsEncrypted")),
    }
    return compare_restore(resource, recovery_point_arn, expected, found)

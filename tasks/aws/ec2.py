"""EC2 reads for disaster recovery: EBS snapshots, newest first."""

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

_EBS_VOLUME_ID = re.compile(r"^vol-[0-9a-f]{8,17}$")
_EBS_OWNER = re.compile(r"^(self|amazon|\d{12})$")


class EbsSnapshot(Dated):
    """An EBS snapshot.

    Attributes:
        snapshot_id: The snapshot id.
        volume_id: The volume it was taken of.
        state: ``pending``, ``completed``, ``error``...
        progress: For example ``100%``.
        volume_size_gib: The volume's size.
        encrypted: Whether the snapshot is encrypted.
        description: The snapshot's description.
        created: When the snapshot was started.
    """

    model_config = ConfigDict(frozen=True)

    snapshot_id: str
    volume_id: str | None = None
    state: str | None = None
    progress: str | None = None
    volume_size_gib: int | None = None
    encrypted: bool = False
    description: str | None = None


@job
def list_ebs_snapshots(
    aws_credentials: AwsCredentials | str, volume_id: str | None = None, owner: str = "self"
) -> list[EbsSnapshot]:
    """Lists EBS snapshots, newest first.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        volume_id: Only snapshots of this volume; all when omitted.
        owner: Whose snapshots: ``self``, ``amazon`` or a 12-digit account id.

    Returns:
        The snapshots, newest first.

    Raises:
        InvalidInputError: Malformed volume id or owner.
        PermissionDeniedError: The credentials may not describe snapshots.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import list_ebs_snapshots

        @flow
        def volume_snapshots():
            return [s.snapshot_id for s in list_ebs_snapshots("prod-aws", "vol-0123456789abcdef0")]
        ```
    """
    resource = f"aws:ec2:volume/{volume_id or '*'}"
    require(
        volume_id is None or bool(_EBS_VOLUME_ID.fullmatch(volume_id)),
        resource,
        "a volume id looks like vol-0123456789abcdef0",
    )
    require(bool(_EBS_OWNER.fullmatch(owner)), resource, "owner is self, amazon or an account id")
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        ec2 = aws_client(credentials, "ec2")
        filters = [{"Name": "volume-id", "Values": [volume_id]}] if volume_id else []
        snapshots = paginate(
            ec2, "describe_snapshots", "Snapshots", OwnerIds=[owner], Filters=filters
        )
    return newest_first(
        [
            EbsSnapshot(
                snapshot_id=snapshot["SnapshotId"],
                volume_id=snapshot.get("VolumeId"),
                state=snapshot.get("State"),
                progress=snapshot.get("Progress"),
                volume_size_gib=snapshot.get("VolumeSize"),
                encrypted=bool(snapshot.get("Encrypted")),
                description=snapshot.get("Description"),
                created=snapshot.get("StartTime"),
            )
            for snapshot in snapshots
        ]
    )

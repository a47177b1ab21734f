"""EC2 for disaster recovery: EBS snapshots, volumes restored from them, and their checks.

A restore test creates a scratch volume from the newest snapshot, checks what EC2
reports about it against the snapshot, and deletes it.
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
    tag_list,
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


_VOLUME_GONE = {"deleting", "deleted"}
_AVAILABILITY_ZONE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}[a-z]$")


def _volumes_named(ec2: Any, name: str, *, prefix: bool = False) -> list[dict[str, Any]]:
    """Volumes whose ``Name`` tag is `name` (or starts with it), not being deleted."""
    pattern = f"{name}*" if prefix else name
    volumes = paginate(
        ec2, "describe_volumes", "Volumes", Filters=[{"Name": "tag:Name", "Values": [pattern]}]
    )
    return [volume for volume in volumes if volume.get("State") not in _VOLUME_GONE]


def _ebs_snapshot(ec2: Any, snapshot_id: str) -> dict[str, Any]:
    return dict(ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0])


def _check_volume_name(resource: str, name: str) -> None:
    require(
        isinstance(name, str) and 0 < len(name) <= 128 and "*" not in name,
        resource,
        "a volume name (its Name tag) has 1 to 128 characters and no '*'",
    )


@job
def restore_ebs_volume_from_snapshot(
    aws_credentials: AwsCredentials | str,
    snapshot_id: str,
    name: str,
    availability_zone: str | None = None,
    tags: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> Change:
    """Ensures a volume created from a snapshot exists, found by its ``Name`` tag.

    A volume with that ``Name`` that already exists is left as it is (``unchanged``).

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        snapshot_id: The EBS snapshot; it must be ``completed``.
        name: The volume's ``Name`` tag, e.g. a scratch name.
        availability_zone: Where to create it; zone ``a`` of the block's region when omitted.
        tags: Further tags of the volume.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:ec2:volume/<name>``: ``created`` (``detail["volume_id"]``)
        or ``unchanged``.

    Raises:
        InvalidInputError: Malformed snapshot id, name, zone or tags.
        NotFoundError: The snapshot does not exist.
        ConflictError: The snapshot is not ``completed``.
        PermissionDeniedError: The credentials may not describe or create volumes.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import restore_ebs_volume_from_snapshot

        @flow
        def restore_data_volume(snapshot_id: str):
            restore_ebs_volume_from_snapshot("prod-aws", snapshot_id, "data-restored")
        ```
    """
    resource = f"aws:ec2:volume/{name}"
    _check_volume_name(resource, name)
    require(bool(re.fullmatch(r"snap-[0-9a-f]{8,17}", snapshot_id or "")), resource,
            "a snapshot id looks like snap-0123456789abcdef0")  # fmt: skip
    require(
        availability_zone is None or bool(_AVAILABILITY_ZONE.fullmatch(availability_zone)),
        resource,
        f"{availability_zone!r} is not an availability zone name",
    )
    wanted_tags = {**validate_tags(resource, tags), "Name": name}
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        ec2 = aws_client(credentials, "ec2")
        existing = _volumes_named(ec2, name)
        if existing:
            return report_change(
                resource, Action.UNCHANGED, dry_run=dry_run, volume_id=existing[0]["VolumeId"]
            )
        snapshot = _ebs_snapshot(ec2, snapshot_id)
        if snapshot.get("State") != "completed":
            raise ConflictError(
                resource, f"snapshot {snapshot_id} is {snapshot.get('State')}, not completed"
            )
        if dry_run:
            return report_change(resource, Action.CREATED, dry_run=True, snapshot_id=snapshot_id)
        volume = ec2.create_volume(
            SnapshotId=snapshot_id,
            AvailabilityZone=availability_zone or f"{ec2.meta.region_name}a",
            TagSpecifications=[{"ResourceType": "volume", "Tags": tag_list(wanted_tags)}],
        )
    return report_change(
        resource,
        Action.CREATED,
        dry_run=False,
        volume_id=volume["VolumeId"],
        snapshot_id=snapshot_id,
    )


@job
def verify_ebs_restore(
    aws_credentials: AwsCredentials | str,
    name: str,
    snapshot_id: str,
    timeout_seconds: float = 1800,
    poll_seconds: float = 10,
) -> RestoreCheck:
    """Checks a volume created from a snapshot by what EC2 reports about both.

    Waits until the volume is no longer ``creating``, then compares its state
    (``available``), size, encryption and source snapshot with the snapshot's. EC2
    does not expose the blocks themselves without attaching the volume to an
    instance: these reported properties are what the check can see.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name: The restored volume's ``Name`` tag.
        snapshot_id: The snapshot it was created from.
        timeout_seconds: Longest wait for the volume to settle.
        poll_seconds: Time between two reads while waiting.

    Returns:
        A `RestoreCheck` of ``state``, ``size_gib``, ``encrypted`` and ``snapshot_id``.

    Raises:
        NotFoundError: The snapshot does not exist.
        ConflictError: No volume has that name.
        DeadlineExceededError: The volume did not settle in time.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import verify_ebs_restore

        @flow
        def check_volume(snapshot_id: str) -> bool:
            return verify_ebs_restore("prod-aws", "data-restored", snapshot_id).passed
        ```
    """
    resource = f"aws:ec2:volume/{name}"
    _check_volume_name(resource, name)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        ec2 = aws_client(credentials, "ec2")
        snapshot = _ebs_snapshot(ec2, snapshot_id)
        volume = wait_until_settled(
            resource,
            lambda: next(iter(_volumes_named(ec2, name)), None),
            "State",
            lambda state: state != "creating",
            timeout_seconds,
            poll_seconds,
        )
    expected: dict[str, Any] = {
        "state": "available",
        "size_gib": snapshot.get("VolumeSize"),
        "encrypted": bool(snapshot.get("Encrypted")),
        "snapshot_id": snapshot_id,
    }
    found: dict[str, Any] = {
        "state": volume.get("State"),
        "size_gib": volume.get("Size"),
        "encrypted": bool(volume.get("Encrypted")),
        "snapshot_id": volume.get("SnapshotId"),
    }
    return compare_restore(resource, f"aws:ec2:snapshot/{snapshot_id}", expected, found)


@job
def delete_ebs_scratch_volumes(
    aws_credentials: AwsCredentials | str,
    name_prefix: str,
    created_before: datetime | None = None,
    dry_run: bool = False,
) -> Change:
    """Deletes scratch volumes by ``Name`` tag prefix.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name_prefix: Volumes whose ``Name`` starts with it; it must start with
            ``magicflow-dr-scratch-``, so no other volume can ever be deleted.
        created_before: Only volumes created before this time.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:ec2:volume/<name_prefix>*``: ``deleted``
        (``detail["volumes"]`` has their ids) or ``unchanged`` when there is none.

    Raises:
        InvalidInputError: The prefix is not a scratch prefix.
        ConflictError: A volume is attached to an instance.
        PermissionDeniedError: The credentials may not describe or delete volumes.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import delete_ebs_scratch_volumes

        @flow
        def clean_up(scratch: str):
            delete_ebs_scratch_volumes("prod-aws", scratch)
        ```
    """
    resource = f"aws:ec2:volume/{name_prefix}*"
    check_scratch_name(resource, name_prefix)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        ec2 = aws_client(credentials, "ec2")
        volumes = sorted(
            volume["VolumeId"]
            for volume in _volumes_named(ec2, name_prefix, prefix=True)
            if created_before is None or volume["CreateTime"] < created_before
        )
        return delete_each(
            resource,
            volumes,
            lambda volume_id: call_or_none(
                {"InvalidVolume.NotFound"}, ec2.delete_volume, VolumeId=volume_id
            ),
            dry_run=dry_run,
            listed_as="volumes",
        )

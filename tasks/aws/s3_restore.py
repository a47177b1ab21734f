"""S3 restore tests: an object version restored into a scratch bucket, checked, deleted.

A restore test copies the newest version of a backup object into a scratch bucket
(``magicflow-dr-scratch-...``), checks the copy against what S3 and the backup's
writer recorded (size, MD5, checksums), and deletes the scratch bucket again; a
nightly sweep deletes scratch buckets a crashed run left behind.
"""

import base64
import re
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from blocks import AwsCredentials
from magicflow import Action, Change, NotFoundError, connection, job
from magicflow.recovery import (
    ContentDigests,
    RestoreCheck,
    check_scratch_name,
    compare_restore,
    recorded_sha256,
    restored_copy_is_current,
    restored_copy_metadata,
)
from tasks.aws.inputs import require
from tasks.aws.s3 import (
    ABSENT_CODES,
    require_object_key,
    s3_object_resource,
    validate_bucket_name,
)
from tasks.aws.session import (
    aws_client,
    aws_errors,
    call_or_none,
    delete_each,
    error_code,
    report_change,
)

_COPY_CHUNK = 1024 * 1024


def _head_version(s3: Any, bucket: str, key: str, version_id: str) -> dict[str, Any]:
    """The source version's head; a missing version is a `NotFoundError` naming it."""
    found = call_or_none(
        ABSENT_CODES,
        s3.head_object,
        Bucket=bucket,
        Key=key,
        VersionId=version_id,
        ChecksumMode="ENABLED",
    )
    if found is None:
        raise NotFoundError(
            s3_object_resource(bucket, key), f"version {version_id} does not exist in {bucket}"
        )
    return dict(found)


def _create_bucket_here(s3: Any, name: str) -> None:
    region = s3.meta.region_name
    location = {} if region == "us-east-1" else {"LocationConstraint": region}
    s3.create_bucket(Bucket=name, **({"CreateBucketConfiguration": location} if location else {}))


@job
def restore_s3_object_version(
    aws_credentials: AwsCredentials | str,
    bucket: str,
    key: str,
    version_id: str,
    scratch_bucket: str,
    dry_run: bool = False,
) -> Change:
    """Restores one version of an object into a scratch bucket, for a restore test.

    The source is only read (``HeadObject``, and S3 reads it for ``CopyObject``).
    The scratch bucket is created in the connection's region when missing; the copy
    keeps the version's metadata and records where it came from, so a second run
    finds it and copies nothing.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        bucket: The source bucket.
        key: The object's key.
        version_id: The version to restore.
        scratch_bucket: A scratch bucket name (``magicflow-dr-scratch-...``).
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:s3:bucket/<scratch_bucket>/<key>``: ``created``, or
        ``unchanged`` when that version is already restored there.

    Raises:
        InvalidInputError: Bad bucket names or key, or a scratch name without the prefix.
        NotFoundError: The source bucket or version does not exist.
        PermissionDeniedError: The credentials may not read the source or write scratch.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import restore_s3_object_version

        @flow
        def restore_test(version_id: str):
            restore_s3_object_version(
                "prod-aws", "acme-backups", "db/orders.dump", version_id,
                scratch_bucket="magicflow-dr-scratch-0123abcd",
            )
        ```
    """
    resource = s3_object_resource(scratch_bucket, key)
    check_scratch_name(resource, scratch_bucket)
    validate_bucket_name(resource, scratch_bucket)
    validate_bucket_name(s3_object_resource(bucket, key), bucket)
    require_object_key(resource, key)
    require(bool(version_id), resource, "a version id is required")
    origin = f"{bucket}/{key}?versionId={version_id}"
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        s3 = aws_client(credentials, "s3")
        source = _head_version(s3, bucket, key, version_id)
        scratch = call_or_none(ABSENT_CODES, s3.head_bucket, Bucket=scratch_bucket)
        scratch_exists = scratch is not None
        if scratch_exists:
            current = call_or_none(ABSENT_CODES, s3.head_object, Bucket=scratch_bucket, Key=key)
            if current is not None and restored_copy_is_current(current.get("Metadata"), origin):
                return report_change(resource, Action.UNCHANGED, dry_run=dry_run, source=origin)
        if dry_run:
            return report_change(resource, Action.CREATED, dry_run=True, source=origin)
        if not scratch_exists:
            _create_bucket_here(s3, scratch_bucket)
        s3.copy_object(
            Bucket=scratch_bucket,
            Key=key,
            CopySource={"Bucket": bucket, "Key": key, "VersionId": version_id},
            MetadataDirective="REPLACE",
            Metadata=restored_copy_metadata(source.get("Metadata"), origin),
            ContentType=source.get("ContentType") or "binary/octet-stream",
        )
    return report_change(resource, Action.CREATED, dry_run=False, source=origin)


def _simple_md5(etag: str | None) -> str | None:
    """The MD5 an ETag stands for, when it is one (not multipart, not SSE-KMS/C)."""
    value = (etag or "").strip('"')
    return value if re.fullmatch(r"[0-9a-f]{32}", value) else None


@job
def verify_s3_restore(
    aws_credentials: AwsCredentials | str,
    bucket: str,
    key: str,
    version_id: str,
    scratch_bucket: str,
    checksum_metadata_key: str | None = "sha256",
) -> RestoreCheck:
    """Checks a restored copy against what S3 and the backup's writer recorded about it.

    The copy is read whole and hashed. It is compared with the source version's size,
    its MD5 (when its ETag is one), S3's own SHA-256 checksum (when the object has
    one) and the hex SHA-256 the backup's writer stored in the user metadata
    ``checksum_metadata_key`` (when present): a backup whose bytes differ from what
    its writer recorded fails with both values in the check. The source is only read
    (``HeadObject``).

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        bucket: The source bucket.
        key: The object's key.
        version_id: The version that was restored.
        scratch_bucket: The scratch bucket holding the copy.
        checksum_metadata_key: User metadata key with the writer's hex SHA-256; None
            to ignore it.

    Returns:
        A `RestoreCheck` (``checked`` lists ``size``, ``md5``, ``s3_sha256``, ``sha256``
        as far as they were recorded).

    Raises:
        InvalidInputError: Bad bucket names or key.
        NotFoundError: The source version or the restored copy does not exist.
        PermissionDeniedError: The credentials may not read them.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import verify_s3_restore

        @flow
        def check_copy(version_id: str) -> bool:
            return verify_s3_restore(
                "prod-aws", "acme-backups", "db/orders.dump", version_id,
                scratch_bucket="magicflow-dr-scratch-0123abcd",
            ).passed
        ```
    """
    resource = s3_object_resource(scratch_bucket, key)
    validate_bucket_name(resource, scratch_bucket)
    validate_bucket_name(s3_object_resource(bucket, key), bucket)
    require_object_key(resource, key)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        s3 = aws_client(credentials, "s3")
        source = _head_version(s3, bucket, key, version_id)
        copy = call_or_none(ABSENT_CODES, s3.get_object, Bucket=scratch_bucket, Key=key)
        if copy is None:
            raise NotFoundError(resource, "the restored copy does not exist")
        digests = ContentDigests()
        for chunk in copy["Body"].iter_chunks(_COPY_CHUNK):
            digests.write(chunk)
    s3_checksum = source.get("ChecksumSHA256")
    expected: dict[str, Any] = {
        "size": source.get("ContentLength"),
        "md5": _simple_md5(source.get("ETag")),
        "s3_sha256": base64.b64decode(s3_checksum).hex() if s3_checksum else None,
        "sha256": recorded_sha256(source.get("Metadata"), checksum_metadata_key),
    }
    found: dict[str, Any] = {
        "size": digests.size,
        "md5": digests.md5.hexdigest(),
        "s3_sha256": digests.sha256.hexdigest(),
        "sha256": digests.sha256.hexdigest(),
    }
    return compare_restore(resource, f"{bucket}/{key}?versionId={version_id}", expected, found)


@job
def delete_s3_scratch_buckets(
    aws_credentials: AwsCredentials | str,
    name_prefix: str,
    created_before: datetime | None = None,
    dry_run: bool = False,
) -> Change:
    """Deletes scratch buckets (every object version in them first) by name prefix.

    Restore tests call it for their own scratch bucket, even when they fail; a
    nightly sweep calls it with ``created_before`` for buckets a crashed run left.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name_prefix: Buckets whose names start with it; it must start with
            ``magicflow-dr-scratch-``, so no other bucket can ever be deleted.
        created_before: Only buckets created before this time.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:s3:bucket/<name_prefix>*``: ``deleted`` (``detail["buckets"]``
        names them) or ``unchanged`` when there is none.

    Raises:
        InvalidInputError: The prefix is not a scratch prefix.
        PermissionDeniedError: The credentials may not list or delete them.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from datetime import UTC, datetime, timedelta
        from prefect import flow
        from tasks.aws import delete_s3_scratch_buckets

        @flow
        def sweep():
            yesterday = datetime.now(UTC) - timedelta(days=1)
            delete_s3_scratch_buckets("prod-aws", "magicflow-dr-scratch-", yesterday)
        ```
    """
    resource = f"aws:s3:bucket/{name_prefix}*"
    check_scratch_name(resource, name_prefix)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        s3 = aws_client(credentials, "s3")
        names = sorted(
            found["Name"]
            for found in s3.list_buckets(Prefix=name_prefix).get("Buckets", [])
            if found["Name"].startswith(name_prefix)
            and (created_before is None or found["CreationDate"] < created_before)
        )
        return delete_each(
            resource,
            names,
            lambda name: _delete_bucket_and_versions(s3, name),
            dry_run=dry_run,
            listed_as="buckets",
        )


def _delete_bucket_and_versions(s3: Any, name: str) -> None:
    try:
        versions = [
            {"Key": entry["Key"], "VersionId": entry.get("VersionId", "null")}
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=name)
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        for start in range(0, len(versions), 1000):
            s3.delete_objects(
                Bucket=name, Delete={"Objects": versions[start : start + 1000], "Quiet": True}
            )
        s3.delete_bucket(Bucket=name)
    except ClientError as error:  # deleted by someone else meanwhile: the goal is reached
        if error_code(error) != "NoSuchBucket":
            raise

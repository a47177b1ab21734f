"""S3 jobs: buckets and object versions; object copies and uploads.

Buckets are converged (versioning, encryption, public access block, tags); object
versions are listed for disaster recovery (their restore tests into scratch buckets
are in `tasks.aws.s3_restore`); objects are copied between buckets (failovers) and
uploaded (reports).
"""

import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import ConfigDict

from blocks import AwsCredentials
from magicflow import (
    Action,
    Change,
    ConflictError,
    NotFoundError,
    connection,
    job,
)
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
    paginate,
    report_change,
)

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def validate_bucket_name(resource: str, name: str) -> None:
    """Checks a name against S3's naming rules for general purpose buckets.

    Args:
        resource: The resource to name in the error.
        name: The bucket name.

    Raises:
        InvalidInputError: The name breaks a rule (the message says which).
    """
    require(3 <= len(name) <= 63, resource, "a bucket name has 3 to 63 characters")
    require(
        bool(_BUCKET_NAME.fullmatch(name)),
        resource,
        "a bucket name has only lowercase letters, digits, dots and hyphens, "
        "and starts and ends with a letter or digit",
    )
    require(".." not in name, resource, "a bucket name has no two adjacent dots")
    require(not _is_ip_address(name), resource, "a bucket name is not an IP address")
    require(
        not name.startswith(_BUCKET_RESERVED_PREFIXES)
        and not name.endswith(_BUCKET_RESERVED_SUFFIXES),
        resource,
        "a bucket name uses a prefix or suffix reserved by S3",
    )


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def _bucket_region(s3: Any, name: str) -> str:
    constraint = s3.get_bucket_location(Bucket=name).get("LocationConstraint")
    # S3 reports us-east-1 as no constraint, and eu-west-1 as "EU" for very old buckets.
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(constraint, constraint)


def _read_bucket_settings(s3: Any, name: str) -> dict[str, Any]:
    versioning = s3.get_bucket_versioning(Bucket=name).get("Status") == "Enabled"
    encryption = call_or_none(
        {"ServerSideEncryptionConfigurationNotFoundError"}, s3.get_bucket_encryption, Bucket=name
    )
    default_sse: dict[str, Any] = {}
    if encryption:
        rules = encryption["ServerSideEncryptionConfiguration"].get("Rules", [])
        default_sse = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    public_access = call_or_none(
        {"NoSuchPublicAccessBlockConfiguration"}, s3.get_public_access_block, Bucket=name
    )
    flags = (public_access or {}).get("PublicAccessBlockConfiguration", {})
    tagging = call_or_none({"NoSuchTagSet"}, s3.get_bucket_tagging, Bucket=name)
    return {
        "versioning": versioning,
        "encryption": (default_sse.get("SSEAlgorithm"), default_sse.get("KMSMasterKeyID")),
        "block_public_access": tuple(bool(flags.get(flag)) for flag in _PUBLIC_ACCESS_FLAGS),
        "tags": {
            key: value
            for key, value in tag_dict((tagging or {}).get("TagSet", [])).items()
            if not key.startswith("aws:")
        },
    }


_PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


def _apply_bucket_settings(
    s3: Any, name: str, desired: Mapping[str, Any], fields: Sequence[str]
) -> None:
    if "versioning" in fields:
        status = "Enabled" if desired["versioning"] else "Suspended"
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": status})
    if "encryption" in fields:
        algorithm, key_id = desired["encryption"]
        by_default = {"SSEAlgorithm": algorithm, **({"KMSMasterKeyID": key_id} if key_id else {})}
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": by_default}]
            },
        )
    if "block_public_access" in fields:
        if all(desired["block_public_access"]):
            s3.put_public_access_block(
                Bucket=name,
                PublicAccessBlockConfiguration=dict.fromkeys(_PUBLIC_ACCESS_FLAGS, True),
            )
        else:
            s3.delete_public_access_block(Bucket=name)
    if "tags" in fields:
        if desired["tags"]:
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tag_list(desired["tags"])})
        else:
            s3.delete_bucket_tagging(Bucket=name)


@job
def ensure_s3_bucket(
    aws_credentials: AwsCredentials | str,
    name: str,
    region: str | None = None,
    versioning: bool = True,
    encryption: Literal["AES256", "aws:kms"] = "AES256",
    kms_key_id: str | None = None,
    block_public_access: bool = True,
    tags: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> Change:
    """Ensures an S3 bucket exists with the given versioning, encryption, public access and tags.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name: The bucket name; checked against S3's naming rules before anything else.
        region: Where the bucket lives; the block's region when omitted.
        versioning: Keep object versions (``False`` suspends versioning if it was on).
        encryption: Default server-side encryption, ``AES256`` (SSE-S3) or ``aws:kms``.
        kms_key_id: KMS key id or ARN for ``aws:kms``; AWS's ``aws/s3`` key when omitted.
        block_public_access: Turn on all four public access block settings
            (``False`` removes the bucket's public access block).
        tags: The bucket's complete tag set; tags not listed are removed.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:s3:bucket/<name>``; ``detail["fields"]`` names the settings
        that differed (``versioning``, ``encryption``, ``block_public_access``, ``tags``).

    Raises:
        InvalidInputError: Bad name, region, encryption settings or tags; nothing written.
        ConflictError: The name is taken by another account, or the bucket is in another
            region than ``region``.
        PermissionDeniedError: The credentials may not read or change the bucket.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import ensure_s3_bucket

        @flow
        def tenant_storage():
            ensure_s3_bucket("prod-aws", "acme-prod-data", tags={"team": "acme"})
        ```
    """
    resource = f"aws:s3:bucket/{name}"
    validate_bucket_name(resource, name)
    validate_region(resource, region)
    require(encryption in ("AES256", "aws:kms"), resource, "encryption is AES256 or aws:kms")
    require(
        kms_key_id is None or encryption == "aws:kms",
        resource,
        "kms_key_id needs encryption='aws:kms'",
    )
    desired: dict[str, Any] = {
        "versioning": versioning,
        "encryption": (encryption, kms_key_id),
        "block_public_access": (block_public_access,) * len(_PUBLIC_ACCESS_FLAGS),
        "tags": validate_tags(resource, tags),
    }
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        s3 = aws_client(credentials, "s3", region)
        target_region = region or s3.meta.region_name
        validate_region(resource, target_region)
        exists = call_or_none({"404", "NoSuchBucket", "NotFound"}, s3.head_bucket, Bucket=name)
        if exists is None:
            if dry_run:
                return report_change(resource, Action.CREATED, dry_run=True, region=target_region)
            location = {} if target_region == "us-east-1" else {"LocationConstraint": target_region}
            s3.create_bucket(
                Bucket=name, **({"CreateBucketConfiguration": location} if location else {})
            )
            current = _read_bucket_settings(s3, name)
            fields = [field for field in desired if desired[field] != current[field]]
            _apply_bucket_settings(s3, name, desired, fields)
            return report_change(resource, Action.CREATED, dry_run=False, region=target_region)
        actual_region = _bucket_region(s3, name)
        if region is not None and actual_region != region:
            raise ConflictError(resource, f"the bucket exists in {actual_region}, not in {region}")
        current = _read_bucket_settings(s3, name)
        fields = [field for field in desired if desired[field] != current[field]]
        if not fields:
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run)
        if not dry_run:
            _apply_bucket_settings(s3, name, desired, fields)
        return report_change(resource, Action.UPDATED, dry_run=dry_run, fields=fields)


class S3ObjectVersion(Dated):
    """One version of an S3 object, or a delete marker.

    Attributes:
        key: The object key.
        version_id: The version id (``null`` for objects written before versioning).
        is_latest: Whether this is the current version.
        is_delete_marker: Whether this version is a delete marker.
        size: The size in bytes (None for delete markers).
        created: When this version was written (S3's ``LastModified``).
    """

    model_config = ConfigDict(frozen=True)

    key: str
    version_id: str
    is_latest: bool = False
    is_delete_marker: bool = False
    size: int | None = None


@job
def list_s3_object_versions(
    aws_credentials: AwsCredentials | str, bucket: str, prefix: str = ""
) -> list[S3ObjectVersion]:
    """Lists the versions and delete markers of the objects under a prefix, newest first.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        bucket: The bucket.
        prefix: Only keys starting with this prefix; the whole bucket when empty.

    Returns:
        The object versions and delete markers, newest first.

    Raises:
        InvalidInputError: Malformed bucket name.
        NotFoundError: No such bucket.
        PermissionDeniedError: The credentials may not list object versions.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import list_s3_object_versions

        @flow
        def restore_candidates():
            return list_s3_object_versions("prod-aws", "acme-prod-data", "exports/")
        ```
    """
    resource = f"aws:s3:bucket/{bucket}"
    validate_bucket_name(resource, bucket)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        s3 = aws_client(credentials, "s3")
        versions: list[S3ObjectVersion] = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Versions", []):
                versions.append(_object_version(entry, is_delete_marker=False))
            for entry in page.get("DeleteMarkers", []):
                versions.append(_object_version(entry, is_delete_marker=True))
    # LastModified has one-second resolution: among equal times the latest version wins.
    versions.sort(key=lambda version: not version.is_latest)
    return newest_first(versions)


def _object_version(entry: Mapping[str, Any], *, is_delete_marker: bool) -> S3ObjectVersion:
    return S3ObjectVersion(
        key=entry["Key"],
        version_id=entry.get("VersionId", "null"),
        is_latest=bool(entry.get("IsLatest")),
        is_delete_marker=is_delete_marker,
        size=None if is_delete_marker else entry.get("Size"),
        created=entry.get("LastModified"),
    )


@job
def delete_s3_bucket(
    aws_credentials: AwsCredentials | str, name: str, dry_run: bool = False
) -> Change:
    """Deletes an empty S3 bucket (runbooks use it to undo a bucket they created).

    A bucket that holds objects or object versions is never emptied: the job fails
    instead, so data written since the bucket was created is not lost by an undo.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name: The bucket name.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:s3:bucket/<name>``: ``deleted``, or ``unchanged`` (detail
        ``absent``) when there is no such bucket.

    Raises:
        InvalidInputError: Bad name; nothing written.
        ConflictError: The bucket holds objects (it is left alone).
        PermissionDeniedError: The credentials may not read or delete the bucket.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import delete_s3_bucket

        @flow
        def drop_bucket():
            delete_s3_bucket("prod-aws", "acme-prod-data")
        ```
    """
    resource = f"aws:s3:bucket/{name}"
    validate_bucket_name(resource, name)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        s3 = aws_client(credentials, "s3")
        if call_or_none({"404", "NoSuchBucket", "NotFound"}, s3.head_bucket, Bucket=name) is None:
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run, absent=True)
        listed = s3.list_object_versions(Bucket=name, MaxKeys=1)
        if listed.get("Versions") or listed.get("DeleteMarkers"):
            raise ConflictError(resource, "the bucket holds objects; it is left in place")
        if not dry_run:
            call_or_none({"NoSuchBucket"}, s3.delete_bucket, Bucket=name)
    return report_change(resource, Action.DELETED, dry_run=dry_run)


# --- copies and uploads -----------------------------------------------------------------

ABSENT_CODES = {"404", "NoSuchBucket", "NoSuchKey", "NotFound", "NoSuchVersion"}
"""S3 error codes that mean the bucket, object or version is not there."""
_CONTENT_SHA256 = "sha256"
"""User metadata key under which `put_s3_object` records the content's SHA-256."""


def s3_object_resource(bucket: str, key: str) -> str:
    """The `Change.resource` of an object: ``aws:s3:bucket/<bucket>/<key>``."""
    return f"aws:s3:bucket/{bucket}/{key}"


def require_object_key(resource: str, key: str) -> None:
    """Refuses an object key that is empty or longer than S3 allows (1024 bytes)."""
    require(
        isinstance(key, str) and 0 < len(key.encode()) <= 1024,
        resource,
        "an object key has 1 to 1024 bytes",
    )


def _current_objects(s3: Any, bucket: str, prefix: str) -> dict[str, tuple[str, int]]:
    """Key -> (ETag, size) of the current objects under a prefix."""
    return {
        item["Key"]: (item["ETag"], item["Size"])
        for item in paginate(s3, "list_objects_v2", "Contents", Bucket=bucket, Prefix=prefix)
    }


@job
def copy_s3_objects(
    aws_credentials: AwsCredentials | str,
    source_bucket: str,
    destination_bucket: str,
    prefix: str = "",
    dry_run: bool = False,
) -> Change:
    """Copies the current objects under a prefix to another bucket, only those that differ.

    Objects are compared by ETag and size, so a rerun copies nothing. Objects in the
    destination that the source does not have are left alone. For failovers: the
    destination is typically a bucket in the DR region.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        source_bucket: The bucket to copy from (only read).
        destination_bucket: The bucket to copy to; it must exist.
        prefix: Only keys starting with it; all when empty.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:s3:bucket/<destination_bucket>/<prefix>*``: ``created``
        (none was there), ``updated`` or ``unchanged``; ``detail["objects"]`` counts
        the objects copied (or to copy).

    Raises:
        InvalidInputError: Malformed bucket names.
        NotFoundError: The source or the destination bucket does not exist.
        PermissionDeniedError: The credentials may not read or write them.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import copy_s3_objects

        @flow
        def fail_over_exports():
            copy_s3_objects("prod-aws", "acme-exports", "acme-exports-dr", prefix="daily/")
        ```
    """
    resource = f"aws:s3:bucket/{destination_bucket}/{prefix}*"
    validate_bucket_name(resource, destination_bucket)
    validate_bucket_name(f"aws:s3:bucket/{source_bucket}", source_bucket)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        s3 = aws_client(credentials, "s3")
        if call_or_none(ABSENT_CODES, s3.head_bucket, Bucket=destination_bucket) is None:
            raise NotFoundError(
                resource, f"the destination bucket {destination_bucket} does not exist"
            )
    with aws_errors(f"aws:s3:bucket/{source_bucket}/{prefix}*"):
        source = _current_objects(s3, source_bucket, prefix)
    with aws_errors(resource):
        present = _current_objects(s3, destination_bucket, prefix)
        to_copy = sorted(key for key, facts in source.items() if present.get(key) != facts)
        if not to_copy:
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run, objects=0)
        action = Action.UPDATED if present else Action.CREATED
        if not dry_run:
            for key in to_copy:
                s3.copy_object(
                    Bucket=destination_bucket,
                    Key=key,
                    CopySource={"Bucket": source_bucket, "Key": key},
                )
    return report_change(resource, action, dry_run=dry_run, objects=len(to_copy))


@job
def put_s3_object(
    aws_credentials: AwsCredentials | str,
    bucket: str,
    key: str,
    content: bytes | str,
    content_type: str = "text/plain; charset=utf-8",
    dry_run: bool = False,
) -> Change:
    """Ensures an object holds the given content, uploading only when it differs.

    The content's SHA-256 is stored in the object's user metadata (``sha256``) and
    compared on the next run, whatever the bucket's encryption does to ETags.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        bucket: The bucket; it must exist.
        key: The object's key.
        content: The bytes (text is encoded as UTF-8).
        content_type: The object's ``Content-Type``.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:s3:bucket/<bucket>/<key>``; ``detail`` has the size,
        the SHA-256 and the object's URL.

    Raises:
        InvalidInputError: Malformed bucket name or key.
        NotFoundError: The bucket does not exist.
        PermissionDeniedError: The credentials may not read or write the object.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import put_s3_object

        @flow
        def publish(markdown: str):
            put_s3_object("prod-aws", "acme-reports", "ops/latest.md", markdown, "text/markdown")
        ```
    """
    resource = s3_object_resource(bucket, key)
    validate_bucket_name(resource, bucket)
    require_object_key(resource, key)
    body = content.encode() if isinstance(content, str) else bytes(content)
    digest = hashlib.sha256(body).hexdigest()
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        s3 = aws_client(credentials, "s3")
        url = f"{s3.meta.endpoint_url}/{bucket}/{key}"
        current = call_or_none(ABSENT_CODES, s3.head_object, Bucket=bucket, Key=key)
        facts: dict[str, Any] = {"size": len(body), "sha256": digest, "url": url}
        if current is not None and (
            current.get("Metadata", {}).get(_CONTENT_SHA256) == digest
            and current.get("ContentType") == content_type
        ):
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run, **facts)
        action = Action.CREATED if current is None else Action.UPDATED
        if not dry_run:
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType=content_type,
                Metadata={_CONTENT_SHA256: digest},
            )
    return report_change(resource, action, dry_run=dry_run, **facts)

"""Cloud Storage jobs: buckets, object generations, restore tests, copies and uploads.

Buckets are converged (versioning, labels); object generations are listed for
disaster recovery, restored into scratch buckets and checked there; objects are
copied between buckets (failovers) and uploaded (reports).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import google_crc32c
from google.api_core import exceptions as google_errors
from pydantic import BaseModel, ConfigDict, Field

from blocks.gcp import GcpConnection
from magicflow import (
    Action,
    Change,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    connection,
    job,
    report,
)
from magicflow.recovery import (
    ContentDigests,
    RestoreCheck,
    check_scratch_name,
    compare_restore,
    recorded_sha256,
    restored_copy_is_current,
    restored_copy_metadata,
)
from tasks.gcp.session import (
    REQUEST_TIMEOUT_SECONDS,
    calling,
    require,
    validate_labels,
)

_BUCKET_CHARS = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]")
_GOOGLE_LOOKALIKE = re.compile(r"g[o0]{2}g[l1]e")
_LOCATION = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,62}")


def validate_bucket_name(name: str) -> None:
    """Checks a name against Cloud Storage's bucket naming rules.

    Args:
        name: The bucket name.

    Raises:
        InvalidInputError: The name breaks a rule (the message says which).
    """
    resource = f"gcp:gcs:bucket/{name}"
    components = name.split(".")
    if "." in name:
        length_ok = 3 <= len(name) <= 222 and all(1 <= len(part) <= 63 for part in components)
    else:
        length_ok = 3 <= len(name) <= 63
    if not length_ok:
        raise InvalidInputError(
            resource, "a bucket name has 3-63 characters (222 with dots, 63 between dots)"
        )
    if not _BUCKET_CHARS.fullmatch(name) or "" in components:
        raise InvalidInputError(
            resource,
            "a bucket name uses only lowercase letters, digits, '-', '_' and '.', "
            "and starts and ends with a letter or digit",
        )
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        pass
    else:
        raise InvalidInputError(resource, "a bucket name cannot be an IP address")
    if name.startswith("goog") or _GOOGLE_LOOKALIKE.search(name):
        raise InvalidInputError(
            resource, "a bucket name cannot start with 'goog' or contain 'google' or a look-alike"
        )


@job
def ensure_gcs_bucket(
    gcp_connection: GcpConnection | str,
    name: str,
    location: str = "EU",
    versioning: bool = True,
    labels: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> Change:
    """Ensures a Cloud Storage bucket exists with the given versioning and labels.

    A missing bucket is created in `location`. An existing one is converged:
    versioning is switched as asked and its labels are made exactly `labels`
    (labels not listed are removed). A bucket's location cannot change.

    Args:
        gcp_connection: The GCP connection block, or the name of a saved one.
        name: The bucket name, checked against Cloud Storage's naming rules first.
        location: Multi-region, dual-region or region, e.g. ``EU`` or ``europe-west1``.
        versioning: Whether the bucket keeps noncurrent object generations.
        labels: The bucket's labels, all of them; none when omitted.
        dry_run: Read only, and report what would be done.

    Returns:
        A `Change` for ``gcp:gcs:bucket/<name>``; ``detail`` names the fields that
        differed and the bucket's location, versioning and labels.

    Raises:
        InvalidInputError: The name, location or labels break the rules; nothing was written.
        ConflictError: The bucket exists in another location (both are named), or it
            changed while being updated.
        PermissionDeniedError: The connection may not read or change the bucket.
        TransientError: Cloud Storage was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from blocks import GcpConnection
        from tasks.gcp import ensure_gcs_bucket

        @flow
        def storage_for_tenant(tenant: str):
            gcp = GcpConnection.load("prod")
            return ensure_gcs_bucket(gcp, f"acme-{tenant}-data", labels={"tenant": tenant})
        ```
    """
    resource = f"gcp:gcs:bucket/{name}"
    validate_bucket_name(name)
    require(_LOCATION, location, resource, "location")
    wanted_labels = validate_labels(resource, labels or {})
    wanted_location = location.upper()
    client = connection(gcp_connection, GcpConnection).get_cloud_storage_client()

    with calling(resource, "read the bucket"):
        bucket = client.lookup_bucket(name, timeout=REQUEST_TIMEOUT_SECONDS, retry=None)
    detail: dict[str, Any] = {
        "location": wanted_location,
        "versioning": versioning,
        "labels": wanted_labels,
    }
    if bucket is None:
        if dry_run:
            return report(
                Change(resource=resource, action=Action.CREATED, dry_run=True, detail=detail)
            )
        new_bucket = client.bucket(name)
        new_bucket.versioning_enabled = versioning
        new_bucket.labels = wanted_labels
        with calling(resource, "create the bucket"):
            client.create_bucket(
                new_bucket, location=wanted_location, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
            )
        return report(Change(resource=resource, action=Action.CREATED, detail=detail))

    current_location = (bucket.location or "").upper()
    if current_location != wanted_location:
        raise ConflictError(
            resource,
            f"the bucket is in {current_location}, not {wanted_location}; "
            "a bucket's location cannot change",
        )
    current_labels = dict(bucket.labels or {})
    differing = [
        field
        for field, current, wanted in (
            ("versioning", bool(bucket.versioning_enabled), versioning),
            ("labels", current_labels, wanted_labels),
        )
        if current != wanted
    ]
    if not differing:
        return report(
            Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail=detail)
        )
    detail["changed"] = differing
    if dry_run:
        return report(Change(resource=resource, action=Action.UPDATED, dry_run=True, detail=detail))
    # Both fields are always sent: some servers reset a field a PATCH leaves out.
    bucket.versioning_enabled = versioning
    bucket.labels = wanted_labels
    with calling(resource, "update the bucket"):
        bucket.patch(
            if_metageneration_match=bucket.metageneration,
            timeout=REQUEST_TIMEOUT_SECONDS,
            retry=None,
        )
    return report(Change(resource=resource, action=Action.UPDATED, detail=detail))


class GcsObjectGeneration(BaseModel):
    """One stored generation of a Cloud Storage object.

    Attributes:
        generation: The generation number (grows with each write).
        size: Size in bytes.
        updated: When this generation was written.
        deleted: When it became noncurrent (overwritten or deleted); None while live.
        live: True for the object's current generation.
    """

    model_config = ConfigDict(frozen=True)

    generation: int
    size: int
    updated: datetime | None = None
    deleted: datetime | None = None
    live: bool


class GcsObjectHistory(BaseModel):
    """Every stored generation of one object name, newest first."""

    model_config = ConfigDict(frozen=True)

    name: str
    generations: list[GcsObjectGeneration]


class GcsObjectGenerations(BaseModel):
    """The objects under a prefix of a bucket, each with all its stored generations.

    Attributes:
        bucket: The bucket listed.
        prefix: The name prefix listed ('' for all).
        objects: One entry per object name, sorted by name.
    """

    model_config = ConfigDict(frozen=True)

    bucket: str
    prefix: str
    objects: list[GcsObjectHistory] = Field(default_factory=list)

    @property
    def generation_count(self) -> int:
        """How many generations are stored in all."""
        return sum(len(obj.generations) for obj in self.objects)


@job
def list_gcs_object_generations(
    gcp_connection: GcpConnection | str, bucket: str, prefix: str = ""
) -> GcsObjectGenerations:
    """Lists the objects of a bucket with all their stored generations (a read job).

    Args:
        gcp_connection: The GCP connection block, or the name of a saved one.
        bucket: The bucket to list.
        prefix: Only objects whose names start with it; all when empty.

    Returns:
        A `GcsObjectGenerations`: per object name, its generations newest first,
        with sizes and times, and which one is live.

    Raises:
        InvalidInputError: The bucket name breaks the naming rules.
        NotFoundError: The bucket does not exist.
        PermissionDeniedError: The connection may not list the bucket.
        TransientError: Cloud Storage was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.gcp import list_gcs_object_generations

        @flow
        def audit_backups():
            history = list_gcs_object_generations("prod", "acme-backups", prefix="db/")
            return history.generation_count
        ```
    """
    resource = f"gcp:gcs:bucket/{bucket}"
    validate_bucket_name(bucket)
    client = connection(gcp_connection, GcpConnection).get_cloud_storage_client()
    by_name: dict[str, list[GcsObjectGeneration]] = {}
    with calling(resource, "list the object generations"):
        blobs = client.list_blobs(
            bucket,
            prefix=prefix or None,
            # The string, not True: the JSON API reads "true"; some emulators read nothing else.
            versions="true",
            timeout=REQUEST_TIMEOUT_SECONDS,
            retry=None,
        )
        for blob in blobs:
            by_name.setdefault(blob.name, []).append(
                GcsObjectGeneration(
                    generation=int(blob.generation),
                    size=int(blob.size or 0),
                    updated=blob.updated,
                    deleted=blob.time_deleted,
                    live=blob.time_deleted is None,
                )
            )
    objects = [
        GcsObjectHistory(
            name=name,
            generations=sorted(generations, key=lambda g: g.generation, reverse=True),
        )
        for name, generations in sorted(by_name.items())
    ]
    return GcsObjectGenerations(bucket=bucket, prefix=prefix, objects=objects)


@job
def delete_gcs_bucket(
    gcp_connection: GcpConnection | str, name: str, dry_run: bool = False
) -> Change:
    """Deletes an empty Cloud Storage bucket (runbooks use it to undo one they created).

    A bucket that holds objects is never emptied: the job fails instead, so data
    written since the bucket was created is not lost by an undo.

    Args:
        gcp_connection: The GCP connection block, or the name of a saved one.
        name: The bucket name.
        dry_run: Read only, and report what would be done.

    Returns:
        A `Change` for ``gcp:gcs:bucket/<name>``: ``deleted``, or ``unchanged``
        (detail ``absent``) when there is no such bucket.

    Raises:
        InvalidInputError: The name breaks the naming rules.
        ConflictError: The bucket holds objects (it is left alone).
        PermissionDeniedError: The connection may not read or delete the bucket.
        TransientError: Cloud Storage was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.gcp import delete_gcs_bucket

        @flow
        def drop_bucket():
            delete_gcs_bucket("prod", "acme-tenant-data")
        ```
    """
    resource = f"gcp:gcs:bucket/{name}"
    validate_bucket_name(name)
    client = connection(gcp_connection, GcpConnection).get_cloud_storage_client()
    with calling(resource, "read the bucket"):
        bucket = client.lookup_bucket(name, timeout=REQUEST_TIMEOUT_SECONDS, retry=None)
        holds_objects = bucket is not None and any(
            True
            for _ in client.list_blobs(
                name, max_results=1, versions=True, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
            )
        )
    if bucket is None:
        return report(
            Change(
                resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail={"absent": True}
            )
        )
    if holds_objects:
        raise ConflictError(resource, "the bucket holds objects; it is left in place")
    if not dry_run:
        with calling(resource, "delete the bucket"):
            try:
                bucket.delete(timeout=REQUEST_TIMEOUT_SECONDS, retry=None)
            except google_errors.NotFound:
                pass  # deleted by someone else in between: the goal is reached
    return report(Change(resource=resource, action=Action.DELETED, dry_run=dry_run))


# --- restore tests, copies and uploads ----------------------------------------------------

_DOWNLOAD_CHUNK = 1024 * 1024


class _Digests(ContentDigests):
    """`ContentDigests` with the CRC32C Cloud Storage records too."""

    def __init__(self) -> None:
        super().__init__()
        self.crc32c = google_crc32c.Checksum()

    def write(self, data: bytes) -> int:
        self.crc32c.update(data)
        return super().write(data)


def _object_resource(bucket: str, name: str) -> str:
    return f"gcp:gcs:bucket/{bucket}/{name}"


def _require_object_name(resource: str, name: str) -> None:
    if not isinstance(name, str) or not 0 < len(name.encode()) <= 1024 or "\n" in name:
        raise InvalidInputError(resource, "an object name has 1 to 1024 bytes and no newline")


def _source_generation(client: Any, bucket: str, name: str, generation: int) -> Any:
    """The source generation's blob; a missing one is a `NotFoundError` naming it."""
    resource = _object_resource(bucket, name)
    with calling(resource, "read the backup generation"):
        blob = client.bucket(bucket).get_blob(
            name, generation=generation, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
        )
    if blob is None:
        raise NotFoundError(resource, f"generation {generation} does not exist")
    return blob


@job
def restore_gcs_object_generation(
    gcp_connection: GcpConnection | str,
    bucket: str,
    name: str,
    generation: int,
    scratch_bucket: str,
    dry_run: bool = False,
) -> Change:
    """Restores one generation of an object into a scratch bucket, for a restore test.

    The source is only read. The scratch bucket is created in the source bucket's
    location when missing (the copy stays where the data lives); the copy keeps the
    generation's metadata and records where it came from, so a second run copies
    nothing.

    Args:
        gcp_connection: The GCP connection block, or the name of a saved one.
        bucket: The source bucket.
        name: The object's name.
        generation: The generation to restore.
        scratch_bucket: A scratch bucket name (``magicflow-dr-scratch-...``).
        dry_run: Read only, and report what would be done.

    Returns:
        A `Change` for ``gcp:gcs:bucket/<scratch_bucket>/<name>``: ``created`` or ``unchanged``.

    Raises:
        InvalidInputError: Bad names, or a scratch name without the prefix.
        NotFoundError: The source bucket or generation does not exist.
        PermissionDeniedError: The connection may not read the source or write scratch.
        TransientError: Cloud Storage was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.gcp import restore_gcs_object_generation

        @flow
        def restore_test(generation: int):
            restore_gcs_object_generation(
                "gcp", "acme-backups", "db/orders.dump", generation,
                scratch_bucket="magicflow-dr-scratch-0123abcd",
            )
        ```
    """
    resource = _object_resource(scratch_bucket, name)
    check_scratch_name(resource, scratch_bucket)
    validate_bucket_name(scratch_bucket)
    validate_bucket_name(bucket)
    _require_object_name(resource, name)
    origin = f"{bucket}/{name}#{generation}"
    client = connection(gcp_connection, GcpConnection).get_cloud_storage_client()
    source = _source_generation(client, bucket, name, generation)
    detail: dict[str, Any] = {"source": origin}
    with calling(resource, "read the scratch bucket"):
        scratch = client.lookup_bucket(scratch_bucket, timeout=REQUEST_TIMEOUT_SECONDS, retry=None)
        current = (
            scratch.get_blob(name, timeout=REQUEST_TIMEOUT_SECONDS, retry=None) if scratch else None
        )
    if current is not None and restored_copy_is_current(current.metadata, origin):
        return report(
            Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail=detail)
        )
    if dry_run:
        return report(Change(resource=resource, action=Action.CREATED, dry_run=True, detail=detail))
    with calling(resource, "create the scratch bucket and copy the generation"):
        if scratch is None:
            location = client.get_bucket(
                bucket, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
            ).location
            scratch = client.create_bucket(
                scratch_bucket, location=location, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
            )
        copy = scratch.blob(name)
        copy.metadata = restored_copy_metadata(source.metadata, origin)
        copy.content_type = source.content_type
        token, _, _ = copy.rewrite(source, timeout=REQUEST_TIMEOUT_SECONDS, retry=None)
        while token is not None:  # large objects are copied in several calls
            token, _, _ = copy.rewrite(
                source, token=token, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
            )
    return report(Change(resource=resource, action=Action.CREATED, detail=detail))


@job
def verify_gcs_restore(
    gcp_connection: GcpConnection | str,
    bucket: str,
    name: str,
    generation: int,
    scratch_bucket: str,
    checksum_metadata_key: str | None = "sha256",
) -> RestoreCheck:
    """Checks a restored copy against what Cloud Storage and the backup's writer recorded.

    The copy is downloaded and hashed, then compared with the source generation's
    size, MD5 and CRC32C (computed by Cloud Storage when the backup was written) and
    the hex SHA-256 the backup's writer stored in the custom metadata
    ``checksum_metadata_key`` (when present). The source is only read.

    Args:
        gcp_connection: The GCP connection block, or the name of a saved one.
        bucket: The source bucket.
        name: The object's name.
        generation: The generation that was restored.
        scratch_bucket: The scratch bucket holding the copy.
        checksum_metadata_key: Custom metadata key with the writer's hex SHA-256; None
            to ignore it.

    Returns:
        A `RestoreCheck` of ``size``, ``md5``, ``crc32c`` and ``sha256`` as far as recorded.

    Raises:
        NotFoundError: The source generation or the restored copy does not exist.
        PermissionDeniedError: The connection may not read them.
        TransientError: Cloud Storage was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.gcp import verify_gcs_restore

        @flow
        def check_copy(generation: int) -> bool:
            return verify_gcs_restore(
                "gcp", "acme-backups", "db/orders.dump", generation,
                scratch_bucket="magicflow-dr-scratch-0123abcd",
            ).passed
        ```
    """
    resource = _object_resource(scratch_bucket, name)
    validate_bucket_name(scratch_bucket)
    validate_bucket_name(bucket)
    _require_object_name(resource, name)
    client = connection(gcp_connection, GcpConnection).get_cloud_storage_client()
    source = _source_generation(client, bucket, name, generation)
    digests = _Digests()
    with calling(resource, "download the restored copy"):
        copy = client.bucket(scratch_bucket).get_blob(
            name, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
        )
        if copy is None:
            raise NotFoundError(resource, "the restored copy does not exist")
        copy.download_to_file(digests, timeout=REQUEST_TIMEOUT_SECONDS, retry=None)
    expected: dict[str, Any] = {
        "size": source.size,
        "md5": base64.b64decode(source.md5_hash).hex() if source.md5_hash else None,
        "crc32c": base64.b64decode(source.crc32c).hex() if source.crc32c else None,
        "sha256": recorded_sha256(source.metadata, checksum_metadata_key),
    }
    found: dict[str, Any] = {
        "size": digests.size,
        "md5": digests.md5.hexdigest(),
        "crc32c": digests.crc32c.digest().hex(),
        "sha256": digests.sha256.hexdigest(),
    }
    return compare_restore(resource, f"{bucket}/{name}#{generation}", expected, found)


@job
def delete_gcs_scratch_buckets(
    gcp_connection: GcpConnection | str,
    name_prefix: str,
    created_before: datetime | None = None,
    dry_run: bool = False,
) -> Change:
    """Deletes scratch buckets (every object generation in them first) by name prefix.

    Args:
        gcp_connection: The GCP connection block, or the name of a saved one.
        name_prefix: Buckets whose names start with it; it must start with
            ``magicflow-dr-scratch-``, so no other bucket can ever be deleted.
        created_before: Only buckets created before this time.
        dry_run: Read only, and report what would be done.

    Returns:
        A `Change` for ``gcp:gcs:bucket/<name_prefix>*``: ``deleted`` (``detail["buckets"]``)
        or ``unchanged`` when there is none.

    Raises:
        InvalidInputError: The prefix is not a scratch prefix.
        PermissionDeniedError: The connection may not list or delete buckets.
        TransientError: Cloud Storage was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.gcp import delete_gcs_scratch_buckets

        @flow
        def clean_up(scratch: str):
            delete_gcs_scratch_buckets("gcp", scratch)
        ```
    """
    resource = f"gcp:gcs:bucket/{name_prefix}*"
    check_scratch_name(resource, name_prefix)
    client = connection(gcp_connection, GcpConnection).get_cloud_storage_client()
    with calling(resource, "list the scratch buckets"):
        buckets = [
            bucket
            for bucket in client.list_buckets(
                prefix=name_prefix, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
            )
            if bucket.name.startswith(name_prefix)
            and (created_before is None or bucket.time_created < created_before)
        ]
    names = sorted(bucket.name for bucket in buckets)
    if not names:
        return report(Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run))
    if not dry_run:
        for bucket in buckets:
            with calling(_object_resource(bucket.name, "*"), "delete the scratch bucket"):
                try:
                    for blob in client.list_blobs(
                        bucket, versions="true", timeout=REQUEST_TIMEOUT_SECONDS, retry=None
                    ):
                        blob.delete(timeout=REQUEST_TIMEOUT_SECONDS, retry=None)
                    bucket.delete(timeout=REQUEST_TIMEOUT_SECONDS, retry=None)
                except google_errors.NotFound:  # deleted by someone else meanwhile
                    pass
    detail: dict[str, Any] = {"buckets": names}
    return report(Change(resource=resource, action=Action.DELETED, dry_run=dry_run, detail=detail))


def _live_objects(client: Any, bucket: str, prefix: str) -> dict[str, tuple[str | None, int]]:
    """Name -> (MD5 or CRC32C, size) of the live objects under a prefix."""
    return {
        blob.name: (blob.md5_hash or blob.crc32c, int(blob.size or 0))
        for blob in client.list_blobs(
            bucket, prefix=prefix or None, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
        )
    }


@job
def copy_gcs_objects(
    gcp_connection: GcpConnection | str,
    source_bucket: str,
    destination_bucket: str,
    prefix: str = "",
    dry_run: bool = False,
) -> Change:
    """Copies the live objects under a prefix to another bucket, only those that differ.

    Objects are compared by MD5 (CRC32C for composite objects) and size, so a rerun
    copies nothing. Objects only the destination has are left alone. For
    failovers: the destination is typically a bucket in the DR region.

    Args:
        gcp_connection: The GCP connection block, or the name of a saved one.
        source_bucket: The bucket to copy from (only read).
        destination_bucket: The bucket to copy to; it must exist.
        prefix: Only names starting with it; all when empty.
        dry_run: Read only, and report what would be done.

    Returns:
        A `Change` for ``gcp:gcs:bucket/<destination_bucket>/<prefix>*``: ``created``
        (none was there), ``updated`` or ``unchanged``; ``detail["objects"]`` counts them.

    Raises:
        InvalidInputError: Malformed bucket names.
        NotFoundError: The source or the destination bucket does not exist.
        PermissionDeniedError: The connection may not read or write them.
        TransientError: Cloud Storage was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.gcp import copy_gcs_objects

        @flow
        def fail_over_exports():
            copy_gcs_objects("gcp", "acme-exports", "acme-exports-dr", prefix="daily/")
        ```
    """
    resource = _object_resource(destination_bucket, f"{prefix}*")
    validate_bucket_name(destination_bucket)
    validate_bucket_name(source_bucket)
    client = connection(gcp_connection, GcpConnection).get_cloud_storage_client()
    with calling(resource, "read the destination bucket"):
        destination = client.lookup_bucket(
            destination_bucket, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
        )
        if destination is None:
            raise NotFoundError(
                resource, f"the destination bucket {destination_bucket} does not exist"
            )
        present = _live_objects(client, destination_bucket, prefix)
    with calling(_object_resource(source_bucket, f"{prefix}*"), "list the source objects"):
        source = _live_objects(client, source_bucket, prefix)
    to_copy = sorted(name for name, facts in source.items() if present.get(name) != facts)
    action = Action.UNCHANGED if not to_copy else Action.UPDATED if present else Action.CREATED
    if to_copy and not dry_run:
        with calling(resource, "copy the objects"):
            origin = client.bucket(source_bucket)
            for name in to_copy:
                origin.copy_blob(
                    origin.blob(name),
                    destination,
                    name,
                    timeout=REQUEST_TIMEOUT_SECONDS,
                    retry=None,
                )
    detail: dict[str, Any] = {"objects": len(to_copy)}
    return report(Change(resource=resource, action=action, dry_run=dry_run, detail=detail))


@job
def put_gcs_object(
    gcp_connection: GcpConnection | str,
    bucket: str,
    name: str,
    content: bytes | str,
    content_type: str = "text/plain; charset=utf-8",
    dry_run: bool = False,
) -> Change:
    """Ensures an object holds the given content, uploading only when it differs.

    Args:
        gcp_connection: The GCP connection block, or the name of a saved one.
        bucket: The bucket; it must exist.
        name: The object's name.
        content: The bytes (text is encoded as UTF-8).
        content_type: The object's content type.
        dry_run: Read only, and report what would be done.

    Returns:
        A `Change` for ``gcp:gcs:bucket/<bucket>/<name>``; ``detail`` has the size, the
        MD5 and the object's URL.

    Raises:
        InvalidInputError: Malformed bucket or object name.
        NotFoundError: The bucket does not exist.
        PermissionDeniedError: The connection may not read or write the object.
        TransientError: Cloud Storage was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.gcp import put_gcs_object

        @flow
        def publish(markdown: str):
            put_gcs_object("gcp", "acme-reports", "ops/latest.md", markdown, "text/markdown")
        ```
    """
    resource = _object_resource(bucket, name)
    validate_bucket_name(bucket)
    _require_object_name(resource, name)
    body = content.encode() if isinstance(content, str) else bytes(content)
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    client = connection(gcp_connection, GcpConnection).get_cloud_storage_client()
    with calling(resource, "read the object"):
        current = client.bucket(bucket).get_blob(name, timeout=REQUEST_TIMEOUT_SECONDS, retry=None)
    blob = client.bucket(bucket).blob(name)
    detail: dict[str, Any] = {"size": len(body), "md5": md5, "url": blob.public_url}
    if current is not None and current.md5_hash == md5 and current.content_type == content_type:
        return report(
            Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail=detail)
        )
    action = Action.CREATED if current is None else Action.UPDATED
    if not dry_run:
        with calling(resource, "upload the object"):
            blob.upload_from_string(
                body, content_type=content_type, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
            )
    return report(Change(resource=resource, action=action, dry_run=dry_run, detail=detail))

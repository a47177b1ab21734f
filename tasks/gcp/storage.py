"""Cloud Storage jobs: buckets with versioning and labels, and object generations."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.api_core import exceptions as google_errors
from pydantic import BaseModel, ConfigDict, Field

from blocks.gcp import GcpConnection
from magicflow import (
    Action,
    Change,
    ConflictError,
    InvalidInputError,
    connection,
    job,
    report,
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

"""GCP jobs: Cloud Storage buckets and object generations, Secret Manager secrets, quotas.

Every job takes a `blocks.GcpConnection` (or the name of a saved one), reads the
current state first and writes only what differs. Backend failures go through the
one error table (`magicflow.errors`) via `_calling`; the Google clients' own
retries are switched off on every call (``retry=None``) so that Prefect's retries
are the only retry layer.

Cloud Storage and Secret Manager use Google's client libraries; Cloud Quotas has
no client library among our dependencies, so its v1 REST API is called through
the connection's authorized ``requests`` session.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any
from urllib.parse import quote

from google.api_core import exceptions as google_errors
from google.auth import exceptions as auth_errors
from google.cloud.secretmanager import SecretManagerServiceClient, SecretVersion
from pydantic import BaseModel, ConfigDict, Field, SecretStr

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
from magicflow.errors import HttpAnswer, typed_errors

__all__ = [
    "GcpQuota",
    "GcsObjectGeneration",
    "GcsObjectGenerations",
    "GcsObjectHistory",
    "ensure_gcp_secret",
    "ensure_gcs_bucket",
    "get_gcp_quota",
    "list_gcs_object_generations",
    "request_gcp_quota_increase",
]

REQUEST_TIMEOUT_SECONDS = 30.0
"""Timeout of every single call to a Google API; Prefect retries the job on expiry."""

MAX_SECRET_PAYLOAD_BYTES = 64 * 1024
"""Secret Manager's limit on one secret version's payload."""


# --- input rules --------------------------------------------------------------------

_BUCKET_CHARS = re.compile(r"[a-z0-9][a-z0-9._-]*[a-z0-9]")
_GOOGLE_LOOKALIKE = re.compile(r"g[o0]{2}g[l1]e")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_MAX_LABELS = 64
_LOCATION = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,62}")
_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9:._-]{0,127}")
_SERVICE = re.compile(r"[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+")
_QUOTA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_DIMENSION_KEY = re.compile(r"[a-z][a-z0-9_]{0,62}")
_QUOTA_LOCATION = re.compile(r"[a-z][a-z0-9-]{0,62}")
# Cloud Quotas: preferences always apply across all values of these dimensions.
_FORBIDDEN_DIMENSIONS = frozenset({"user", "resource"})
_UNLIMITED = -1


def _validate_bucket_name(name: str) -> None:
    """Raises `InvalidInputError` unless `name` follows Cloud Storage's bucket naming rules."""
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


def _validate_labels(resource: str, labels: Mapping[str, str]) -> dict[str, str]:
    """Returns the labels as a plain dict, or raises `InvalidInputError` naming the bad one.

    Cloud Storage and Secret Manager share these rules (ASCII subset): at most 64
    labels; keys 1-63 of ``a-z0-9_-`` starting with a letter; values 0-63 of ``a-z0-9_-``.
    """
    if len(labels) > _MAX_LABELS:
        raise InvalidInputError(resource, f"at most {_MAX_LABELS} labels are allowed")
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise InvalidInputError(
                resource,
                f"label key {key!r} must be 1-63 lowercase letters, digits, '_' or '-', "
                "starting with a letter",
            )
        if not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value):
            raise InvalidInputError(
                resource,
                f"label {key!r} must have a value of 0-63 lowercase letters, digits, '_' or '-'",
            )
    return dict(labels)


def _require(pattern: re.Pattern[str], value: str, resource: str, what: str) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInputError(resource, f"{what} {value!r} is not valid")


def _project_of(gcp: GcpConnection, project: str | None, resource: str) -> str:
    chosen = project or gcp.project
    if not chosen:
        raise InvalidInputError(resource, "no GCP project: set it on the connection or pass one")
    _require(_PROJECT, chosen, resource, "project")
    return chosen


# --- backend errors -----------------------------------------------------------------


def _google_answer(doing: str) -> Callable[[Exception], HttpAnswer | None]:
    """Reads Google client and auth errors into (status, cause) for the one error table.

    Google-specific meanings: FAILED_PRECONDITION and ABORTED (a stale etag or
    metageneration) mean the resource changed under us (409), and credentials
    Google refuses to refresh are a permission problem (401).
    """

    def read_answer(error: Exception) -> HttpAnswer | None:
        if isinstance(error, google_errors.GoogleAPICallError):
            cause = f"could not {doing}: HTTP {error.code} {error.message}"[:400]
            if isinstance(error, google_errors.FailedPrecondition | google_errors.Aborted):
                return 409, cause
            # No status: the answer could not be read; it may come whole next time.
            return int(error.code or 503), cause
        if isinstance(error, auth_errors.GoogleAuthError) and not isinstance(
            error, auth_errors.TransportError
        ):
            return 401, f"could not {doing}: credentials rejected"
        return None

    return read_answer


def _calling(resource: str, doing: str) -> AbstractContextManager[None]:
    """Raises Google client, auth and transport errors inside the block as typed errors.

    The Google clients' own retries are off on every call (``retry=None``), so a
    failure reaches the table (`magicflow.errors`) at once: 429, 5xx, timeouts,
    refused or reset connections and truncated answers are retried by Prefect;
    TLS failures, invalid URLs and other 4xx are not.
    """
    return typed_errors(resource, f"trying to {doing}", _google_answer(doing))


# --- Cloud Storage ------------------------------------------------------------------


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
    _validate_bucket_name(name)
    _require(_LOCATION, location, resource, "location")
    wanted_labels = _validate_labels(resource, labels or {})
    wanted_location = location.upper()
    client = connection(gcp_connection, GcpConnection).get_cloud_storage_client()

    with _calling(resource, "read the bucket"):
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
        with _calling(resource, "create the bucket"):
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
    with _calling(resource, "update the bucket"):
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
    _validate_bucket_name(bucket)
    client = connection(gcp_connection, GcpConnection).get_cloud_storage_client()
    by_name: dict[str, list[GcsObjectGeneration]] = {}
    with _calling(resource, "list the object generations"):
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


# --- Secret Manager -----------------------------------------------------------------


def _version_number(version_name: str) -> int:
    return int(version_name.rsplit("/", 1)[-1])


@job
def ensure_gcp_secret(
    gcp_connection: GcpConnection | str,
    secret_id: str,
    value: SecretStr,
    labels: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> Change:
    """Ensures a Secret Manager secret exists and its latest enabled version holds `value`.

    A missing secret is created (automatic replication) with a first version. An
    existing one gets its labels made exactly `labels`, and a new version only when
    the payload of its latest enabled version differs. Payloads are compared in
    memory and never logged, returned or hashed into the result.

    Args:
        gcp_connection: The GCP connection block (its project holds the secret).
        secret_id: The secret's id: 1-255 letters, digits, '_' or '-'.
        value: The secret value (at most 64 KiB, UTF-8).
        labels: The secret's labels, all of them; none when omitted.
        dry_run: Read only, and report what would be done.

    Returns:
        A `Change` for ``gcp:secret/projects/<p>/secrets/<id>``; ``detail`` holds the
        version name and number that holds the value, or the one that would be added,
        and which fields changed.

    Raises:
        InvalidInputError: A bad id, labels or value (empty or too large); nothing written.
        PermissionDeniedError: The connection may not read or change the secret.
        ConflictError: The secret changed state under us (e.g. a version was disabled).
        TransientError: Secret Manager was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from pydantic import SecretStr
        from tasks.gcp import ensure_gcp_secret

        @flow
        def rotate_db_password(password: SecretStr):
            return ensure_gcp_secret("prod", "acme-db-password", password, labels={"app": "acme"})
        ```
    """
    gcp = connection(gcp_connection, GcpConnection)
    project = _project_of(gcp, None, f"gcp:secret/secrets/{secret_id}")
    name = f"projects/{project}/secrets/{secret_id}"
    resource = f"gcp:secret/{name}"
    _require(_SECRET_ID, secret_id, resource, "secret id")
    wanted_labels = _validate_labels(resource, labels or {})
    payload = value.get_secret_value().encode("utf-8")
    if not payload:
        raise InvalidInputError(resource, "the secret value is empty")
    if len(payload) > MAX_SECRET_PAYLOAD_BYTES:
        raise InvalidInputError(
            resource, f"the secret value is larger than {MAX_SECRET_PAYLOAD_BYTES} bytes"
        )
    client = gcp.get_secret_manager_client()

    with _calling(resource, "read the secret"):
        try:
            secret = client.get_secret(
                request={"name": name}, retry=None, timeout=REQUEST_TIMEOUT_SECONDS
            )
        except google_errors.NotFound:
            secret = None

    if secret is None:
        detail: dict[str, Any] = {"labels": wanted_labels}
        if dry_run:
            return report(
                Change(resource=resource, action=Action.CREATED, dry_run=True, detail=detail)
            )
        with _calling(resource, "create the secret"):
            client.create_secret(
                request={
                    "parent": f"projects/{project}",
                    "secret_id": secret_id,
                    "secret": {"replication": {"automatic": {}}, "labels": wanted_labels},
                },
                retry=None,
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
        detail.update(_add_secret_version(client, name, payload, resource))
        return report(Change(resource=resource, action=Action.CREATED, detail=detail))

    with _calling(resource, "read the latest enabled version"):
        versions = client.list_secret_versions(
            request={"parent": name, "filter": "state:ENABLED"},
            retry=None,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        # Filtered again here: some emulators ignore the server-side filter.
        enabled = [v.name for v in versions if v.state == SecretVersion.State.ENABLED]
        latest = max(enabled, key=_version_number, default=None)
        holds_value = latest is not None and hmac.compare_digest(
            client.access_secret_version(
                request={"name": latest}, retry=None, timeout=REQUEST_TIMEOUT_SECONDS
            ).payload.data,
            payload,
        )

    changed = [
        field
        for field, differs in (
            ("labels", dict(secret.labels) != wanted_labels),
            ("value", not holds_value),
        )
        if differs
    ]
    detail = {"labels": wanted_labels}
    if latest is not None and holds_value:
        detail.update(version=_version_number(latest), version_name=latest)
    if not changed:
        return report(
            Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail=detail)
        )
    detail["changed"] = changed
    if dry_run:
        return report(Change(resource=resource, action=Action.UPDATED, dry_run=True, detail=detail))
    if "labels" in changed:
        with _calling(resource, "update the secret's labels"):
            client.update_secret(
                request={
                    "secret": {"name": name, "labels": wanted_labels},
                    "update_mask": {"paths": ["labels"]},
                },
                retry=None,
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
    if "value" in changed:
        detail.update(_add_secret_version(client, name, payload, resource))
    return report(Change(resource=resource, action=Action.UPDATED, detail=detail))


def _add_secret_version(
    client: SecretManagerServiceClient, name: str, payload: bytes, resource: str
) -> dict[str, Any]:
    """Adds a version holding `payload`; returns its secret-free name and number."""
    with _calling(resource, "add a secret version"):
        version = client.add_secret_version(
            request={"parent": name, "payload": {"data": payload}},
            retry=None,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
    return {"version": _version_number(version.name), "version_name": version.name}


# --- Cloud Quotas -------------------------------------------------------------------


class GcpQuota(BaseModel):
    """The value of one quota in effect for a project and a location.

    Attributes:
        name: The QuotaInfo resource name.
        service: The service, e.g. ``compute.googleapis.com``.
        quota_id: The quota id, e.g. ``CPUS-per-project-region``.
        metric: The metric the quota limits, e.g. ``compute.googleapis.com/cpus``.
        unit: The unit of the metric, e.g. ``1/{project}/{region}``.
        location: The location asked for (``global`` or a region or zone).
        dimensions: The dimensions of the value found, e.g. ``{"region": "us-central1"}``.
        value: The value in effect; -1 means unlimited.
        is_fixed: True when the value cannot be adjusted.
        increase_eligible: Whether a higher value may be requested.
        refresh_interval: For rate quotas, e.g. ``minute``; None otherwise.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    service: str
    quota_id: str
    metric: str = ""
    unit: str = ""
    location: str
    dimensions: dict[str, str] = Field(default_factory=dict)
    value: int
    is_fixed: bool = False
    increase_eligible: bool = True
    refresh_interval: str | None = None

    @property
    def unlimited(self) -> bool:
        """True when the quota sets no limit."""
        return self.value == _UNLIMITED


def _grants(value: int, wanted: int) -> bool:
    """Whether a quota value of `value` is at least `wanted` (-1 is unlimited)."""
    if value == _UNLIMITED:
        return True
    return wanted != _UNLIMITED and value >= wanted


def _quota_resource(
    project: str, service: str, quota_id: str, dimensions: Mapping[str, str]
) -> str:
    base = f"gcp:quota/projects/{project}/services/{service}/quotaInfos/{quota_id}"
    if dimensions:
        base += "[" + ",".join(f"{k}={v}" for k, v in sorted(dimensions.items())) + "]"
    return base


class _CloudQuotasApi:
    """The few Cloud Quotas v1 REST calls the jobs need, with errors translated."""

    def __init__(self, gcp: GcpConnection, project: str, resource: str) -> None:
        self.session = gcp.get_authorized_session()
        endpoint = gcp.cloud_quotas_endpoint.rstrip("/")
        self.base = f"{endpoint}/v1/projects/{quote(project, safe='')}/locations/global"
        self.resource = resource

    def call(
        self,
        method: str,
        path: str,
        doing: str,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        with _calling(self.resource, doing):
            response = self.session.request(
                method,
                f"{self.base}/{path}",
                params=params,
                json=body,
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
            if response.status_code >= 400:
                raise google_errors.from_http_response(response)
            return dict(response.json())

    def quota_info(self, service: str, quota_id: str) -> dict[str, Any]:
        return self.call(
            "GET",
            f"services/{quote(service, safe='')}/quotaInfos/{quote(quota_id, safe='')}",
            "read the quota",
        )

    def quota_preferences(self) -> Iterator[dict[str, Any]]:
        params: dict[str, str] = {}
        while True:
            page = self.call("GET", "quotaPreferences", "list the quota preferences", params=params)
            yield from page.get("quotaPreferences", [])
            token = page.get("nextPageToken")
            if not token:
                return
            params = {"pageToken": token}


def _value_where(
    info: Mapping[str, Any], matches: Callable[[Mapping[str, str], list[str]], bool]
) -> tuple[int, dict[str, str]] | None:
    """The first (most specific) value of a QuotaInfo whose dimensions and locations match."""
    for candidate in info.get("dimensionsInfos", []):
        dimensions = dict(candidate.get("dimensions", {}))
        if matches(dimensions, list(candidate.get("applicableLocations", []))):
            return int(candidate.get("details", {}).get("value", 0)), dimensions
    return None


def _increase_eligible(info: Mapping[str, Any]) -> bool:
    # Proto JSON leaves out false booleans: an eligibility object without isEligible says no.
    eligibility = info.get("quotaIncreaseEligibility")
    return eligibility is None or bool(eligibility.get("isEligible", False))


@job
def get_gcp_quota(
    gcp_connection: GcpConnection | str,
    service: str,
    quota_id: str,
    location: str = "global",
    project: str | None = None,
) -> GcpQuota:
    """Reads the value of a quota in effect for a project (a read job).

    Uses Cloud Quotas v1 ``GET .../locations/global/services/{service}/quotaInfos/{quotaId}``
    and picks the most specific value that applies to `location`.

    Args:
        gcp_connection: The GCP connection block, or the name of a saved one.
        service: The service, e.g. ``compute.googleapis.com``.
        quota_id: The quota id, e.g. ``CPUS-per-project-region``.
        location: ``global`` (the quota's default value), or a region or zone.
        project: Overrides the connection's project (id or number).

    Returns:
        A `GcpQuota` with the value, unit and metric.

    Raises:
        InvalidInputError: A malformed service, quota id, location or project.
        NotFoundError: No such quota, or it has no value for `location`.
        PermissionDeniedError: The connection may not read quotas.
        TransientError: Cloud Quotas was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.gcp import get_gcp_quota

        @flow
        def cpu_headroom():
            quota = get_gcp_quota("prod", "compute.googleapis.com", "CPUS-per-project-region",
                                  location="europe-west1")
            return quota.value
        ```
    """
    gcp = connection(gcp_connection, GcpConnection)
    chosen_project = _project_of(
        gcp, project, f"gcp:quota/services/{service}/quotaInfos/{quota_id}"
    )
    resource = _quota_resource(chosen_project, service, quota_id, {})
    _require(_SERVICE, service, resource, "service")
    _require(_QUOTA_ID, quota_id, resource, "quota id")
    _require(_QUOTA_LOCATION, location, resource, "location")
    info = _CloudQuotasApi(gcp, chosen_project, resource).quota_info(service, quota_id)

    def applies(dimensions: Mapping[str, str], locations: list[str]) -> bool:
        # The default value (no dimensions) is the quota's value for "global".
        return location in locations or (location == "global" and not dimensions)

    found = _value_where(info, applies)
    if found is None:
        raise NotFoundError(resource, f"the quota has no value for location {location!r}")
    value, dimensions = found
    return GcpQuota(
        name=info.get("name", ""),
        service=info.get("service", service),
        quota_id=info.get("quotaId", quota_id),
        metric=info.get("metric", ""),
        unit=info.get("metricUnit", ""),
        location=location,
        dimensions=dimensions,
        value=value,
        is_fixed=bool(info.get("isFixed", False)),
        increase_eligible=_increase_eligible(info),
        refresh_interval=info.get("refreshInterval") or None,
    )


@job
def request_gcp_quota_increase(
    gcp_connection: GcpConnection | str,
    service: str,
    quota_id: str,
    preferred_value: int,
    dimensions: Mapping[str, str] | None = None,
    project: str | None = None,
    contact_email: str | None = None,
    justification: str | None = None,
    dry_run: bool = False,
) -> Change:
    """Asks for a higher quota value through a Cloud Quotas QuotaPreference.

    Nothing is asked when the value in effect already grants `preferred_value`, or
    when a preference for the same quota and dimensions still under review asks for
    at least as much, or was granted at least as much. A preference Google decided
    with less than it asked (denied or partly granted) is a `ConflictError`, not
    success. Otherwise that preference is raised, or a new one is created.

    Args:
        gcp_connection: The GCP connection block, or the name of a saved one.
        service: The service, e.g. ``compute.googleapis.com``.
        quota_id: The quota id, e.g. ``CPUS-per-project-region``.
        preferred_value: The value wanted; -1 asks for unlimited.
        dimensions: Which slice of the quota, e.g. ``{"region": "us-central1"}``;
            the quota's default value when omitted. ``user`` and ``resource`` are not allowed.
        project: Overrides the connection's project (id or number).
        contact_email: Who Google may ask about the request (Google requires one for
            most increases).
        justification: Why the increase is needed.
        dry_run: Read only, and report what would be done.

    Returns:
        A `Change` for ``gcp:quota/projects/<p>/services/<s>/quotaInfos/<id>[dims]``;
        ``detail`` has the current and preferred values and the preference's name,
        granted value and whether Google is still reviewing it.

    Raises:
        InvalidInputError: Malformed input, or dimensions the quota does not have.
        NotFoundError: No such quota.
        ConflictError: The quota is fixed or not eligible for an increase, Google
            denied or partly granted a preference that asked for enough, or the
            preference changed while being updated.
        PermissionDeniedError: The connection may not read or change quota preferences.
        TransientError: Cloud Quotas was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.gcp import request_gcp_quota_increase

        @flow
        def more_cpus():
            return request_gcp_quota_increase(
                "prod", "compute.googleapis.com", "CPUS-per-project-region", 96,
                dimensions={"region": "europe-west1"}, contact_email="ops@example.com",
            )
        ```
    """
    gcp = connection(gcp_connection, GcpConnection)
    wanted_dimensions = dict(dimensions or {})
    chosen_project = _project_of(
        gcp, project, f"gcp:quota/services/{service}/quotaInfos/{quota_id}"
    )
    resource = _quota_resource(chosen_project, service, quota_id, wanted_dimensions)
    _require(_SERVICE, service, resource, "service")
    _require(_QUOTA_ID, quota_id, resource, "quota id")
    if (
        isinstance(preferred_value, bool)
        or not isinstance(preferred_value, int)
        or preferred_value < -1
    ):
        raise InvalidInputError(
            resource, "the preferred value is a whole number >= 0, or -1 for unlimited"
        )
    for key, value in wanted_dimensions.items():
        _require(_DIMENSION_KEY, key, resource, "dimension")
        if key in _FORBIDDEN_DIMENSIONS:
            raise InvalidInputError(resource, f"quota preferences cannot set the {key!r} dimension")
        if not isinstance(value, str) or not value:
            raise InvalidInputError(resource, f"dimension {key!r} needs a value")
    if contact_email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", contact_email):
        raise InvalidInputError(resource, "the contact email is not an email address")

    api = _CloudQuotasApi(gcp, chosen_project, resource)
    info = api.quota_info(service, quota_id)
    unknown = set(wanted_dimensions) - set(info.get("dimensions", []))
    if unknown:
        raise InvalidInputError(resource, f"the quota has no dimension(s) {sorted(unknown)}")
    found = _value_where(
        info, lambda dims, _: all(wanted_dimensions.get(k) == v for k, v in dims.items())
    )
    current = found[0] if found else 0
    detail: dict[str, Any] = {"current_value": current, "preferred_value": preferred_value}
    if _grants(current, preferred_value):
        return report(
            Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail=detail)
        )

    existing = next(
        (
            preference
            for preference in api.quota_preferences()
            if preference.get("service") == service
            and preference.get("quotaId") == quota_id
            and dict(preference.get("dimensions", {})) == wanted_dimensions
        ),
        None,
    )
    if existing is not None:
        config = existing.get("quotaConfig", {})
        requested = int(config.get("preferredValue", 0))
        granted = int(config["grantedValue"]) if "grantedValue" in config else None
        under_review = bool(existing.get("reconciling", False))
        detail.update(
            preference=existing.get("name"),
            requested_value=requested,
            granted_value=granted,
            reconciling=under_review,
        )
        # A preference covers the value while Google reviews it, or once Google granted
        # enough. A decided preference that asked for enough but got less was denied
        # (or partly granted): asking the same again would not change Google's answer.
        if (under_review and _grants(requested, preferred_value)) or (
            granted is not None and _grants(granted, preferred_value)
        ):
            return report(
                Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail=detail)
            )
        if not under_review and _grants(requested, preferred_value):
            state = config.get("stateDetail") or "no detail"
            raise ConflictError(
                resource,
                f"Google decided preference {existing.get('name')}: granted "
                f"{granted if granted is not None else 'nothing'} of the {requested} asked "
                f"({state}); ask Google Cloud support, or ask for a value above {requested}",
            )
    if info.get("isFixed"):
        raise ConflictError(resource, "the quota is fixed and cannot be increased")
    if not _increase_eligible(info):
        reason = info.get("quotaIncreaseEligibility", {}).get("ineligibilityReason", "unspecified")
        raise ConflictError(resource, f"the quota is not eligible for an increase ({reason})")

    action = Action.CREATED if existing is None else Action.UPDATED
    if dry_run:
        return report(Change(resource=resource, action=action, dry_run=True, detail=detail))
    extra = {
        field: value
        for field, value in (("contactEmail", contact_email), ("justification", justification))
        if value is not None
    }
    config_body = {"preferredValue": str(preferred_value)}
    if existing is None:
        saved = api.call(
            "POST",
            "quotaPreferences",
            "create the quota preference",
            body={
                "service": service,
                "quotaId": quota_id,
                "dimensions": wanted_dimensions,
                "quotaConfig": config_body,
                **extra,
            },
        )
    else:
        preference_id = str(existing["name"]).rsplit("/", 1)[-1]
        saved = api.call(
            "PATCH",
            f"quotaPreferences/{quote(preference_id, safe='')}",
            "update the quota preference",
            params={"updateMask": ",".join(["quotaConfig.preferredValue", *extra])},
            body={
                "name": existing["name"],
                "service": service,
                "quotaId": quota_id,
                "dimensions": wanted_dimensions,
                "quotaConfig": config_body,
                # A stale etag makes the server refuse (ABORTED) instead of overwriting.
                "etag": existing.get("etag", ""),
                **extra,
            },
        )
    config = saved.get("quotaConfig", {})
    detail.update(
        preference=saved.get("name"),
        requested_value=preferred_value,
        granted_value=int(config["grantedValue"]) if "grantedValue" in config else None,
        reconciling=bool(saved.get("reconciling", False)),
    )
    return report(Change(resource=resource, action=action, detail=detail))

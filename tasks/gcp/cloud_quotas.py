"""Cloud Quotas jobs: read a quota, and ask for more through a quota preference.

Cloud Quotas has no client library among our dependencies, so its v1 REST API is
called through the connection's authorized ``requests`` session.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

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
from tasks.gcp.session import (
    REQUEST_TIMEOUT_SECONDS,
    calling,
    project_of,
    require,
)

_SERVICE = re.compile(r"[a-z0-9][a-z0-9-]*(\.[a-z0-9-]+)+")
_QUOTA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_DIMENSION_KEY = re.compile(r"[a-z][a-z0-9_]{0,62}")
_QUOTA_LOCATION = re.compile(r"[a-z][a-z0-9-]{0,62}")
# Cloud Quotas: preferences always apply across all values of these dimensions.
_FORBIDDEN_DIMENSIONS = frozenset({"user", "resource"})
_UNLIMITED = -1


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
        with calling(self.resource, doing):
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
    chosen_project = project_of(gcp, project, f"gcp:quota/services/{service}/quotaInfos/{quota_id}")
    resource = _quota_resource(chosen_project, service, quota_id, {})
    require(_SERVICE, service, resource, "service")
    require(_QUOTA_ID, quota_id, resource, "quota id")
    require(_QUOTA_LOCATION, location, resource, "location")
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
    chosen_project = project_of(gcp, project, f"gcp:quota/services/{service}/quotaInfos/{quota_id}")
    resource = _quota_resource(chosen_project, service, quota_id, wanted_dimensions)
    require(_SERVICE, service, resource, "service")
    require(_QUOTA_ID, quota_id, resource, "quota id")
    if (
        isinstance(preferred_value, bool)
        or not isinstance(preferred_value, int)
        or preferred_value < -1
    ):
        raise InvalidInputError(
            resource, "the preferred value is a whole number >= 0, or -1 for unlimited"
        )
    for key, value in wanted_dimensions.items():
        require(_DIMENSION_KEY, key, resource, "dimension")
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

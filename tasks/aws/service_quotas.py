"""Service Quotas jobs: read a quota, and request an increase at most once."""

import math
import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from blocks import AwsCredentials
from magicflow import Action, Change, ConflictError, NotFoundError, connection, job
from tasks.aws.inputs import (
    require,
)
from tasks.aws.session import aws_client, aws_errors, call_or_none, paginate, report_change

_QUOTA_SERVICE_CODE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,62}$")
_QUOTA_CODE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,127}$")
_QUOTA_VALUE_MAX = 10_000_000_000
_OPEN_QUOTA_REQUEST_STATUSES = frozenset({"PENDING", "CASE_OPENED"})


class ServiceQuota(BaseModel):
    """One service quota in the connection's account and region.

    Attributes:
        service_code: The service, for example ``ec2``.
        quota_code: The quota, for example ``L-1216C47A``.
        quota_name: The quota's human name.
        value: The applied value, or AWS's default when no value is applied.
        unit: The unit, for example ``None`` or ``Count``.
        adjustable: Whether an increase can be requested.
        global_quota: Whether the quota applies across all regions.
        is_default: True when `value` is AWS's default, not an applied value.
    """

    model_config = ConfigDict(frozen=True)

    service_code: str
    quota_code: str
    quota_name: str | None = None
    value: float
    unit: str | None = None
    adjustable: bool = False
    global_quota: bool = False
    is_default: bool = False


def _validate_quota_codes(resource: str, service_code: str, quota_code: str) -> None:
    require(
        bool(_QUOTA_SERVICE_CODE.fullmatch(service_code)),
        resource,
        "a service code is a letter then up to 62 of [A-Za-z0-9-]",
    )
    require(
        bool(_QUOTA_CODE.fullmatch(quota_code)),
        resource,
        "a quota code is a letter then up to 127 of [A-Za-z0-9-]",
    )


def _read_service_quota(
    quotas: Any, resource: str, service_code: str, quota_code: str
) -> ServiceQuota:
    codes = {"ServiceCode": service_code, "QuotaCode": quota_code}
    found = call_or_none({"NoSuchResourceException"}, quotas.get_service_quota, **codes)
    is_default = found is None
    if is_default:
        # Quotas without an applied value are only known by their AWS default.
        found = call_or_none(
            {"NoSuchResourceException"}, quotas.get_aws_default_service_quota, **codes
        )
    if found is None:
        raise NotFoundError(resource, "no such quota in this account and region")
    quota = found["Quota"]
    return ServiceQuota(
        service_code=service_code,
        quota_code=quota_code,
        quota_name=quota.get("QuotaName"),
        value=quota["Value"],
        unit=quota.get("Unit"),
        adjustable=bool(quota.get("Adjustable")),
        global_quota=bool(quota.get("GlobalQuota")),
        is_default=is_default,
    )


@job
def get_service_quota(
    aws_credentials: AwsCredentials | str, service_code: str, quota_code: str
) -> ServiceQuota:
    """Reads a service quota: its applied value, or AWS's default when none is applied.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        service_code: The service, for example ``ec2``.
        quota_code: The quota, for example ``L-1216C47A`` (running on-demand standard vCPUs).

    Returns:
        The quota as a `ServiceQuota`.

    Raises:
        InvalidInputError: Malformed service or quota code.
        NotFoundError: No such quota.
        PermissionDeniedError: The credentials may not read quotas.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import get_service_quota

        @flow
        def vcpu_headroom() -> float:
            return get_service_quota("prod-aws", "ec2", "L-1216C47A").value
        ```
    """
    resource = f"aws:servicequotas:quota/{service_code}/{quota_code}"
    _validate_quota_codes(resource, service_code, quota_code)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        quotas = aws_client(credentials, "service-quotas")
        return _read_service_quota(quotas, resource, service_code, quota_code)


@job
def request_service_quota_increase(
    aws_credentials: AwsCredentials | str,
    service_code: str,
    quota_code: str,
    desired_value: float,
    dry_run: bool = False,
) -> Change:
    """Ensures a quota is at least ``desired_value``, requesting an increase when it is not.

    Nothing is requested when the quota is already high enough, or when an open request
    (``PENDING`` or ``CASE_OPENED``) for at least ``desired_value`` exists, so a re-run
    never files a duplicate request.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        service_code: The service, for example ``ec2``.
        quota_code: The quota, for example ``L-1216C47A``.
        desired_value: The value wanted; positive and at most 10^10.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:servicequotas:quota/<service>/<quota>``: ``created`` when a
        request was filed (``detail`` has ``request_id`` and ``status``), ``unchanged``
        when the quota or an open request already covers the value.

    Raises:
        InvalidInputError: Malformed codes, a bad value, or a quota that is not
            adjustable; nothing requested.
        ConflictError: An open request for a lower value exists (AWS allows one open
            request per quota); nothing requested.
        NotFoundError: No such quota.
        PermissionDeniedError: The credentials may not request increases.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import request_service_quota_increase

        @flow
        def more_vcpus():
            request_service_quota_increase("prod-aws", "ec2", "L-1216C47A", 512)
        ```
    """
    resource = f"aws:servicequotas:quota/{service_code}/{quota_code}"
    _validate_quota_codes(resource, service_code, quota_code)
    require(
        isinstance(desired_value, int | float)
        and not isinstance(desired_value, bool)
        and math.isfinite(desired_value)
        and 0 < desired_value <= _QUOTA_VALUE_MAX,
        resource,
        f"desired_value is a number above 0 and at most {_QUOTA_VALUE_MAX}",
    )
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        quotas = aws_client(credentials, "service-quotas")
        quota = _read_service_quota(quotas, resource, service_code, quota_code)
        if quota.value >= desired_value:
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run, value=quota.value)
        history = paginate(
            quotas,
            "list_requested_service_quota_change_history_by_quota",
            "RequestedQuotas",
            ServiceCode=service_code,
            QuotaCode=quota_code,
        )
        open_requests = [r for r in history if r.get("Status") in _OPEN_QUOTA_REQUEST_STATUSES]
        for request in open_requests:
            if request.get("DesiredValue", 0) >= desired_value:
                return report_change(
                    resource,
                    Action.UNCHANGED,
                    dry_run=dry_run,
                    value=quota.value,
                    request_id=request.get("Id"),
                    status=request.get("Status"),
                    requested_value=request.get("DesiredValue"),
                )
        if open_requests:
            request = open_requests[0]
            raise ConflictError(
                resource,
                f"request {request.get('Id')} for {request.get('DesiredValue')} is still "
                f"{request.get('Status')}; AWS allows one open request per quota",
            )
        require(quota.adjustable, resource, "the quota is not adjustable")
        if dry_run:
            return report_change(
                resource,
                Action.CREATED,
                dry_run=True,
                value=quota.value,
                requested_value=desired_value,
            )
        requested = quotas.request_service_quota_increase(
            ServiceCode=service_code, QuotaCode=quota_code, DesiredValue=desired_value
        )["RequestedQuota"]
        return report_change(
            resource,
            Action.CREATED,
            dry_run=False,
            value=quota.value,
            request_id=requested.get("Id"),
            status=requested.get("Status"),
            requested_value=desired_value,
        )

"""What every AWS job shares: clients built from the block, and AWS errors as typed errors.

Clients come from prefect-aws `AwsCredentials` (AWS itself, or any endpoint such as
moto through ``aws_client_parameters.endpoint_url``) with botocore's own retries
turned off, so that Prefect's retry of `TransientError` is the only retry layer.

An AWS error answer carries an error code that says more than its HTTP status:
throttling comes back as 400 from the JSON protocols, a missing entity as 400 from
some query APIs. `aws_errors` turns the code into the status it means and leaves
the rest to the one error table (`magicflow.errors`).
"""

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    IncompleteReadError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)
from pydantic import JsonValue

from blocks import AwsCredentials
from magicflow import Action, Change, ConflictError, DeadlineExceededError, report
from magicflow.errors import HttpAnswer, typed_errors

# botocore's client option ``max_attempts`` counts *retries*; ``total_max_attempts``
# counts the first attempt too, so 1 means exactly one request and no botocore retry.
NO_CLIENT_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
"""The botocore config every AWS job's client is built with."""


def _codes(status: int, *codes: str) -> dict[str, int]:
    return dict.fromkeys(codes, status)


STATUS_FOR_CODE: dict[str, int] = {
    # Throttling, whatever status the protocol sends it with.
    **_codes(429, "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
             "RequestThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
             "ProvisionedThroughputExceededException", "SlowDown", "EC2ThrottledException",
             "PriorRequestNotComplete"),
    **_codes(503, "ServiceUnavailable", "ServiceUnavailableException"),
    **_codes(500, "InternalError", "InternalFailure", "InternalServerError",
             "InternalServiceError", "InternalServiceErrorException", "KMSInternalException",
             "ServiceException"),
    **_codes(408, "RequestTimeout", "RequestTimeoutException"),
    **_codes(403, "AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
             "UnauthorizedAccess", "AuthFailure", "InvalidClientTokenId", "InvalidAccessKeyId",
             "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
             "UnrecognizedClientException", "DependencyAccessDeniedException"),
    **_codes(404, "NoSuchBucket", "NoSuchEntity", "NoSuchKey", "ParameterNotFound",
             "ResourceNotFoundException", "NotFoundException", "NoSuchResourceException",
             "DBInstanceNotFound", "DBSnapshotNotFound", "InvalidVolume.NotFound",
             "InvalidSnapshot.NotFound"),
    # The resource exists, is busy, is in a state that forbids the change, or a limit is
    # reached: nothing a retry fixes.
    **_codes(409, "BucketAlreadyExists", "BucketAlreadyOwnedByYou", "OperationAborted",
             "ConcurrentModification", "ConcurrentModificationException", "EntityAlreadyExists",
             "DeleteConflict", "AlreadyExistsException", "ParameterAlreadyExists",
             "ResourceExistsException", "ResourceAlreadyExistsException",
             "InvalidResourceStateException", "KMSInvalidStateException",
             "InvalidRequestException", "LimitExceeded", "LimitExceededException",
             "QuotaExceededException", "TooManyTagsException", "ParameterLimitExceeded"),
    **_codes(400, "ValidationException", "ValidationError", "MalformedPolicyDocument",
             "MalformedXML", "InvalidBucketName", "InvalidArgument", "IllegalArgumentException",
             "InvalidInput"),
}  # fmt: skip
"""AWS error code -> the HTTP status it means; other codes keep the answer's status."""


@lru_cache(maxsize=32)
def aws_client(credentials: AwsCredentials, service: str, region: str | None = None) -> Any:
    """A boto3 client built from the block, with botocore's retries off.

    Clients are cached per block, service and region, as prefect-aws's own
    ``get_client`` does: building one parses the service's model, which costs more
    than most calls. boto3 clients are thread-safe.

    Args:
        credentials: The AWS connection block.
        service: The boto3 service name, e.g. ``s3``.
        region: Overrides the block's region.

    Returns:
        The boto3 client.

    Example:
        ```python
        from blocks import AwsCredentials
        from tasks.aws.session import aws_client

        s3 = aws_client(AwsCredentials.load("BLOCK_NAME"), "s3")
        ```
    """
    params = credentials.aws_client_parameters.get_params_override()
    user_config: Config | None = params.pop("config", None)
    params["config"] = user_config.merge(NO_CLIENT_RETRIES) if user_config else NO_CLIENT_RETRIES
    if region or credentials.region_name:
        params["region_name"] = region or credentials.region_name
    client = credentials.get_boto3_session().client(service, **params)
    client.meta.events.register("after-call", _reject_truncated_answer)
    return client


def _reject_truncated_answer(http_response: Any, model: Any, **_: Any) -> None:
    """Raises `IncompleteReadError` (transient, in the error table) for an answer cut short.

    botocore reads answers without checking their length, and parses a JSON body cut
    in the middle as ``{"message": <the fragment>}``: a job would act on an empty
    answer. Streamed bodies and HEAD answers are left to botocore.
    """
    declared = http_response.headers.get("Content-Length")
    if (
        declared is None
        or model.http.get("method") == "HEAD"
        or model.has_streaming_output
        or http_response.headers.get("Content-Encoding")
    ):
        return
    received = len(http_response.content or b"")
    if received < int(declared):
        raise IncompleteReadError(actual_bytes=received, expected_bytes=int(declared))


def error_code(error: ClientError) -> str:
    """The AWS error code of an error answer, e.g. ``NoSuchEntity``."""
    return str(error.response.get("Error", {}).get("Code", ""))


def _answer_reader(carries_secret: bool) -> Callable[[Exception], HttpAnswer | None]:
    def read_answer(error: Exception) -> HttpAnswer | None:
        if isinstance(error, ClientError):
            code = error_code(error)
            answered = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            status = STATUS_FOR_CODE.get(code) or (
                400 if code.startswith("InvalidParameter") else int(answered or 400)
            )
            cause = f"{error.operation_name} failed with {code or status}"
            message = str(error.response.get("Error", {}).get("Message", ""))
            if message and not carries_secret:
                cause += f": {message[:300]}"
            return status, cause
        if isinstance(error, NoCredentialsError | PartialCredentialsError):
            return 401, "no usable AWS credentials in the block"
        if isinstance(error, NoRegionError):
            return 400, "no AWS region in the block or the call"
        if isinstance(error, ParamValidationError):
            # botocore's message quotes the rejected value: left out when it may be a secret.
            detail = "" if carries_secret else f": {str(error)[:300]}"
            return 400, f"request rejected by botocore{detail}"
        return None

    return read_answer


@contextmanager
def aws_errors(resource: str, *, carries_secret: bool = False) -> Iterator[None]:
    """Raises botocore's exceptions inside the block as typed `magicflow.errors`.

    With ``carries_secret`` the request held a secret value: AWS's own message is
    left out, because AWS validation messages may quote the rejected value.

    Args:
        resource: The resource the calls are about.
        carries_secret: Whether a request inside the block holds a secret.

    Yields:
        Nothing; the block runs inside the translation.
    """
    with typed_errors(resource, "calling AWS", _answer_reader(carries_secret)):
        yield


def report_change(
    resource: str, action: Action, *, dry_run: bool, fields: Sequence[str] = (), **facts: JsonValue
) -> Change:
    """Reports a job's `Change`: ``fields`` names what differed; None facts are left out."""
    detail: dict[str, JsonValue] = {key: value for key, value in facts.items() if value is not None}
    if fields:
        detail["fields"] = [*sorted(fields)]
    return report(Change(resource=resource, action=action, dry_run=dry_run, detail=detail))


def call_or_none(codes: set[str], call: Callable[..., Any], **kwargs: Any) -> Any:
    """Calls an AWS read and returns None when it fails with one of ``codes`` (absent)."""
    try:
        return call(**kwargs)
    except ClientError as error:
        if error_code(error) in codes:
            return None
        raise


def paginate(client: Any, operation: str, result_key: str, **kwargs: Any) -> list[Any]:
    """All items of a paginated AWS list call."""
    return [
        item
        for page in client.get_paginator(operation).paginate(**kwargs)
        for item in page.get(result_key, [])
    ]


def wait_until_settled(
    resource: str,
    read: Callable[[], Mapping[str, Any] | None],
    state_key: str,
    settled: Callable[[Any], bool],
    timeout_seconds: float,
    poll_seconds: float,
) -> Mapping[str, Any]:
    """Reads a restored resource until its state has settled (a volume or DB restoring).

    Args:
        resource: The restored resource, named in errors.
        read: Describes it; None when it does not exist.
        state_key: Its state's field, e.g. ``State`` or ``DBInstanceStatus``.
        settled: Whether a state is final (``available``, or a failed state).
        timeout_seconds: Longest wait.
        poll_seconds: Time between two reads.

    Returns:
        The last description read.

    Raises:
        ConflictError: The resource does not exist.
        DeadlineExceededError: It did not settle in time, naming its last state.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        found = read()
        if found is None:
            raise ConflictError(resource, "the restored resource does not exist")
        if settled(found.get(state_key)):
            return found
        if time.monotonic() > deadline:
            raise DeadlineExceededError(
                resource, f"still {found.get(state_key)} after {timeout_seconds:.0f} s"
            )
        time.sleep(poll_seconds)


def delete_each(
    resource: str,
    names: Sequence[str],
    delete: Callable[[str], object],
    *,
    dry_run: bool,
    listed_as: str,
) -> Change:
    """Deletes the scratch resources a cleanup job found, and reports its `Change`.

    Args:
        resource: The cleanup's resource, e.g. ``aws:rds:db/<prefix>*``.
        names: What to delete (ids or names).
        delete: Deletes one; a resource already gone must not raise.
        dry_run: Report the plan without deleting.
        listed_as: The `Change` detail key that lists them, e.g. ``volumes``.

    Returns:
        ``deleted`` with the names under ``listed_as``, or ``unchanged`` when none is left.
    """
    if not names:
        return report_change(resource, Action.UNCHANGED, dry_run=dry_run)
    if not dry_run:
        for name in names:
            delete(name)
    detail: dict[str, JsonValue] = {listed_as: [*names]}
    return report(Change(resource=resource, action=Action.DELETED, dry_run=dry_run, detail=detail))

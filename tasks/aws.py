"""AWS jobs: buckets, roles, keys, parameters, secrets, quotas and disaster-recovery reads.

The writing jobs ensure S3 buckets, IAM roles, KMS keys, SSM parameters, Secrets Manager
secrets and service quota increases; the reads list RDS and EBS snapshots, AWS Backup
recovery points and S3 object versions.

Every job takes prefect-aws `AwsCredentials` (or a saved block's name). The block decides
where the calls go: AWS itself, or a local endpoint such as moto through
``aws_client_parameters.endpoint_url``. Clients are built with botocore's own retries
turned off, so that Prefect's retry of `TransientError` is the only retry layer.

Example:
    ```python
    from prefect import flow
    from blocks import AwsCredentials
    from tasks.aws import ensure_s3_bucket

    @flow
    def bucket_for_tenant(tenant: str):
        return ensure_s3_bucket(AwsCredentials.load("prod"), f"acme-{tenant}-data")
    ```
"""

import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar
from urllib.parse import unquote

from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.parsers import ResponseParserError
from pydantic import BaseModel, ConfigDict, JsonValue, SecretStr

from blocks import AwsCredentials
from magicflow import (
    Action,
    Change,
    ConflictError,
    InvalidInputError,
    MagicFlowError,
    NotFoundError,
    PermissionDeniedError,
    TransientError,
    connection,
    job,
    report,
)

# botocore's client option ``max_attempts`` counts *retries*; ``total_max_attempts``
# counts the first attempt too, so 1 means exactly one request and no botocore retry.
_NO_CLIENT_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})

_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServiceError",
        "InternalServiceErrorException",
        "KMSInternalException",
        "ServiceException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
_PERMISSION_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedAccess",
        "AuthFailure",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "UnrecognizedClientException",
        "DependencyAccessDeniedException",
    }
)
_NOT_FOUND_CODES = frozenset(
    {
        "NoSuchBucket",
        "NoSuchEntity",
        "NoSuchKey",
        "ParameterNotFound",
        "ResourceNotFoundException",
        "NotFoundException",
        "NoSuchResourceException",
        "DBInstanceNotFound",
        "DBSnapshotNotFound",
        "InvalidVolume.NotFound",
        "InvalidSnapshot.NotFound",
    }
)
_CONFLICT_CODES = frozenset(
    {
        "BucketAlreadyExists",
        "BucketAlreadyOwnedByYou",
        "OperationAborted",
        "ConcurrentModification",
        "ConcurrentModificationException",
        "EntityAlreadyExists",
        "DeleteConflict",
        "AlreadyExistsException",
        "ParameterAlreadyExists",
        "ResourceExistsException",
        "ResourceAlreadyExistsException",
        "InvalidResourceStateException",
        "KMSInvalidStateException",
        "InvalidRequestException",
        "LimitExceeded",
        "LimitExceededException",
        "QuotaExceededException",
        "TooManyTagsException",
        "ParameterLimitExceeded",
    }
)
_INVALID_INPUT_CODES = frozenset(
    {
        "ValidationException",
        "ValidationError",
        "MalformedPolicyDocument",
        "MalformedXML",
        "InvalidBucketName",
        "InvalidArgument",
        "IllegalArgumentException",
        "InvalidInput",
    }
)

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
_IAM_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
_IAM_DESCRIPTION = re.compile(r"^[\t\n\r\x20-\x7e\xa1-\xff]*$")
_IAM_POLICY_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")
_MANAGED_POLICY_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(aws|\d{12}):policy/[\w+=,.@/-]{1,128}$")
_POLICY_VERSIONS = ("2012-10-17", "2008-10-17")
_KMS_ALIAS = re.compile(r"^alias/[a-zA-Z0-9/_-]{1,250}$")
_SSM_NAME = re.compile(r"^[a-zA-Z0-9_.\-/]{1,2048}$")
_SECRET_NAME = re.compile(r"^[a-zA-Z0-9/_+=.@-]{1,512}$")
_QUOTA_SERVICE_CODE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,62}$")
_QUOTA_CODE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,127}$")
_RDS_INSTANCE_ID = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")
_EBS_VOLUME_ID = re.compile(r"^vol-[0-9a-f]{8,17}$")
_EBS_OWNER = re.compile(r"^(self|amazon|\d{12})$")
_BACKUP_VAULT_NAME = re.compile(r"^[a-zA-Z0-9_-]{2,50}$")

_TRUST_POLICY_MAX_CHARS = 4096
_INLINE_POLICIES_MAX_CHARS = 10240
_MAX_MANAGED_POLICIES = 20
_MAX_TAGS = 50
_SSM_VALUE_MAX_BYTES = 4096
_SECRET_VALUE_MAX_BYTES = 65536
_QUOTA_VALUE_MAX = 10_000_000_000
_OPEN_QUOTA_REQUEST_STATUSES = frozenset({"PENDING", "CASE_OPENED"})

_Item = TypeVar("_Item", bound="_Dated")


# --- clients and errors -------------------------------------------------------------


@lru_cache(maxsize=32)
def _aws_client(credentials: AwsCredentials, service: str, region: str | None = None) -> Any:
    """A boto3 client built from the block, with botocore's retries off.

    Clients are cached per block, service and region, as prefect-aws's own
    ``get_client`` does: building one parses the service's model, which costs more
    than most calls. boto3 clients are thread-safe.
    """
    params = credentials.aws_client_parameters.get_params_override()
    user_config: Config | None = params.pop("config", None)
    params["config"] = user_config.merge(_NO_CLIENT_RETRIES) if user_config else _NO_CLIENT_RETRIES
    if region or credentials.region_name:
        params["region_name"] = region or credentials.region_name
    return credentials.get_boto3_session().client(service, **params)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def _aws_errors(resource: str, *, carries_secret: bool = False) -> Iterator[None]:
    """Translates botocore's exceptions raised in the block into `magicflow.errors`.

    This is the only place that decides what an AWS failure means. With
    ``carries_secret`` the failed request held a secret value: AWS's own message is
    left out and the original exception is not chained, because AWS validation
    messages may quote the rejected value.
    """
    try:
        yield
    except ClientError as error:
        code = _error_code(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        aws_message = (
            "" if carries_secret else str(error.response.get("Error", {}).get("Message", ""))
        )
        cause = f"{error.operation_name} failed with {code or status}"
        if aws_message:
            cause += f": {aws_message[:300]}"
        error_type: type[MagicFlowError]
        if code in _TRANSIENT_CODES:
            error_type = TransientError
        elif code in _PERMISSION_CODES:
            error_type = PermissionDeniedError
        elif code in _NOT_FOUND_CODES:
            error_type = NotFoundError
        elif code in _CONFLICT_CODES:
            error_type = ConflictError
        elif code in _INVALID_INPUT_CODES or code.startswith("InvalidParameter"):
            error_type = InvalidInputError
        elif status == 429 or status >= 500:
            error_type = TransientError
        elif status in (401, 403):
            error_type = PermissionDeniedError
        elif status == 404:
            error_type = NotFoundError
        elif status in (409, 412):
            error_type = ConflictError
        else:
            error_type = InvalidInputError
        raise error_type(resource, cause) from (None if carries_secret else error)
    except (BotocoreConnectionError, HTTPClientError) as error:
        # Endpoint unreachable, connect/read timeouts, connections closed mid-answer.
        raise TransientError(resource, f"could not reach AWS ({type(error).__name__})") from error
    except ResponseParserError as error:
        # A garbled or truncated answer (a proxy's error page, a cut connection).
        raise TransientError(resource, "AWS sent a response that could not be parsed") from (
            None if carries_secret else error
        )
    except (NoCredentialsError, PartialCredentialsError) as error:
        raise PermissionDeniedError(resource, "no usable AWS credentials in the block") from error
    except NoRegionError as error:
        raise InvalidInputError(resource, "no AWS region in the block or the call") from error
    except ParamValidationError as error:
        detail = "" if carries_secret else f": {str(error)[:300]}"
        raise InvalidInputError(resource, f"request rejected by botocore{detail}") from (
            None if carries_secret else error
        )


def _report(
    resource: str, action: Action, *, dry_run: bool, fields: Sequence[str] = (), **facts: JsonValue
) -> Change:
    """Reports a job's `Change`: ``fields`` names what differed; None facts are left out."""
    detail: dict[str, JsonValue] = {key: value for key, value in facts.items() if value is not None}
    if fields:
        detail["fields"] = [*sorted(fields)]
    return report(Change(resource=resource, action=action, dry_run=dry_run, detail=detail))


def _call_or_none(codes: set[str], call: Callable[..., Any], **kwargs: Any) -> Any:
    """Calls an AWS read and returns None when it fails with one of ``codes`` (absent)."""
    try:
        return call(**kwargs)
    except ClientError as error:
        if _error_code(error) in codes:
            return None
        raise


def _paginate(client: Any, operation: str, result_key: str, **kwargs: Any) -> list[Any]:
    """All items of a paginated AWS list call."""
    return [
        item
        for page in client.get_paginator(operation).paginate(**kwargs)
        for item in page.get(result_key, [])
    ]


# --- input validation ---------------------------------------------------------------


def _require(condition: bool, resource: str, cause: str) -> None:
    if not condition:
        raise InvalidInputError(resource, cause)


def _validate_region(resource: str, region: str | None) -> None:
    if region is not None:
        _require(bool(_REGION.fullmatch(region)), resource, f"{region!r} is not an AWS region name")


def _validate_bucket_name(resource: str, name: str) -> None:
    """S3's bucket naming rules for general purpose buckets."""
    _require(3 <= len(name) <= 63, resource, "a bucket name has 3 to 63 characters")
    _require(
        bool(_BUCKET_NAME.fullmatch(name)),
        resource,
        "a bucket name has only lowercase letters, digits, dots and hyphens, "
        "and starts and ends with a letter or digit",
    )
    _require(".." not in name, resource, "a bucket name has no two adjacent dots")
    _require(not _is_ip_address(name), resource, "a bucket name is not an IP address")
    _require(
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


def _validate_tags(resource: str, tags: Mapping[str, str] | None) -> dict[str, str]:
    tags = dict(tags or {})
    _require(len(tags) <= _MAX_TAGS, resource, f"at most {_MAX_TAGS} tags are allowed")
    for key, value in tags.items():
        _require(
            isinstance(key, str) and 1 <= len(key) <= 128,
            resource,
            "a tag key has 1 to 128 characters",
        )
        _require(not key.lower().startswith("aws:"), resource, f"tag key {key!r} uses aws:")
        _require(
            isinstance(value, str) and len(value) <= 256,
            resource,
            f"the value of tag {key!r} is a string of at most 256 characters",
        )
    return tags


def _validate_description(resource: str, description: str, max_chars: int) -> None:
    _require(
        isinstance(description, str) and len(description) <= max_chars,
        resource,
        f"the description is a string of at most {max_chars} characters",
    )


def _validate_policy(resource: str, label: str, document: Any, *, trust: bool) -> str:
    """Checks an IAM policy's structure and returns its compact JSON text."""
    _require(isinstance(document, Mapping), resource, f"{label} is a JSON object")
    try:
        text = json.dumps(document, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        raise InvalidInputError(resource, f"{label} is not JSON-serialisable") from None
    version = document.get("Version", _POLICY_VERSIONS[0])
    _require(version in _POLICY_VERSIONS, resource, f"{label} has an unknown Version {version!r}")
    statements = document.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    _require(
        isinstance(statements, list) and len(statements) > 0,
        resource,
        f"{label} needs a non-empty Statement",
    )
    for index, statement in enumerate(statements):
        where = f"{label} Statement[{index}]"
        _require(isinstance(statement, Mapping), resource, f"{where} is a JSON object")
        _require(
            statement.get("Effect") in ("Allow", "Deny"),
            resource,
            f"{where} needs Effect Allow or Deny",
        )
        _require(
            "Action" in statement or "NotAction" in statement,
            resource,
            f"{where} needs Action or NotAction",
        )
        if trust:
            _require(
                "Principal" in statement or "NotPrincipal" in statement,
                resource,
                f"{where} needs a Principal",
            )
        else:
            _require(
                "Resource" in statement or "NotResource" in statement,
                resource,
                f"{where} needs Resource or NotResource",
            )
            _require("Principal" not in statement, resource, f"{where} may not name a Principal")
    return text


def _secret_text(resource: str, value: SecretStr, max_bytes: int) -> str:
    _require(isinstance(value, SecretStr), resource, "the value must be a pydantic SecretStr")
    text = value.get_secret_value()
    _require(len(text) > 0, resource, "the value is empty")
    _require(
        len(text.encode()) <= max_bytes, resource, f"the value is longer than {max_bytes} bytes"
    )
    return text


# --- shared state comparison --------------------------------------------------------


def _tag_dict(
    items: Sequence[Mapping[str, str]], key: str = "Key", value: str = "Value"
) -> dict[str, str]:
    return {item[key]: item.get(value, "") for item in items}


def _tag_list(
    tags: Mapping[str, str], key: str = "Key", value: str = "Value"
) -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in sorted(tags.items())]


def _tag_changes(
    current: Mapping[str, str], desired: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Tags to set and tag keys to remove so that ``current`` becomes ``desired``.

    Tags under ``aws:`` belong to AWS and are left alone.
    """
    to_set = {key: value for key, value in desired.items() if current.get(key) != value}
    to_remove = sorted(key for key in current if key not in desired and not key.startswith("aws:"))
    return to_set, to_remove


def _parse_policy(document: Any) -> Any:
    """A policy document as parsed JSON; IAM returns URL-encoded text from some calls."""
    if isinstance(document, str):
        text = document if document.lstrip().startswith("{") else unquote(document)
        return json.loads(text)
    return document


class _Dated(BaseModel):
    created: datetime | None


def _newest_first(items: list[_Item]) -> list[_Item]:
    """Sorts by creation time, newest first; items still being created come first."""
    latest = datetime.max.replace(tzinfo=UTC)
    return sorted(items, key=lambda item: item.created or latest, reverse=True)


# --- S3 buckets ---------------------------------------------------------------------


def _bucket_region(s3: Any, name: str) -> str:
    constraint = s3.get_bucket_location(Bucket=name).get("LocationConstraint")
    # S3 reports us-east-1 as no constraint, and eu-west-1 as "EU" for very old buckets.
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(constraint, constraint)


def _read_bucket_settings(s3: Any, name: str) -> dict[str, Any]:
    versioning = s3.get_bucket_versioning(Bucket=name).get("Status") == "Enabled"
    encryption = _call_or_none(
        {"ServerSideEncryptionConfigurationNotFoundError"}, s3.get_bucket_encryption, Bucket=name
    )
    default_sse: dict[str, Any] = {}
    if encryption:
        rules = encryption["ServerSideEncryptionConfiguration"].get("Rules", [])
        default_sse = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    public_access = _call_or_none(
        {"NoSuchPublicAccessBlockConfiguration"}, s3.get_public_access_block, Bucket=name
    )
    flags = (public_access or {}).get("PublicAccessBlockConfiguration", {})
    tagging = _call_or_none({"NoSuchTagSet"}, s3.get_bucket_tagging, Bucket=name)
    return {
        "versioning": versioning,
        "encryption": (default_sse.get("SSEAlgorithm"), default_sse.get("KMSMasterKeyID")),
        "block_public_access": tuple(bool(flags.get(flag)) for flag in _PUBLIC_ACCESS_FLAGS),
        "tags": {
            key: value
            for key, value in _tag_dict((tagging or {}).get("TagSet", [])).items()
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
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tag_list(desired["tags"])})
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
    _validate_bucket_name(resource, name)
    _validate_region(resource, region)
    _require(encryption in ("AES256", "aws:kms"), resource, "encryption is AES256 or aws:kms")
    _require(
        kms_key_id is None or encryption == "aws:kms",
        resource,
        "kms_key_id needs encryption='aws:kms'",
    )
    desired: dict[str, Any] = {
        "versioning": versioning,
        "encryption": (encryption, kms_key_id),
        "block_public_access": (block_public_access,) * len(_PUBLIC_ACCESS_FLAGS),
        "tags": _validate_tags(resource, tags),
    }
    credentials = connection(aws_credentials, AwsCredentials)
    with _aws_errors(resource):
        s3 = _aws_client(credentials, "s3", region)
        target_region = region or s3.meta.region_name
        _validate_region(resource, target_region)
        exists = _call_or_none({"404", "NoSuchBucket", "NotFound"}, s3.head_bucket, Bucket=name)
        if exists is None:
            if dry_run:
                return _report(resource, Action.CREATED, dry_run=True, region=target_region)
            location = {} if target_region == "us-east-1" else {"LocationConstraint": target_region}
            s3.create_bucket(
                Bucket=name, **({"CreateBucketConfiguration": location} if location else {})
            )
            current = _read_bucket_settings(s3, name)
            fields = [field for field in desired if desired[field] != current[field]]
            _apply_bucket_settings(s3, name, desired, fields)
            return _report(resource, Action.CREATED, dry_run=False, region=target_region)
        actual_region = _bucket_region(s3, name)
        if region is not None and actual_region != region:
            raise ConflictError(resource, f"the bucket exists in {actual_region}, not in {region}")
        current = _read_bucket_settings(s3, name)
        fields = [field for field in desired if desired[field] != current[field]]
        if not fields:
            return _report(resource, Action.UNCHANGED, dry_run=dry_run)
        if not dry_run:
            _apply_bucket_settings(s3, name, desired, fields)
        return _report(resource, Action.UPDATED, dry_run=dry_run, fields=fields)


# --- IAM roles ----------------------------------------------------------------------


def _read_role(iam: Any, name: str) -> dict[str, Any] | None:
    found = _call_or_none({"NoSuchEntity"}, iam.get_role, RoleName=name)
    if found is None:
        return None
    role = found["Role"]
    inline_names = _paginate(iam, "list_role_policies", "PolicyNames", RoleName=name)
    return {
        "description": role.get("Description", ""),
        "trust_policy": _parse_policy(role["AssumeRolePolicyDocument"]),
        "tags": _tag_dict(_paginate(iam, "list_role_tags", "Tags", RoleName=name)),
        "managed_policies": {
            policy["PolicyArn"]
            for policy in _paginate(
                iam, "list_attached_role_policies", "AttachedPolicies", RoleName=name
            )
        },
        "inline_policies": {
            policy_name: _parse_policy(
                iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
            )
            for policy_name in inline_names
        },
    }


@job
def ensure_iam_role(
    aws_credentials: AwsCredentials | str,
    name: str,
    trust_policy: dict[str, Any],
    managed_policy_arns: Sequence[str] = (),
    inline_policies: Mapping[str, Mapping[str, Any]] | None = None,
    tags: Mapping[str, str] | None = None,
    description: str = "",
    dry_run: bool = False,
) -> Change:
    """Ensures an IAM role with exactly the given trust policy, policies, tags and description.

    Policies are compared as parsed JSON, so key order and whitespace never count as a
    difference. Managed policies are attached and detached, and inline policies put and
    deleted, until the role has exactly the ones given.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name: The role name.
        trust_policy: Who may assume the role (the assume-role policy document).
        managed_policy_arns: ARNs of the managed policies the role has attached.
        inline_policies: The role's inline policies, by policy name.
        tags: The role's complete tag set; tags not listed are removed.
        description: The role's description.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:iam:role/<name>``; ``detail["fields"]`` names what differed
        (``description``, ``trust_policy``, ``tags``, ``managed_policies``, ``inline_policies``).

    Raises:
        InvalidInputError: Bad name, malformed policy document or ARN; nothing written.
        NotFoundError: A managed policy to attach does not exist; nothing written.
        PermissionDeniedError: The credentials may not read or change the role.
        ConflictError: Concurrent modification, or an IAM limit reached.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import ensure_iam_role

        TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                 "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}

        @flow
        def deployer_role():
            ensure_iam_role("prod-aws", "acme-deployer", TRUST,
                            ["arn:aws:iam::aws:policy/ReadOnlyAccess"])
        ```
    """
    resource = f"aws:iam:role/{name}"
    _require(
        bool(_IAM_NAME.fullmatch(name)), resource, "a role name has 1 to 64 of [A-Za-z0-9+=,.@_-]"
    )
    _validate_description(resource, description, 1000)
    _require(
        bool(_IAM_DESCRIPTION.fullmatch(description)),
        resource,
        "a role description has only printable Latin-1 characters",
    )
    trust_text = _validate_policy(resource, "trust_policy", trust_policy, trust=True)
    _require(
        len(trust_text) <= _TRUST_POLICY_MAX_CHARS,
        resource,
        f"trust_policy is longer than {_TRUST_POLICY_MAX_CHARS} characters",
    )
    managed = list(managed_policy_arns)
    for arn in managed:
        _require(
            bool(_MANAGED_POLICY_ARN.fullmatch(arn)),
            resource,
            f"{arn!r} is not a managed policy ARN",
        )
    _require(len(set(managed)) == len(managed), resource, "managed_policy_arns has duplicates")
    _require(
        len(managed) <= _MAX_MANAGED_POLICIES,
        resource,
        f"at most {_MAX_MANAGED_POLICIES} managed policies per role",
    )
    inline = dict(inline_policies or {})
    inline_size = 0
    for policy_name, document in inline.items():
        _require(
            bool(_IAM_POLICY_NAME.fullmatch(policy_name)),
            resource,
            f"inline policy name {policy_name!r} has 1 to 128 of [A-Za-z0-9+=,.@_-]",
        )
        inline_size += len(
            _validate_policy(resource, f"inline policy {policy_name}", document, trust=False)
        )
    _require(
        inline_size <= _INLINE_POLICIES_MAX_CHARS,
        resource,
        f"inline policies are longer than {_INLINE_POLICIES_MAX_CHARS} characters in total",
    )
    desired: dict[str, Any] = {
        "description": description,
        "trust_policy": _parse_policy(trust_text),
        "tags": _validate_tags(resource, tags),
        "managed_policies": set(managed),
        "inline_policies": {key: _parse_policy(json.dumps(doc)) for key, doc in inline.items()},
    }
    credentials = connection(aws_credentials, AwsCredentials)
    with _aws_errors(resource):
        iam = _aws_client(credentials, "iam")
        current = _read_role(iam, name)
        attached = current["managed_policies"] if current else set()
        # Checked before any write, so that a typo in an ARN leaves no half-made role behind.
        for arn in sorted(desired["managed_policies"] - attached):
            if _call_or_none({"NoSuchEntity"}, iam.get_policy, PolicyArn=arn) is None:
                raise NotFoundError(resource, f"managed policy {arn} does not exist")
        if current is None:
            if not dry_run:
                iam.create_role(
                    RoleName=name,
                    AssumeRolePolicyDocument=json.dumps(trust_policy),
                    Description=description,
                    Tags=_tag_list(desired["tags"]),
                )
                for arn in sorted(desired["managed_policies"]):
                    iam.attach_role_policy(RoleName=name, PolicyArn=arn)
                for policy_name, document in sorted(inline.items()):
                    iam.put_role_policy(
                        RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
                    )
            return _report(resource, Action.CREATED, dry_run=dry_run)
        fields = [field for field in desired if desired[field] != current[field]]
        if not fields:
            return _report(resource, Action.UNCHANGED, dry_run=dry_run)
        if not dry_run:
            _apply_role_changes(iam, name, desired, current, trust_policy, inline)
        return _report(resource, Action.UPDATED, dry_run=dry_run, fields=fields)


def _apply_role_changes(
    iam: Any,
    name: str,
    desired: Mapping[str, Any],
    current: Mapping[str, Any],
    trust_policy: Mapping[str, Any],
    inline: Mapping[str, Mapping[str, Any]],
) -> None:
    if desired["description"] != current["description"]:
        iam.update_role(RoleName=name, Description=desired["description"])
    if desired["trust_policy"] != current["trust_policy"]:
        iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust_policy))
    to_tag, to_untag = _tag_changes(current["tags"], desired["tags"])
    if to_tag:
        iam.tag_role(RoleName=name, Tags=_tag_list(to_tag))
    if to_untag:
        iam.untag_role(RoleName=name, TagKeys=to_untag)
    # Grant new permissions before taking old ones away, so the role never has neither.
    for arn in sorted(desired["managed_policies"] - current["managed_policies"]):
        iam.attach_role_policy(RoleName=name, PolicyArn=arn)
    for policy_name, document in sorted(inline.items()):
        if current["inline_policies"].get(policy_name) != desired["inline_policies"][policy_name]:
            iam.put_role_policy(
                RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
            )
    for arn in sorted(current["managed_policies"] - desired["managed_policies"]):
        iam.detach_role_policy(RoleName=name, PolicyArn=arn)
    for policy_name in sorted(set(current["inline_policies"]) - set(inline)):
        iam.delete_role_policy(RoleName=name, PolicyName=policy_name)


# --- KMS keys -----------------------------------------------------------------------


def _kms_tags(kms: Any, key_id: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    marker: dict[str, str] = {}
    while True:
        page = kms.list_resource_tags(KeyId=key_id, **marker)
        tags.update(_tag_dict(page.get("Tags", []), "TagKey", "TagValue"))
        if not page.get("Truncated"):
            return tags
        marker = {"Marker": page["NextMarker"]}


@job
def ensure_kms_key(
    aws_credentials: AwsCredentials | str,
    alias: str,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> Change:
    """Ensures a customer-managed KMS key behind an alias, with the given description and tags.

    The alias identifies the key: when it does not exist, a symmetric encryption key is
    created and the alias pointed at it; when it does, the key's description and tags are
    brought in line.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        alias: The alias, with or without the ``alias/`` prefix (``alias/aws/`` is AWS's).
        description: The key's description.
        tags: The key's complete tag set; tags not listed are removed.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:kms:alias/<alias>``; ``detail["key_id"]`` is the key id
        (absent in a dry run that would create the key) and ``detail["fields"]`` names
        what differed.

    Raises:
        InvalidInputError: Bad alias, description or tags; nothing written.
        ConflictError: The aliased key is pending deletion.
        PermissionDeniedError: The credentials may not read or change the key.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import ensure_kms_key

        @flow
        def tenant_key():
            ensure_kms_key("prod-aws", "alias/acme-prod", description="acme data at rest")
        ```
    """
    alias_name = alias if alias.startswith("alias/") else f"alias/{alias}"
    resource = f"aws:kms:{alias_name}"
    _require(
        bool(_KMS_ALIAS.fullmatch(alias_name)),
        resource,
        "an alias has 1 to 250 of [A-Za-z0-9/_-] after alias/",
    )
    _require(not alias_name.startswith("alias/aws/"), resource, "alias/aws/ is reserved for AWS")
    _validate_description(resource, description, 8192)
    desired_tags = _validate_tags(resource, tags)
    credentials = connection(aws_credentials, AwsCredentials)
    with _aws_errors(resource):
        kms = _aws_client(credentials, "kms")
        found = _call_or_none({"NotFoundException"}, kms.describe_key, KeyId=alias_name)
        if found is None:
            if dry_run:
                return _report(resource, Action.CREATED, dry_run=True)
            key_id = kms.create_key(
                Description=description, Tags=_tag_list(desired_tags, "TagKey", "TagValue")
            )["KeyMetadata"]["KeyId"]
            kms.create_alias(AliasName=alias_name, TargetKeyId=key_id)
            return _report(resource, Action.CREATED, dry_run=False, key_id=key_id)
        metadata = found["KeyMetadata"]
        key_id = metadata["KeyId"]
        if metadata.get("KeyState") in ("PendingDeletion", "PendingReplicaDeletion"):
            raise ConflictError(
                resource, f"key {key_id} is pending deletion; cancel the deletion first"
            )
        to_tag, to_untag = _tag_changes(_kms_tags(kms, key_id), desired_tags)
        fields = []
        if metadata.get("Description", "") != description:
            fields.append("description")
        if to_tag or to_untag:
            fields.append("tags")
        if not fields:
            return _report(resource, Action.UNCHANGED, dry_run=dry_run, key_id=key_id)
        if not dry_run:
            if "description" in fields:
                kms.update_key_description(KeyId=key_id, Description=description)
            if to_tag:
                kms.tag_resource(KeyId=key_id, Tags=_tag_list(to_tag, "TagKey", "TagValue"))
            if to_untag:
                kms.untag_resource(KeyId=key_id, TagKeys=to_untag)
        return _report(resource, Action.UPDATED, dry_run=dry_run, key_id=key_id, fields=fields)


# --- SSM parameters -----------------------------------------------------------------


@job
def put_ssm_parameter(
    aws_credentials: AwsCredentials | str,
    name: str,
    value: SecretStr,
    type: Literal["String", "StringList", "SecureString"] = "SecureString",
    description: str = "",
    tags: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> Change:
    """Ensures an SSM parameter holds a value, overwriting it only when it differs.

    The current value is read with decryption and compared in memory; it is never
    logged, returned or put in an error message.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name: The parameter name, for example ``/acme/db/password``.
        value: The value (standard tier: at most 4096 bytes).
        type: ``SecureString`` (encrypted with the account's ``aws/ssm`` key),
            ``String`` or ``StringList``.
        description: The parameter's description.
        tags: The parameter's complete tag set; tags not listed are removed.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:ssm:parameter/<name>``; ``detail["version"]`` is the
        parameter version after the job, ``detail["fields"]`` names what differed
        (``value``, ``type``, ``description``, ``tags``).

    Raises:
        InvalidInputError: Bad name, type, empty or oversized value; nothing written.
        PermissionDeniedError: The credentials may not read, decrypt or write it.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from pydantic import SecretStr
        from tasks.aws import put_ssm_parameter

        @flow
        def db_password(password: SecretStr):
            put_ssm_parameter("prod-aws", "/acme/db/password", password)
        ```
    """
    resource = f"aws:ssm:parameter/{name}"
    _require(
        bool(_SSM_NAME.fullmatch(name)),
        resource,
        "a parameter name has 1 to 2048 of [A-Za-z0-9_.-/]",
    )
    _require(
        "/" not in name or name.startswith("/"),
        resource,
        "a hierarchical parameter name starts with /",
    )
    _require(name.count("/") <= 15, resource, "a parameter name has at most 15 levels")
    _require(
        not name.lstrip("/").lower().startswith(("aws", "ssm")),
        resource,
        "parameter names starting with aws or ssm are reserved",
    )
    _require(
        type in ("String", "StringList", "SecureString"),
        resource,
        "type is String, StringList or SecureString",
    )
    _validate_description(resource, description, 1024)
    desired_tags = _validate_tags(resource, tags)
    text = _secret_text(resource, value, _SSM_VALUE_MAX_BYTES)
    credentials = connection(aws_credentials, AwsCredentials)
    with _aws_errors(resource, carries_secret=True):
        ssm = _aws_client(credentials, "ssm")
        found = _call_or_none(
            {"ParameterNotFound"}, ssm.get_parameter, Name=name, WithDecryption=True
        )
        if found is None:
            version = None
            if not dry_run:
                version = ssm.put_parameter(
                    Name=name,
                    Value=text,
                    Type=type,
                    Description=description,
                    **({"Tags": _tag_list(desired_tags)} if desired_tags else {}),
                )["Version"]
            return _report(resource, Action.CREATED, dry_run=dry_run, version=version)
        parameter = found["Parameter"]
        version = parameter["Version"]
        described = ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
        )["Parameters"]
        current_tags = _tag_dict(
            ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name).get("TagList", [])
        )
        fields = []
        if parameter["Value"] != text:
            fields.append("value")
        if parameter["Type"] != type:
            fields.append("type")
        if (described[0].get("Description", "") if described else "") != description:
            fields.append("description")
        to_tag, to_untag = _tag_changes(current_tags, desired_tags)
        if to_tag or to_untag:
            fields.append("tags")
        if not fields:
            return _report(resource, Action.UNCHANGED, dry_run=dry_run, version=version)
        if not dry_run:
            if {"value", "type", "description"} & set(fields):
                version = ssm.put_parameter(
                    Name=name, Value=text, Type=type, Description=description, Overwrite=True
                )["Version"]
            if to_tag:
                ssm.add_tags_to_resource(
                    ResourceType="Parameter", ResourceId=name, Tags=_tag_list(to_tag)
                )
            if to_untag:
                ssm.remove_tags_from_resource(
                    ResourceType="Parameter", ResourceId=name, TagKeys=to_untag
                )
        return _report(resource, Action.UPDATED, dry_run=dry_run, version=version, fields=fields)


# --- Secrets Manager ----------------------------------------------------------------


@job
def ensure_secretsmanager_secret(
    aws_credentials: AwsCredentials | str,
    name: str,
    value: SecretStr,
    description: str = "",
    tags: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> Change:
    """Ensures a Secrets Manager secret whose current version holds a value.

    A new version is put only when the value differs from the current one; the values
    are compared in memory and never logged, returned or put in an error message.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name: The secret name, for example ``acme/db``.
        value: The secret string (at most 64 KiB).
        description: The secret's description.
        tags: The secret's complete tag set; tags not listed are removed.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:secretsmanager:secret/<name>``; ``detail["version_id"]``
        is the current version id after the job, ``detail["fields"]`` names what differed
        (``value``, ``description``, ``tags``).

    Raises:
        InvalidInputError: Bad name, empty or oversized value; nothing written.
        ConflictError: The secret is scheduled for deletion (restore it first).
        PermissionDeniedError: The credentials may not read, decrypt or write it.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from pydantic import SecretStr
        from tasks.aws import ensure_secretsmanager_secret

        @flow
        def db_secret(password: SecretStr):
            ensure_secretsmanager_secret("prod-aws", "acme/db", password)
        ```
    """
    resource = f"aws:secretsmanager:secret/{name}"
    _require(
        bool(_SECRET_NAME.fullmatch(name)),
        resource,
        "a secret name has 1 to 512 of [A-Za-z0-9/_+=.@-]",
    )
    _validate_description(resource, description, 2048)
    desired_tags = _validate_tags(resource, tags)
    text = _secret_text(resource, value, _SECRET_VALUE_MAX_BYTES)
    credentials = connection(aws_credentials, AwsCredentials)
    with _aws_errors(resource, carries_secret=True):
        secrets = _aws_client(credentials, "secretsmanager")
        described = _call_or_none(
            {"ResourceNotFoundException"}, secrets.describe_secret, SecretId=name
        )
        if described is None:
            version_id = None
            if not dry_run:
                version_id = secrets.create_secret(
                    Name=name,
                    SecretString=text,
                    Description=description,
                    **({"Tags": _tag_list(desired_tags)} if desired_tags else {}),
                )["VersionId"]
            return _report(resource, Action.CREATED, dry_run=dry_run, version_id=version_id)
        if described.get("DeletedDate"):
            raise ConflictError(resource, "the secret is scheduled for deletion; restore it first")
        current = _call_or_none(
            {"ResourceNotFoundException"}, secrets.get_secret_value, SecretId=name
        )
        version_id = current.get("VersionId") if current else None
        fields = []
        if current is None or current.get("SecretString") != text:
            fields.append("value")
        if described.get("Description", "") != description:
            fields.append("description")
        to_tag, to_untag = _tag_changes(_tag_dict(described.get("Tags", [])), desired_tags)
        if to_tag or to_untag:
            fields.append("tags")
        if not fields:
            return _report(resource, Action.UNCHANGED, dry_run=dry_run, version_id=version_id)
        if not dry_run:
            if "value" in fields:
                version_id = secrets.put_secret_value(SecretId=name, SecretString=text)["VersionId"]
            if "description" in fields:
                secrets.update_secret(SecretId=name, Description=description)
            if to_tag:
                secrets.tag_resource(SecretId=name, Tags=_tag_list(to_tag))
            if to_untag:
                secrets.untag_resource(SecretId=name, TagKeys=to_untag)
        return _report(
            resource, Action.UPDATED, dry_run=dry_run, version_id=version_id, fields=fields
        )


# --- Service Quotas -----------------------------------------------------------------


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
    _require(
        bool(_QUOTA_SERVICE_CODE.fullmatch(service_code)),
        resource,
        "a service code is a letter then up to 62 of [A-Za-z0-9-]",
    )
    _require(
        bool(_QUOTA_CODE.fullmatch(quota_code)),
        resource,
        "a quota code is a letter then up to 127 of [A-Za-z0-9-]",
    )


def _read_service_quota(
    quotas: Any, resource: str, service_code: str, quota_code: str
) -> ServiceQuota:
    codes = {"ServiceCode": service_code, "QuotaCode": quota_code}
    found = _call_or_none({"NoSuchResourceException"}, quotas.get_service_quota, **codes)
    is_default = found is None
    if is_default:
        # Quotas without an applied value are only known by their AWS default.
        found = _call_or_none(
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
    with _aws_errors(resource):
        quotas = _aws_client(credentials, "service-quotas")
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
    _require(
        isinstance(desired_value, int | float)
        and not isinstance(desired_value, bool)
        and math.isfinite(desired_value)
        and 0 < desired_value <= _QUOTA_VALUE_MAX,
        resource,
        f"desired_value is a number above 0 and at most {_QUOTA_VALUE_MAX}",
    )
    credentials = connection(aws_credentials, AwsCredentials)
    with _aws_errors(resource):
        quotas = _aws_client(credentials, "service-quotas")
        quota = _read_service_quota(quotas, resource, service_code, quota_code)
        if quota.value >= desired_value:
            return _report(resource, Action.UNCHANGED, dry_run=dry_run, value=quota.value)
        history = _paginate(
            quotas,
            "list_requested_service_quota_change_history_by_quota",
            "RequestedQuotas",
            ServiceCode=service_code,
            QuotaCode=quota_code,
        )
        open_requests = [r for r in history if r.get("Status") in _OPEN_QUOTA_REQUEST_STATUSES]
        for request in open_requests:
            if request.get("DesiredValue", 0) >= desired_value:
                return _report(
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
        _require(quota.adjustable, resource, "the quota is not adjustable")
        if dry_run:
            return _report(
                resource,
                Action.CREATED,
                dry_run=True,
                value=quota.value,
                requested_value=desired_value,
            )
        requested = quotas.request_service_quota_increase(
            ServiceCode=service_code, QuotaCode=quota_code, DesiredValue=desired_value
        )["RequestedQuota"]
        return _report(
            resource,
            Action.CREATED,
            dry_run=False,
            value=quota.value,
            request_id=requested.get("Id"),
            status=requested.get("Status"),
            requested_value=desired_value,
        )


# --- disaster-recovery reads --------------------------------------------------------


class RdsSnapshot(_Dated):
    """An RDS DB snapshot.

    Attributes:
        identifier: The snapshot identifier.
        db_instance_identifier: The instance it was taken of.
        status: For example ``available`` or ``creating``.
        snapshot_type: ``manual``, ``automated`` or ``awsbackup``.
        engine: The database engine.
        encrypted: Whether the snapshot is encrypted.
        allocated_storage_gib: The instance's storage when the snapshot was taken.
        created: When the snapshot was taken (None while it is being created).
    """

    model_config = ConfigDict(frozen=True)

    identifier: str
    db_instance_identifier: str | None = None
    status: str | None = None
    snapshot_type: str | None = None
    engine: str | None = None
    encrypted: bool = False
    allocated_storage_gib: int | None = None


class EbsSnapshot(_Dated):
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


class BackupRecoveryPoint(_Dated):
    """An AWS Backup recovery point.

    Attributes:
        recovery_point_arn: The recovery point's ARN.
        backup_vault_name: The vault that holds it.
        resource_arn: The resource it backs up.
        resource_type: For example ``EBS`` or ``RDS``.
        status: ``COMPLETED``, ``PARTIAL``, ``CREATING``...
        completed: When the backup job finished.
        backup_size_bytes: The backup's size.
        created: When the recovery point was created.
    """

    model_config = ConfigDict(frozen=True)

    recovery_point_arn: str
    backup_vault_name: str | None = None
    resource_arn: str | None = None
    resource_type: str | None = None
    status: str | None = None
    completed: datetime | None = None
    backup_size_bytes: int | None = None


class S3ObjectVersion(_Dated):
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
def list_rds_snapshots(
    aws_credentials: AwsCredentials | str, db_instance_identifier: str | None = None
) -> list[RdsSnapshot]:
    """Lists RDS DB snapshots, newest first.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        db_instance_identifier: Only snapshots of this DB instance; all when omitted.

    Returns:
        The snapshots, newest first (snapshots still being created come first).

    Raises:
        InvalidInputError: Malformed instance identifier.
        PermissionDeniedError: The credentials may not describe snapshots.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import list_rds_snapshots

        @flow
        def latest_db_snapshot():
            return list_rds_snapshots("prod-aws", "acme-db")[0].created
        ```
    """
    resource = f"aws:rds:db/{db_instance_identifier or '*'}"
    _require(
        db_instance_identifier is None or bool(_RDS_INSTANCE_ID.fullmatch(db_instance_identifier)),
        resource,
        "a DB instance identifier is a letter then up to 62 of [A-Za-z0-9-]",
    )
    credentials = connection(aws_credentials, AwsCredentials)
    with _aws_errors(resource):
        rds = _aws_client(credentials, "rds")
        query = {"DBInstanceIdentifier": db_instance_identifier} if db_instance_identifier else {}
        snapshots = _paginate(rds, "describe_db_snapshots", "DBSnapshots", **query)
    return _newest_first(
        [
            RdsSnapshot(
                identifier=snapshot["DBSnapshotIdentifier"],
                db_instance_identifier=snapshot.get("DBInstanceIdentifier"),
                status=snapshot.get("Status"),
                snapshot_type=snapshot.get("SnapshotType"),
                engine=snapshot.get("Engine"),
                encrypted=bool(snapshot.get("Encrypted")),
                allocated_storage_gib=snapshot.get("AllocatedStorage"),
                created=snapshot.get("SnapshotCreateTime"),
            )
            for snapshot in snapshots
        ]
    )


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
    _require(
        volume_id is None or bool(_EBS_VOLUME_ID.fullmatch(volume_id)),
        resource,
        "a volume id looks like vol-0123456789abcdef0",
    )
    _require(bool(_EBS_OWNER.fullmatch(owner)), resource, "owner is self, amazon or an account id")
    credentials = connection(aws_credentials, AwsCredentials)
    with _aws_errors(resource):
        ec2 = _aws_client(credentials, "ec2")
        filters = [{"Name": "volume-id", "Values": [volume_id]}] if volume_id else []
        snapshots = _paginate(
            ec2, "describe_snapshots", "Snapshots", OwnerIds=[owner], Filters=filters
        )
    return _newest_first(
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


@job
def list_backup_recovery_points(
    aws_credentials: AwsCredentials | str, backup_vault_name: str
) -> list[BackupRecoveryPoint]:
    """Lists the recovery points in an AWS Backup vault, newest first.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        backup_vault_name: The backup vault.

    Returns:
        The recovery points, newest first.

    Raises:
        InvalidInputError: Malformed vault name.
        NotFoundError: No such vault.
        PermissionDeniedError: The credentials may not list recovery points.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import list_backup_recovery_points

        @flow
        def last_backup_status():
            return list_backup_recovery_points("prod-aws", "acme-vault")[0].status
        ```
    """
    resource = f"aws:backup:vault/{backup_vault_name}"
    _require(
        bool(_BACKUP_VAULT_NAME.fullmatch(backup_vault_name)),
        resource,
        "a vault name has 2 to 50 of [A-Za-z0-9_-]",
    )
    credentials = connection(aws_credentials, AwsCredentials)
    with _aws_errors(resource):
        backup = _aws_client(credentials, "backup")
        points = _paginate(
            backup,
            "list_recovery_points_by_backup_vault",
            "RecoveryPoints",
            BackupVaultName=backup_vault_name,
        )
    return _newest_first(
        [
            BackupRecoveryPoint(
                recovery_point_arn=point["RecoveryPointArn"],
                backup_vault_name=point.get("BackupVaultName"),
                resource_arn=point.get("ResourceArn"),
                resource_type=point.get("ResourceType"),
                status=point.get("Status"),
                completed=point.get("CompletionDate"),
                backup_size_bytes=point.get("BackupSizeInBytes"),
                created=point.get("CreationDate"),
            )
            for point in points
        ]
    )


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
    _validate_bucket_name(resource, bucket)
    credentials = connection(aws_credentials, AwsCredentials)
    with _aws_errors(resource):
        s3 = _aws_client(credentials, "s3")
        versions: list[S3ObjectVersion] = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Versions", []):
                versions.append(_object_version(entry, is_delete_marker=False))
            for entry in page.get("DeleteMarkers", []):
                versions.append(_object_version(entry, is_delete_marker=True))
    # LastModified has one-second resolution: among equal times the latest version wins.
    versions.sort(key=lambda version: not version.is_latest)
    return _newest_first(versions)


def _object_version(entry: Mapping[str, Any], *, is_delete_marker: bool) -> S3ObjectVersion:
    return S3ObjectVersion(
        key=entry["Key"],
        version_id=entry.get("VersionId", "null"),
        is_latest=bool(entry.get("IsLatest")),
        is_delete_marker=is_delete_marker,
        size=None if is_delete_marker else entry.get("Size"),
        created=entry.get("LastModified"),
    )

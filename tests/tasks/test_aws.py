"""AWS jobs against a real moto server, and a loopback fake for what moto lacks.

Every write is read back with an independent boto3 client. Service Quotas and AWS Backup
recovery points run against ``tests/backends/aws_quota_fake.py``, which speaks their real
wire protocols. Failures are injected by the fault proxy as real AWS error bodies, so
botocore parses the same error codes it would get from AWS.
"""

import json
import time
from functools import cache
from typing import Any

import boto3
import pytest
from botocore.config import Config
from prefect import flow
from pydantic import SecretStr

from magicflow import (
    Action,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    TransientError,
)
from tasks.aws import (
    ensure_iam_role,
    ensure_kms_key,
    ensure_s3_bucket,
    ensure_secretsmanager_secret,
    get_service_quota,
    list_backup_recovery_points,
    list_ebs_snapshots,
    list_rds_snapshots,
    list_s3_object_versions,
    put_ssm_parameter,
    request_service_quota_increase,
)
from tests.fixtures.aws import AWS_REGION, aws_credentials_for, fake_state, seed_fake

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
READ_BUCKETS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::acme/*"}],
}
WRITE_BUCKETS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::acme/*"}],
}
S3_SLOW_DOWN = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    "<RequestId>fault</RequestId></Error>"
)
S3_ACCESS_DENIED = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
    "<RequestId>fault</RequestId></Error>"
)
IAM_ACCESS_DENIED = (
    '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
    "<Code>AccessDenied</Code><Message>not authorized to perform iam:GetRole</Message></Error>"
    "<RequestId>fault</RequestId></ErrorResponse>"
)
AWS_JSON = "application/x-amz-json-1.1"


def aws_json_error(code: str, message: str) -> str:
    return json.dumps({"__type": code, "message": message})


@cache
def independent(endpoint: str, service: str) -> Any:
    """A plain boto3 client, built without the block, to read state back."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=AWS_REGION,
        aws_access_key_id="independent",
        aws_secret_access_key="independent",
        config=Config(retries={"total_max_attempts": 1}),
    )


def fast(job: Any, **options: Any) -> Any:
    """The job with retries that do not wait, for tests that go through retries."""
    return job.with_options(retry_delay_seconds=0, **options)


# --- the Service Quotas / Backup fake -----------------------------------------------------


def quota(code: str, value: float, adjustable: bool = True) -> dict[str, Any]:
    return {
        "ServiceCode": "ec2",
        "QuotaCode": code,
        "QuotaName": f"quota {code}",
        "Value": value,
        "Unit": "None",
        "Adjustable": adjustable,
    }


# --- S3 buckets ---------------------------------------------------------------------------


def bucket_state(s3: Any, name: str) -> dict[str, Any]:
    encryption = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]
    try:
        public = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    except s3.exceptions.ClientError:
        public = None
    try:
        tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=name)["TagSet"]}
    except s3.exceptions.ClientError:
        tags = {}
    return {
        "versioning": s3.get_bucket_versioning(Bucket=name).get("Status"),
        "encryption": encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"],
        "public": public,
        "tags": tags,
    }


def test_s3_bucket_is_created_then_unchanged_then_updated(aws_credentials, moto_server) -> None:
    s3 = independent(moto_server, "s3")

    first = ensure_s3_bucket(aws_credentials, "acme-prod-data", tags={"team": "acme"})
    assert (first.resource, first.action, first.dry_run) == (
        "aws:s3:bucket/acme-prod-data",
        Action.CREATED,
        False,
    )
    assert s3.get_bucket_location(Bucket="acme-prod-data")["LocationConstraint"] == AWS_REGION
    assert bucket_state(s3, "acme-prod-data") == {
        "versioning": "Enabled",
        "encryption": {"SSEAlgorithm": "AES256"},
        "public": dict.fromkeys(
            ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"],
            True,
        ),
        "tags": {"team": "acme"},
    }

    again = ensure_s3_bucket(aws_credentials, "acme-prod-data", tags={"team": "acme"})
    assert again.action == Action.UNCHANGED and again.detail == {}

    updated = ensure_s3_bucket(
        aws_credentials,
        "acme-prod-data",
        versioning=False,
        encryption="aws:kms",
        kms_key_id="alias/acme",
        block_public_access=False,
        tags={},
    )
    assert updated.action == Action.UPDATED
    assert updated.detail == {"fields": ["block_public_access", "encryption", "tags", "versioning"]}
    assert bucket_state(s3, "acme-prod-data") == {
        "versioning": "Suspended",
        "encryption": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/acme"},
        "public": None,
        "tags": {},
    }
    only_tags = ensure_s3_bucket(
        aws_credentials,
        "acme-prod-data",
        versioning=False,
        encryption="aws:kms",
        kms_key_id="alias/acme",
        block_public_access=False,
        tags={"team": "acme", "env": "prod"},
    )
    assert only_tags.detail == {"fields": ["tags"]}


def test_s3_bucket_dry_run_reads_but_writes_nothing(aws_credentials, moto_server) -> None:
    s3 = independent(moto_server, "s3")
    planned = ensure_s3_bucket(aws_credentials, "acme-dry-run", dry_run=True)
    assert (planned.action, planned.dry_run) == (Action.CREATED, True)
    assert s3.list_buckets()["Buckets"] == []

    s3.create_bucket(
        Bucket="acme-dry-run", CreateBucketConfiguration={"LocationConstraint": AWS_REGION}
    )
    planned = ensure_s3_bucket(aws_credentials, "acme-dry-run", tags={"a": "b"}, dry_run=True)
    assert (planned.action, planned.dry_run) == (Action.UPDATED, True)
    assert planned.detail == {"fields": ["block_public_access", "encryption", "tags", "versioning"]}
    assert "Status" not in s3.get_bucket_versioning(Bucket="acme-dry-run")
    with pytest.raises(s3.exceptions.ClientError, match="NoSuchTagSet"):
        s3.get_bucket_tagging(Bucket="acme-dry-run")


@pytest.mark.parametrize(
    ("name", "options", "cause"),
    [
        ("ab", {}, "3 to 63 characters"),
        ("Acme_Data", {}, "lowercase letters"),
        ("acme..data", {}, "adjacent dots"),
        ("192.168.10.20", {}, "IP address"),
        ("xn--acme-data", {}, "reserved"),
        ("acme-data-s3alias", {}, "reserved"),
        ("acme-data", {"kms_key_id": "alias/acme"}, "kms_key_id needs"),
        ("acme-data", {"region": "moon-base-1a"}, "not an AWS region"),
        ("acme-data", {"tags": {"aws:owner": "x"}}, "uses aws:"),
    ],
)
def test_s3_bucket_invalid_input_is_rejected_before_any_write(
    aws_credentials, moto_server, name, options, cause
) -> None:
    with pytest.raises(InvalidInputError, match=cause):
        ensure_s3_bucket(aws_credentials, name, **options)
    assert independent(moto_server, "s3").list_buckets()["Buckets"] == []


def test_s3_bucket_region_us_east_1_and_region_conflict(aws_credentials, moto_server) -> None:
    change = ensure_s3_bucket(aws_credentials, "acme-virginia", region="us-east-1")
    assert change.action == Action.CREATED and change.detail == {"region": "us-east-1"}
    location = independent(moto_server, "s3").get_bucket_location(Bucket="acme-virginia")
    assert location["LocationConstraint"] is None  # S3 spells us-east-1 as "no constraint"
    with pytest.raises(ConflictError, match="exists in us-east-1, not in eu-west-1"):
        ensure_s3_bucket(aws_credentials, "acme-virginia", region="eu-west-1")


def test_s3_slow_down_is_retried_by_prefect_only(
    moto_server, aws_credentials, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(moto_server)
    before = proxy.injected  # the proxy is shared by the session: count from here
    through_proxy = aws_credentials_for(proxy.url)
    proxy.fail(status=503, count=2, method="PUT", body=S3_SLOW_DOWN, content_type="application/xml")

    change = fast(ensure_s3_bucket)(through_proxy, "acme-retried")
    assert change.action == Action.CREATED
    assert proxy.injected - before == 2
    assert (
        "Enabled"
        == independent(moto_server, "s3").get_bucket_versioning(Bucket="acme-retried")["Status"]
    )

    # With Prefect's retries off, one SlowDown fails the job: botocore did not retry it.
    proxy.fail(status=503, count=1, method="PUT", body=S3_SLOW_DOWN, content_type="application/xml")
    with pytest.raises(TransientError, match="SlowDown"):
        fast(ensure_s3_bucket, retries=0)(through_proxy, "acme-not-retried")
    assert proxy.injected - before == 3


def test_s3_access_denied_is_not_retried(moto_server, aws_credentials, fault_proxy_factory) -> None:
    proxy = fault_proxy_factory(moto_server)
    before = proxy.injected  # the proxy is shared by the session: count from here
    proxy.fail(
        status=403, count=5, method="PUT", body=S3_ACCESS_DENIED, content_type="application/xml"
    )
    with pytest.raises(
        PermissionDeniedError,
        match=r"aws:s3:bucket/acme-denied: CreateBucket failed with AccessDenied",
    ):
        fast(ensure_s3_bucket)(aws_credentials_for(proxy.url), "acme-denied")
    assert proxy.injected - before == 1
    assert independent(moto_server, "s3").list_buckets()["Buckets"] == []


# --- IAM roles ----------------------------------------------------------------------------


def role_state(iam: Any, name: str) -> dict[str, Any]:
    role = iam.get_role(RoleName=name)["Role"]
    return {
        "trust": role["AssumeRolePolicyDocument"],
        "description": role.get("Description", ""),
        "tags": {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=name)["Tags"]},
        "managed": sorted(
            p["PolicyArn"]
            for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        ),
        "inline": {
            policy: iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            for policy in iam.list_role_policies(RoleName=name)["PolicyNames"]
        },
    }


def managed_policies(iam: Any, *names: str) -> list[str]:
    return [
        iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(READ_BUCKETS))["Policy"]["Arn"]
        for name in names
    ]


def test_iam_role_is_created_then_unchanged_then_updated(aws_credentials, moto_server) -> None:
    iam = independent(moto_server, "iam")
    audit, deploy = managed_policies(iam, "acme-audit", "acme-deploy")
    role = {
        "trust_policy": TRUST,
        "managed_policy_arns": [audit],
        "inline_policies": {"read": READ_BUCKETS, "write": WRITE_BUCKETS},
        "tags": {"team": "acme"},
        "description": "deploys acme",
    }
    created = ensure_iam_role(aws_credentials, "acme-deployer", **role)
    assert (created.resource, created.action) == ("aws:iam:role/acme-deployer", Action.CREATED)
    assert role_state(iam, "acme-deployer") == {
        "trust": TRUST,
        "description": "deploys acme",
        "tags": {"team": "acme"},
        "managed": [audit],
        "inline": {"read": READ_BUCKETS, "write": WRITE_BUCKETS},
    }

    assert ensure_iam_role(aws_credentials, "acme-deployer", **role).action == Action.UNCHANGED

    lambda_trust = json.loads(json.dumps(TRUST).replace("ec2", "lambda"))
    updated = ensure_iam_role(
        aws_credentials,
        "acme-deployer",
        lambda_trust,
        [deploy],
        {"read": WRITE_BUCKETS},
        {"team": "platform"},
        "deploys acme and more",
    )
    assert updated.action == Action.UPDATED
    assert updated.detail == {
        "fields": ["description", "inline_policies", "managed_policies", "tags", "trust_policy"]
    }
    assert role_state(iam, "acme-deployer") == {
        "trust": lambda_trust,
        "description": "deploys acme and more",
        "tags": {"team": "platform"},
        "managed": [deploy],
        "inline": {"read": WRITE_BUCKETS},
    }


def test_iam_role_policies_compare_as_parsed_json(aws_credentials, moto_server) -> None:
    iam = independent(moto_server, "iam")
    # Same documents, other key order and whitespace: not a difference.
    iam.create_role(
        RoleName="acme-reader", AssumeRolePolicyDocument=json.dumps(TRUST, indent=4, sort_keys=True)
    )
    iam.put_role_policy(
        RoleName="acme-reader",
        PolicyName="read",
        PolicyDocument=json.dumps(READ_BUCKETS, indent=2, sort_keys=True),
    )
    change = ensure_iam_role(
        aws_credentials, "acme-reader", TRUST, inline_policies={"read": READ_BUCKETS}
    )
    assert change.action == Action.UNCHANGED


def test_iam_role_dry_run_writes_nothing(aws_credentials, moto_server) -> None:
    iam = independent(moto_server, "iam")
    (audit,) = managed_policies(iam, "acme-audit")
    planned = ensure_iam_role(aws_credentials, "acme-dry", TRUST, [audit], dry_run=True)
    assert (planned.action, planned.dry_run) == (Action.CREATED, True)
    assert iam.list_roles()["Roles"] == []

    iam.create_role(RoleName="acme-dry", AssumeRolePolicyDocument=json.dumps(TRUST))
    planned = ensure_iam_role(
        aws_credentials, "acme-dry", TRUST, [audit], {"read": READ_BUCKETS}, dry_run=True
    )
    assert (planned.action, planned.dry_run) == (Action.UPDATED, True)
    assert planned.detail == {"fields": ["inline_policies", "managed_policies"]}
    assert (
        role_state(iam, "acme-dry")["managed"] == [] and role_state(iam, "acme-dry")["inline"] == {}
    )


@pytest.mark.parametrize(
    ("arguments", "cause"),
    [
        ({"name": "acme deployer"}, "role name"),
        ({"trust_policy": "not a dict"}, "trust_policy is a JSON object"),
        ({"trust_policy": {"Version": "2012-10-17"}}, "non-empty Statement"),
        (
            {
                "trust_policy": {
                    "Statement": [{"Effect": "Maybe", "Action": "sts:AssumeRole", "Principal": "*"}]
                }
            },
            "Effect Allow or Deny",
        ),
        (
            {"trust_policy": {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}},
            "Principal",
        ),
        (
            {"inline_policies": {"read": {"Statement": [{"Effect": "Allow", "Action": "s3:*"}]}}},
            "Resource or NotResource",
        ),
        (
            {
                "inline_policies": {
                    "read": {"Statement": [{"Effect": "Allow", "Action": {1, 2}, "Resource": "*"}]}
                }
            },
            "not JSON-serialisable",
        ),
        ({"managed_policy_arns": ["arn:aws:s3:::not-a-policy"]}, "not a managed policy ARN"),
        ({"tags": {"": "empty key"}}, "tag key"),
    ],
)
def test_iam_role_malformed_input_is_rejected_before_any_write(
    aws_credentials, moto_server, arguments, cause
) -> None:
    with pytest.raises(InvalidInputError, match=cause):
        ensure_iam_role(
            aws_credentials, **{"name": "acme-role", "trust_policy": TRUST, **arguments}
        )
    assert independent(moto_server, "iam").list_roles()["Roles"] == []


def test_iam_role_with_unknown_managed_policy_is_not_created(aws_credentials, moto_server) -> None:
    missing = "arn:aws:iam::123456789012:policy/acme-missing"
    with pytest.raises(NotFoundError, match=r"managed policy .*acme-missing does not exist"):
        ensure_iam_role(aws_credentials, "acme-role", TRUST, [missing])
    assert independent(moto_server, "iam").list_roles()["Roles"] == []


def test_iam_access_denied_is_not_retried(
    moto_server, aws_credentials, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(moto_server)
    before = proxy.injected  # the proxy is shared by the session: count from here
    proxy.fail(status=403, count=5, method="POST", body=IAM_ACCESS_DENIED, content_type="text/xml")
    with pytest.raises(PermissionDeniedError, match="GetRole failed with AccessDenied"):
        fast(ensure_iam_role)(aws_credentials_for(proxy.url), "acme-role", TRUST)
    assert proxy.injected - before == 1


# --- KMS keys -----------------------------------------------------------------------------


def kms_tags(kms: Any, key_id: str) -> dict[str, str]:
    return {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}


def test_kms_key_is_created_then_unchanged_then_updated(aws_credentials, moto_server) -> None:
    kms = independent(moto_server, "kms")
    created = ensure_kms_key(aws_credentials, "acme-prod", "acme data", {"team": "acme"})
    key_id = created.detail["key_id"]
    assert (created.resource, created.action) == ("aws:kms:alias/acme-prod", Action.CREATED)
    key = kms.describe_key(KeyId="alias/acme-prod")["KeyMetadata"]
    assert (key["KeyId"], key["Description"]) == (key_id, "acme data")
    assert kms_tags(kms, key_id) == {"team": "acme", "magicflow:alias": "alias/acme-prod"}

    again = ensure_kms_key(aws_credentials, "alias/acme-prod", "acme data", {"team": "acme"})
    assert again.action == Action.UNCHANGED and again.detail == {"key_id": key_id}

    updated = ensure_kms_key(
        aws_credentials, "alias/acme-prod", "acme data at rest", {"env": "prod"}
    )
    assert updated.action == Action.UPDATED
    assert updated.detail == {"key_id": key_id, "fields": ["description", "tags"]}
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "acme data at rest"
    assert kms_tags(kms, key_id) == {"env": "prod", "magicflow:alias": "alias/acme-prod"}
    assert len(kms.list_keys()["Keys"]) == 1


def test_kms_key_dry_run_and_invalid_alias_write_nothing(aws_credentials, moto_server) -> None:
    kms = independent(moto_server, "kms")
    planned = ensure_kms_key(aws_credentials, "acme-dry", dry_run=True)
    assert (planned.action, planned.dry_run, planned.detail) == (Action.CREATED, True, {})
    for alias, cause in [("alias/aws/s3", "reserved for AWS"), ("acme key!", "an alias has")]:
        with pytest.raises(InvalidInputError, match=cause):
            ensure_kms_key(aws_credentials, alias)
    assert kms.list_keys()["Keys"] == []

    key_id = kms.create_key(Description="old")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/acme-dry", TargetKeyId=key_id)
    planned = ensure_kms_key(aws_credentials, "acme-dry", "new", dry_run=True)
    assert (planned.action, planned.detail) == (
        Action.UPDATED,
        {"key_id": key_id, "fields": ["description"]},
    )
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "old"


def test_kms_retry_after_a_failed_alias_adopts_the_key_instead_of_making_another(
    moto_server, aws_credentials, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(moto_server)
    before = proxy.injected
    kms = independent(moto_server, "kms")
    # Someone else's key and a key of ours for another alias are never adopted.
    kms.create_key(Description="not ours")
    ensure_kms_key(aws_credentials, "acme-other")
    proxy.fail(
        status=503,
        count=1,
        method="POST",
        action="CreateAlias",
        content_type=AWS_JSON,
        body=aws_json_error("ServiceUnavailableException", "try again"),
    )
    change = fast(ensure_kms_key)(
        aws_credentials_for(proxy.url), "acme-retry", "acme data", {"team": "acme"}
    )
    assert proxy.injected - before == 1  # the first attempt made the key, then failed
    assert (change.action, change.detail["adopted"]) == (Action.CREATED, True)
    key_id = kms.describe_key(KeyId="alias/acme-retry")["KeyMetadata"]["KeyId"]
    assert change.detail["key_id"] == key_id
    assert len(kms.list_keys()["Keys"]) == 3  # not 4: no second key for acme-retry
    assert kms_tags(kms, key_id) == {"team": "acme", "magicflow:alias": "alias/acme-retry"}
    assert ensure_kms_key(aws_credentials, "acme-retry", "acme data", {"team": "acme"}).action == (
        Action.UNCHANGED
    )


def test_kms_throttling_is_retried(moto_server, aws_credentials, fault_proxy_factory) -> None:
    proxy = fault_proxy_factory(moto_server)
    before = proxy.injected  # the proxy is shared by the session: count from here
    proxy.fail(
        status=400,
        count=2,
        method="POST",
        content_type=AWS_JSON,
        body=aws_json_error("ThrottlingException", "Rate exceeded"),
    )
    change = fast(ensure_kms_key)(aws_credentials_for(proxy.url), "acme-throttled")
    assert change.action == Action.CREATED and proxy.injected - before == 2
    kms = independent(moto_server, "kms")
    assert (
        kms.describe_key(KeyId="alias/acme-throttled")["KeyMetadata"]["KeyId"]
        == change.detail["key_id"]
    )


# --- SSM parameters -----------------------------------------------------------------------

SSM_SECRET = "ssm-s3cr3t-8f1c2e"
SSM_SECRET_2 = "ssm-s3cr3t-rotated-77a0"


def test_ssm_parameter_is_created_then_unchanged_then_updated(
    aws_credentials, moto_server, captured_logs
) -> None:
    ssm = independent(moto_server, "ssm")
    name = "/acme/db/password"
    created = put_ssm_parameter(
        aws_credentials, name, SecretStr(SSM_SECRET), description="db", tags={"team": "acme"}
    )
    assert (created.resource, created.action, created.detail) == (
        "aws:ssm:parameter//acme/db/password",
        Action.CREATED,
        {"version": 1},
    )
    stored = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    assert (stored["Value"], stored["Type"], stored["Version"]) == (SSM_SECRET, "SecureString", 1)

    again = put_ssm_parameter(
        aws_credentials, name, SecretStr(SSM_SECRET), description="db", tags={"team": "acme"}
    )
    assert (again.action, again.detail) == (Action.UNCHANGED, {"version": 1})
    assert ssm.get_parameter(Name=name)["Parameter"]["Version"] == 1  # no Overwrite happened

    rotated = put_ssm_parameter(
        aws_credentials, name, SecretStr(SSM_SECRET_2), description="db", tags={"team": "acme"}
    )
    assert (rotated.action, rotated.detail) == (Action.UPDATED, {"version": 2, "fields": ["value"]})
    assert ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"] == SSM_SECRET_2

    retagged = put_ssm_parameter(
        aws_credentials, name, SecretStr(SSM_SECRET_2), description="db", tags={"env": "prod"}
    )
    assert (retagged.action, retagged.detail) == (
        Action.UPDATED,
        {"version": 2, "fields": ["tags"]},
    )
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
    assert tags == [{"Key": "env", "Value": "prod"}]

    for change in (created, again, rotated, retagged):
        assert (
            SSM_SECRET not in change.model_dump_json()
            and SSM_SECRET_2 not in change.model_dump_json()
        )
    assert "aws:ssm:parameter//acme/db/password: updated" in captured_logs.text
    assert SSM_SECRET not in captured_logs.text and SSM_SECRET_2 not in captured_logs.text


def test_ssm_parameter_dry_run_writes_nothing(aws_credentials, moto_server) -> None:
    ssm = independent(moto_server, "ssm")
    planned = put_ssm_parameter(aws_credentials, "/acme/dry", SecretStr(SSM_SECRET), dry_run=True)
    assert (planned.action, planned.dry_run, planned.detail) == (Action.CREATED, True, {})
    assert ssm.describe_parameters()["Parameters"] == []

    ssm.put_parameter(Name="/acme/dry", Value="old", Type="SecureString")
    planned = put_ssm_parameter(aws_credentials, "/acme/dry", SecretStr(SSM_SECRET), dry_run=True)
    assert (planned.action, planned.detail) == (Action.UPDATED, {"version": 1, "fields": ["value"]})
    assert ssm.get_parameter(Name="/acme/dry", WithDecryption=True)["Parameter"]["Value"] == "old"


@pytest.mark.parametrize(
    ("name", "value", "options", "cause"),
    [
        ("/aws/acme", SSM_SECRET, {}, "reserved"),
        ("acme/db", SSM_SECRET, {}, "starts with /"),
        ("/acme/db password", SSM_SECRET, {}, "parameter name"),
        ("/acme/db", "", {}, "empty"),
        ("/acme/db", SSM_SECRET * 300, {}, "longer than 4096 bytes"),
        ("/acme/db", SSM_SECRET, {"type": "Password"}, "type is"),
    ],
)
def test_ssm_parameter_invalid_input_is_rejected_before_any_write(
    aws_credentials, moto_server, captured_logs, name, value, options, cause
) -> None:
    with pytest.raises(InvalidInputError, match=cause) as raised:
        put_ssm_parameter(aws_credentials, name, SecretStr(value), **options)
    assert independent(moto_server, "ssm").describe_parameters()["Parameters"] == []
    if value:
        assert SSM_SECRET not in str(raised.value) and SSM_SECRET not in captured_logs.text


def test_ssm_error_messages_never_echo_the_value(
    moto_server, aws_credentials, fault_proxy_factory, captured_logs
) -> None:
    proxy = fault_proxy_factory(moto_server)
    before = proxy.injected  # the proxy is shared by the session: count from here
    # AWS validation messages quote rejected values; the job must not pass them on.
    echo = (
        f"1 validation error detected: Value '{SSM_SECRET}' at 'value' failed to satisfy constraint"
    )
    proxy.fail(
        status=400,
        count=5,
        method="POST",
        content_type=AWS_JSON,
        body=aws_json_error("ValidationException", echo),
    )
    with pytest.raises(InvalidInputError, match="failed with ValidationException") as raised:
        fast(put_ssm_parameter)(aws_credentials_for(proxy.url), "/acme/db", SecretStr(SSM_SECRET))
    assert proxy.injected - before == 1  # permanent: not retried
    assert SSM_SECRET not in str(raised.value)
    assert raised.value.__cause__ is None
    assert SSM_SECRET not in captured_logs.text


def test_ssm_dropped_connection_is_retried(
    moto_server, aws_credentials, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(moto_server)
    before = proxy.injected  # the proxy is shared by the session: count from here
    proxy.fail(status=0, count=1, method="POST")  # the proxy closes the connection unanswered
    change = fast(put_ssm_parameter)(
        aws_credentials_for(proxy.url), "/acme/db", SecretStr(SSM_SECRET)
    )
    assert change.action == Action.CREATED and proxy.injected - before == 1
    stored = independent(moto_server, "ssm").get_parameter(Name="/acme/db", WithDecryption=True)
    assert stored["Parameter"]["Value"] == SSM_SECRET


# --- Secrets Manager ----------------------------------------------------------------------

SM_SECRET = "sm-s3cr3t-4d9b1a"
SM_SECRET_2 = "sm-s3cr3t-rotated-0c3f"


def test_secretsmanager_secret_is_created_then_unchanged_then_updated(
    aws_credentials, moto_server, captured_logs
) -> None:
    sm = independent(moto_server, "secretsmanager")
    created = ensure_secretsmanager_secret(
        aws_credentials, "acme/db", SecretStr(SM_SECRET), "db password", {"team": "acme"}
    )
    assert (created.resource, created.action) == (
        "aws:secretsmanager:secret/acme/db",
        Action.CREATED,
    )
    current = sm.get_secret_value(SecretId="acme/db")
    assert (current["SecretString"], current["VersionId"]) == (
        SM_SECRET,
        created.detail["version_id"],
    )

    again = ensure_secretsmanager_secret(
        aws_credentials, "acme/db", SecretStr(SM_SECRET), "db password", {"team": "acme"}
    )
    assert (again.action, again.detail) == (
        Action.UNCHANGED,
        {"version_id": created.detail["version_id"]},
    )
    assert len(sm.list_secret_version_ids(SecretId="acme/db")["Versions"]) == 1

    rotated = ensure_secretsmanager_secret(
        aws_credentials, "acme/db", SecretStr(SM_SECRET_2), "db password", {"team": "acme"}
    )
    assert rotated.action == Action.UPDATED and rotated.detail["fields"] == ["value"]
    current = sm.get_secret_value(SecretId="acme/db")
    assert (current["SecretString"], current["VersionId"]) == (
        SM_SECRET_2,
        rotated.detail["version_id"],
    )
    assert rotated.detail["version_id"] != created.detail["version_id"]

    described = ensure_secretsmanager_secret(
        aws_credentials, "acme/db", SecretStr(SM_SECRET_2), "rotated monthly", {}
    )
    assert described.detail == {
        "version_id": rotated.detail["version_id"],
        "fields": ["description", "tags"],
    }
    metadata = sm.describe_secret(SecretId="acme/db")
    assert metadata["Description"] == "rotated monthly" and not metadata.get("Tags")

    for change in (created, again, rotated, described):
        assert (
            SM_SECRET not in change.model_dump_json()
            and SM_SECRET_2 not in change.model_dump_json()
        )
    assert SM_SECRET not in captured_logs.text and SM_SECRET_2 not in captured_logs.text


def test_secretsmanager_dry_run_invalid_input_and_deleted_secret(
    aws_credentials, moto_server
) -> None:
    sm = independent(moto_server, "secretsmanager")
    planned = ensure_secretsmanager_secret(
        aws_credentials, "acme/dry", SecretStr(SM_SECRET), dry_run=True
    )
    assert (planned.action, planned.dry_run) == (Action.CREATED, True)
    for name, value, cause in [("acme db", SM_SECRET, "secret name"), ("acme/db", "", "empty")]:
        with pytest.raises(InvalidInputError, match=cause) as raised:
            ensure_secretsmanager_secret(aws_credentials, name, SecretStr(value))
        assert SM_SECRET not in str(raised.value)
    with pytest.raises(InvalidInputError, match="SecretStr"):
        ensure_secretsmanager_secret(aws_credentials, "acme/db", SM_SECRET)
    assert sm.list_secrets()["SecretList"] == []

    sm.create_secret(Name="acme/dry", SecretString="old")
    planned = ensure_secretsmanager_secret(
        aws_credentials, "acme/dry", SecretStr(SM_SECRET), dry_run=True
    )
    assert (planned.action, planned.detail["fields"]) == (Action.UPDATED, ["value"])
    assert sm.get_secret_value(SecretId="acme/dry")["SecretString"] == "old"

    sm.delete_secret(SecretId="acme/dry", RecoveryWindowInDays=7)
    with pytest.raises(ConflictError, match="scheduled for deletion"):
        ensure_secretsmanager_secret(aws_credentials, "acme/dry", SecretStr(SM_SECRET))


# --- Service Quotas -----------------------------------------------------------------------


def test_get_service_quota_applied_default_and_missing(quota_credentials, quota_fake) -> None:
    seed_fake(
        quota_fake,
        {
            "quotas": [quota("L-1216C47A", 32)],
            "default_quotas": [quota("L-34B43A08", 5, adjustable=False)],
        },
    )
    applied = get_service_quota(quota_credentials, "ec2", "L-1216C47A")
    assert (applied.value, applied.adjustable, applied.is_default, applied.quota_name) == (
        32,
        True,
        False,
        "quota L-1216C47A",
    )
    default = get_service_quota(quota_credentials, "ec2", "L-34B43A08")
    assert (default.value, default.adjustable, default.is_default) == (5, False, True)
    with pytest.raises(NotFoundError, match="aws:servicequotas:quota/ec2/L-0000: no such quota"):
        get_service_quota(quota_credentials, "ec2", "L-0000")
    with pytest.raises(InvalidInputError, match="quota code"):
        get_service_quota(quota_credentials, "ec2", "L_bad code")


def test_quota_increase_is_requested_once(quota_credentials, quota_fake) -> None:
    seed_fake(quota_fake, {"quotas": [quota("L-1216C47A", 32)]})
    enough = request_service_quota_increase(quota_credentials, "ec2", "L-1216C47A", 32)
    assert (enough.action, enough.detail) == (Action.UNCHANGED, {"value": 32})

    planned = request_service_quota_increase(
        quota_credentials, "ec2", "L-1216C47A", 64, dry_run=True
    )
    assert (planned.action, planned.dry_run) == (Action.CREATED, True)
    assert fake_state(quota_fake)["requests"] == []

    created = request_service_quota_increase(quota_credentials, "ec2", "L-1216C47A", 64)
    assert created.action == Action.CREATED and created.detail["status"] == "PENDING"
    (request,) = fake_state(quota_fake)["requests"]
    assert (request["Id"], request["DesiredValue"]) == (created.detail["request_id"], 64)

    # The open request covers it (and a smaller ask): no duplicate request.
    for desired in (64, 48):
        again = request_service_quota_increase(quota_credentials, "ec2", "L-1216C47A", desired)
        assert again.action == Action.UNCHANGED and again.detail["request_id"] == request["Id"]
    # A bigger ask while a smaller one is open: AWS allows one open request per quota.
    with pytest.raises(ConflictError, match=f"request {request['Id']} for 64.0 is still PENDING"):
        request_service_quota_increase(quota_credentials, "ec2", "L-1216C47A", 128)
    state = fake_state(quota_fake)
    assert len(state["requests"]) == 1 and state["calls"]["RequestServiceQuotaIncrease"] == 1


def test_quota_increase_for_closed_requests_and_fixed_quotas(quota_credentials, quota_fake) -> None:
    denied = {
        "Id": "old",
        "ServiceCode": "ec2",
        "QuotaCode": "L-1216C47A",
        "DesiredValue": 1000.0,
        "Status": "DENIED",
        "Created": time.time() - 86400,
    }
    seed_fake(
        quota_fake,
        {
            "quotas": [quota("L-1216C47A", 32), quota("L-FIXED", 5, adjustable=False)],
            "requests": [denied],
            "page_size": 1,
        },
    )
    created = request_service_quota_increase(quota_credentials, "ec2", "L-1216C47A", 100)
    assert created.action == Action.CREATED and created.detail["request_id"] != "old"
    with pytest.raises(InvalidInputError, match="not adjustable"):
        request_service_quota_increase(quota_credentials, "ec2", "L-FIXED", 10)
    assert len(fake_state(quota_fake)["requests"]) == 2


@pytest.mark.parametrize("desired", [0, -5, float("nan"), 1e11, "100"])
def test_quota_increase_bad_value_is_rejected_before_any_call(
    quota_credentials, quota_fake, desired
) -> None:
    seed_fake(quota_fake, {"quotas": [quota("L-1216C47A", 32)]})
    with pytest.raises(InvalidInputError, match="desired_value"):
        request_service_quota_increase(quota_credentials, "ec2", "L-1216C47A", desired)
    assert fake_state(quota_fake) == {"requests": [], "calls": {}}


def test_quota_throttling_is_retried(quota_fake, quota_credentials, fault_proxy_factory) -> None:
    seed_fake(quota_fake, {"quotas": [quota("L-1216C47A", 32)]})
    proxy = fault_proxy_factory(quota_fake)
    before = proxy.injected  # the proxy is shared by the session: count from here
    proxy.fail(
        status=400,
        count=2,
        method="POST",
        content_type=AWS_JSON,
        body=aws_json_error("TooManyRequestsException", "Rate exceeded"),
    )
    change = fast(request_service_quota_increase)(
        aws_credentials_for(proxy.url), "ec2", "L-1216C47A", 40
    )
    assert change.action == Action.CREATED and proxy.injected - before == 2
    assert len(fake_state(quota_fake)["requests"]) == 1


# --- disaster-recovery reads --------------------------------------------------------------


def test_list_rds_snapshots_newest_first(aws_credentials, moto_server) -> None:
    rds = independent(moto_server, "rds")
    rds.create_db_instance(
        DBInstanceIdentifier="acme-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="acme",
        MasterUserPassword="not-a-real-pw1",
        AllocatedStorage=20,
    )
    for name in ("acme-db-1", "acme-db-2"):
        rds.create_db_snapshot(DBSnapshotIdentifier=name, DBInstanceIdentifier="acme-db")
    snapshots = list_rds_snapshots(aws_credentials, "acme-db")
    manual = [s for s in snapshots if s.snapshot_type == "manual"]
    assert [s.identifier for s in manual] == ["acme-db-2", "acme-db-1"]
    assert all(s.db_instance_identifier == "acme-db" and s.engine == "postgres" for s in snapshots)
    created = [s.created for s in snapshots]
    assert None not in created and created == sorted(created, reverse=True)
    assert list_rds_snapshots(aws_credentials, "other-db") == []


def test_list_ebs_snapshots_newest_first(aws_credentials, moto_server) -> None:
    ec2 = independent(moto_server, "ec2")
    volume = ec2.create_volume(AvailabilityZone=f"{AWS_REGION}a", Size=8)["VolumeId"]
    other = ec2.create_volume(AvailabilityZone=f"{AWS_REGION}a", Size=8)["VolumeId"]
    first = ec2.create_snapshot(VolumeId=volume, Description="nightly 1")["SnapshotId"]
    time.sleep(1.05)  # EC2 reports StartTime in whole seconds
    second = ec2.create_snapshot(VolumeId=volume, Description="nightly 2")["SnapshotId"]
    ec2.create_snapshot(VolumeId=other)
    snapshots = list_ebs_snapshots(aws_credentials, volume)
    assert [(s.snapshot_id, s.volume_size_gib) for s in snapshots] == [(second, 8), (first, 8)]
    assert snapshots[0].created > snapshots[1].created
    assert [s.volume_id for s in list_ebs_snapshots(aws_credentials, other)] == [other]
    with pytest.raises(InvalidInputError, match="volume id"):
        list_ebs_snapshots(aws_credentials, "volume-1")


def test_list_backup_recovery_points_newest_first(quota_credentials, quota_fake) -> None:
    now = time.time()
    points = [
        {
            "RecoveryPointArn": f"arn:aws:backup:eu-west-1:123456789012:recovery-point:{n}",
            "ResourceArn": "arn:aws:rds:eu-west-1:123456789012:db:acme-db",
            "ResourceType": "RDS",
            "Status": status,
            "CreationDate": now - age,
            "BackupSizeInBytes": 1024,
        }
        for n, status, age in [
            ("a", "COMPLETED", 7200),
            ("b", "COMPLETED", 60),
            ("c", "PARTIAL", 3600),
        ]
    ]
    seed_fake(quota_fake, {"vaults": {"acme-vault": points}, "page_size": 2})
    listed = list_backup_recovery_points(quota_credentials, "acme-vault")
    assert [p.recovery_point_arn[-1] for p in listed] == ["b", "c", "a"]  # across two pages
    assert listed[0].status == "COMPLETED" and listed[0].backup_vault_name == "acme-vault"
    assert abs(listed[0].created.timestamp() - (now - 60)) < 1
    with pytest.raises(NotFoundError, match="aws:backup:vault/missing-vault"):
        list_backup_recovery_points(quota_credentials, "missing-vault")


def test_list_s3_object_versions_newest_first(aws_credentials, moto_server) -> None:
    s3 = independent(moto_server, "s3")
    ensure_s3_bucket(aws_credentials, "acme-versions")
    s3.put_object(Bucket="acme-versions", Key="exports/a.csv", Body=b"1")
    time.sleep(1.05)  # LastModified has one-second resolution
    s3.put_object(Bucket="acme-versions", Key="exports/a.csv", Body=b"22")
    s3.put_object(Bucket="acme-versions", Key="other/b.csv", Body=b"333")
    s3.delete_object(Bucket="acme-versions", Key="exports/a.csv")
    versions = list_s3_object_versions(aws_credentials, "acme-versions", "exports/")
    assert [(v.is_delete_marker, v.is_latest, v.size) for v in versions] == [
        (True, True, None),
        (False, False, 2),
        (False, False, 1),
    ]
    assert versions[0].created >= versions[1].created > versions[2].created
    with pytest.raises(NotFoundError, match="NoSuchBucket"):
        list_s3_object_versions(aws_credentials, "acme-missing")


# --- jobs compose in a workflow -----------------------------------------------------------


def test_aws_jobs_compose_in_a_flow_and_rerun_unchanged(
    aws_credentials, moto_server, captured_logs
) -> None:
    aws_credentials.save("magicflow-test-aws", overwrite=True)

    @flow
    def tenant_secrets(tenant: str, password: SecretStr) -> list[Any]:
        key = ensure_kms_key("magicflow-test-aws", f"{tenant}-data")
        bucket = ensure_s3_bucket(
            "magicflow-test-aws",
            f"{tenant}-data",
            encryption="aws:kms",
            kms_key_id=key.detail["key_id"],
        )
        parameter = put_ssm_parameter("magicflow-test-aws", f"/{tenant}/db/password", password)
        return [key, bucket, parameter]

    first = tenant_secrets("acme", SecretStr(SSM_SECRET))
    assert [c.action for c in first] == [Action.CREATED] * 3
    second = tenant_secrets("acme", SecretStr(SSM_SECRET))
    assert [c.action for c in second] == [Action.UNCHANGED] * 3
    encryption = independent(moto_server, "s3").get_bucket_encryption(Bucket="acme-data")
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0][
        "ApplyServerSideEncryptionByDefault"
    ]
    assert rule["KMSMasterKeyID"] == first[0].detail["key_id"]
    assert SSM_SECRET not in captured_logs.text


# --- every job: transient faults are retried, permanent ones are not ----------------------

EC2_UNAUTHORIZED = (
    "<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
    "<Message>You are not authorized to perform this operation.</Message></Error></Errors>"
    "<RequestID>fault</RequestID></Response>"
)
RDS_ACCESS_DENIED = IAM_ACCESS_DENIED.replace(
    "iam.amazonaws.com/doc/2010-05-08", "rds.amazonaws.com/doc/2014-10-31"
)
# AWS's 403 body in each protocol: rest-xml, query, ec2, JSON (awsJson1_1 and restJson1).
DENIED_BODY = {
    "s3": (S3_ACCESS_DENIED, "application/xml"),
    "iam": (IAM_ACCESS_DENIED, "text/xml"),
    "rds": (RDS_ACCESS_DENIED, "text/xml"),
    "ec2": (EC2_UNAUTHORIZED, "text/xml"),
    "json": (aws_json_error("AccessDeniedException", "not authorized"), AWS_JSON),
}
EVERY_JOB = {
    "ensure_s3_bucket": (ensure_s3_bucket, ("acme-faults",), "moto", "s3"),
    "ensure_iam_role": (ensure_iam_role, ("acme-faults", TRUST), "moto", "iam"),
    "ensure_kms_key": (ensure_kms_key, ("acme-faults",), "moto", "json"),
    "put_ssm_parameter": (
        put_ssm_parameter,
        ("/acme/faults", SecretStr(SSM_SECRET)),
        "moto",
        "json",
    ),
    "ensure_secretsmanager_secret": (
        ensure_secretsmanager_secret,
        ("acme/faults", SecretStr(SM_SECRET)),
        "moto",
        "json",
    ),
    "get_service_quota": (get_service_quota, ("ec2", "L-1216C47A"), "fake", "json"),
    "request_service_quota_increase": (
        request_service_quota_increase,
        ("ec2", "L-1216C47A", 64),
        "fake",
        "json",
    ),
    "list_rds_snapshots": (list_rds_snapshots, ("acme-db",), "moto", "rds"),
    "list_ebs_snapshots": (list_ebs_snapshots, ("vol-0123456789abcdef0",), "moto", "ec2"),
    "list_backup_recovery_points": (list_backup_recovery_points, ("acme-vault",), "fake", "json"),
    "list_s3_object_versions": (list_s3_object_versions, ("acme-faults",), "moto", "s3"),
}


@pytest.mark.parametrize("job_name", EVERY_JOB)
def test_every_job_retries_a_503_but_not_a_403(
    job_name, aws_credentials, quota_credentials, moto_server, quota_fake, fault_proxy_factory
) -> None:
    the_job, arguments, backend, protocol = EVERY_JOB[job_name]
    seed_fake(quota_fake, {"quotas": [quota("L-1216C47A", 32)], "vaults": {"acme-vault": []}})
    independent(moto_server, "s3").create_bucket(
        Bucket="acme-faults", CreateBucketConfiguration={"LocationConstraint": AWS_REGION}
    )
    proxy = fault_proxy_factory(moto_server if backend == "moto" else quota_fake)
    through_proxy = aws_credentials_for(proxy.url)
    before = proxy.injected  # the proxy is shared by the session: count from here

    # A load balancer's bare 503: botocore falls back to the status, whatever the protocol.
    proxy.fail(status=503, count=1, body="")
    fast(the_job)(through_proxy, *arguments)
    assert proxy.injected - before == 1

    body, content_type = DENIED_BODY[protocol]
    proxy.fail(status=403, count=5, body=body, content_type=content_type)
    with pytest.raises(PermissionDeniedError) as raised:
        fast(the_job)(through_proxy, *arguments)
    assert proxy.injected - before == 2
    assert SSM_SECRET not in str(raised.value) and SM_SECRET not in str(raised.value)
    proxy.clear()


def test_policy_documents_are_parsed_from_iam_url_encoding() -> None:
    from urllib.parse import quote

    from tasks.aws.iam import _parse_policy

    assert _parse_policy(quote(json.dumps(TRUST))) == TRUST
    assert _parse_policy(json.dumps(TRUST, indent=2)) == TRUST
    assert _parse_policy(TRUST) is TRUST


# --- failures go through the one error table ----------------------------------------------


def test_a_tls_failure_is_invalid_input_and_not_retried(
    moto_server, aws_credentials, fault_proxy_factory, captured_logs
) -> None:
    # The proxy speaks plain HTTP: a TLS handshake with it fails like a wrong certificate.
    proxy = fault_proxy_factory(moto_server)
    tls = aws_credentials_for(proxy.url.replace("http://", "https://"))
    with pytest.raises(InvalidInputError, match=r"TLS failed .*\(SSLError\)"):
        fast(ensure_kms_key)(tls, "acme-tls")
    assert " - Retry " not in captured_logs.text


def test_a_truncated_answer_is_retried(moto_server, aws_credentials, fault_proxy_factory) -> None:
    proxy = fault_proxy_factory(moto_server)
    before = proxy.injected
    independent(moto_server, "kms").create_alias(
        AliasName="alias/acme-cut",
        TargetKeyId=independent(moto_server, "kms").create_key()["KeyMetadata"]["KeyId"],
    )
    proxy.fail(count=1, method="POST", truncate=8)  # DescribeKey's answer, cut short
    change = fast(ensure_kms_key)(aws_credentials_for(proxy.url), "acme-cut")
    assert change.action == Action.UNCHANGED
    assert proxy.injected - before == 1


@pytest.mark.parametrize(
    ("code", "status", "error_type"),
    [
        ("ThrottlingException", 400, TransientError),
        ("KMSInternalException", 400, TransientError),
        ("AccessDeniedException", 400, PermissionDeniedError),
        ("KMSInvalidStateException", 400, ConflictError),
        ("SomethingNew", 503, TransientError),
        ("SomethingNew", 400, InvalidInputError),
    ],
)
def test_aws_error_codes_mean_their_status_in_the_table(
    code, status, error_type, moto_server, aws_credentials, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(moto_server)
    before = proxy.injected
    body = aws_json_error(code, "injected")
    proxy.fail(status=status, count=5, method="POST", content_type=AWS_JSON, body=body)
    with pytest.raises(error_type, match=f"Key failed with {code}: injected"):
        fast(ensure_kms_key, retries=1)(aws_credentials_for(proxy.url), "acme-codes")
    assert proxy.injected - before == (2 if error_type is TransientError else 1)
    proxy.clear()


# --- idempotency at the wire: a second run and a dry run send no write --------------------

ACCOUNT_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "123456789012"}, "Action": "sts:AssumeRole"}
    ],
}


def test_ensure_s3_bucket_second_run_and_dry_run_send_no_writes(recording_proxies) -> None:
    aws = recording_proxies.aws()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_s3_bucket(aws, "acme-wire", **kw),
        wanted={"tags": {"team": "acme"}},
        changed={"tags": {"team": "other"}, "versioning": False},
    )
    assert [w.method for w in writes].count("PUT") >= 4  # bucket, versioning, encryption, ...


def test_ensure_iam_role_second_run_and_dry_run_send_no_writes(
    recording_proxies, moto_server
) -> None:
    aws = recording_proxies.aws()
    (audit,) = managed_policies(independent(moto_server, "iam"), "acme-audit")
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_iam_role(aws, "acme-wire", TRUST, **kw),
        wanted={"managed_policy_arns": [audit], "inline_policies": {"read": READ_BUCKETS}},
        changed={"inline_policies": {"read": WRITE_BUCKETS}},
    )
    assert {w.action for w in writes} == {"CreateRole", "AttachRolePolicy", "PutRolePolicy"}


def test_iam_trust_policy_with_a_bare_account_id_settles(recording_proxies, moto_server) -> None:
    aws = recording_proxies.aws()
    # What IAM stores for a bare account id principal (moto keeps the text as sent).
    stored = json.loads(
        json.dumps(ACCOUNT_TRUST).replace('"123456789012"', '"arn:aws:iam::123456789012:root"')
    )
    independent(moto_server, "iam").create_role(
        RoleName="acme-cross", AssumeRolePolicyDocument=json.dumps(stored)
    )
    with recording_proxies.no_writes():
        assert ensure_iam_role(aws, "acme-cross", ACCOUNT_TRUST).action == Action.UNCHANGED
    with recording_proxies.no_writes():
        assert ensure_iam_role(aws, "acme-cross", stored).action == Action.UNCHANGED


def test_ensure_kms_key_second_run_and_dry_run_send_no_writes(recording_proxies) -> None:
    aws = recording_proxies.aws()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_kms_key(aws, "acme-wire", **kw),
        wanted={"description": "acme data", "tags": {"team": "acme"}},
        changed={"description": "acme data at rest"},
    )
    assert [w.action for w in writes] == ["CreateKey", "CreateAlias"]


def test_put_ssm_parameter_second_run_and_dry_run_send_no_writes(recording_proxies) -> None:
    aws = recording_proxies.aws()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: put_ssm_parameter(aws, "/acme/wire", **kw),
        wanted={"value": SecretStr(SSM_SECRET), "tags": {"team": "acme"}},
        changed={"value": SecretStr(SSM_SECRET_2), "tags": {"team": "acme"}},
    )
    assert [w.action for w in writes] == ["PutParameter"]


def test_ensure_secretsmanager_secret_second_run_and_dry_run_send_no_writes(
    recording_proxies,
) -> None:
    aws = recording_proxies.aws()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_secretsmanager_secret(aws, "acme/wire", **kw),
        wanted={"value": SecretStr(SM_SECRET), "description": "db"},
        changed={"value": SecretStr(SM_SECRET_2), "description": "db"},
    )
    assert [w.action for w in writes] == ["CreateSecret"]


def test_request_service_quota_increase_second_run_and_dry_run_send_no_writes(
    recording_proxies, quota_fake
) -> None:
    aws = recording_proxies.aws_quotas()
    seed_fake(quota_fake, {"quotas": [quota("L-1216C47A", 32)]})
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: request_service_quota_increase(aws, "ec2", "L-1216C47A", **kw),
        wanted={"desired_value": 64},
    )
    assert [w.action for w in writes] == ["RequestServiceQuotaIncrease"]
    with recording_proxies.no_writes():  # a smaller ask is covered by the open request
        assert request_service_quota_increase(aws, "ec2", "L-1216C47A", 48).action == "unchanged"
    assert fake_state(quota_fake)["calls"]["RequestServiceQuotaIncrease"] == 1

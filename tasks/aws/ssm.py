"""SSM Parameter Store jobs: parameters that hold a value, and repointing one at a DR endpoint."""

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import SecretStr

from blocks import AwsCredentials
from magicflow import Action, Change, NotFoundError, connection, job
from tasks.aws.inputs import (
    require,
    secret_text,
    tag_changes,
    tag_dict,
    tag_list,
    validate_description,
    validate_region,
    validate_tags,
)
from tasks.aws.session import aws_client, aws_errors, call_or_none, report_change

_SSM_NAME = re.compile(r"^[a-zA-Z0-9_.\-/]{1,2048}$")
_SSM_VALUE_MAX_BYTES = 4096


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
    require(
        bool(_SSM_NAME.fullmatch(name)),
        resource,
        "a parameter name has 1 to 2048 of [A-Za-z0-9_.-/]",
    )
    require(
        "/" not in name or name.startswith("/"),
        resource,
        "a hierarchical parameter name starts with /",
    )
    require(name.count("/") <= 15, resource, "a parameter name has at most 15 levels")
    require(
        not name.lstrip("/").lower().startswith(("aws", "ssm")),
        resource,
        "parameter names starting with aws or ssm are reserved",
    )
    require(
        type in ("String", "StringList", "SecureString"),
        resource,
        "type is String, StringList or SecureString",
    )
    validate_description(resource, description, 1024)
    desired_tags = validate_tags(resource, tags)
    text = secret_text(resource, value, _SSM_VALUE_MAX_BYTES)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource, carries_secret=True):
        ssm = aws_client(credentials, "ssm")
        found = call_or_none(
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
                    **({"Tags": tag_list(desired_tags)} if desired_tags else {}),
                )["Version"]
            return report_change(resource, Action.CREATED, dry_run=dry_run, version=version)
        parameter = found["Parameter"]
        version = parameter["Version"]
        described = ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
        )["Parameters"]
        current_tags = tag_dict(
            ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name).get("TagList", [])
        )
        fields = []
        if parameter["Value"] != text:
            fields.append("value")
        if parameter["Type"] != type:
            fields.append("type")
        if (described[0].get("Description", "") if described else "") != description:
            fields.append("description")
        to_tag, to_untag = tag_changes(current_tags, desired_tags)
        if to_tag or to_untag:
            fields.append("tags")
        if not fields:
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run, version=version)
        if not dry_run:
            if {"value", "type", "description"} & set(fields):
                version = ssm.put_parameter(
                    Name=name, Value=text, Type=type, Description=description, Overwrite=True
                )["Version"]
            if to_tag:
                ssm.add_tags_to_resource(
                    ResourceType="Parameter", ResourceId=name, Tags=tag_list(to_tag)
                )
            if to_untag:
                ssm.remove_tags_from_resource(
                    ResourceType="Parameter", ResourceId=name, TagKeys=to_untag
                )
        return report_change(
            resource, Action.UPDATED, dry_run=dry_run, version=version, fields=fields
        )


@job
def delete_ssm_parameter(
    aws_credentials: AwsCredentials | str, name: str, dry_run: bool = False
) -> Change:
    """Deletes an SSM parameter (runbooks use it to undo one they created).

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name: The parameter name, for example ``/acme/db/password``.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:ssm:parameter/<name>``: ``deleted``, or ``unchanged``
        (detail ``absent``) when there is no such parameter.

    Raises:
        InvalidInputError: Bad name; nothing written.
        PermissionDeniedError: The credentials may not read or delete it.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import delete_ssm_parameter

        @flow
        def drop_parameter():
            delete_ssm_parameter("prod-aws", "/acme/db/password")
        ```
    """
    resource = f"aws:ssm:parameter/{name}"
    require(
        bool(_SSM_NAME.fullmatch(name)),
        resource,
        "a parameter name has 1 to 2048 of [A-Za-z0-9_.-/]",
    )
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        ssm = aws_client(credentials, "ssm")
        found = ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
        )["Parameters"]
        if not found:
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run, absent=True)
        if not dry_run:
            call_or_none({"ParameterNotFound"}, ssm.delete_parameter, Name=name)
    return report_change(resource, Action.DELETED, dry_run=dry_run)


@job
def repoint_ssm_parameter(
    aws_credentials: AwsCredentials | str,
    name: str,
    value: str,
    region: str | None = None,
    dry_run: bool = False,
) -> Change:
    """Points an existing parameter at a new value (an endpoint), keeping everything else.

    For failovers: the parameter must exist; only its value changes (its type,
    description and tags stay as they are), and only when it differs. The value is
    configuration such as a hostname, not a secret (it travels in a DR plan); the
    current value is never logged or returned, as it may be a ``SecureString``.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name: The parameter name, for example ``/acme/db/host``.
        value: The new value.
        region: The parameter's region; the block's when omitted.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:ssm:parameter/<name>``: ``updated`` (``detail["version"]``)
        or ``unchanged``.

    Raises:
        InvalidInputError: Bad name, region, empty or oversized value; nothing written.
        NotFoundError: The parameter does not exist.
        PermissionDeniedError: The credentials may not read, decrypt or write it.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import repoint_ssm_parameter

        @flow
        def fail_over_orders():
            repoint_ssm_parameter("prod-aws", "/orders/db/host", "orders-dr.example.internal")
        ```
    """
    resource = f"aws:ssm:parameter/{name}"
    require(
        bool(_SSM_NAME.fullmatch(name)),
        resource,
        "a parameter name has 1 to 2048 of [A-Za-z0-9_.-/]",
    )
    validate_region(resource, region)
    require(isinstance(value, str) and 0 < len(value.encode()) <= _SSM_VALUE_MAX_BYTES, resource,
            f"the value has 1 to {_SSM_VALUE_MAX_BYTES} bytes")  # fmt: skip
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource, carries_secret=True):
        ssm = aws_client(credentials, "ssm", region)
        found = call_or_none(
            {"ParameterNotFound"}, ssm.get_parameter, Name=name, WithDecryption=True
        )
        if found is None:
            raise NotFoundError(
                resource, "the parameter does not exist; a failover repoints, never creates"
            )
        parameter = found["Parameter"]
        if parameter["Value"] == value:
            return report_change(
                resource, Action.UNCHANGED, dry_run=dry_run, version=parameter["Version"]
            )
        version = parameter["Version"]
        if not dry_run:
            version = ssm.put_parameter(
                Name=name, Value=value, Type=parameter["Type"], Overwrite=True
            )["Version"]
    return report_change(
        resource, Action.UPDATED, dry_run=dry_run, version=version, fields=["value"]
    )

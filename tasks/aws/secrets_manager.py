"""Secrets Manager jobs: a secret whose current version holds a value."""

import re
from collections.abc import Mapping

from pydantic import SecretStr

from blocks import AwsCredentials
from magicflow import Action, Change, ConflictError, connection, job
from tasks.aws.inputs import (
    require,
    secret_text,
    tag_changes,
    tag_dict,
    tag_list,
    validate_description,
    validate_tags,
)
from tasks.aws.session import aws_client, aws_errors, call_or_none, report_change

_SECRET_NAME = re.compile(r"^[a-zA-Z0-9/_+=.@-]{1,512}$")
_SECRET_VALUE_MAX_BYTES = 65536


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
    require(
        bool(_SECRET_NAME.fullmatch(name)),
        resource,
        "a secret name has 1 to 512 of [A-Za-z0-9/_+=.@-]",
    )
    validate_description(resource, description, 2048)
    desired_tags = validate_tags(resource, tags)
    text = secret_text(resource, value, _SECRET_VALUE_MAX_BYTES)
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource, carries_secret=True):
        secrets = aws_client(credentials, "secretsmanager")
        described = call_or_none(
            {"ResourceNotFoundException"}, secrets.describe_secret, SecretId=name
        )
        if described is None:
            version_id = None
            if not dry_run:
                version_id = secrets.create_secret(
                    Name=name,
                    SecretString=text,
                    Description=description,
                    **({"Tags": tag_list(desired_tags)} if desired_tags else {}),
                )["VersionId"]
            return report_change(resource, Action.CREATED, dry_run=dry_run, version_id=version_id)
        if described.get("DeletedDate"):
            raise ConflictError(resource, "the secret is scheduled for deletion; restore it first")
        current = call_or_none(
            {"ResourceNotFoundException"}, secrets.get_secret_value, SecretId=name
        )
        version_id = current.get("VersionId") if current else None
        fields = []
        if current is None or current.get("SecretString") != text:
            fields.append("value")
        if described.get("Description", "") != description:
            fields.append("description")
        to_tag, to_untag = tag_changes(tag_dict(described.get("Tags", [])), desired_tags)
        if to_tag or to_untag:
            fields.append("tags")
        if not fields:
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run, version_id=version_id)
        if not dry_run:
            if "value" in fields:
                version_id = secrets.put_secret_value(SecretId=name, SecretString=text)["VersionId"]
            if "description" in fields:
                secrets.update_secret(SecretId=name, Description=description)
            if to_tag:
                secrets.tag_resource(SecretId=name, Tags=tag_list(to_tag))
            if to_untag:
                secrets.untag_resource(SecretId=name, TagKeys=to_untag)
        return report_change(
            resource, Action.UPDATED, dry_run=dry_run, version_id=version_id, fields=fields
        )


@job
def delete_secretsmanager_secret(
    aws_credentials: AwsCredentials | str, name: str, dry_run: bool = False
) -> Change:
    """Deletes a Secrets Manager secret at once, without a recovery window.

    Runbooks use it to undo a secret they created, so that a rerun can create it
    again under the same name (a secret scheduled for deletion blocks its name).

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name: The secret name, for example ``acme/db``.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:secretsmanager:secret/<name>``: ``deleted``, or
        ``unchanged`` (detail ``absent``) when there is no such secret (or it is
        already scheduled for deletion).

    Raises:
        InvalidInputError: Bad name; nothing written.
        PermissionDeniedError: The credentials may not read or delete it.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import delete_secretsmanager_secret

        @flow
        def drop_secret():
            delete_secretsmanager_secret("prod-aws", "acme/db")
        ```
    """
    resource = f"aws:secretsmanager:secret/{name}"
    require(
        bool(_SECRET_NAME.fullmatch(name)),
        resource,
        "a secret name has 1 to 512 of [A-Za-z0-9/_+=.@-]",
    )
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        secrets = aws_client(credentials, "secretsmanager")
        described = call_or_none(
            {"ResourceNotFoundException"}, secrets.describe_secret, SecretId=name
        )
        if described is None or described.get("DeletedDate"):
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run, absent=True)
        if not dry_run:
            call_or_none(
                {"ResourceNotFoundException"},
                secrets.delete_secret,
                SecretId=name,
                ForceDeleteWithoutRecovery=True,
            )
    return report_change(resource, Action.DELETED, dry_run=dry_run)

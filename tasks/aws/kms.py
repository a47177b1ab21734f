"""KMS jobs: a customer-managed key behind an alias, with its description and tags."""

import re
from collections.abc import Mapping
from typing import Any

from blocks import AwsCredentials
from magicflow import Action, Change, ConflictError, connection, job
from tasks.aws.inputs import (
    require,
    tag_changes,
    tag_dict,
    tag_list,
    validate_description,
    validate_tags,
)
from tasks.aws.session import aws_client, aws_errors, call_or_none, paginate, report_change

_KMS_ALIAS = re.compile(r"^alias/[a-zA-Z0-9/_-]{1,250}$")


ALIAS_TAG = "magicflow:alias"
"""Tag every key `ensure_kms_key` creates carries: the alias it was created for.

A transient failure between ``CreateKey`` and ``CreateAlias`` leaves a key without
its alias; the retry finds it by this tag and adopts it instead of creating a
second key."""


def _kms_tags(kms: Any, key_id: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    marker: dict[str, str] = {}
    while True:
        page = kms.list_resource_tags(KeyId=key_id, **marker)
        tags.update(tag_dict(page.get("Tags", []), "TagKey", "TagValue"))
        if not page.get("Truncated"):
            return tags
        marker = {"Marker": page["NextMarker"]}


def _key_left_without_its_alias(kms: Any, alias_name: str) -> dict[str, Any] | None:
    """The metadata of a usable key created for `alias_name` that has no alias yet, if any."""
    for key in paginate(kms, "list_keys", "Keys"):
        key_id = key["KeyId"]
        # Keys we may not read (another team's, AWS's) cannot be ours: skip them.
        tags = call_or_none(
            {"AccessDeniedException", "NotFoundException"}, _kms_tags, kms=kms, key_id=key_id
        )
        if not tags or tags.get(ALIAS_TAG) != alias_name:
            continue
        metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        if metadata.get("KeyState") != "Enabled" or paginate(
            kms, "list_aliases", "Aliases", KeyId=key_id
        ):
            continue
        return dict(metadata)
    return None


def _converge_key(
    kms: Any,
    metadata: Mapping[str, Any],
    description: str,
    desired_tags: Mapping[str, str],
    dry_run: bool,
) -> list[str]:
    """Brings a key's description and tags (all but `ALIAS_TAG`) in line; returns what differed."""
    key_id = metadata["KeyId"]
    current_tags = _kms_tags(kms, key_id)
    current_tags.pop(ALIAS_TAG, None)
    to_tag, to_untag = tag_changes(current_tags, desired_tags)
    fields = []
    if metadata.get("Description", "") != description:
        fields.append("description")
    if to_tag or to_untag:
        fields.append("tags")
    if fields and not dry_run:
        if "description" in fields:
            kms.update_key_description(KeyId=key_id, Description=description)
        if to_tag:
            kms.tag_resource(KeyId=key_id, Tags=tag_list(to_tag, "TagKey", "TagValue"))
        if to_untag:
            kms.untag_resource(KeyId=key_id, TagKeys=to_untag)
    return fields


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
    brought in line. A created key is tagged ``magicflow:alias=<alias>`` (`ALIAS_TAG`),
    so that a run interrupted between creating the key and its alias adopts that key
    on its retry instead of creating a second one; finding it lists the account's keys,
    which happens only while the alias does not exist.

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        alias: The alias, with or without the ``alias/`` prefix (``alias/aws/`` is AWS's).
        description: The key's description.
        tags: The key's complete tag set; tags not listed are removed (``magicflow:alias``
            is MagicFlow's and is kept).
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:kms:alias/<alias>``; ``detail["key_id"]`` is the key id
        (absent in a dry run that would create the key), ``detail["fields"]`` names
        what differed and ``detail["adopted"]`` is true when an existing key without its
        alias was given the alias.

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
    require(
        bool(_KMS_ALIAS.fullmatch(alias_name)),
        resource,
        "an alias has 1 to 250 of [A-Za-z0-9/_-] after alias/",
    )
    require(not alias_name.startswith("alias/aws/"), resource, "alias/aws/ is reserved for AWS")
    validate_description(resource, description, 8192)
    desired_tags = validate_tags(resource, tags)
    require(ALIAS_TAG not in desired_tags, resource, f"the tag key {ALIAS_TAG} is MagicFlow's")
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        kms = aws_client(credentials, "kms")
        found = call_or_none({"NotFoundException"}, kms.describe_key, KeyId=alias_name)
        if found is None:
            orphan = _key_left_without_its_alias(kms, alias_name)
            if orphan is not None:
                key_id = orphan["KeyId"]
                if not dry_run:
                    kms.create_alias(AliasName=alias_name, TargetKeyId=key_id)
                fields = _converge_key(kms, orphan, description, desired_tags, dry_run)
                return report_change(
                    resource, Action.CREATED, dry_run=dry_run, key_id=key_id, adopted=True,
                    fields=fields,
                )  # fmt: skip
            if dry_run:
                return report_change(resource, Action.CREATED, dry_run=True)
            key_id = kms.create_key(
                Description=description,
                Tags=tag_list({**desired_tags, ALIAS_TAG: alias_name}, "TagKey", "TagValue"),
            )["KeyMetadata"]["KeyId"]
            kms.create_alias(AliasName=alias_name, TargetKeyId=key_id)
            return report_change(resource, Action.CREATED, dry_run=False, key_id=key_id)
        metadata = found["KeyMetadata"]
        key_id = metadata["KeyId"]
        if metadata.get("KeyState") in ("PendingDeletion", "PendingReplicaDeletion"):
            raise ConflictError(
                resource, f"key {key_id} is pending deletion; cancel the deletion first"
            )
        fields = _converge_key(kms, metadata, description, desired_tags, dry_run)
        if not fields:
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run, key_id=key_id)
        return report_change(
            resource, Action.UPDATED, dry_run=dry_run, key_id=key_id, fields=fields
        )

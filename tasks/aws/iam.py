"""IAM jobs: roles with exactly the given trust policy, policies, tags and description."""

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from blocks import AwsCredentials
from magicflow import Action, Change, InvalidInputError, NotFoundError, connection, job
from tasks.aws.inputs import (
    require,
    tag_changes,
    tag_dict,
    tag_list,
    validate_description,
    validate_tags,
)
from tasks.aws.session import aws_client, aws_errors, call_or_none, paginate, report_change

_IAM_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
_IAM_DESCRIPTION = re.compile(r"^[\t\n\r\x20-\x7e\xa1-\xff]*$")
_IAM_POLICY_NAME = re.compile(r"^[\w+=,.@-]{1,128}$")
_MANAGED_POLICY_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(aws|\d{12}):policy/[\w+=,.@/-]{1,128}$")
_POLICY_VERSIONS = ("2012-10-17", "2008-10-17")
_TRUST_POLICY_MAX_CHARS = 4096
_INLINE_POLICIES_MAX_CHARS = 10240
_MAX_MANAGED_POLICIES = 20


def _validate_policy(resource: str, label: str, document: Any, *, trust: bool) -> str:
    """Checks an IAM policy's structure and returns its compact JSON text."""
    require(isinstance(document, Mapping), resource, f"{label} is a JSON object")
    try:
        text = json.dumps(document, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        raise InvalidInputError(resource, f"{label} is not JSON-serialisable") from None
    version = document.get("Version", _POLICY_VERSIONS[0])
    require(version in _POLICY_VERSIONS, resource, f"{label} has an unknown Version {version!r}")
    statements = document.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    require(
        isinstance(statements, list) and len(statements) > 0,
        resource,
        f"{label} needs a non-empty Statement",
    )
    for index, statement in enumerate(statements):
        where = f"{label} Statement[{index}]"
        require(isinstance(statement, Mapping), resource, f"{where} is a JSON object")
        require(
            statement.get("Effect") in ("Allow", "Deny"),
            resource,
            f"{where} needs Effect Allow or Deny",
        )
        require(
            "Action" in statement or "NotAction" in statement,
            resource,
            f"{where} needs Action or NotAction",
        )
        if trust:
            require(
                "Principal" in statement or "NotPrincipal" in statement,
                resource,
                f"{where} needs a Principal",
            )
        else:
            require(
                "Resource" in statement or "NotResource" in statement,
                resource,
                f"{where} needs Resource or NotResource",
            )
            require("Principal" not in statement, resource, f"{where} may not name a Principal")
    return text


def _parse_policy(document: Any) -> Any:
    """A policy document as parsed JSON; IAM returns URL-encoded text from some calls."""
    if isinstance(document, str):
        text = document if document.lstrip().startswith("{") else unquote(document)
        return json.loads(text)
    return document


_ACCOUNT_ID = re.compile(r"^\d{12}$")


def _normalized_trust_policy(document: Any, partition: str) -> Any:
    """A trust policy as IAM stores it, so that what we want compares equal to what we read.

    IAM rewrites a bare account id principal (``"123456789012"``) to the account's
    root ARN (``arn:aws:iam::123456789012:root``) and accepts a single statement
    object for a list of one; without this, such a policy would never compare equal
    and every run would rewrite it.
    """
    if not isinstance(document, Mapping):
        return document
    statements = document.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list):
        return dict(document)
    return {**document, "Statement": [_normalized_statement(s, partition) for s in statements]}


def _normalized_statement(statement: Any, partition: str) -> Any:
    if not isinstance(statement, Mapping):
        return statement
    normalized = dict(statement)
    for key in ("Principal", "NotPrincipal"):
        principal = statement.get(key)
        if isinstance(principal, Mapping) and "AWS" in principal:
            aws = principal["AWS"]
            rewritten = (
                [_root_arn(p, partition) for p in aws]
                if isinstance(aws, list)
                else _root_arn(aws, partition)
            )
            normalized[key] = {**principal, "AWS": rewritten}
    return normalized


def _root_arn(principal: Any, partition: str) -> Any:
    """The account's root ARN for a bare account id; any other principal as it is."""
    if isinstance(principal, str) and _ACCOUNT_ID.match(principal):
        return f"arn:{partition}:iam::{principal}:root"
    return principal


def _read_role(iam: Any, name: str) -> dict[str, Any] | None:
    found = call_or_none({"NoSuchEntity"}, iam.get_role, RoleName=name)
    if found is None:
        return None
    role = found["Role"]
    inline_names = paginate(iam, "list_role_policies", "PolicyNames", RoleName=name)
    return {
        "description": role.get("Description", ""),
        "trust_policy": _normalized_trust_policy(
            _parse_policy(role["AssumeRolePolicyDocument"]), iam.meta.partition
        ),
        "tags": tag_dict(paginate(iam, "list_role_tags", "Tags", RoleName=name)),
        "managed_policies": {
            policy["PolicyArn"]
            for policy in paginate(
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
    difference; a bare account id principal compares equal to the root ARN IAM
    stores for it. Managed policies are attached and detached, and inline policies put and
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
    require(
        bool(_IAM_NAME.fullmatch(name)), resource, "a role name has 1 to 64 of [A-Za-z0-9+=,.@_-]"
    )
    validate_description(resource, description, 1000)
    require(
        bool(_IAM_DESCRIPTION.fullmatch(description)),
        resource,
        "a role description has only printable Latin-1 characters",
    )
    trust_text = _validate_policy(resource, "trust_policy", trust_policy, trust=True)
    require(
        len(trust_text) <= _TRUST_POLICY_MAX_CHARS,
        resource,
        f"trust_policy is longer than {_TRUST_POLICY_MAX_CHARS} characters",
    )
    managed = list(managed_policy_arns)
    for arn in managed:
        require(
            bool(_MANAGED_POLICY_ARN.fullmatch(arn)),
            resource,
            f"{arn!r} is not a managed policy ARN",
        )
    require(len(set(managed)) == len(managed), resource, "managed_policy_arns has duplicates")
    require(
        len(managed) <= _MAX_MANAGED_POLICIES,
        resource,
        f"at most {_MAX_MANAGED_POLICIES} managed policies per role",
    )
    inline = dict(inline_policies or {})
    inline_size = 0
    for policy_name, document in inline.items():
        require(
            bool(_IAM_POLICY_NAME.fullmatch(policy_name)),
            resource,
            f"inline policy name {policy_name!r} has 1 to 128 of [A-Za-z0-9+=,.@_-]",
        )
        inline_size += len(
            _validate_policy(resource, f"inline policy {policy_name}", document, trust=False)
        )
    require(
        inline_size <= _INLINE_POLICIES_MAX_CHARS,
        resource,
        f"inline policies are longer than {_INLINE_POLICIES_MAX_CHARS} characters in total",
    )
    desired: dict[str, Any] = {
        "description": description,
        "trust_policy": _parse_policy(trust_text),
        "tags": validate_tags(resource, tags),
        "managed_policies": set(managed),
        "inline_policies": {key: _parse_policy(json.dumps(doc)) for key, doc in inline.items()},
    }
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        iam = aws_client(credentials, "iam")
        desired["trust_policy"] = _normalized_trust_policy(
            desired["trust_policy"], iam.meta.partition
        )
        current = _read_role(iam, name)
        attached = current["managed_policies"] if current else set()
        # Checked before any write, so that a typo in an ARN leaves no half-made role behind.
        for arn in sorted(desired["managed_policies"] - attached):
            if call_or_none({"NoSuchEntity"}, iam.get_policy, PolicyArn=arn) is None:
                raise NotFoundError(resource, f"managed policy {arn} does not exist")
        if current is None:
            if not dry_run:
                iam.create_role(
                    RoleName=name,
                    AssumeRolePolicyDocument=json.dumps(trust_policy),
                    Description=description,
                    Tags=tag_list(desired["tags"]),
                )
                for arn in sorted(desired["managed_policies"]):
                    iam.attach_role_policy(RoleName=name, PolicyArn=arn)
                for policy_name, document in sorted(inline.items()):
                    iam.put_role_policy(
                        RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
                    )
            return report_change(resource, Action.CREATED, dry_run=dry_run)
        fields = [field for field in desired if desired[field] != current[field]]
        if not fields:
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run)
        if not dry_run:
            _apply_role_changes(iam, name, desired, current, trust_policy, inline)
        return report_change(resource, Action.UPDATED, dry_run=dry_run, fields=fields)


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
    to_tag, to_untag = tag_changes(current["tags"], desired["tags"])
    if to_tag:
        iam.tag_role(RoleName=name, Tags=tag_list(to_tag))
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


@job
def delete_iam_role(
    aws_credentials: AwsCredentials | str, name: str, dry_run: bool = False
) -> Change:
    """Deletes an IAM role after detaching its managed and deleting its inline policies.

    Runbooks use it to undo a role they created. A role still used by an instance
    profile is not deleted (IAM refuses it; the job fails with `ConflictError`).

    Args:
        aws_credentials: The AWS connection, or the name of a saved `AwsCredentials` block.
        name: The role name.
        dry_run: Read and report the plan without writing.

    Returns:
        The `Change` for ``aws:iam:role/<name>``: ``deleted``, or ``unchanged`` (detail
        ``absent``) when there is no such role.

    Raises:
        InvalidInputError: Bad name; nothing written.
        ConflictError: The role is still in use.
        PermissionDeniedError: The credentials may not read or delete the role.
        TransientError: Throttling, 5xx or network trouble (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.aws import delete_iam_role

        @flow
        def drop_role():
            delete_iam_role("prod-aws", "acme-deployer")
        ```
    """
    resource = f"aws:iam:role/{name}"
    require(
        bool(_IAM_NAME.fullmatch(name)), resource, "a role name has 1 to 64 of [A-Za-z0-9+=,.@_-]"
    )
    credentials = connection(aws_credentials, AwsCredentials)
    with aws_errors(resource):
        iam = aws_client(credentials, "iam")
        current = _read_role(iam, name)
        if current is None:
            return report_change(resource, Action.UNCHANGED, dry_run=dry_run, absent=True)
        if not dry_run:
            for arn in sorted(current["managed_policies"]):
                iam.detach_role_policy(RoleName=name, PolicyArn=arn)
            for policy_name in sorted(current["inline_policies"]):
                iam.delete_role_policy(RoleName=name, PolicyName=policy_name)
            call_or_none({"NoSuchEntity"}, iam.delete_role, RoleName=name)
    return report_change(resource, Action.DELETED, dry_run=dry_run)

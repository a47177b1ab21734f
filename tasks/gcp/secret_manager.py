"""Secret Manager jobs: a secret whose latest enabled version holds a value."""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions as google_errors
from google.cloud.secretmanager import SecretManagerServiceClient, SecretVersion
from pydantic import SecretStr

from blocks.gcp import GcpConnection
from magicflow import (
    Action,
    Change,
    InvalidInputError,
    connection,
    job,
    report,
)
from tasks.gcp.session import (
    REQUEST_TIMEOUT_SECONDS,
    calling,
    project_of,
    require,
    validate_labels,
)

MAX_SECRET_PAYLOAD_BYTES = 64 * 1024
"""Secret Manager's limit on one secret version's payload."""

_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")


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
    project = project_of(gcp, None, f"gcp:secret/secrets/{secret_id}")
    name = f"projects/{project}/secrets/{secret_id}"
    resource = f"gcp:secret/{name}"
    require(_SECRET_ID, secret_id, resource, "secret id")
    wanted_labels = validate_labels(resource, labels or {})
    payload = value.get_secret_value().encode("utf-8")
    if not payload:
        raise InvalidInputError(resource, "the secret value is empty")
    if len(payload) > MAX_SECRET_PAYLOAD_BYTES:
        raise InvalidInputError(
            resource, f"the secret value is larger than {MAX_SECRET_PAYLOAD_BYTES} bytes"
        )
    client = gcp.get_secret_manager_client()

    with calling(resource, "read the secret"):
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
        with calling(resource, "create the secret"):
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

    with calling(resource, "read the latest enabled version"):
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
        with calling(resource, "update the secret's labels"):
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
    with calling(resource, "add a secret version"):
        version = client.add_secret_version(
            request={"parent": name, "payload": {"data": payload}},
            retry=None,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
    return {"version": _version_number(version.name), "version_name": version.name}


@job
def delete_gcp_secret(
    gcp_connection: GcpConnection | str, secret_id: str, dry_run: bool = False
) -> Change:
    """Deletes a Secret Manager secret with all its versions (to undo one a runbook created).

    Args:
        gcp_connection: The GCP connection block (its project holds the secret).
        secret_id: The secret's id.
        dry_run: Read only, and report what would be done.

    Returns:
        A `Change` for ``gcp:secret/projects/<p>/secrets/<id>``: ``deleted``, or
        ``unchanged`` (detail ``absent``) when there is no such secret.

    Raises:
        InvalidInputError: A bad id.
        PermissionDeniedError: The connection may not read or delete the secret.
        TransientError: Secret Manager was unavailable (retried by Prefect).

    Example:
        ```python
        from prefect import flow
        from tasks.gcp import delete_gcp_secret

        @flow
        def drop_secret():
            delete_gcp_secret("prod", "acme-db-password")
        ```
    """
    gcp = connection(gcp_connection, GcpConnection)
    project = project_of(gcp, None, f"gcp:secret/secrets/{secret_id}")
    name = f"projects/{project}/secrets/{secret_id}"
    resource = f"gcp:secret/{name}"
    require(_SECRET_ID, secret_id, resource, "secret id")
    client = gcp.get_secret_manager_client()
    with calling(resource, "read the secret"):
        try:
            client.get_secret(request={"name": name}, retry=None, timeout=REQUEST_TIMEOUT_SECONDS)
        except google_errors.NotFound:
            return report(
                Change(
                    resource=resource,
                    action=Action.UNCHANGED,
                    dry_run=dry_run,
                    detail={"absent": True},
                )
            )
    if not dry_run:
        with calling(resource, "delete the secret"):
            try:
                client.delete_secret(
                    request={"name": name}, retry=None, timeout=REQUEST_TIMEOUT_SECONDS
                )
            except google_errors.NotFound:
                pass  # deleted by someone else in between: the goal is reached
    return report(Change(resource=resource, action=Action.DELETED, dry_run=dry_run))

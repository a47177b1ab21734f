"""Secrets: a Secret's ``data``, compared decoded and never logged, returned or raised."""

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from blocks import KubernetesConnection
from magicflow import Action, Change, ConflictError, InvalidInputError, job
from tasks.kubernetes.session import (
    Metadata,
    _check_data_key,
    _check_metadata,
    _core_v1,
    _metadata_patch,
    _namespaced_resource,
    _present,
    _read,
    _unchanged,
    _write,
)


def _decoded(value: Any) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        return None


@job
def ensure_secret(
    kubernetes: KubernetesConnection | str,
    namespace: str,
    name: str,
    data: Mapping[str, SecretStr],
    type: str = "Opaque",
    labels: Metadata | None = None,
    dry_run: bool = False,
) -> Change:
    """Ensures a Secret whose ``data`` is exactly `data`, writing only when it differs.

    Current values are base64-decoded and compared with the given ones; values are
    never logged, returned or put in errors. Keys not in `data` are removed. Labels
    are managed like `ensure_namespace`'s: only the given keys.

    Args:
        kubernetes: The cluster connection, or the name of a saved one.
        namespace: The namespace (an RFC 1123 DNS label); it must exist.
        name: The Secret name (an RFC 1123 DNS subdomain).
        data: Key -> value; keys are letters, digits, ``-``, ``_`` and ``.``.
        type: The Secret type, e.g. ``Opaque`` or ``kubernetes.io/tls``. A Secret's
            type cannot change once created.
        labels: Labels to ensure (``None`` as a value removes the label).
        dry_run: Read only, and report what would change.

    Returns:
        The change to ``k8s:secret/<namespace>/<name>``; ``detail`` lists the changed
        KEYS (never values).

    Raises:
        InvalidInputError: A name, key or label is malformed, or a value is empty or
            not a ``SecretStr`` (nothing written).
        ConflictError: The existing Secret has another type.
        NotFoundError: The namespace does not exist.
        PermissionDeniedError: The connection may not read or change Secrets.
        TransientError: The API server failed or was unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from pydantic import SecretStr
        from tasks.kubernetes import ensure_secret

        @flow
        def db_credentials(team: str, password: SecretStr):
            ensure_secret("prod-cluster", team, "db", {"password": password})
        ```
    """
    resource = _namespaced_resource("secret", namespace, name, "Secret name")
    labels = dict(labels or {})
    _check_metadata(resource, labels, {})
    if not isinstance(type, str) or not type or len(type) > 253 or any(c.isspace() for c in type):
        raise InvalidInputError(resource, f"Secret type {type!r} is not valid")
    wanted: dict[str, bytes] = {}
    for key, value in data.items():
        _check_data_key(resource, "Secret", key)
        if not isinstance(value, SecretStr) or not value.get_secret_value():
            raise InvalidInputError(resource, f"data[{key}] must be a non-empty SecretStr")
        wanted[key] = value.get_secret_value().encode()
    encoded = {key: base64.b64encode(value).decode() for key, value in wanted.items()}
    with _core_v1(kubernetes) as core:
        current = _read(core, resource, core.read_namespaced_secret, name, namespace)
        if current is None:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace, "labels": _present(labels)},
                "type": type,
                "data": encoded,
            }
            detail: dict[str, Any] = {"keys": sorted(wanted)}
            return _write(
                resource,
                Action.CREATED,
                detail,
                dry_run,
                core.create_namespaced_secret,
                namespace,
                body,
            )
        if current.get("type", "Opaque") != type:
            raise ConflictError(
                resource,
                f"Secret has type {current.get('type')!r}, not {type!r}; "
                "the type is immutable, delete the Secret to change it",
            )
        current_data = {key: _decoded(value) for key, value in (current.get("data") or {}).items()}
        changed_keys = sorted(
            key
            for key in wanted.keys() | current_data.keys()
            if current_data.get(key) != wanted.get(key)
        )
        changed_labels = _metadata_patch(current.get("metadata", {}).get("labels"), labels)
        if not changed_keys and not changed_labels:
            return _unchanged(resource, dry_run)
        patch: dict[str, Any] = {}
        if changed_keys:
            patch["data"] = {key: encoded.get(key) for key in changed_keys}
        if changed_labels:
            patch["metadata"] = {"labels": changed_labels}
        detail = {"changed_keys": changed_keys, "changed_labels": sorted(changed_labels)}
        detail = {field: keys for field, keys in detail.items() if keys}
        return _write(
            resource,
            Action.UPDATED,
            detail,
            dry_run,
            core.patch_namespaced_secret,
            name,
            namespace,
            patch,
        )

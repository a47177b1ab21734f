"""Namespaces: a tenant's namespace, and deleting it or the objects inside it.

Only the given label and annotation keys of a namespace are managed; other keys,
which controllers and people add, are left alone.
"""

from typing import Any, Literal

from blocks import KubernetesConnection
from magicflow import Action, Change, ConflictError, InvalidInputError, job
from tasks.kubernetes.session import (
    Metadata,
    _check_metadata,
    _check_name,
    _core_v1,
    _delete,
    _metadata_patch,
    _namespaced_resource,
    _present,
    _read,
    _unchanged,
    _write,
)

MANAGED_BY_LABEL = ("managed-by", "magicflow")
"""The label MagicFlow puts on the namespaces it manages (one namespace per tenant)."""

TENANT_LABEL = "tenant"
"""The label naming a managed namespace's tenant (the namespace name when absent)."""


@job
def ensure_namespace(
    kubernetes: KubernetesConnection | str,
    name: str,
    labels: Metadata | None = None,
    annotations: Metadata | None = None,
    dry_run: bool = False,
) -> Change:
    """Ensures a namespace exists with the given labels and annotations.

    Only the given label and annotation keys are managed: they are added or updated,
    a key given as ``None`` is removed, and keys that others added stay as they are.

    Args:
        kubernetes: The cluster connection, or the name of a saved one.
        name: The namespace name, an RFC 1123 DNS label.
        labels: Labels to ensure (``None`` as a value removes the label).
        annotations: Annotations to ensure (``None`` as a value removes it).
        dry_run: Read only, and report what would change.

    Returns:
        The change to ``k8s:namespace/<name>``; ``detail`` names the changed label and
        annotation keys.

    Raises:
        InvalidInputError: A name, label or annotation is malformed (nothing written).
        ConflictError: The namespace is being deleted.
        PermissionDeniedError: The connection may not read or change namespaces.
        TransientError: The API server failed or was unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.kubernetes import ensure_namespace

        @flow
        def onboard(team: str):
            ensure_namespace("prod-cluster", team, labels={"team": team})
        ```
    """
    resource = f"k8s:namespace/{name}"
    labels, annotations = dict(labels or {}), dict(annotations or {})
    _check_name(resource, "namespace name", name, label=True)
    _check_metadata(resource, labels, annotations)
    with _core_v1(kubernetes) as core:
        current = _read(core, resource, core.read_namespace, name)
        if current is None:
            metadata = {"name": name, "labels": _present(labels)}
            if _present(annotations):
                metadata["annotations"] = _present(annotations)
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
            return _write(resource, Action.CREATED, {}, dry_run, core.create_namespace, body)
        if current.get("status", {}).get("phase") == "Terminating":
            raise ConflictError(resource, "namespace is being deleted; wait and run again")
        meta = current.get("metadata", {})
        patch = {
            "labels": _metadata_patch(meta.get("labels"), labels),
            "annotations": _metadata_patch(meta.get("annotations"), annotations),
        }
        patch = {field: changes for field, changes in patch.items() if changes}
        if not patch:
            return _unchanged(resource, dry_run)
        detail: dict[str, Any] = {
            f"changed_{field}": sorted(changes) for field, changes in patch.items()
        }
        return _write(
            resource,
            Action.UPDATED,
            detail,
            dry_run,
            core.patch_namespace,
            name,
            {"metadata": patch},
        )


@job
def delete_namespace(
    kubernetes: KubernetesConnection | str, name: str, dry_run: bool = False
) -> Change:
    """Deletes a namespace, and with it everything inside it.

    Runbooks call it to undo a namespace they created; the API server then removes
    the namespace's objects in the background (the namespace is ``Terminating``
    until it is done).

    Args:
        kubernetes: The cluster connection, or the name of a saved one.
        name: The namespace name, an RFC 1123 DNS label.
        dry_run: Read only, and report what would be deleted.

    Returns:
        The change to ``k8s:namespace/<name>``: ``deleted``, or ``unchanged`` (detail
        ``absent``) when it does not exist.

    Raises:
        InvalidInputError: The name is malformed.
        PermissionDeniedError: The connection may not delete namespaces.
        TransientError: The API server failed or was unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.kubernetes import delete_namespace

        @flow
        def offboard(team: str):
            delete_namespace("prod-cluster", team)
        ```
    """
    resource = f"k8s:namespace/{name}"
    _check_name(resource, "namespace name", name, label=True)
    with _core_v1(kubernetes) as core:
        return _delete(resource, dry_run, core.read_namespace, core.delete_namespace, core, name)


NamespacedKind = Literal["ResourceQuota", "LimitRange", "Secret"]
"""Kinds `delete_namespaced_object` deletes."""


@job
def delete_namespaced_object(
    kubernetes: KubernetesConnection | str,
    kind: NamespacedKind,
    namespace: str,
    name: str,
    dry_run: bool = False,
) -> Change:
    """Deletes a ResourceQuota, LimitRange or Secret.

    Args:
        kubernetes: The cluster connection, or the name of a saved one.
        kind: ``ResourceQuota``, ``LimitRange`` or ``Secret``.
        namespace: The namespace (an RFC 1123 DNS label).
        name: The object's name (an RFC 1123 DNS subdomain).
        dry_run: Read only, and report what would be deleted.

    Returns:
        The change to ``k8s:<kind>/<namespace>/<name>`` (kind in lowercase):
        ``deleted``, or ``unchanged`` (detail ``absent``) when it does not exist.

    Raises:
        InvalidInputError: A name or the kind is not valid.
        PermissionDeniedError: The connection may not delete such objects.
        TransientError: The API server failed or was unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.kubernetes import delete_namespaced_object

        @flow
        def drop_quota(team: str):
            delete_namespaced_object("prod-cluster", "ResourceQuota", team, "default")
        ```
    """
    resource = f"k8s:{str(kind).lower()}/{namespace}/{name}"
    if kind not in ("ResourceQuota", "LimitRange", "Secret"):
        raise InvalidInputError(
            resource, f"kind {kind!r} is not ResourceQuota, LimitRange or Secret"
        )
    _namespaced_resource(str(kind).lower(), namespace, name, f"{kind} name")
    with _core_v1(kubernetes) as core:
        read, delete = {
            "ResourceQuota": (
                core.read_namespaced_resource_quota,
                core.delete_namespaced_resource_quota,
            ),
            "LimitRange": (core.read_namespaced_limit_range, core.delete_namespaced_limit_range),
            "Secret": (core.read_namespaced_secret, core.delete_namespaced_secret),
        }[kind]
        return _delete(resource, dry_run, read, delete, core, name, namespace)

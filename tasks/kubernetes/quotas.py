"""ResourceQuotas: a tenant's quota, reading it back, and the quotas of every tenant.

``spec.hard`` is managed whole and compared by value, so ``1Gi`` equals ``1024Mi``.
"""

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity
from pydantic import BaseModel, ConfigDict, Field

from blocks import KubernetesConnection
from magicflow import Action, Change, job
from tasks.kubernetes.namespaces import MANAGED_BY_LABEL, TENANT_LABEL
from tasks.kubernetes.session import (
    _REQUEST_TIMEOUT,
    _core_v1,
    _namespaced_resource,
    _parse_quantities,
    _read,
    _translated,
    _unchanged,
    _write,
)


@job
def ensure_resource_quota(
    kubernetes: KubernetesConnection | str,
    namespace: str,
    name: str,
    hard: Mapping[str, str],
    dry_run: bool = False,
) -> Change:
    """Ensures a ResourceQuota whose ``spec.hard`` is exactly `hard`.

    Quantities are compared by value (``1Gi`` equals ``1024Mi``), so the API server
    rewriting them in canonical form does not cause an update. Limits not in `hard`
    are removed from the quota.

    Args:
        kubernetes: The cluster connection, or the name of a saved one.
        namespace: The namespace (an RFC 1123 DNS label); it must exist.
        name: The quota name (an RFC 1123 DNS subdomain).
        hard: Resource name -> quantity, e.g. ``{"requests.cpu": "4", "pods": "20"}``.
        dry_run: Read only, and report what would change.

    Returns:
        The change to ``k8s:resourcequota/<namespace>/<name>``; ``detail`` names the
        resources whose limit was added, changed or removed.

    Raises:
        InvalidInputError: A name or quantity is malformed (nothing written).
        NotFoundError: The namespace does not exist.
        PermissionDeniedError: The connection may not read or change quotas.
        TransientError: The API server failed or was unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.kubernetes import ensure_namespace, ensure_resource_quota

        @flow
        def onboard(team: str):
            ensure_namespace("prod-cluster", team)
            ensure_resource_quota("prod-cluster", team, "default",
                                  {"requests.cpu": "4", "requests.memory": "8Gi"})
        ```
    """
    resource = _namespaced_resource("resourcequota", namespace, name, "quota name")
    wanted = _parse_quantities(resource, "hard", hard)
    with _core_v1(kubernetes) as core:
        current = _read(core, resource, core.read_namespaced_resource_quota, name, namespace)
        if current is None:
            body = {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"hard": dict(hard)},
            }
            detail: dict[str, Any] = {"resources": sorted(hard)}
            return _write(
                resource,
                Action.CREATED,
                detail,
                dry_run,
                core.create_namespaced_resource_quota,
                namespace,
                body,
            )
        current_hard = current.get("spec", {}).get("hard") or {}
        changed = sorted(
            key
            for key in wanted.keys() | current_hard.keys()
            if key not in wanted
            or key not in current_hard
            or _quantity_or_none(current_hard[key]) != wanted[key]
        )
        if not changed:
            return _unchanged(resource, dry_run)
        patch = {"spec": {"hard": {key: hard.get(key) for key in changed}}}
        return _write(
            resource,
            Action.UPDATED,
            {"changed_resources": changed},
            dry_run,
            core.patch_namespaced_resource_quota,
            name,
            namespace,
            patch,
        )


def _quantity_or_none(quantity: Any) -> Decimal | None:
    """A current value as a number; something unparsable differs from any wanted value."""
    try:
        return parse_quantity(quantity)
    except (ValueError, TypeError):
        return None


class ResourceQuotaState(BaseModel):
    """A ResourceQuota as read by `get_resource_quota`.

    Attributes:
        resource: ``k8s:resourcequota/<namespace>/<name>``.
        exists: False when the quota (or its namespace) does not exist.
        hard: ``spec.hard`` as the API server returns it (resource name -> quantity).
        used: ``status.used``, when the API server has computed it.
    """

    model_config = ConfigDict(frozen=True)

    resource: str
    exists: bool
    hard: dict[str, str] = Field(default_factory=dict)
    used: dict[str, str] = Field(default_factory=dict)


@job
def get_resource_quota(
    kubernetes: KubernetesConnection | str, namespace: str, name: str
) -> ResourceQuotaState:
    """Reads a ResourceQuota's hard limits and usage (a read job: it never writes).

    Args:
        kubernetes: The cluster connection, or the name of a saved one.
        namespace: The namespace (an RFC 1123 DNS label).
        name: The quota name (an RFC 1123 DNS subdomain).

    Returns:
        A `ResourceQuotaState`; ``exists`` is False (and the limits empty) when the
        quota or its namespace does not exist.

    Raises:
        InvalidInputError: A name is malformed.
        PermissionDeniedError: The connection may not read quotas.
        TransientError: The API server failed or was unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.kubernetes import get_resource_quota

        @flow
        def cpu_limit(team: str) -> str | None:
            return get_resource_quota("prod-cluster", team, "default").hard.get("requests.cpu")
        ```
    """
    resource = _namespaced_resource("resourcequota", namespace, name, "quota name")
    with _core_v1(kubernetes) as core:
        current = _read(core, resource, core.read_namespaced_resource_quota, name, namespace)
    if current is None:
        return ResourceQuotaState(resource=resource, exists=False)
    return ResourceQuotaState(
        resource=resource,
        exists=True,
        hard={
            key: str(value) for key, value in (current.get("spec", {}).get("hard") or {}).items()
        },
        used={
            key: str(value) for key, value in (current.get("status", {}).get("used") or {}).items()
        },
    )


class TenantQuota(BaseModel):
    """A ResourceQuota in a namespace MagicFlow manages.

    Attributes:
        tenant: The namespace's ``tenant`` label, else the namespace name.
        namespace: The namespace.
        name: The quota's name.
        hard: ``spec.hard`` (resource -> quantity).
        used: ``status.used`` as the API server computed it (empty until it has).
    """

    model_config = ConfigDict(frozen=True)

    tenant: str
    namespace: str
    name: str
    hard: dict[str, str] = Field(default_factory=dict)
    used: dict[str, str] = Field(default_factory=dict)


def _texts(values: Mapping[str, Any] | None) -> dict[str, str]:
    return {key: str(value) for key, value in (values or {}).items()}


@job
def list_tenant_resource_quotas(
    kubernetes: KubernetesConnection | str,
    label_selector: str = "=".join(MANAGED_BY_LABEL),
) -> list[TenantQuota]:
    """Lists the ResourceQuotas of the namespaces MagicFlow manages (a read job).

    Args:
        kubernetes: The cluster connection, or the name of a saved one.
        label_selector: Which namespaces: by default those labelled
            ``managed-by=magicflow`` (`MANAGED_BY_LABEL`).

    Returns:
        One `TenantQuota` per quota, sorted by tenant, namespace and name.

    Raises:
        PermissionDeniedError: The connection may not list namespaces or quotas.
        TransientError: The API server failed or was unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.kubernetes import list_tenant_resource_quotas

        @flow
        def cpu_per_tenant() -> dict[str, str]:
            quotas = list_tenant_resource_quotas("prod-cluster")
            return {quota.tenant: quota.hard.get("requests.cpu", "-") for quota in quotas}
        ```
    """
    resource = f"k8s:namespaces?labelSelector={label_selector}"
    quotas: list[TenantQuota] = []
    with _core_v1(kubernetes) as core, _translated(resource, "listing"):
        namespaces = core.list_namespace(
            label_selector=label_selector, _request_timeout=_REQUEST_TIMEOUT
        )
        for namespace in namespaces.items:
            name = namespace.metadata.name
            tenant = (namespace.metadata.labels or {}).get(TENANT_LABEL) or name
            listed = core.list_namespaced_resource_quota(name, _request_timeout=_REQUEST_TIMEOUT)
            quotas.extend(
                TenantQuota(
                    tenant=tenant,
                    namespace=name,
                    name=quota.metadata.name,
                    hard=_texts(quota.spec and quota.spec.hard),
                    used=_texts(quota.status and quota.status.used),
                )
                for quota in listed.items
            )
    return sorted(quotas, key=lambda quota: (quota.tenant, quota.namespace, quota.name))

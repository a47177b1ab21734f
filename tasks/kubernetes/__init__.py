"""Kubernetes jobs: a tenant's namespace and the quota, limits and secrets inside it.

Every job reads the object first, compares what it manages (quantities by value, so
``1Gi`` equals ``1024Mi``; secret data decoded, never logged) and writes only what
differs: a create, or a JSON merge patch (``application/merge-patch+json``) that
names just the changed keys. Merge patch is understood by every API server version
and needs no ``resourceVersion``; ``null`` in it removes a key.

What each job owns:

* labels and annotations (namespace, secret): only the keys given. Other keys, which
  controllers and people add, are left alone; a key given as ``None`` is removed.
* ``spec.hard`` of a ResourceQuota, ``spec.limits`` of a LimitRange and ``data`` of a
  Secret: the whole field, so it converges to exactly what was given.

Names are checked before anything is written: namespaces are RFC 1123 DNS labels,
other objects RFC 1123 DNS subdomains, as the API server requires.

For failovers `set_config_map_keys` repoints some keys of a ConfigMap; for reports
`list_tenant_resource_quotas` reads the quotas of the namespaces labelled as managed
by MagicFlow (`MANAGED_BY_LABEL`).

* `tasks.kubernetes.namespaces`: `ensure_namespace`, `delete_namespace`,
  `delete_namespaced_object`, `MANAGED_BY_LABEL`, `TENANT_LABEL`
* `tasks.kubernetes.quotas`: `ensure_resource_quota`, `get_resource_quota`,
  `list_tenant_resource_quotas`
* `tasks.kubernetes.limit_ranges`: `ensure_limit_range`
* `tasks.kubernetes.secrets`: `ensure_secret`
* `tasks.kubernetes.config_maps`: `set_config_map_keys`
* `tasks.kubernetes.session`: the API client, its errors through the one error table,
  and Kubernetes' name rules.
"""

from tasks.kubernetes.config_maps import set_config_map_keys
from tasks.kubernetes.limit_ranges import ensure_limit_range
from tasks.kubernetes.namespaces import (
    MANAGED_BY_LABEL,
    TENANT_LABEL,
    NamespacedKind,
    delete_namespace,
    delete_namespaced_object,
    ensure_namespace,
)
from tasks.kubernetes.quotas import (
    ResourceQuotaState,
    TenantQuota,
    ensure_resource_quota,
    get_resource_quota,
    list_tenant_resource_quotas,
)
from tasks.kubernetes.secrets import ensure_secret
from tasks.kubernetes.session import Metadata

__all__ = [
    "MANAGED_BY_LABEL",
    "TENANT_LABEL",
    "Metadata",
    "NamespacedKind",
    "ResourceQuotaState",
    "TenantQuota",
    "delete_namespace",
    "delete_namespaced_object",
    "ensure_limit_range",
    "ensure_namespace",
    "ensure_resource_quota",
    "ensure_secret",
    "get_resource_quota",
    "list_tenant_resource_quotas",
    "set_config_map_keys",
]

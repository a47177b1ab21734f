"""ConfigMaps: repointing some keys of an existing ConfigMap in a failover."""

from collections.abc import Mapping

from blocks import KubernetesConnection
from magicflow import Action, Change, InvalidInputError, NotFoundError, job
from tasks.kubernetes.session import (
    _check_data_key,
    _core_v1,
    _namespaced_resource,
    _read,
    _unchanged,
    _write,
)


@job
def set_config_map_keys(
    kubernetes: KubernetesConnection | str,
    namespace: str,
    name: str,
    values: Mapping[str, str],
    dry_run: bool = False,
) -> Change:
    """Sets some keys of an existing ConfigMap (e.g. endpoints), keeping its other keys.

    For failovers: the ConfigMap must exist; a merge patch naming only the keys whose
    value differs is sent, so a rerun sends nothing.

    Args:
        kubernetes: The cluster connection, or the name of a saved one.
        namespace: The namespace (an RFC 1123 DNS label).
        name: The ConfigMap's name (an RFC 1123 DNS subdomain).
        values: Key -> new value; keys are letters, digits, ``-``, ``_`` and ``.``.
        dry_run: Read only, and report what would change.

    Returns:
        The change to ``k8s:configmap/<namespace>/<name>``: ``updated``
        (``detail["changed_keys"]``) or ``unchanged``.

    Raises:
        InvalidInputError: A name, key or value is malformed (nothing written).
        NotFoundError: The ConfigMap does not exist.
        PermissionDeniedError: The connection may not read or patch ConfigMaps.
        TransientError: The API server failed or was unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.kubernetes import set_config_map_keys

        @flow
        def fail_over_orders():
            set_config_map_keys("prod-cluster", "orders", "db", {"host": "orders-dr.internal"})
        ```
    """
    resource = _namespaced_resource("configmap", namespace, name, "ConfigMap name")
    if not isinstance(values, Mapping) or not values:
        raise InvalidInputError(resource, "values must be a non-empty mapping of key -> text")
    for key, value in values.items():
        _check_data_key(resource, "ConfigMap", key)
        if not isinstance(value, str):
            raise InvalidInputError(resource, f"the value of {key} must be text")
    with _core_v1(kubernetes) as core:
        current = _read(core, resource, core.read_namespaced_config_map, name, namespace)
        if current is None:
            raise NotFoundError(
                resource, "the ConfigMap does not exist; a failover repoints, never creates"
            )
        data = current.get("data") or {}
        changed = sorted(key for key, value in values.items() if data.get(key) != value)
        if not changed:
            return _unchanged(resource, dry_run)
        patch = {"data": {key: values[key] for key in changed}}
        return _write(
            resource,
            Action.UPDATED,
            {"changed_keys": changed},
            dry_run,
            core.patch_namespaced_config_map,
            name,
            namespace,
            patch,
        )

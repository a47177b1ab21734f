"""LimitRanges: a namespace's container defaults and bounds.

``spec.limits`` is managed whole and compared by value after the API server's own
defaulting, so a rerun against a real cluster is ``unchanged``.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from blocks import KubernetesConnection
from magicflow import Action, Change, InvalidInputError, job
from tasks.kubernetes.session import (
    _core_v1,
    _namespaced_resource,
    _parse_quantities,
    _read,
    _unchanged,
    _write,
)

_LIMIT_TYPES = ("Container", "Pod", "PersistentVolumeClaim")
_LIMIT_FIELDS = ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")


def _normalized_limits(resource: str, limits: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """LimitRange items with quantities as numbers and the API server's defaults applied.

    The server fills ``default`` from ``max`` and ``defaultRequest`` from ``default``
    and ``min`` for ``Container`` items (``SetDefaults_LimitRangeItem``); applying
    the same rule to what we want makes a defaulted object compare equal to it.
    """
    normalized = []
    for index, item in enumerate(limits):
        if not isinstance(item, Mapping) or item.get("type") not in _LIMIT_TYPES:
            raise InvalidInputError(
                resource, f"limits[{index}] needs a type, one of {', '.join(_LIMIT_TYPES)}"
            )
        unknown = set(item) - {"type", *_LIMIT_FIELDS}
        if unknown:
            raise InvalidInputError(
                resource, f"limits[{index}] has unknown fields {sorted(unknown)}"
            )
        fields = {
            field: _parse_quantities(resource, f"limits[{index}].{field}", item[field])
            for field in _LIMIT_FIELDS
            if field in item
        }
        if item["type"] == "Container":
            fields["default"] = {**fields.get("max", {}), **fields.get("default", {})}
            fields["defaultRequest"] = {
                **fields.get("min", {}),
                **fields["default"],
                **fields.get("defaultRequest", {}),
            }
        normalized.append({"type": item["type"], **{f: v for f, v in fields.items() if v}})
    return normalized


def _limit_types_that_differ(
    current: list[dict[str, Any]], wanted: list[dict[str, Any]]
) -> list[str]:
    """Limit types whose items differ (as multisets, so item order does not matter)."""

    def canonical(item: dict[str, Any]) -> str:
        # normalize(): equal quantities (2, 2.000, 2E+0) print the same.
        return json.dumps(item, sort_keys=True, default=lambda number: str(number.normalize()))

    types = {item["type"] for item in current} | {item["type"] for item in wanted}
    return sorted(
        kind
        for kind in types
        if sorted(canonical(i) for i in current if i["type"] == kind)
        != sorted(canonical(i) for i in wanted if i["type"] == kind)
    )


@job
def ensure_limit_range(
    kubernetes: KubernetesConnection | str,
    namespace: str,
    name: str,
    limits: Sequence[Mapping[str, Any]],
    dry_run: bool = False,
) -> Change:
    """Ensures a LimitRange whose ``spec.limits`` are exactly `limits`.

    Items are written as given and compared by value, after the API server's own
    defaulting, so a rerun against a real cluster is ``unchanged``.

    Args:
        kubernetes: The cluster connection, or the name of a saved one.
        namespace: The namespace (an RFC 1123 DNS label); it must exist.
        name: The LimitRange name (an RFC 1123 DNS subdomain).
        limits: LimitRange items in the API's form, e.g.
            ``[{"type": "Container", "default": {"cpu": "500m"}, "max": {"cpu": "2"}}]``;
            fields ``type``, ``max``, ``min``, ``default``, ``defaultRequest`` and
            ``maxLimitRequestRatio``.
        dry_run: Read only, and report what would change.

    Returns:
        The change to ``k8s:limitrange/<namespace>/<name>``; ``detail`` names the limit
        types whose items changed.

    Raises:
        InvalidInputError: A name, item or quantity is malformed (nothing written).
        NotFoundError: The namespace does not exist.
        PermissionDeniedError: The connection may not read or change LimitRanges.
        TransientError: The API server failed or was unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.kubernetes import ensure_limit_range

        @flow
        def container_defaults(team: str):
            ensure_limit_range("prod-cluster", team, "defaults", [
                {"type": "Container", "default": {"cpu": "500m", "memory": "512Mi"}},
            ])
        ```
    """
    resource = _namespaced_resource("limitrange", namespace, name, "LimitRange name")
    if isinstance(limits, (str, bytes, Mapping)) or not limits:
        raise InvalidInputError(resource, "limits must be a non-empty list of items")
    wanted = _normalized_limits(resource, limits)
    items = [dict(item) for item in limits]
    with _core_v1(kubernetes) as core:
        current = _read(core, resource, core.read_namespaced_limit_range, name, namespace)
        if current is None:
            body = {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"limits": items},
            }
            detail: dict[str, Any] = {"types": sorted({item["type"] for item in items})}
            return _write(
                resource,
                Action.CREATED,
                detail,
                dry_run,
                core.create_namespaced_limit_range,
                namespace,
                body,
            )
        try:
            current_limits = _normalized_limits(
                resource, current.get("spec", {}).get("limits") or []
            )
        except InvalidInputError:  # someone wrote something odd: replace it
            current_limits = []
        changed = _limit_types_that_differ(current_limits, wanted)
        if not changed:
            return _unchanged(resource, dry_run)
        # Merge patch replaces a list whole: the result is exactly `items`.
        return _write(
            resource,
            Action.UPDATED,
            {"changed_types": changed},
            dry_run,
            core.patch_namespaced_limit_range,
            name,
            namespace,
            {"spec": {"limits": items}},
        )

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
"""

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import Any, Literal

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from blocks import KubernetesConnection
from magicflow import (
    Action,
    Change,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    connection,
    job,
    report,
)
from magicflow.errors import HttpAnswer, typed_errors

_REQUEST_TIMEOUT = (10.0, 60.0)
"""Seconds to connect and to read one response: a hung API server becomes a retry."""

_MERGE_PATCH = "application/merge-patch+json"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")

_LIMIT_TYPES = ("Container", "Pod", "PersistentVolumeClaim")
_LIMIT_FIELDS = ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")

Metadata = Mapping[str, str | None]
"""Labels or annotations to ensure; a ``None`` value means "remove this key"."""


# --- validation -------------------------------------------------------------------


def _check_name(resource: str, what: str, value: str, *, label: bool = False) -> None:
    pattern, limit = (_DNS_LABEL, 63) if label else (_DNS_SUBDOMAIN, 253)
    if not isinstance(value, str) or len(value) > limit or not pattern.fullmatch(value):
        rule = "DNS label" if label else "DNS subdomain"
        raise InvalidInputError(
            resource,
            f"{what} {value!r} is not a valid RFC 1123 {rule} "
            f"(lowercase letters, digits and '-', at most {limit} characters)",
        )


def _check_qualified_name(resource: str, what: str, key: str) -> None:
    """Label, annotation and resource names: ``[prefix/]name`` as Kubernetes defines it."""
    prefix, _, name = key.rpartition("/") if isinstance(key, str) else ("", "", "")
    prefix_ok = not prefix or (len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix))
    if not (prefix_ok and len(name) <= 63 and _QUALIFIED_NAME.fullmatch(name)):
        raise InvalidInputError(resource, f"{what} {key!r} is not a valid qualified name")


def _check_metadata(resource: str, labels: Metadata, annotations: Metadata) -> None:
    for key, value in labels.items():
        _check_qualified_name(resource, "label key", key)
        if value is not None and not (
            value == "" or (len(value) <= 63 and _QUALIFIED_NAME.fullmatch(value))
        ):
            raise InvalidInputError(resource, f"label {key!r} has an invalid value {value!r}")
    for key, value in annotations.items():
        _check_qualified_name(resource, "annotation key", key)
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(resource, f"annotation {key!r} must be a string or None")


def _parse_quantities(resource: str, what: str, quantities: Any) -> dict[str, Decimal]:
    """Resource name -> value; ``1Gi`` and ``1024Mi`` parse to the same number."""
    if not isinstance(quantities, Mapping) or not quantities:
        raise InvalidInputError(resource, f"{what} must be a non-empty mapping of quantities")
    parsed = {}
    for name, quantity in quantities.items():
        _check_qualified_name(resource, f"{what} resource name", name)
        try:
            parsed[name] = parse_quantity(quantity)
        except (ValueError, TypeError):
            raise InvalidInputError(
                resource, f"{what}[{name}] = {quantity!r} is not a Kubernetes quantity"
            ) from None
    return parsed


# --- errors and API calls ---------------------------------------------------------


def _kubernetes_answer(step: str) -> Callable[[Exception], HttpAnswer | None]:
    """Reads the client's ``ApiException`` into (status, cause) for the one error table.

    The client raises ``ApiException`` with status 0 for failures before any answer
    (a TLS failure): those go to the table's transport rules, which follow the
    exception's context to the TLS error.
    """

    def read_answer(error: Exception) -> HttpAnswer | None:
        if not isinstance(error, ApiException) or not error.status:
            return None
        status = int(error.status)
        return status, f"{step} failed with HTTP {status}: {_status_message(error)}"

    return read_answer


def _status_message(error: ApiException) -> str:
    """The ``message`` of the Status body the API server answers errors with."""
    try:
        status = json.loads(error.body or "")
        message = status.get("message") if isinstance(status, dict) else None
    except ValueError:
        message = None
    return str(message or error.reason or "no message")[:300]


def _translated(resource: str, step: str) -> AbstractContextManager[None]:
    """Raises Kubernetes client and transport errors inside the block as typed errors.

    The client's own exception text carries the response body: it is never chained.
    """
    return typed_errors(resource, step, _kubernetes_answer(step))


@contextmanager
def _core_v1(kubernetes: KubernetesConnection | str) -> Iterator[Any]:
    """A CoreV1Api for the connection, closed afterwards."""
    block = connection(kubernetes, KubernetesConnection)
    with block.get_client() as api_client:
        yield k8s_client.CoreV1Api(api_client)


def _read(core: Any, resource: str, read: Callable[..., Any], *args: str) -> dict[str, Any] | None:
    """The object as the API's JSON (camelCase keys), or None when it does not exist."""
    with _translated(resource, "reading"):
        try:
            obj = read(*args, _request_timeout=_REQUEST_TIMEOUT)
        except ApiException as error:
            if error.status == 404:  # only a 404 says "absent"; a 410 Gone is an error
                return None
            raise
    return dict(core.api_client.sanitize_for_serialization(obj))


def _write(
    resource: str,
    action: Action,
    detail: dict[str, Any],
    dry_run: bool,
    write: Callable[..., Any],
    *args: Any,
) -> Change:
    """Creates or merge-patches (unless dry-running) and reports the change."""
    if not dry_run:
        options: dict[str, Any] = {"_request_timeout": _REQUEST_TIMEOUT}
        if action is Action.UPDATED:
            options["_content_type"] = _MERGE_PATCH
        with _translated(resource, "creating" if action is Action.CREATED else "patching"):
            write(*args, **options)
    return report(Change(resource=resource, action=action, dry_run=dry_run, detail=detail))


def _unchanged(resource: str, dry_run: bool) -> Change:
    return report(Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run))


def _metadata_patch(current: Mapping[str, str] | None, wanted: Metadata) -> dict[str, str | None]:
    """The keys of `wanted` whose current value differs; other keys are not touched."""
    current = current or {}
    return {
        key: value
        for key, value in wanted.items()
        if (key in current) != (value is not None) or (value is not None and current[key] != value)
    }


def _present(values: Metadata) -> dict[str, str]:
    return {key: value for key, value in values.items() if value is not None}


# --- jobs ---------------------------------------------------------------------------


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
    resource = f"k8s:resourcequota/{namespace}/{name}"
    _check_name(resource, "namespace", namespace, label=True)
    _check_name(resource, "quota name", name)
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
    resource = f"k8s:limitrange/{namespace}/{name}"
    _check_name(resource, "namespace", namespace, label=True)
    _check_name(resource, "LimitRange name", name)
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
    resource = f"k8s:secret/{namespace}/{name}"
    _check_name(resource, "namespace", namespace, label=True)
    _check_name(resource, "Secret name", name)
    labels = dict(labels or {})
    _check_metadata(resource, labels, {})
    if not isinstance(type, str) or not type or len(type) > 253 or any(c.isspace() for c in type):
        raise InvalidInputError(resource, f"Secret type {type!r} is not valid")
    wanted: dict[str, bytes] = {}
    for key, value in data.items():
        if not (isinstance(key, str) and len(key) <= 253 and _SECRET_KEY.fullmatch(key)):
            raise InvalidInputError(resource, f"data key {key!r} is not a valid Secret key")
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


# --- reads and undo -------------------------------------------------------------------


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
    resource = f"k8s:resourcequota/{namespace}/{name}"
    _check_name(resource, "namespace", namespace, label=True)
    _check_name(resource, "quota name", name)
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


def _delete(
    resource: str,
    dry_run: bool,
    read: Callable[..., Any],
    delete: Callable[..., Any],
    core: Any,
    *args: str,
) -> Change:
    """Deletes an object that exists; one that does not is ``unchanged`` (nothing to do)."""
    if _read(core, resource, read, *args) is None:
        return report(
            Change(
                resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail={"absent": True}
            )
        )
    if not dry_run:
        with _translated(resource, "deleting"):
            try:
                delete(*args, _request_timeout=_REQUEST_TIMEOUT)
            except ApiException as error:
                if error.status != 404:  # a 404: deleted by someone else meanwhile, goal reached
                    raise
    return report(Change(resource=resource, action=Action.DELETED, dry_run=dry_run))


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
    _check_name(resource, "namespace", namespace, label=True)
    _check_name(resource, f"{kind} name", name)
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


# --- failover repointing and the tenants' quotas ------------------------------------------

MANAGED_BY_LABEL = ("managed-by", "magicflow")
"""The label MagicFlow puts on the namespaces it manages (one namespace per tenant)."""

TENANT_LABEL = "tenant"
"""The label naming a managed namespace's tenant (the namespace name when absent)."""


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
    resource = f"k8s:configmap/{namespace}/{name}"
    _check_name(resource, "namespace", namespace, label=True)
    _check_name(resource, "ConfigMap name", name)
    if not isinstance(values, Mapping) or not values:
        raise InvalidInputError(resource, "values must be a non-empty mapping of key -> text")
    for key, value in values.items():
        if not (isinstance(key, str) and len(key) <= 253 and _SECRET_KEY.fullmatch(key)):
            raise InvalidInputError(resource, f"key {key!r} is not a valid ConfigMap key")
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

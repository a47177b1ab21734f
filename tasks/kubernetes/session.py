"""The Kubernetes client for the jobs: names, API calls and errors through the one error table.

Every job reads the object first, compares what it manages and writes only what
differs: a create, or a JSON merge patch (``application/merge-patch+json``) that
names just the changed keys. Merge patch is understood by every API server version
and needs no ``resourceVersion``; ``null`` in it removes a key.

Names are checked before anything is written: namespaces are RFC 1123 DNS labels,
other objects RFC 1123 DNS subdomains, as the API server requires.
"""

import json
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from blocks import KubernetesConnection
from magicflow import Action, Change, InvalidInputError, connection, report
from magicflow.errors import HttpAnswer, typed_errors

_REQUEST_TIMEOUT = (10.0, 60.0)
"""Seconds to connect and to read one response: a hung API server becomes a retry."""

_MERGE_PATCH = "application/merge-patch+json"

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DATA_KEY = re.compile(r"[-._a-zA-Z0-9]+")

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


def _namespaced_resource(kind: str, namespace: str, name: str, what: str) -> str:
    """``k8s:<kind>/<namespace>/<name>``, once both names are checked.

    Args:
        kind: The resource kind in lowercase, e.g. ``secret``.
        namespace: The namespace, an RFC 1123 DNS label.
        name: The object's name, an RFC 1123 DNS subdomain.
        what: How errors call the object's name, e.g. ``Secret name``.

    Returns:
        The resource name every change and error of the object carries.

    Raises:
        InvalidInputError: A name is malformed.
    """
    resource = f"k8s:{kind}/{namespace}/{name}"
    _check_name(resource, "namespace", namespace, label=True)
    _check_name(resource, what, name)
    return resource


def _check_data_key(resource: str, kind: str, key: str) -> None:
    """Keys of a Secret's or a ConfigMap's ``data``: letters, digits, ``-``, ``_``, ``.``."""
    if not (isinstance(key, str) and len(key) <= 253 and _DATA_KEY.fullmatch(key)):
        raise InvalidInputError(resource, f"data key {key!r} is not a valid {kind} key")


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

"""Serves kmock's KubernetesEmulator on 127.0.0.1:PORT until terminated.

Run: ``python -m deployments.fakes.kubernetes --port P``. It keeps namespaced and cluster
objects in memory and answers the Kubernetes REST API with real Status bodies.

kmock stores objects as plain JSON and merges dicts on PATCH, with ``null`` removing
a key whatever the patch content type: exactly JSON merge patch (RFC 7386), which is
what MagicFlow's jobs send. On top of kmock, `ApiServerEmulator` adds the few
behaviours of a real API server that the jobs depend on, so that the tests see what
a cluster would answer:

* a namespaced object cannot be created in a namespace that does not exist (404);
* the server's defaulting: the ``kubernetes.io/metadata.name`` label on namespaces,
  ``metadata.namespace`` on namespaced objects, the default limits and requests of
  ``Container`` LimitRange items, and ``stringData`` of Secrets folded into base64 ``data``;
* equality-based label selectors on lists (``?labelSelector=a=b,c!=d,e``).

Still missing: PUT (replace), ``resourceVersion`` and validation.
"""

import argparse
import asyncio
import base64
import signal
from typing import Any

from kmock import KubernetesEmulator, Server
from kmock._internal import enums, k8s, parsing, rendering

_parse_path = parsing.parse_path


def parse_path(path: str) -> parsing.ParsedPath:
    """Kmock's parser, except that Namespace objects themselves are cluster-scoped.

    kmock reads ``/api/v1/namespaces/acme`` as "the namespace acme, no resource";
    the real API server reads it as the Namespace object named acme.
    """
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) in (3, 4) and parts[2] == "namespaces":
        name = parts[3] if len(parts) == 4 else None
        return parsing.ParsedPath("", parts[1], "namespaces", None, name, None)
    return _parse_path(path)


parsing.parse_path = parse_path


def default_limit_range_items(limits: Any) -> None:
    """The API server's ``SetDefaults_LimitRangeItem``, in place.

    For ``Container`` items the server fills ``default`` from ``max``, then
    ``defaultRequest`` from ``default`` and ``min``, so a LimitRange reads back with
    more than was written. Jobs must stay idempotent against that.
    """
    for item in limits if isinstance(limits, list) else []:
        if not isinstance(item, dict) or item.get("type") != "Container":
            continue
        default = {**item.get("max", {}), **item.get("default", {})}
        request = {**item.get("min", {}), **default, **item.get("defaultRequest", {})}
        for field, values in (("default", default), ("defaultRequest", request)):
            if values:
                item[field] = values


def fold_string_data(secret: dict[str, Any]) -> None:
    """The API server stores a Secret's ``stringData`` as base64 ``data``, in place."""
    string_data = secret.pop("stringData", None) or {}
    if string_data:
        secret["data"] = {
            **(secret.get("data") or {}),
            **{
                key: base64.b64encode(value.encode()).decode() for key, value in string_data.items()
            },
        }


def matches_selector(labels: dict[str, str], selector: str) -> bool:
    """Whether labels match an equality selector: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``."""
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class ApiServerEmulator(KubernetesEmulator):
    """kmock's emulator plus the API-server behaviours listed in the module docstring."""

    def _namespace_exists(self, name: str) -> bool:
        return any(
            resource.plural == "namespaces" and key_name == name and not obj.deleted
            for (resource, _, key_name), obj in self.objects.items()
        )

    async def _handle(self, request: rendering.Request) -> Any:
        data, plural = request.data, request.resource.plural if request.resource else None
        if plural is not None and isinstance(data, dict):
            if request.action == enums.action.CREATE:
                namespace = request.namespace or data.get("metadata", {}).get("namespace")
                if plural != "namespaces" and namespace and not self._namespace_exists(namespace):
                    raise k8s.KubernetesObjectNotFoundError(
                        reason="NotFound",
                        message=f'namespaces "{namespace}" not found',
                        details={"name": namespace, "kind": "namespaces"},
                    )
                if plural != "namespaces" and namespace:
                    data.setdefault("metadata", {})["namespace"] = namespace
                name = data.get("metadata", {}).get("name")
                if plural == "namespaces" and name:
                    labels = data["metadata"].get("labels") or {}
                    data["metadata"]["labels"] = {**labels, "kubernetes.io/metadata.name": name}
            if request.action in (enums.action.CREATE, enums.action.UPDATE):
                # A merge patch replaces a list whole, so defaulting the patch's list
                # gives the same object as defaulting the merged result.
                if plural == "limitranges":
                    default_limit_range_items(data.get("spec", {}).get("limits"))
                if plural == "secrets":
                    fold_string_data(data)
        return await super()._handle(request)

    async def _serve_list(self, request: rendering.Request) -> Any:
        listed = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector and isinstance(listed, dict):
            listed["items"] = [
                item
                for item in listed["items"]
                if matches_selector((item.get("metadata") or {}).get("labels") or {}, selector)
            ]
        return listed


async def serve(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with ApiServerEmulator() as emulator, Server(emulator, host="127.0.0.1", port=port):
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()

"""Disaster recovery in Vault: versions, restore tests under a scratch mount, failovers.

Versions are listed from the metadata, restored under a separate scratch mount for
restore tests (never the source mount) and compared key by key; a failover sets some
keys of an existing secret (endpoints) and keeps the rest.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from blocks import VaultConnection
from magicflow import (
    Action,
    Change,
    InvalidInputError,
    NotFoundError,
    connection,
    job,
    report,
)
from magicflow.recovery import RestoreCheck, check_scratch_name, compare_restore
from tasks.vault.session import (
    _check_key,
    _check_path,
    _converge,
    _current_secret,
    _kv_v2,
    _read_current,
    _target,
    _translated,
    _unchanged,
    _unless_absent,
)


class KvSecretVersion(BaseModel):
    """One version of a KV v2 secret, from its metadata (no data).

    Attributes:
        version: The version number.
        created: When it was written.
        deleted: When it was soft-deleted; None while readable.
        destroyed: Whether its data was destroyed for good.
    """

    model_config = ConfigDict(frozen=True)

    version: int
    created: datetime
    deleted: datetime | None = None
    destroyed: bool = False

    @property
    def readable(self) -> bool:
        """True when the version's data can still be read (not deleted or destroyed)."""
        return self.deleted is None and not self.destroyed


@job
def list_kv_secret_versions(vault: VaultConnection | str, path: str) -> list[KvSecretVersion]:
    """Lists the versions of a KV v2 secret from its metadata, newest first (a read job).

    Args:
        vault: The Vault connection (its ``kv_mount`` is the engine), or its saved name.
        path: The secret's path inside the mount, e.g. ``acme/db``.

    Returns:
        The versions, newest first, with their creation and deletion times.

    Raises:
        InvalidInputError: Bad path.
        NotFoundError: The secret does not exist.
        PermissionDeniedError: The token may not read the secret's metadata.
        TransientError: Vault failed, was sealed or unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.vault import list_kv_secret_versions

        @flow
        def newest_readable_version(path: str) -> int:
            return next(v.version for v in list_kv_secret_versions("vault", path) if v.readable)
        ```
    """
    block, resource = _target(vault, path)
    with _kv_v2(block, resource) as kv, _translated(resource, "reading the metadata"):
        answer = _unless_absent(
            lambda: kv.read_secret_metadata(path=path, mount_point=block.kv_mount), None
        )
    if answer is None:
        raise NotFoundError(resource, "the secret does not exist")
    metadata = answer["data"]
    versions = [
        KvSecretVersion(
            version=int(number),
            created=facts["created_time"],
            deleted=facts.get("deletion_time") or None,
            destroyed=bool(facts.get("destroyed")),
        )
        for number, facts in metadata.get("versions", {}).items()
    ]
    return sorted(versions, key=lambda version: version.version, reverse=True)


def _scratch_target(block: VaultConnection, mount: str, path: str) -> str:
    resource = f"vault:kv/{mount}/{path}"
    _check_path(resource, path)
    check_scratch_name(resource, path.split("/", 1)[0])
    if not isinstance(mount, str) or not mount or "/" in mount.strip("/"):
        raise InvalidInputError(resource, f"scratch mount {mount!r} is not a mount name")
    if mount.strip("/") == block.kv_mount.strip("/"):
        raise InvalidInputError(
            resource,
            "the scratch mount must not be the source mount: a restore test never writes there",
        )
    return resource


def _read_version(kv: Any, mount: str, path: str, version: int, resource: str) -> dict[str, Any]:
    with _translated(resource, f"reading version {version}"):
        response = kv.read_secret_version(
            path=path, version=version, mount_point=mount, raise_on_deleted_version=True
        )
    return dict(response["data"]["data"])


@job
def restore_kv_secret_version(
    vault: VaultConnection | str,
    path: str,
    version: int,
    scratch_mount: str,
    scratch_path: str,
    dry_run: bool = False,
) -> Change:
    """Restores one version of a secret under a scratch mount, for a restore test.

    The source version is only read; the copy is written with check-and-set under a
    scratch path (``magicflow-dr-scratch-.../...``) of a separate KV v2 mount, never
    the source mount. A second run finds the same data there and writes nothing.

    Args:
        vault: The Vault connection (its ``kv_mount`` is the source engine), or its saved name.
        path: The source secret's path, e.g. ``acme/db``.
        version: The version to restore.
        scratch_mount: A KV v2 mount for restore tests, e.g. ``dr-scratch``.
        scratch_path: Where to write it, starting with a scratch name.
        dry_run: Read only, and report what would change.

    Returns:
        The change to ``vault:kv/<scratch_mount>/<scratch_path>``: ``created`` or
        ``unchanged``; ``detail`` names keys only.

    Raises:
        InvalidInputError: Bad paths or mount, or the scratch mount is the source mount.
        NotFoundError: The version does not exist or is deleted, or the scratch mount is missing.
        ConflictError: Someone else wrote the scratch path meanwhile.
        PermissionDeniedError: The token may not read the source or write the scratch path.
        TransientError: Vault failed, was sealed or unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.vault import restore_kv_secret_version

        @flow
        def restore_test(version: int):
            restore_kv_secret_version(
                "vault", "acme/db", version, "dr-scratch", "magicflow-dr-scratch-0123abcd/acme/db"
            )
        ```
    """
    block, source = _target(vault, path)
    resource = _scratch_target(block, scratch_mount, scratch_path)
    with _kv_v2(block, resource) as kv:
        wanted = _read_version(kv, block.kv_mount, path, version, source)
        current = _read_current(kv, scratch_mount, scratch_path, resource)
        if current.data == wanted:
            return _unchanged(resource, dry_run, version=current.version)
        return _converge(kv, scratch_mount, scratch_path, resource, current, wanted, dry_run)


@job
def verify_kv_restore(
    vault: VaultConnection | str,
    path: str,
    version: int,
    scratch_mount: str,
    scratch_path: str,
) -> RestoreCheck:
    """Checks a restored secret against the version it came from, key by key.

    Values are compared in memory; the check names keys, never values.

    Args:
        vault: The Vault connection (its ``kv_mount`` is the source engine), or its saved name.
        path: The source secret's path.
        version: The version that was restored.
        scratch_mount: The scratch KV v2 mount.
        scratch_path: Where it was restored.

    Returns:
        A `RestoreCheck` of ``keys`` and ``values`` (which keys differ, if any).

    Raises:
        NotFoundError: The version or the restored copy does not exist.
        PermissionDeniedError: The token may not read them.
        TransientError: Vault failed, was sealed or unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.vault import verify_kv_restore

        @flow
        def check_copy(version: int) -> bool:
            return verify_kv_restore(
                "vault", "acme/db", version, "dr-scratch", "magicflow-dr-scratch-0123abcd/acme/db"
            ).passed
        ```
    """
    block, source = _target(vault, path)
    resource = _scratch_target(block, scratch_mount, scratch_path)
    with _kv_v2(block, resource) as kv:
        original = _read_version(kv, block.kv_mount, path, version, source)
        copy = _read_current(kv, scratch_mount, scratch_path, resource).data
    if copy is None:
        raise NotFoundError(resource, "the restored copy does not exist")
    differing = sorted(key for key in original if key in copy and original[key] != copy[key])
    same = f"those of version {version}"
    return compare_restore(
        resource,
        f"{source}?version={version}",
        {"keys": sorted(original), "values": same},
        {
            "keys": sorted(copy),
            "values": f"differ in {', '.join(differing)}" if differing else same,
        },
    )


def _scratch_secrets(kv: Any, mount: str, folder: str, resource: str) -> list[str]:
    """Paths of every secret under a folder of the scratch mount (recursively)."""
    with _translated(resource, "listing the scratch secrets"):
        listed = _unless_absent(lambda: kv.list_secrets(path=folder, mount_point=mount), None)
    if listed is None:
        return []
    keys = listed["data"]["keys"]
    paths: list[str] = []
    for key in keys:
        child = f"{folder}/{key}".strip("/") if folder else key.strip("/")
        if key.endswith("/"):
            paths.extend(_scratch_secrets(kv, mount, child, resource))
        else:
            paths.append(child)
    return paths


@job
def delete_kv_scratch_secrets(
    vault: VaultConnection | str,
    scratch_mount: str,
    name_prefix: str,
    created_before: datetime | None = None,
    dry_run: bool = False,
) -> Change:
    """Deletes the scratch secrets (every version and their metadata) under scratch folders.

    Args:
        vault: The Vault connection, or its saved name.
        scratch_mount: The scratch KV v2 mount.
        name_prefix: Top-level folders whose names start with it; it must start with
            ``magicflow-dr-scratch-``, so no other secret can ever be deleted.
        created_before: Only secrets created before this time.
        dry_run: Read only, and report what would change.

    Returns:
        The change to ``vault:kv/<scratch_mount>/<name_prefix>*``: ``deleted``
        (``detail["secrets"]`` counts them) or ``unchanged`` when there is none.

    Raises:
        InvalidInputError: The prefix is not a scratch prefix, or the mount is the source mount.
        PermissionDeniedError: The token may not list or delete them.
        TransientError: Vault failed, was sealed or unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.vault import delete_kv_scratch_secrets

        @flow
        def clean_up(scratch: str):
            delete_kv_scratch_secrets("vault", "dr-scratch", scratch)
        ```
    """
    block = connection(vault, VaultConnection)
    resource = _scratch_target(block, scratch_mount, name_prefix)
    resource += "*"
    with _kv_v2(block, resource) as kv:
        folders = [
            key.strip("/")
            for key in _top_level_keys(kv, scratch_mount, resource)
            if key.startswith(name_prefix)
        ]
        paths = [
            path
            for folder in folders
            for path in _scratch_secrets(kv, scratch_mount, folder, resource)
        ]
        if created_before is not None:
            paths = [
                path
                for path in paths
                if _created(kv, scratch_mount, path, resource) < created_before
            ]
        if not paths:
            return _unchanged(resource, dry_run)
        if not dry_run:
            with _translated(resource, "deleting the scratch secrets"):
                for path in paths:
                    kv.delete_metadata_and_all_versions(path=path, mount_point=scratch_mount)
    detail: dict[str, Any] = {"secrets": len(paths)}
    return report(Change(resource=resource, action=Action.DELETED, dry_run=dry_run, detail=detail))


def _top_level_keys(kv: Any, mount: str, resource: str) -> list[str]:
    with _translated(resource, "listing the scratch mount"):
        listed = _unless_absent(lambda: kv.list_secrets(path="", mount_point=mount), None)
    return list(listed["data"]["keys"]) if listed is not None else []


def _created(kv: Any, mount: str, path: str, resource: str) -> datetime:
    with _translated(resource, "reading the scratch metadata"):
        created = kv.read_secret_metadata(path=path, mount_point=mount)["data"]["created_time"]
    return datetime.fromisoformat(created.replace("Z", "+00:00"))


@job
def set_kv_secret_keys(
    vault: VaultConnection | str,
    path: str,
    values: Mapping[str, str],
    dry_run: bool = False,
) -> Change:
    """Sets some keys of an existing secret (e.g. endpoints), keeping its other keys.

    For failovers: the secret must exist; a new version holding the other keys
    unchanged and the given ones set is written with check-and-set, only when a
    value differs. The given values are configuration such as hostnames (they travel
    in a DR plan), not secrets; the secret's other values are never logged.

    Args:
        vault: The Vault connection (its ``kv_mount`` is the engine), or its saved name.
        path: The secret's path inside the mount, e.g. ``orders/db``.
        values: Key -> new value.
        dry_run: Read only, and report what would change.

    Returns:
        The change to ``vault:kv/<mount>/<path>``: ``updated`` (changed keys and the
        versions in ``detail``) or ``unchanged``.

    Raises:
        InvalidInputError: Bad path, key or empty value (nothing written).
        NotFoundError: The secret does not exist.
        ConflictError: Someone else wrote the secret between the read and the write.
        PermissionDeniedError: The token may not read or write the path.
        TransientError: Vault failed, was sealed or unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.vault import set_kv_secret_keys

        @flow
        def fail_over_orders():
            set_kv_secret_keys("vault", "orders/db", {"host": "orders-dr.example.internal"})
        ```
    """
    block, resource = _target(vault, path)
    if not isinstance(values, Mapping) or not values:
        raise InvalidInputError(resource, "values must be a non-empty mapping of key -> text")
    for key, value in values.items():
        _check_key(resource, "key", key)
        if not isinstance(value, str) or not value:
            raise InvalidInputError(resource, f"the value of {key} must be non-empty text")
    with _current_secret(block, path, resource) as (kv, current):
        if current.data is None:
            raise NotFoundError(
                resource, "the secret does not exist; a failover repoints, never creates"
            )
        return _converge(
            kv, block.kv_mount, path, resource, current, {**current.data, **values}, dry_run
        )

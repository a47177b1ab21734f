"""Vault (or OpenBao) jobs: secrets in a KV version 2 engine, written with check-and-set.

Every write carries ``cas`` = the version the job read (``0`` when the secret did not
exist), so a writer that changed the secret in between is never silently overwritten:
Vault refuses the write and the job raises `ConflictError`. Values are ``SecretStr``
and never reach logs, results or errors; `Change.detail` lists changed KEYS only.

For disaster recovery: versions are listed from the metadata, restored under a
separate scratch mount for restore tests (never the source mount) and compared key
by key; a failover sets some keys of an existing secret (endpoints) and keeps the rest.
"""

import json
import secrets
import string
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import hvac
import hvac.exceptions
from pydantic import BaseModel, ConfigDict, SecretStr

from blocks import VaultConnection
from magicflow import (
    Action,
    Change,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    connection,
    job,
    job_logger,
    report,
)
from magicflow.errors import HttpAnswer, typed_errors
from magicflow.recovery import RestoreCheck, check_scratch_name, compare_restore

_CAS_MISMATCH = "check-and-set parameter did not match the current version"

_PATH_SEGMENT_CHARS = frozenset(string.ascii_letters + string.digits + "-_.@+=:,")
_GENERATED_ALPHABET = string.ascii_letters + string.digits
_GENERATED_LENGTHS = range(16, 4097)

WritePolicy = Literal["overwrite", "create_only"]
"""``overwrite``: converge to the given data. ``create_only``: write once, never rotate."""


class KvSecret(BaseModel):
    """One version of a KV v2 secret, as read by `read_kv_secret`.

    Attributes:
        resource: ``vault:kv/<mount>/<path>``.
        version: The version read.
        created_time: When that version was written.
        data: Key -> value; values are ``SecretStr`` (non-string values as JSON text),
            so printing or serialising the model shows no secret.
    """

    model_config = ConfigDict(frozen=True)

    resource: str
    version: int
    created_time: datetime
    data: dict[str, SecretStr]


@dataclass(frozen=True)
class _Current:
    """What the job read: the current version (0 when never written) and its data.

    `data` is None when the secret does not exist or its latest version is deleted
    or destroyed; the next write then still needs ``cas=version``.
    """

    version: int
    data: dict[str, Any] | None


def _check_path(resource: str, path: str) -> None:
    segments = path.split("/") if isinstance(path, str) else [""]
    if (
        not isinstance(path, str)
        or not path
        or len(path) > 512
        or any(
            segment in ("", ".", "..") or not set(segment) <= _PATH_SEGMENT_CHARS
            for segment in segments
        )
    ):
        raise InvalidInputError(
            resource,
            "path must be '/'-separated segments of letters, digits and -_.@+=:, "
            "with no empty, '.' or '..' segment and no leading or trailing '/'",
        )


def _plain_values(resource: str, data: Mapping[str, SecretStr]) -> dict[str, str]:
    """Checks the keys and values to write and unwraps the values (kept in memory only)."""
    if not isinstance(data, Mapping) or not data:
        raise InvalidInputError(resource, "data must be a non-empty mapping of key -> SecretStr")
    plain = {}
    for key, value in data.items():
        if not isinstance(key, str) or not key or not key.isprintable():
            raise InvalidInputError(resource, f"data key {key!r} must be a non-empty string")
        if not isinstance(value, SecretStr) or not value.get_secret_value():
            raise InvalidInputError(resource, f"data[{key}] must be a non-empty SecretStr")
        plain[key] = value.get_secret_value()
    return plain


def _vault_answer(step: str) -> Callable[[Exception], HttpAnswer | None]:
    """Reads hvac's errors into (status, cause) for the one error table.

    Vault-specific meanings: a 400 check-and-set mismatch is a conflict (409), and
    Vault Enterprise's 412 ("not replicated yet, retry") passes on its own (503).
    The status comes from the block's client (``status_code``); an hvac client
    built elsewhere only names some statuses by exception class.
    """

    def read_answer(error: Exception) -> HttpAnswer | None:
        if not isinstance(error, hvac.exceptions.VaultError):
            return None
        status = getattr(error, "status_code", None) or _STATUS_OF_HVAC_ERROR.get(type(error))
        if status is None:
            return None
        reason = "; ".join(str(e).strip() for e in error.errors or []) or type(error).__name__
        if status == 400 and _CAS_MISMATCH in reason:
            return 409, (
                f"check-and-set conflict while {step}: the secret was written by someone "
                "else after this job read it; nothing was overwritten"
            )
        return (503 if status == 412 else status), f"{step} failed: {reason}"[:400]

    return read_answer


_STATUS_OF_HVAC_ERROR: dict[type[Exception], int] = {
    hvac.exceptions.InvalidRequest: 400,
    hvac.exceptions.Unauthorized: 401,
    hvac.exceptions.Forbidden: 403,
    hvac.exceptions.InvalidPath: 404,
    hvac.exceptions.UnsupportedOperation: 405,
    hvac.exceptions.PreconditionFailed: 412,
    hvac.exceptions.RateLimitExceeded: 429,
    hvac.exceptions.InternalServerError: 500,
    hvac.exceptions.VaultNotInitialized: 501,
    hvac.exceptions.BadGateway: 502,
    hvac.exceptions.VaultDown: 503,
}


def _translated(resource: str, step: str) -> AbstractContextManager[None]:
    """Raises hvac and transport errors inside the block as typed errors about `resource`."""
    return typed_errors(resource, step, _vault_answer(step))


def _target(vault: VaultConnection | str, path: str) -> tuple[VaultConnection, str]:
    """The connection block and the resource id, after checking the path."""
    block = connection(vault, VaultConnection)
    resource = f"vault:kv/{block.kv_mount}/{path}"
    _check_path(resource, path)
    return block, resource


@contextmanager
def _kv_v2(block: VaultConnection, resource: str) -> Iterator[Any]:
    """The KV v2 API of an authenticated client, closed afterwards."""
    with _translated(resource, "logging in"):
        client = block.get_client()
    try:
        yield client.secrets.kv.v2
    finally:
        client.adapter.close()


def _read_current(kv: Any, mount: str, path: str, resource: str) -> _Current:
    with _translated(resource, "reading"):
        try:
            response = kv.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=False
            )
        except hvac.exceptions.InvalidPath as error:
            # A missing secret is a bare 404; a 404 with an error text ("no handler
            # for route": a wrong mount) is a real failure.
            if error.errors:
                raise
            return _Current(version=0, data=None)
    secret = response["data"]
    return _Current(version=int(secret["metadata"]["version"]), data=secret["data"])


def _unchanged(resource: str, dry_run: bool, **detail: Any) -> Change:
    return report(
        Change(resource=resource, action=Action.UNCHANGED, dry_run=dry_run, detail=detail)
    )


def _converge(
    kv: Any,
    mount: str,
    path: str,
    resource: str,
    current: _Current,
    wanted: dict[str, str],
    dry_run: bool,
) -> Change:
    """Writes `wanted` with ``cas=current.version`` unless it is already there."""
    old = current.data or {}
    changed_keys = sorted(
        key for key in old.keys() | wanted.keys() if old.get(key) != wanted.get(key)
    )
    if current.data is not None and not changed_keys:
        return _unchanged(resource, dry_run, version=current.version)
    action = Action.CREATED if current.data is None else Action.UPDATED
    detail: dict[str, Any] = {"changed_keys": changed_keys, "previous_version": current.version}
    if not dry_run:
        with _translated(resource, f"writing with check-and-set version {current.version}"):
            written = kv.create_or_update_secret(
                path=path, secret=wanted, cas=current.version, mount_point=mount
            )
        detail["version"] = int(written["data"]["version"])
    return report(Change(resource=resource, action=action, dry_run=dry_run, detail=detail))


@job
def ensure_kv_secret(
    vault: VaultConnection | str,
    path: str,
    data: Mapping[str, SecretStr],
    policy: WritePolicy = "overwrite",
    dry_run: bool = False,
) -> Change:
    """Ensures a KV v2 secret holds exactly `data`, writing a new version only if it differs.

    The write uses check-and-set against the version read, so a concurrent writer is
    detected instead of overwritten.

    Args:
        vault: The Vault connection (its ``kv_mount`` is the engine), or its saved name.
        path: The secret's path inside the mount, e.g. ``acme/db``.
        data: Key -> value. With ``overwrite`` the secret converges to exactly these
            keys (keys not given are dropped from the new version).
        policy: ``overwrite`` (default) writes when the data differs. ``create_only``
            writes only when the secret does not exist, for generated credentials that
            must never rotate: an existing secret is kept and reported ``unchanged``
            even when the given value differs.
        dry_run: Read only, and report what would change.

    Returns:
        The change to ``vault:kv/<mount>/<path>``; ``detail`` holds the changed keys and
        the previous and new version numbers.

    Raises:
        InvalidInputError: Bad path, policy, key or empty value (nothing written), or
            Vault rejected the request.
        ConflictError: Someone else wrote the secret between the read and the write.
        PermissionDeniedError: The token may not read or write the path.
        NotFoundError: The mount does not exist.
        TransientError: Vault failed, was sealed or unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from pydantic import SecretStr
        from tasks.vault import ensure_kv_secret

        @flow
        def store_db_password(password: SecretStr):
            ensure_kv_secret("prod-vault", "acme/db", {"password": password})
        ```
    """
    block, resource = _target(vault, path)
    if policy not in ("overwrite", "create_only"):
        raise InvalidInputError(resource, f"policy {policy!r} is not overwrite or create_only")
    wanted = _plain_values(resource, data)
    with _kv_v2(block, resource) as kv:
        current = _read_current(kv, block.kv_mount, path, resource)
        if policy == "create_only" and current.data is not None:
            return _unchanged(resource, dry_run, version=current.version, policy=policy)
        return _converge(kv, block.kv_mount, path, resource, current, wanted, dry_run)


def _check_generated(resource: str, key: str, length: int) -> None:
    if not isinstance(key, str) or not key or not key.isprintable():
        raise InvalidInputError(resource, f"key {key!r} must be a non-empty string")
    if not isinstance(length, int) or length not in _GENERATED_LENGTHS:
        raise InvalidInputError(resource, f"length must be 16 to 4096, not {length!r}")


def _generated_value(length: int) -> str:
    """Letters and digits from `secrets` (about 5.95 bits per character)."""
    return "".join(secrets.choice(_GENERATED_ALPHABET) for _ in range(length))


@job
def ensure_generated_kv_secret(
    vault: VaultConnection | str,
    path: str,
    key: str = "password",
    length: int = 32,
    dry_run: bool = False,
) -> Change:
    """Ensures a KV v2 secret exists, generating a random value for `key` on first run.

    The value (letters and digits from `secrets`, about 5.95 bits per character) is
    generated only when the secret does not exist, written with check-and-set so it
    is created once and never rotated, and never returned or logged: read it with
    `read_kv_secret` where it is needed.

    Args:
        vault: The Vault connection (its ``kv_mount`` is the engine), or its saved name.
        path: The secret's path inside the mount, e.g. ``acme/db``.
        key: The key to hold the generated value.
        length: Characters to generate, 16 to 4096.
        dry_run: Read only, and report what would change.

    Returns:
        The change to ``vault:kv/<mount>/<path>``: ``created`` on the first run,
        ``unchanged`` afterwards.

    Raises:
        InvalidInputError: Bad path, key or length (nothing written).
        ConflictError: The secret exists without `key` (it is left alone), or someone
            else created it between the read and the write.
        PermissionDeniedError: The token may not read or write the path.
        TransientError: Vault failed, was sealed or unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.vault import ensure_generated_kv_secret

        @flow
        def db_credentials(team: str):
            ensure_generated_kv_secret("prod-vault", f"{team}/db", key="password")
        ```
    """
    block, resource = _target(vault, path)
    _check_generated(resource, key, length)
    with _kv_v2(block, resource) as kv:
        current = _read_current(kv, block.kv_mount, path, resource)
        if current.data is not None:
            if key not in current.data:
                raise ConflictError(
                    resource,
                    f"secret exists without key {key!r}; it is not generated by this job, "
                    "so it is left alone",
                )
            return _unchanged(resource, dry_run, version=current.version, policy="create_only")
        wanted = {key: _generated_value(length)}
        return _converge(kv, block.kv_mount, path, resource, current, wanted, dry_run)


@job
def read_kv_secret(vault: VaultConnection | str, path: str, version: int | None = None) -> KvSecret:
    """Reads one version of a KV v2 secret; its values come back as ``SecretStr``.

    Its result holds secret values, so this job never persists its result to
    Prefect's result storage, whatever the settings.

    Args:
        vault: The Vault connection (its ``kv_mount`` is the engine), or its saved name.
        path: The secret's path inside the mount, e.g. ``acme/db``.
        version: The version to read; the latest when None.

    Returns:
        A `KvSecret` with the version, its creation time and the data as ``SecretStr``.

    Raises:
        InvalidInputError: Bad path or version.
        NotFoundError: The secret, or that version, does not exist or is deleted.
        PermissionDeniedError: The token may not read the path.
        TransientError: Vault failed, was sealed or unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.vault import read_kv_secret

        @flow
        def rotate_app_config():
            secret = read_kv_secret("prod-vault", "acme/db")
            password = secret.data["password"].get_secret_value()
        ```
    """
    block, resource = _target(vault, path)
    if version is not None and (not isinstance(version, int) or version < 1):
        raise InvalidInputError(resource, f"version must be a positive integer, not {version!r}")
    with _kv_v2(block, resource) as kv:
        with _translated(resource, "reading" if version is None else f"reading version {version}"):
            response = kv.read_secret_version(
                path=path,
                version=version,
                mount_point=block.kv_mount,
                raise_on_deleted_version=True,
            )
        secret, metadata = response["data"]["data"], response["data"]["metadata"]
        result = KvSecret(
            resource=resource,
            version=int(metadata["version"]),
            created_time=metadata["created_time"],
            data={
                name: SecretStr(value if isinstance(value, str) else json.dumps(value))
                for name, value in secret.items()
            },
        )
    job_logger().info("%s: read version %d, keys %s", resource, result.version, sorted(result.data))
    return result


@job
def rotate_generated_kv_secret(
    vault: VaultConnection | str,
    path: str,
    key: str = "password",
    length: int = 32,
    dry_run: bool = False,
) -> Change:
    """Writes a newly generated random value for `key`: an explicit rotation.

    Where `ensure_generated_kv_secret` keeps an existing value forever, this job
    always writes a new one (a new version, with check-and-set on the version read,
    keeping the secret's other keys). The value is never returned or logged: read
    it with `read_kv_secret` where it is needed.

    Args:
        vault: The Vault connection (its ``kv_mount`` is the engine), or its saved name.
        path: The secret's path inside the mount, e.g. ``acme/db``.
        key: The key to hold the generated value.
        length: Characters to generate, 16 to 4096.
        dry_run: Read only, and report what would change.

    Returns:
        The change to ``vault:kv/<mount>/<path>``: ``updated`` (``created`` when the
        secret did not exist); ``detail`` has the previous and new version numbers.

    Raises:
        InvalidInputError: Bad path, key or length (nothing written).
        ConflictError: Someone else wrote the secret between the read and the write.
        PermissionDeniedError: The token may not read or write the path.
        TransientError: Vault failed, was sealed or unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.vault import rotate_generated_kv_secret

        @flow
        def rotate_db_password(team: str):
            rotate_generated_kv_secret("prod-vault", f"{team}/db", key="password")
        ```
    """
    block, resource = _target(vault, path)
    _check_generated(resource, key, length)
    with _kv_v2(block, resource) as kv:
        current = _read_current(kv, block.kv_mount, path, resource)
        wanted = {**(current.data or {}), key: _generated_value(length)}
        return _converge(kv, block.kv_mount, path, resource, current, wanted, dry_run)


@job
def delete_kv_secret(vault: VaultConnection | str, path: str, dry_run: bool = False) -> Change:
    """Deletes a KV v2 secret with all its versions and metadata.

    Runbooks call it to undo a secret they created. What is deleted cannot be
    recovered, so use it only for secrets whose every version this run wrote.

    Args:
        vault: The Vault connection (its ``kv_mount`` is the engine), or its saved name.
        path: The secret's path inside the mount, e.g. ``acme/db``.
        dry_run: Read only, and report what would be deleted.

    Returns:
        The change to ``vault:kv/<mount>/<path>``: ``deleted``, or ``unchanged``
        (detail ``absent``) when it does not exist.

    Raises:
        InvalidInputError: Bad path.
        PermissionDeniedError: The token may not read or delete the path.
        TransientError: Vault failed, was sealed or unreachable (retried).

    Example:
        ```python
        from prefect import flow
        from tasks.vault import delete_kv_secret

        @flow
        def offboard(team: str):
            delete_kv_secret("prod-vault", f"{team}/db")
        ```
    """
    block, resource = _target(vault, path)
    with _kv_v2(block, resource) as kv:
        current = _read_current(kv, block.kv_mount, path, resource)
        if current.version == 0:
            return _unchanged(resource, dry_run, absent=True)
        if not dry_run:
            with _translated(resource, "deleting all versions"):
                kv.delete_metadata_and_all_versions(path=path, mount_point=block.kv_mount)
        return report(
            Change(
                resource=resource,
                action=Action.DELETED,
                dry_run=dry_run,
                detail={"versions": current.version},
            )
        )


# Never written to result storage: the result holds secret values, and pickling a
# SecretStr stores its plain value.
read_kv_secret = read_kv_secret.with_options(persist_result=False)


# --- disaster recovery: versions, restore tests and failover repointing -----------------


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
        try:
            metadata = kv.read_secret_metadata(path=path, mount_point=block.kv_mount)["data"]
        except hvac.exceptions.InvalidPath as error:
            if error.errors:
                raise
            raise NotFoundError(resource, "the secret does not exist") from None
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
        try:
            keys = kv.list_secrets(path=folder, mount_point=mount)["data"]["keys"]
        except hvac.exceptions.InvalidPath as error:
            if error.errors:
                raise
            return []
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
        try:
            return list(kv.list_secrets(path="", mount_point=mount)["data"]["keys"])
        except hvac.exceptions.InvalidPath as error:
            if error.errors:
                raise
            return []


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
        if not isinstance(key, str) or not key or not key.isprintable():
            raise InvalidInputError(resource, f"key {key!r} must be a non-empty string")
        if not isinstance(value, str) or not value:
            raise InvalidInputError(resource, f"the value of {key} must be non-empty text")
    with _kv_v2(block, resource) as kv:
        current = _read_current(kv, block.kv_mount, path, resource)
        if current.data is None:
            raise NotFoundError(
                resource, "the secret does not exist; a failover repoints, never creates"
            )
        return _converge(
            kv, block.kv_mount, path, resource, current, {**current.data, **values}, dry_run
        )

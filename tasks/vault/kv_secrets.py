"""KV v2 secrets: ensuring, generating, rotating, reading and deleting them.

Values are ``SecretStr`` and never reach logs, results or errors; `Change.detail`
lists changed KEYS only.
"""

import json
import secrets
import string
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr

from blocks import VaultConnection
from magicflow import (
    Action,
    Change,
    ConflictError,
    InvalidInputError,
    job,
    job_logger,
    report,
)
from tasks.vault.session import (
    _check_key,
    _converge,
    _current_secret,
    _kv_v2,
    _plain_values,
    _target,
    _translated,
    _unchanged,
)

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
    with _current_secret(block, path, resource) as (kv, current):
        if policy == "create_only" and current.data is not None:
            return _unchanged(resource, dry_run, version=current.version, policy=policy)
        return _converge(kv, block.kv_mount, path, resource, current, wanted, dry_run)


def _check_generated(resource: str, key: str, length: int) -> None:
    _check_key(resource, "key", key)
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
    with _current_secret(block, path, resource) as (kv, current):
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
    with _current_secret(block, path, resource) as (kv, current):
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
    with _current_secret(block, path, resource) as (kv, current):
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

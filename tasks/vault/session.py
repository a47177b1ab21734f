"""The Vault client for the jobs: paths, the KV v2 API, check-and-set writes and errors.

Every write carries ``cas`` = the version the job read (``0`` when the secret did not
exist), so a writer that changed the secret in between is never silently overwritten:
Vault refuses the write and the job raises `ConflictError`.
"""

import string
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import hvac
import hvac.exceptions
from pydantic import SecretStr

from blocks import VaultConnection
from magicflow import (
    Action,
    Change,
    InvalidInputError,
    connection,
    report,
)
from magicflow.errors import HttpAnswer, typed_errors

_CAS_MISMATCH = "check-and-set parameter did not match the current version"

_PATH_SEGMENT_CHARS = frozenset(string.ascii_letters + string.digits + "-_.@+=:,")

_T = TypeVar("_T")


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


def _check_key(resource: str, what: str, key: str) -> None:
    """A key of a secret's data: a non-empty, printable string."""
    if not isinstance(key, str) or not key or not key.isprintable():
        raise InvalidInputError(resource, f"{what} {key!r} must be a non-empty string")


def _unless_absent(read: Callable[[], _T], absent: _T) -> _T:
    """What `read` returns, or `absent` when Vault answers a bare 404.

    A bare 404 says the secret (or folder) does not exist; a 404 with an error text
    ("no handler for route": a wrong mount) is a real failure and is raised.
    """
    try:
        return read()
    except hvac.exceptions.InvalidPath as error:
        if error.errors:
            raise
        return absent


def _plain_values(resource: str, data: Mapping[str, SecretStr]) -> dict[str, str]:
    """Checks the keys and values to write and unwraps the values (kept in memory only)."""
    if not isinstance(data, Mapping) or not data:
        raise InvalidInputError(resource, "data must be a non-empty mapping of key -> SecretStr")
    plain = {}
    for key, value in data.items():
        _check_key(resource, "data key", key)
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


@contextmanager
def _current_secret(
    block: VaultConnection, path: str, resource: str
) -> Iterator[tuple[Any, _Current]]:
    """The KV v2 API of an authenticated client and the secret as it is now, read once."""
    with _kv_v2(block, resource) as kv:
        yield kv, _read_current(kv, block.kv_mount, path, resource)


def _read_current(kv: Any, mount: str, path: str, resource: str) -> _Current:
    with _translated(resource, "reading"):
        response = _unless_absent(
            lambda: kv.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=False
            ),
            None,
        )
    if response is None:
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

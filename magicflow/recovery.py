"""What disaster-recovery jobs share: scratch resource names and the restore check result.

A restore test restores a backup into a *scratch* resource (a bucket, a KV path, a
volume, a DB instance) that is deleted afterwards. Scratch resources are named
``magicflow-dr-scratch-<run id>-<target hash>``, so that one left behind by a
crashed run can always be found by its prefix and deleted; the cleanup jobs refuse
any name without that prefix, so they can never delete anything else.

A verify job compares the restored copy with what the source recorded about the
backup (its checksum, size or reported properties) and returns a `RestoreCheck`.

Example:
    >>> name = scratch_name("8a1c9a62-3f0b-4f7e-9d1e-2b1f6e0c1d2e", "orders-db")
    >>> name.startswith(SCRATCH_PREFIX), len(name) <= 63
    (True, True)
"""

import hashlib
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from magicflow.errors import InvalidInputError

SCRATCH_PREFIX = "magicflow-dr-scratch-"
"""Every scratch resource's name starts with this, and nothing else's may."""

SCRATCH_TAG = "magicflow-dr-scratch"
"""Tag (AWS) set on scratch resources that have no name of their own, e.g. EBS volumes."""


def scratch_name(run_id: UUID | str, target: str) -> str:
    """The scratch resource name of one target in one run.

    It is a valid S3 and GCS bucket name, RDS instance identifier and Vault path
    segment (62 characters: lowercase letters, digits and dashes).

    Args:
        run_id: The flow run's id.
        target: The target's name.

    Returns:
        ``magicflow-dr-scratch-<run id, 32 hex digits>-<8 hex digits of the target>``.

    Example:
        >>> scratch_name("00000000-0000-0000-0000-000000000001", "a")[:30]
        'magicflow-dr-scratch-000000000'
    """
    digest = hashlib.sha256(target.encode()).hexdigest()[:8]
    return f"{SCRATCH_PREFIX}{UUID(str(run_id)).hex}-{digest}"


def check_scratch_name(resource: str, name: str) -> None:
    """Refuses a name that is not a scratch name (before anything is created or deleted).

    Args:
        resource: The resource the error names.
        name: A scratch name, or a prefix of scratch names for a cleanup.

    Raises:
        InvalidInputError: `name` does not start with `SCRATCH_PREFIX`.

    Example:
        >>> check_scratch_name("aws:s3:bucket/x", "magicflow-dr-scratch-1")
    """
    if not isinstance(name, str) or not name.startswith(SCRATCH_PREFIX):
        raise InvalidInputError(
            resource,
            f"{name!r} is not a scratch name: DR jobs create and delete only names "
            f"starting with {SCRATCH_PREFIX!r}",
        )


class RestoreCheck(BaseModel):
    """The verdict of a verify job on one restored copy.

    Attributes:
        resource: The scratch resource that was checked.
        source: The recovery point it was restored from.
        passed: True when everything checked matched.
        checked: What was compared, e.g. ``["size", "sha256"]``.
        expected: What the source recorded (never a secret value).
        found: What the restored copy has (never a secret value).
        problem: Why it did not pass, in words; None when it passed.

    Example:
        >>> RestoreCheck(resource="s", source="p", passed=True, checked=["size"]).problem is None
        True
    """

    model_config = ConfigDict(frozen=True)

    resource: str
    source: str
    passed: bool
    checked: list[str] = Field(default_factory=list)
    expected: dict[str, JsonValue] = Field(default_factory=dict)
    found: dict[str, JsonValue] = Field(default_factory=dict)
    problem: str | None = None


def compare_restore(
    resource: str,
    source: str,
    expected: Mapping[str, Any],
    found: Mapping[str, Any],
) -> RestoreCheck:
    """A `RestoreCheck` comparing the facts both sides have; the others are not checked.

    Args:
        resource: The scratch resource.
        source: The recovery point.
        expected: What the source recorded, e.g. ``{"size": 5, "sha256": "..."}``;
            None values mean "not recorded" and are left out.
        found: The same facts read from the restored copy.

    Returns:
        The check: ``passed`` when every recorded fact matches.

    Example:
        >>> compare_restore("s", "p", {"size": 5}, {"size": 4}).problem
        'size: expected 5, found 4'
    """
    recorded = {key: value for key, value in expected.items() if value is not None}
    checked = sorted(key for key in recorded if key in found)
    mismatches = [
        f"{key}: expected {recorded[key]}, found {found[key]}"
        for key in checked
        if recorded[key] != found[key]
    ]
    if not checked:
        mismatches = ["nothing recorded about the backup to compare with"]
    return RestoreCheck(
        resource=resource,
        source=source,
        passed=not mismatches,
        checked=checked,
        expected={key: recorded[key] for key in checked},
        found={key: found[key] for key in checked},
        problem="; ".join(mismatches) or None,
    )


RESTORED_FROM = "magicflow-restored-from"
"""Metadata key on a restored object copy naming the version it was restored from."""


def restored_copy_is_current(metadata: Mapping[str, str] | None, origin: str) -> bool:
    """Whether an object copy in scratch was restored from `origin` (a rerun copies nothing).

    Args:
        metadata: The copy's own metadata (S3 user metadata, GCS custom metadata).
        origin: The recovery point, e.g. ``bucket/key?versionId=...``.

    Returns:
        True when the copy records that it came from `origin`.

    Example:
        >>> restored_copy_is_current({RESTORED_FROM: "b/k#7"}, "b/k#7"), restored_copy_is_current(None, "b/k#7")
        (True, False)
    """  # noqa: E501 - a doctest line
    return (metadata or {}).get(RESTORED_FROM) == origin


def restored_copy_metadata(metadata: Mapping[str, str] | None, origin: str) -> dict[str, str]:
    """The metadata of a restored copy: the source's, and where the copy came from.

    Example:
        >>> restored_copy_metadata({"sha256": "ab"}, "b/k#7")
        {'sha256': 'ab', 'magicflow-restored-from': 'b/k#7'}
    """
    return {**(metadata or {}), RESTORED_FROM: origin}


class ContentDigests:
    """A file-like sink that hashes what is written into it: size, MD5 and SHA-256.

    A restored copy is streamed through it (``download_to_file(digests)``, or
    ``write`` per chunk) and compared with what the source recorded.

    Example:
        >>> digests = ContentDigests()
        >>> digests.write(b"abc"), digests.size, digests.sha256.hexdigest()[:8]
        (3, 3, 'ba7816bf')
    """

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, data: bytes) -> int:
        """Hashes `data`; returns its length, as a file's ``write`` does."""
        self.sha256.update(data)
        self.md5.update(data)
        self.size += len(data)
        return len(data)


def recorded_sha256(metadata: Mapping[str, str] | None, key: str | None) -> str | None:
    """The hex SHA-256 a backup's writer recorded in the object's metadata, if any.

    Example:
        >>> recorded_sha256({"sha256": " AB12 "}, "sha256"), recorded_sha256({}, None)
        ('ab12', None)
    """
    recorded = (metadata or {}).get(key or "", None)
    return recorded.strip().lower() if recorded else None

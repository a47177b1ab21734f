"""Input rules and tag handling shared by the AWS jobs of several services.

Every job checks its input with these before any call to AWS, so bad input is
rejected with `InvalidInputError` and nothing is written.
"""

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel, SecretStr

from magicflow import InvalidInputError

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
MAX_TAGS = 50
"""AWS's limit of user tags per resource."""

Item = TypeVar("Item", bound="Dated")


def require(condition: bool, resource: str, cause: str) -> None:
    """Raises `InvalidInputError` about `resource` with `cause` unless `condition` holds."""
    if not condition:
        raise InvalidInputError(resource, cause)


def validate_region(resource: str, region: str | None) -> None:
    """Checks that `region` (when given) is shaped like an AWS region name."""
    if region is not None:
        require(bool(_REGION.fullmatch(region)), resource, f"{region!r} is not an AWS region name")


def validate_tags(resource: str, tags: Mapping[str, str] | None) -> dict[str, str]:
    """Checks a resource's complete tag set against AWS's rules; returns it as a dict."""
    tags = dict(tags or {})
    require(len(tags) <= MAX_TAGS, resource, f"at most {MAX_TAGS} tags are allowed")
    for key, value in tags.items():
        require(
            isinstance(key, str) and 1 <= len(key) <= 128,
            resource,
            "a tag key has 1 to 128 characters",
        )
        require(not key.lower().startswith("aws:"), resource, f"tag key {key!r} uses aws:")
        require(
            isinstance(value, str) and len(value) <= 256,
            resource,
            f"the value of tag {key!r} is a string of at most 256 characters",
        )
    return tags


def validate_description(resource: str, description: str, max_chars: int) -> None:
    """Checks that `description` is a string of at most `max_chars` characters."""
    require(
        isinstance(description, str) and len(description) <= max_chars,
        resource,
        f"the description is a string of at most {max_chars} characters",
    )


def secret_text(resource: str, value: SecretStr, max_bytes: int) -> str:
    """The plain text of a non-empty `SecretStr` of at most `max_bytes` (kept in memory only)."""
    require(isinstance(value, SecretStr), resource, "the value must be a pydantic SecretStr")
    text = value.get_secret_value()
    require(len(text) > 0, resource, "the value is empty")
    require(
        len(text.encode()) <= max_bytes, resource, f"the value is longer than {max_bytes} bytes"
    )
    return text


def tag_dict(
    items: Sequence[Mapping[str, str]], key: str = "Key", value: str = "Value"
) -> dict[str, str]:
    """AWS's tag list (``[{"Key": k, "Value": v}]``) as a dict."""
    return {item[key]: item.get(value, "") for item in items}


def tag_list(
    tags: Mapping[str, str], key: str = "Key", value: str = "Value"
) -> list[dict[str, str]]:
    """A tag dict as AWS's tag list, sorted by key."""
    return [{key: k, value: v} for k, v in sorted(tags.items())]


def tag_changes(
    current: Mapping[str, str], desired: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Tags to set and tag keys to remove so that ``current`` becomes ``desired``.

    Tags under ``aws:`` belong to AWS and are left alone.
    """
    to_set = {key: value for key, value in desired.items() if current.get(key) != value}
    to_remove = sorted(key for key in current if key not in desired and not key.startswith("aws:"))
    return to_set, to_remove


class Dated(BaseModel):
    """A listed item with its creation time (None while it is being created)."""

    created: datetime | None


def newest_first(items: list[Item]) -> list[Item]:
    """Sorts by creation time, newest first; items still being created come first."""
    latest = datetime.max.replace(tzinfo=UTC)
    return sorted(items, key=lambda item: item.created or latest, reverse=True)

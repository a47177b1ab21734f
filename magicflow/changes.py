"""The `Change` model every job returns, and how workflows report a list of them."""

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class Action(StrEnum):
    """What a job did, or with ``dry_run=True`` what it would do, to one resource."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    SKIPPED = "skipped"
    """Not attempted: the workflow was not asked to touch this system (``detail`` says why)."""


class Change(BaseModel):
    """The outcome of one job on one resource.

    Attributes:
        resource: ``system:kind/name`` of the resource, for example
            ``aws:s3:bucket/acme-prod`` or ``k8s:namespace/acme``.
        action: What happened (or, in a dry run, what would happen).
        dry_run: True when nothing was written and `action` is the plan.
        detail: Small, secret-free, JSON-serialisable facts: which fields
            differed, the new version number, a URL.

    Example:
        >>> change = Change(resource="k8s:namespace/acme", action="created", dry_run=True)
        >>> change.changed, str(change)
        (True, 'k8s:namespace/acme: created (dry run)')
    """

    model_config = ConfigDict(frozen=True)

    resource: str = Field(min_length=1)
    action: Action
    dry_run: bool = False
    detail: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """True when the resource was (or, in a dry run, would be) written."""
        return self.action not in (Action.UNCHANGED, Action.SKIPPED)

    def __str__(self) -> str:
        suffix = " (dry run)" if self.dry_run else ""
        return f"{self.resource}: {self.action.value}{suffix}"


def summarize_changes(changes: Iterable[Change]) -> dict[str, int]:
    """Counts changes by action, with every action present.

    Args:
        changes: The changes of a workflow run.

    Returns:
        A mapping such as ``{"created": 3, "updated": 0, "unchanged": 5, "deleted": 0,
        "skipped": 1}``,
        the ``changes`` field of a status message.

    Example:
        >>> summarize_changes([Change(resource="a:b/c", action="created")])["created"]
        1
    """
    counts = Counter(change.action for change in changes)
    return {action.value: counts.get(action, 0) for action in Action}


def publish_changes_artifact(
    changes: Iterable[Change], key: str | None = None, description: str | None = None
) -> Any:
    """Publishes a workflow's changes as a table artifact in the Prefect UI.

    Args:
        changes: The changes to show, one row each.
        key: Optional artifact key (lowercase letters, digits and dashes) so that
            runs of the same workflow share an artifact history.
        description: Markdown shown above the table; defaults to the summary counts.

    Returns:
        The id of the created artifact.

    Example:
        ```python
        from prefect import flow
        from magicflow import Change, publish_changes_artifact

        @flow
        def report():
            publish_changes_artifact([Change(resource="a:b/c", action="unchanged")])
        ```
    """
    from prefect.artifacts import create_table_artifact

    changes = list(changes)
    rows = [
        {
            "resource": change.resource,
            "action": change.action.value,
            "dry_run": change.dry_run,
            "detail": ", ".join(f"{k}={v}" for k, v in sorted(change.detail.items())),
        }
        for change in changes
    ]
    if description is None:
        counts = summarize_changes(changes)
        description = ", ".join(f"{n} {action}" for action, n in counts.items() if n) or "no jobs"
    return create_table_artifact(table=rows, key=key, description=description)

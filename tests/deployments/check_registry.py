"""A registry with one workflow of a team's own, for the registry-coverage check tests."""

from flows.registry import Registry
from magicflow import Change, workflow


@workflow(name="audit-report")
def audit_report(team: str = "platform", dry_run: bool = False) -> list[Change]:
    """Reports what a team owns (a test workflow; it never runs)."""
    return []


registry = Registry()
registry.register("audit-report", audit_report)  # deployment audit-report/audit-report

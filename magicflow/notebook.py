"""Notebook use: point Prefect at the local stack, quietly, and show changes as a table.

Call `setup` in the first cell, before anything imports Prefect. It sets, where the
environment has not set them already:

* ``PREFECT_API_URL`` and ``PREFECT_HOME`` of the stack ``magicflow up`` started
  (read from ``<state folder>/env``; the folder is ``$MAGICFLOW_STATE_DIR`` or
  ``.magicflow`` here or in a parent directory), so runs show in its UI;
* ``PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW=ignore``: a job called outside a flow
  has no run to send its logs to, and Prefect would warn on every call;
* ``PREFECT_SERVER_ANALYTICS_ENABLED=false`` and
  ``PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY=false``: no telemetry calls, which
  fail noisily offline.

These are ordinary Prefect settings: a ``.env`` file or shell exports do the same.

Example:
    ```python
    import magicflow.notebook

    magicflow.notebook.setup()
    from tasks import ensure_s3_bucket  # a job called here is named "ensure_s3_bucket: acme"
    ```
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from magicflow.changes import Change

QUIET_SETTINGS = {
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
}
"""Prefect settings that quiet a notebook (see the module docstring)."""


def find_stack_env(start: Path | None = None) -> Path | None:
    """The ``env`` file of the local stack: ``$MAGICFLOW_STATE_DIR/env`` or ``.magicflow/env``.

    Args:
        start: Where to look for ``.magicflow`` (then in each parent); default: here.

    Returns:
        The file, or None when no stack was started.
    """
    if os.environ.get("MAGICFLOW_STATE_DIR"):
        found = Path(os.environ["MAGICFLOW_STATE_DIR"]) / "env"
        return found if found.is_file() else None
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".magicflow" / "env").is_file():
            return folder / ".magicflow" / "env"
    return None


def setup(start: Path | None = None) -> dict[str, str]:
    """Points Prefect at the local stack and quiets it; call before importing Prefect.

    Args:
        start: Where to look for the stack's state folder (default: here).

    Returns:
        The settings it set (variables already set are left alone).

    Example:
        >>> import magicflow.notebook
        >>> "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW" in magicflow.notebook.QUIET_SETTINGS
        True
    """
    wanted = dict(QUIET_SETTINGS)
    env_file = find_stack_env(start)
    if env_file is not None:
        for line in env_file.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            if key.startswith(("PREFECT_", "MAGICFLOW_")):
                wanted[key] = value
    applied = {key: value for key, value in wanted.items() if key not in os.environ}
    os.environ.update(applied)
    if "prefect" in sys.modules and applied:
        # Prefect read its settings at import; reload them from the environment.
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
    return applied


class ChangesTable:
    """Changes shown as a table: HTML in Jupyter, aligned text elsewhere.

    Args:
        changes: A workflow's or a job's changes.
    """

    def __init__(self, changes: Iterable[Change]) -> None:
        self.changes = list(changes)

    def rows(self) -> list[tuple[str, str, str]]:
        """(action, resource, dry run) per change."""
        return [
            (str(c.action.value), c.resource, "dry run" if c.dry_run else "") for c in self.changes
        ]

    def __str__(self) -> str:
        width = max((len(resource) for _, resource, _ in self.rows()), default=8)
        return "\n".join(
            f"{action:<10} {resource:<{width}} {dry}".rstrip()
            for action, resource, dry in [("action", "resource", ""), *self.rows()]
        )

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from html import escape

        cells = "".join(
            f"<tr><td>{escape(a)}</td><td>{escape(r)}</td><td>{escape(d)}</td></tr>"
            for a, r, d in self.rows()
        )
        return f"<table><tr><th>action</th><th>resource</th><th></th></tr>{cells}</table>"

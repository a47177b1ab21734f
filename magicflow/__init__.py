"""MagicFlow's shared contract: `Change`, typed errors, the job and workflow decorators.

Everything that `tasks`, `flows`, `blocks` and the `magicflow` command share lives
here, so that each concept has exactly one definition.

Names are imported on first use, so ``import magicflow`` (and ``magicflow --help``)
loads neither Prefect nor any cloud SDK until a name that needs it is touched.

Example:
    >>> from magicflow import Action, Change
    >>> Change(resource="aws:s3:bucket/acme", action=Action.CREATED).changed
    True
"""

from typing import TYPE_CHECKING

from magicflow.lazy import lazy_exports

if TYPE_CHECKING:
    from magicflow.changes import Action, Change, publish_changes_artifact, summarize_changes
    from magicflow.errors import (
        ConflictError,
        DeadlineExceededError,
        InvalidInputError,
        MagicFlowError,
        NotFoundError,
        PermissionDeniedError,
        TransientError,
    )
    from magicflow.jobs import connection, job, job_logger, report, retry_on_transient
    from magicflow.workflows import workflow

_EXPORTS = {
    "Action": "magicflow.changes",
    "Change": "magicflow.changes",
    "publish_changes_artifact": "magicflow.changes",
    "summarize_changes": "magicflow.changes",
    "ConflictError": "magicflow.errors",
    "DeadlineExceededError": "magicflow.errors",
    "InvalidInputError": "magicflow.errors",
    "MagicFlowError": "magicflow.errors",
    "NotFoundError": "magicflow.errors",
    "PermissionDeniedError": "magicflow.errors",
    "TransientError": "magicflow.errors",
    "connection": "magicflow.jobs",
    "job": "magicflow.jobs",
    "job_logger": "magicflow.jobs",
    "report": "magicflow.jobs",
    "retry_on_transient": "magicflow.jobs",
    "workflow": "magicflow.workflows",
}

__all__ = [
    "Action",
    "Change",
    "ConflictError",
    "DeadlineExceededError",
    "InvalidInputError",
    "MagicFlowError",
    "NotFoundError",
    "PermissionDeniedError",
    "TransientError",
    "connection",
    "job",
    "job_logger",
    "publish_changes_artifact",
    "report",
    "retry_on_transient",
    "summarize_changes",
    "workflow",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

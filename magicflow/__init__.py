"""MagicFlow's shared contract: `Change`, typed errors, the job and workflow decorators.

Everything that `tasks`, `flows`, `blocks` and the `magicflow` command share lives
here, so that each concept has exactly one definition.

Example:
    >>> from magicflow import Action, Change
    >>> Change(resource="aws:s3:bucket/acme", action=Action.CREATED).changed
    True
"""

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

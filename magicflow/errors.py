"""Typed errors shared by every job, and the rule for which of them Prefect retries.

Every error names the resource it is about and the cause, so that a failed run in
the Prefect UI reads like a sentence: ``vault:kv/secret/acme/db: check-and-set
conflict, version 3 was written by someone else``.

Only `TransientError` is retried (see `magicflow.jobs.retry_on_transient`); all
other errors are permanent: retrying a bad input or a missing permission cannot
succeed and only delays the failure.
"""


class MagicFlowError(Exception):
    """Base class of every error a MagicFlow job raises on purpose.

    Args:
        resource: The resource the error is about, in the same form as
            `Change.resource` (for example ``aws:s3:bucket/acme-prod``).
        cause: What went wrong, in words an operator can act on. Never a secret.

    Example:
        >>> str(NotFoundError("gitlab:project/acme/infra", "project does not exist"))
        'gitlab:project/acme/infra: project does not exist'
    """

    retryable: bool = False

    def __init__(self, resource: str, cause: str) -> None:
        self.resource = resource
        self.cause = cause
        super().__init__(f"{resource}: {cause}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Keeps errors picklable (Prefect persists failed task states).
        return (type(self), (self.resource, self.cause))


class InvalidInputError(MagicFlowError, ValueError):
    """The input is malformed or violates a rule; nothing was written."""


class NotFoundError(MagicFlowError, LookupError):
    """A resource the job needs does not exist."""


class ConflictError(MagicFlowError):
    """The resource changed under us, or is in a state that forbids the change."""


class PermissionDeniedError(MagicFlowError, PermissionError):
    """The connection's identity may not read or change the resource."""


class TransientError(MagicFlowError):
    """A failure that may pass on its own: 5xx, throttling, timeouts, refused connections.

    Jobs raise it for such failures so that Prefect retries them with backoff.
    """

    retryable = True


class DeadlineExceededError(MagicFlowError, TimeoutError):
    """A wait (for an approval, a backup, a run) passed its deadline; not retried."""

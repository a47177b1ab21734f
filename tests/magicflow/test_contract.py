"""The shared contract: Change, the typed errors, block resolution, the changes artifact."""

import pickle
import uuid

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from pydantic import ValidationError

from blocks import GitLabConnection, VaultConnection
from magicflow import (
    Action,
    Change,
    ConflictError,
    DeadlineExceededError,
    InvalidInputError,
    MagicFlowError,
    NotFoundError,
    PermissionDeniedError,
    TransientError,
    connection,
    publish_changes_artifact,
    summarize_changes,
)


def test_change_is_frozen_and_knows_whether_it_changed() -> None:
    change = Change(resource="aws:s3:bucket/acme", action="created", detail={"versioning": True})
    assert change.changed and change.action is Action.CREATED
    assert not Change(resource="aws:s3:bucket/acme", action="unchanged").changed
    with pytest.raises(ValidationError):
        change.action = Action.DELETED  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad", [{"resource": "", "action": "created"}, {"resource": "a:b/c", "action": "exploded"}]
)
def test_change_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValidationError):
        Change(**bad)


def test_change_round_trips_through_json() -> None:
    change = Change(
        resource="k8s:namespace/acme", action="updated", dry_run=True, detail={"labels": ["team"]}
    )
    assert Change.model_validate_json(change.model_dump_json()) == change
    assert str(change) == "k8s:namespace/acme: updated (dry run)"


def test_summarize_changes_counts_every_action() -> None:
    changes = [
        Change(resource=f"a:b/{i}", action=a)
        for i, a in enumerate(["created", "created", "unchanged"])
    ]
    assert summarize_changes(changes) == {
        "created": 2,
        "updated": 0,
        "unchanged": 1,
        "deleted": 0,
        "skipped": 0,
    }


@pytest.mark.parametrize(
    ("error_type", "retryable", "builtin"),
    [
        (InvalidInputError, False, ValueError),
        (NotFoundError, False, LookupError),
        (ConflictError, False, MagicFlowError),
        (PermissionDeniedError, False, PermissionError),
        (TransientError, True, MagicFlowError),
        (DeadlineExceededError, False, TimeoutError),
    ],
)
def test_errors_name_resource_and_cause_and_survive_pickling(
    error_type, retryable, builtin
) -> None:
    error = error_type("vault:kv/secret/acme", "the cause")
    assert str(error) == "vault:kv/secret/acme: the cause"
    assert error.retryable is retryable
    assert isinstance(error, builtin) and isinstance(error, MagicFlowError)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.resource, copy.cause) == (error_type, error.resource, error.cause)


def test_connection_accepts_a_block_or_a_saved_block_name() -> None:
    block = VaultConnection(token="t")
    assert connection(block, VaultConnection) is block
    name = f"contract-{uuid.uuid4().hex[:8]}"
    block.save(name)
    assert connection(name, VaultConnection).url == block.url
    with pytest.raises(InvalidInputError, match="expected a VaultConnection"):
        connection(GitLabConnection(token="t"), VaultConnection)


async def test_changes_artifact_is_a_table_in_the_prefect_ui() -> None:
    changes = [
        Change(resource="aws:s3:bucket/acme", action="created", detail={"versioning": True}),
        Change(resource="k8s:namespace/acme", action="unchanged"),
    ]
    key = f"changes-{uuid.uuid4().hex[:8]}"

    @flow
    def report_changes() -> None:
        publish_changes_artifact(changes, key=key)

    report_changes()
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    [artifact] = artifacts
    assert artifact.type == "table"
    assert "aws:s3:bucket/acme" in str(artifact.data) and "unchanged" in str(artifact.data)
    assert artifact.description == "1 created, 1 unchanged"

"""validate-dr-backups against real backends: every kind passes on fresh backups; stale and
corrupted backups fail the run, named in the report; scratch resources never outlive a
run (passed, failed, or failed half way), listed in every backend with clients of our
own; the sources are byte-identical afterwards and received no write.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.variables import Variable

from flows.dr_targets import parse_targets
from flows.dr_validation import (
    DR_TARGETS_VARIABLE,
    DrValidationFailed,
    DrValidationReport,
    validate_dr_backups,
)
from flows.registry import InvalidParametersError, magicflow_registry
from magicflow import InvalidInputError
from magicflow.recovery import SCRATCH_PREFIX
from tests.fixtures.dr import BACKUP_VAULT, SCRATCH_MOUNT, DrSources, recovery_point


@pytest.fixture
def prefect() -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        yield client


@pytest.fixture
def blocks(recording_proxies) -> dict[str, str]:
    """Saved blocks (targets name them) whose requests go through recording proxies."""
    tag = uuid.uuid4().hex[:8]
    names = {"aws": f"dr-aws-{tag}", "backup": f"dr-backup-{tag}", "gcp": f"dr-gcp-{tag}"}
    recording_proxies.aws().save(names["aws"])
    recording_proxies.aws_quotas().save(names["backup"])
    recording_proxies.gcp().save(names["gcp"])
    names["vault"] = f"dr-vault-{tag}"
    recording_proxies.vault().save(names["vault"])
    return names


def targets_for(
    sources: DrSources, blocks: dict[str, str], rpo: str = "P1D"
) -> list[dict[str, Any]]:
    """One target per kind, as a deployment or a Kafka request gives them (JSON)."""
    return [
        {"kind": "s3-versions", "name": "orders-dumps", "connection": blocks["aws"],
         "bucket": sources.s3_bucket, "prefix": "db/", "rpo": rpo},
        {"kind": "gcs-generations", "name": "exports", "connection": blocks["gcp"],
         "bucket": sources.gcs_bucket, "prefix": "db/", "rpo": rpo},
        {"kind": "vault-kv", "name": "orders-secrets", "connection": blocks["vault"],
         "path": sources.vault_path, "scratch_mount": SCRATCH_MOUNT, "rpo": rpo},
        {"kind": "rds-snapshots", "name": "orders-db", "connection": blocks["aws"],
         "db_instance_identifier": sources.rds_instance, "rpo": rpo},
        {"kind": "ebs-snapshots", "name": "orders-volume", "connection": blocks["aws"],
         "volume_id": sources.ebs_volume, "rpo": rpo},
        {"kind": "aws-backup", "name": "orders-vault", "connection": blocks["backup"],
         "backup_vault_name": BACKUP_VAULT, "rpo": rpo},
    ]  # fmt: skip


RDS_DENIED = (
    "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
    "<Message>denied by the test</Message></Error><RequestId>t</RequestId></ErrorResponse>"
)
EC2_DENIED = (
    "<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
    "<Message>denied by the test</Message></Error></Errors><RequestID>t</RequestID></Response>"
)


def run_prefix(run_id: Any) -> str:
    return f"{SCRATCH_PREFIX}{uuid.UUID(str(run_id)).hex}"


def source_writes(recording_proxies, sources: DrSources) -> list[str]:
    """Write requests that reached a source: anything not aimed at a scratch resource."""
    touched = []
    for request in recording_proxies.writes():
        aimed_at_scratch = (
            SCRATCH_PREFIX in request.path.split("?")[0].rsplit("/rewriteTo/", 1)[-1]
            or request.path == "/storage/v1/b"  # creating a (scratch) GCS bucket
            or request.path.startswith(f"/v1/{SCRATCH_MOUNT}/")
            or request.action
            in (
                "RestoreDBInstanceFromDBSnapshot",
                "DeleteDBInstance",
                "CreateVolume",
                "DeleteVolume",
            )
        )
        if not aimed_at_scratch:
            touched.append(str(request))
    return touched


def artifacts(prefect: SyncPrefectClient, **filters: Any) -> list[Any]:
    return prefect.read_artifacts(artifact_filter=ArtifactFilter(**filters))


def run_artifact(prefect: SyncPrefectClient, run_id: Any, key: str) -> Any:
    """The artifact with that key created by that run."""
    (found,) = artifacts(
        prefect,
        key=ArtifactFilterKey(any_=[key]),
        flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
    )
    return found


def test_fresh_backups_of_every_kind_pass_and_leave_nothing_behind(
    recording_proxies, dr_sources: DrSources, blocks: dict[str, str], prefect: SyncPrefectClient
) -> None:
    dr_sources.seed_all()
    before = dr_sources.fingerprint()
    recording_proxies.reset()
    state = validate_dr_backups(
        targets_for(dr_sources, blocks), max_concurrency=3, return_state=True
    )
    assert state.is_completed(), state.message
    report = state.result()
    assert isinstance(report, DrValidationReport) and report.passed, report.markdown()
    by_target = {r.target: r for r in report.results}
    assert {name: r.restore for name, r in by_target.items()} == {
        "orders-dumps": "passed", "exports": "passed", "orders-secrets": "passed",
        "orders-db": "passed", "orders-volume": "passed", "orders-vault": "passed",
    }  # fmt: skip
    assert by_target["orders-dumps"].recovery_point == (
        f"db/orders.dump?versionId={dr_sources.s3_versions[-1]}"
    )
    assert by_target["exports"].check is not None
    assert set(by_target["exports"].check.checked) == {"crc32c", "md5", "sha256", "size"}
    assert by_target["orders-db"].recovery_point == dr_sources.rds_snapshot
    assert by_target["orders-secrets"].recovery_point == "version 2"
    assert all(
        r.rpo_met and r.age is not None and r.age < timedelta(hours=3) for r in report.results
    )
    assert all(r.scratch_deleted for r in report.results if r.kind != "aws-backup")
    # Nothing left behind, listed in every backend; the sources untouched, byte for byte.
    assert dr_sources.scratch_left(run_prefix(report.flow_run_id)) == {
        "s3": [], "gcs": [], "vault": [], "rds": [], "ebs": []
    }  # fmt: skip
    assert dr_sources.fingerprint() == before
    assert (
        recording_proxies.total_writes() > 0 and source_writes(recording_proxies, dr_sources) == []
    )
    # The report in the UI: the progress bar, the report, one artifact per target.
    (progress,) = artifacts(
        prefect,
        flow_run_id=ArtifactFilterFlowRunId(any_=[report.flow_run_id]),
        type={"any_": ["progress"]},
    )
    assert progress.data == 100.0 and progress.description == "6 of 6 targets done"
    (row,) = json.loads(
        artifacts(prefect, key=ArtifactFilterKey(any_=["dr-target-orders-db"]))[-1].data
    )
    assert row["result"] == "passed" and row["recovery_point"] == dr_sources.rds_snapshot
    markdown = run_artifact(prefect, report.flow_run_id, "dr-validation-report").data
    assert markdown.startswith("# DR validation: 6 of 6 targets passed")


def test_stale_and_corrupted_backups_fail_the_run_and_are_named(
    recording_proxies, dr_sources: DrSources, blocks: dict[str, str], prefect: SyncPrefectClient
) -> None:
    dr_sources.seed_s3([b"orders, cut short"], recorded=[b"orders, whole"])
    dr_sources.seed_gcs([b"exports"])
    dr_sources.seed_backup([recovery_point("00000000000000aa", age=timedelta(days=3))])
    stale_arn = dr_sources.backup_points[0]["RecoveryPointArn"]
    targets = [t for t in targets_for(dr_sources, blocks) if t["kind"] in
               ("s3-versions", "gcs-generations", "aws-backup")]  # fmt: skip
    before = dr_sources.fingerprint()
    state = validate_dr_backups(targets, max_concurrency=2, return_state=True)
    assert state.is_failed()
    failure = state.result(raise_on_failure=False)
    assert isinstance(failure, DrValidationFailed)
    report = failure.report
    assert [r.target for r in report.failed] == ["orders-dumps", "orders-vault"]
    assert "1 of 3 targets passed; failed: orders-dumps (restore), orders-vault (RPO)" in str(
        state.message
    )
    dumps, vault = report.failed
    assert dumps.rpo_met and dumps.restore == "failed" and dumps.check is not None
    assert dumps.check.expected["sha256"] != dumps.check.found["sha256"]
    assert dumps.check.expected["md5"] == dumps.check.found["md5"]
    assert dumps.problems[0].startswith(
        f"restore check of db/orders.dump?versionId={dr_sources.s3_versions[0]}: sha256: expected"
    )
    assert not vault.rpo_met and vault.recovery_point == stale_arn and vault.restore == "passed"
    assert vault.problems[0].startswith("RPO 1d 0h: expected a recovery point taken after")
    assert f"found {stale_arn} taken" in vault.problems[0] and "(3d 0h old)" in vault.problems[0]
    text = report.markdown()
    for needle in (
        "## Failures",
        "### orders-dumps",
        "### orders-vault",
        stale_arn,
        "sha256: expected",
    ):
        assert needle in text
    assert dr_sources.scratch_left(run_prefix(report.flow_run_id)) == {
        "s3": [], "gcs": [], "vault": [], "rds": [], "ebs": []
    }  # fmt: skip
    assert dr_sources.fingerprint() == before
    (row,) = json.loads(run_artifact(prefect, report.flow_run_id, "dr-target-orders-vault").data)
    assert (row["result"], row["rpo_met"], row["recovery_point"]) == ("failed", False, stale_arn)


def test_a_restore_failing_half_way_leaves_no_scratch_behind(
    recording_proxies, dr_sources: DrSources, blocks: dict[str, str]
) -> None:
    dr_sources.seed_all()
    before = dr_sources.fingerprint()
    aws, gcs, vault = (recording_proxies.proxies[name] for name in ("aws", "gcs", "vault"))
    # The proxies live for the session and count faults cumulatively: count from here.
    before_faults = aws.injected, gcs.injected, vault.injected
    denied = json.dumps({"message": "denied by the test"})
    # Each fault comes after the scratch resource exists: the copy into the scratch
    # bucket, the copy into the scratch GCS bucket, the check's read of the scratch
    # secret, instance and volume.
    aws.fail(403, method="PUT", path=f"^/{SCRATCH_PREFIX}[^/]+/.+", body=denied)
    gcs.fail(403, method="POST", path="/rewriteTo/", body=denied)
    vault.fail(403, method="GET", path=f"^/v1/{SCRATCH_MOUNT}/data/", after=1, body=denied)
    aws.fail(403, action="DescribeDBInstances", after=1, body=RDS_DENIED, content_type="text/xml")
    aws.fail(403, action="DescribeVolumes", after=1, body=EC2_DENIED, content_type="text/xml")
    state = validate_dr_backups(
        targets_for(dr_sources, blocks), max_concurrency=6, sweep_after=None, return_state=True
    )
    assert state.is_failed()
    report = state.result(raise_on_failure=False).report
    # Every fault was met, once.
    faults = (aws.injected, gcs.injected, vault.injected)
    assert tuple(n - b for n, b in zip(faults, before_faults, strict=True)) == (3, 1, 1)
    failed = {r.target: r for r in report.failed}
    assert sorted(failed) == [
        "exports",
        "orders-db",
        "orders-dumps",
        "orders-secrets",
        "orders-volume",
    ]
    for result in failed.values():
        assert result.restore == "failed" and result.scratch_deleted is True, result
        assert result.problems[0].startswith(f"restore test of {result.recovery_point} failed")
    assert dr_sources.scratch_left(run_prefix(report.flow_run_id)) == {
        "s3": [], "gcs": [], "vault": [], "rds": [], "ebs": []
    }  # fmt: skip
    assert dr_sources.fingerprint() == before


def test_bad_targets_are_refused_naming_them_before_any_request(
    recording_proxies, dr_sources: DrSources, blocks: dict[str, str]
) -> None:
    good = {
        "kind": "vault-kv",
        "name": "ok",
        "connection": blocks["vault"],
        "path": "a/b",
        "rpo": "P1D",
    }
    cases = [
        ({"kind": "tape", "name": "old"}, "dr:target/old: unknown kind 'tape'"),
        ({**good, "name": "zero", "rpo": "PT0S"}, "dr:target/zero: rpo: Value error, the RPO"),
        ({**good, "name": "negative", "rpo": -60}, "dr:target/negative: rpo: .*longer than zero"),
        ({"kind": "s3-versions", "name": "nobucket", "connection": "aws", "rpo": "P1D"},
         "dr:target/nobucket: bucket: Field required"),
        ({**good, "name": "Bad Name"}, r"dr:target/Bad Name: name: String should match"),
        ({**good, "extra": 1}, "dr:target/ok: extra: Extra inputs are not permitted"),
    ]  # fmt: skip
    for target, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            parse_targets([good, target] if target.get("name") != "ok" else [target])
    with pytest.raises(InvalidInputError, match="dr:target/ok: this name is given to two targets"):
        parse_targets([good, good])
    recording_proxies.reset()
    with pytest.raises(InvalidInputError, match="dr:target/zero: rpo"):
        validate_dr_backups([good, {**good, "name": "zero", "rpo": "PT0S"}])
    assert recording_proxies.requests() == []
    with pytest.raises(InvalidParametersError, match=r"targets\.1"):
        magicflow_registry().get("dr-validation").validate_parameters(
            {"targets": [good, {"kind": "tape", "name": "old"}]}
        )
    # Without targets (the nightly deployment), a run reads the dr_targets variable.
    Variable.unset(DR_TARGETS_VARIABLE)
    with pytest.raises(InvalidInputError, match="prefect variable set dr_targets"):
        validate_dr_backups()
    Variable.set(DR_TARGETS_VARIABLE, [good, {**good, "name": "zero", "rpo": "PT0S"}])
    try:
        with pytest.raises(InvalidInputError, match="dr:target/zero: rpo"):
            validate_dr_backups()
    finally:
        Variable.unset(DR_TARGETS_VARIABLE)
    assert recording_proxies.requests() == []

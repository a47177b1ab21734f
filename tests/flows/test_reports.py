"""generate-report against the Prefect test harness, moto and the Kubernetes emulator.

The test creates the runs the report must count (a probe workflow of its own: some
completed, some failed, one paused), a real DR validation, a labelled tenant quota, and
reads the report, its artifacts and its uploaded copy back with clients of its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prefect import flow, get_client
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.states import Paused

from blocks import KubernetesConnection
from flows.dr_validation import validate_dr_backups
from flows.registry import InvalidParametersError, magicflow_registry
from flows.reports import REPORT_ARTIFACT_KEY, generate_report
from magicflow import InvalidInputError
from tasks.kubernetes import MANAGED_BY_LABEL, TENANT_LABEL
from tests.fixtures.aws import AWS_REGION
from tests.fixtures.dr import boto


@pytest.fixture
def prefect() -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        yield client


def test_the_report_counts_the_periods_runs_and_shows_dr_results_quotas_and_a_chart(
    prefect: SyncPrefectClient,
    aws_credentials,
    moto_server: str,
    kubernetes: KubernetesConnection,
    kubernetes_core,
) -> None:
    tag = uuid.uuid4().hex[:8]
    since = datetime.now(UTC) - timedelta(seconds=1)

    @flow(name=f"report-probe-{tag}")
    def probe(fail: bool) -> str:
        if fail:
            raise RuntimeError(f"probe {tag} broke on purpose")
        return "ok"

    for fail in (False, False, False, True, True):
        probe(fail, return_state=True)
    waiting = prefect.create_flow_run(
        probe,
        name=f"approval-{tag}",
        parameters={"fail": False},
        state=Paused(timeout_seconds=3600),
    )
    names = {"aws": f"report-aws-{tag}", "kubernetes": f"report-k8s-{tag}"}
    aws_credentials.save(names["aws"])
    kubernetes.save(names["kubernetes"])
    s3 = boto(moto_server, "s3")
    for bucket in (f"backups-{tag}", f"reports-{tag}"):
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": AWS_REGION}
        )
    s3.put_bucket_versioning(Bucket=f"backups-{tag}", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=f"backups-{tag}", Key="db/orders.dump", Body=b"dump")
    dr = validate_dr_backups(
        [{"kind": "s3-versions", "name": f"orders-{tag}", "connection": names["aws"],
          "bucket": f"backups-{tag}", "prefix": "db/", "rpo": "P1D"}],
        restore_test=False,
    )  # fmt: skip
    assert dr.passed
    namespace = f"tenant-{tag}"
    kubernetes_core.create_namespace(
        {"metadata": {"name": namespace, "labels": {MANAGED_BY_LABEL[0]: MANAGED_BY_LABEL[1],
         TENANT_LABEL: f"acme-{tag}"}}}
    )  # fmt: skip
    kubernetes_core.create_namespaced_resource_quota(
        namespace,
        {"metadata": {"name": "compute"}, "spec": {"hard": {"requests.cpu": "4", "pods": "20"}}},
    )
    until = datetime.now(UTC) + timedelta(seconds=1)

    state = generate_report(
        since,
        until,
        kubernetes=names["kubernetes"],
        upload={"kind": "s3", "connection": names["aws"], "bucket": f"reports-{tag}"},
        return_state=True,
    )

    assert state.is_completed(), state.message
    report = state.result()
    (runs,) = [w for w in report.workflows if w.workflow == f"report-probe-{tag}"]
    assert runs.states == {"COMPLETED": 3, "FAILED": 2, "PAUSED": 1} and runs.total == 6
    assert runs.p50_seconds is not None and 0 < runs.p50_seconds <= runs.p95_seconds
    validations = [w for w in report.workflows if w.workflow == "validate-dr-backups"]
    assert validations and validations[0].states.get("COMPLETED", 0) >= 1
    probe_failures = [f for f in report.failures if f.workflow == f"report-probe-{tag}"]
    assert len(probe_failures) == 2
    assert all(f"probe {tag} broke on purpose" in f.reason for f in probe_failures)
    assert waiting.id in [a.flow_run_id for a in report.waiting_approvals]
    (target,) = [row for row in report.dr_targets if row["target"] == f"orders-{tag}"]
    assert target["result"] == "passed" and target["kind"] == "s3-versions"
    assert target["flow_run_id"] == str(dr.flow_run_id)
    (quota,) = [q for q in report.quotas if q.namespace == namespace]
    assert (quota.tenant, quota.name, quota.hard) == (
        f"acme-{tag}",
        "compute",
        {"requests.cpu": "4", "pods": "20"},
    )
    today = f"{datetime.now(UTC):%Y-%m-%d}"
    assert sum(report.runs_per_day[today].values()) >= 6

    markdown = report.markdown()
    chart_line = next(line for line in report.chart().splitlines() if line.startswith(f"`{today}`"))
    assert "`█" in chart_line and "completed" in chart_line and "failed" in chart_line
    assert f"| report-probe-{tag} | 6 | 3 | 2 | 0 | 0 | 1 |" in markdown
    assert f"| orders-{tag} | s3-versions | passed |" in markdown
    assert f"| acme-{tag} | {namespace} | compute | requests.cpu | - | 4 |" in markdown
    assert f"`approval-{tag}` waiting" in markdown

    run_id = state.state_details.flow_run_id
    artifacts = {
        a.key: a
        for a in prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    }
    assert artifacts[REPORT_ARTIFACT_KEY].data == markdown
    table = json.loads(artifacts[f"{REPORT_ARTIFACT_KEY}-runs"].data)
    (row,) = [r for r in table if r["workflow"] == f"report-probe-{tag}"]
    assert (row["runs"], row["completed"], row["failed"], row["paused"]) == (6, 3, 2, 1)

    folder = f"reports/{until:%Y-%m-%d}/"
    uploaded = {
        key: s3.get_object(Bucket=f"reports-{tag}", Key=folder + key)["Body"].read().decode()
        for key in ("report.md", "runs-per-day.svg")
    }
    assert uploaded["report.md"] == markdown
    assert (
        uploaded["runs-per-day.svg"].startswith("<svg") and "<rect" in uploaded["runs-per-day.svg"]
    )
    assert [c.action.value for c in report.uploads] == ["created", "created"]

    secrets = [
        aws_credentials.aws_secret_access_key.get_secret_value(),
        kubernetes.token.get_secret_value(),
    ]
    published = [
        report.model_dump_json(),
        *uploaded.values(),
        *(a.data for a in artifacts.values()),
    ]
    for secret in secrets:
        assert all(secret not in text for text in published)


def test_bad_periods_and_uploads_are_refused_before_anything_is_read() -> None:
    with pytest.raises(InvalidInputError, match="report:period: since is a date-time or a dur"):
        generate_report("yesterday")
    with pytest.raises(InvalidInputError, match=r"report:period: since \(.*\) must be before"):
        generate_report(datetime(2030, 1, 2, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidInputError, match="report:upload: Input should be 's3' or 'gcs'"):
        generate_report("P1D", upload={"kind": "ftp", "connection": "x", "bucket": "abc"})
    report = magicflow_registry().get("report")
    assert report.validate_parameters({"since": "P7D"}) == {"since": "P7D"}
    with pytest.raises(InvalidParametersError, match="upload"):
        report.validate_parameters({"upload": {"kind": "ftp", "connection": "x", "bucket": "b"}})

"""invoke-dr against real backends, approved (or not) through Prefect's own pause and resume.

The flow runs in a thread, as a paused run waits for its input; the test finds its run
by a tag, resumes it with ``resume_flow_run(run_input=...)`` as an approver would, and
reads every backend back with clients of our own. "Nothing changed" is measured: the
recording proxies count zero write requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from kubernetes import client as k8s
from prefect import get_client, tags
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.flow_runs import resume_flow_run

from flows.dr_invocation import approval_input, invoke_dr
from flows.registry import magicflow_registry
from magicflow import InvalidInputError, NotFoundError
from magicflow.messages import REQUESTED_BY_TAG_PREFIX
from tests.fixtures.dr import boto, gcs, kv_client
from tests.fixtures.waiting import wait_until

DR_REGION = "eu-central-1"


@pytest.fixture
def prefect() -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        yield client


@dataclass
class Failover:
    """Primary-region state and DR targets, seeded with clients of our own; the plan."""

    moto: str
    gcs_endpoint: str
    vault: Any
    core: k8s.CoreV1Api
    namespace: str
    tag: str
    plan: dict[str, Any]

    def state(self) -> dict[str, Any]:
        """What the failover changes, read back from every backend."""
        rds = boto(self.moto, "rds", DR_REGION)
        s3 = boto(self.moto, "s3")
        ssm = boto(self.moto, "ssm")
        kv = kv_client(self.vault)
        dr_bucket = gcs(self.gcs_endpoint).bucket(f"exports-dr-{self.tag}")
        return {
            "rds": sorted(
                i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]
            ),
            "s3": sorted(
                o["Key"]
                for o in s3.list_objects_v2(Bucket=f"orders-dr-{self.tag}").get("Contents", [])
            ),
            "gcs": sorted(b.name for b in gcs(self.gcs_endpoint).list_blobs(dr_bucket)),
            "ssm": ssm.get_parameter(Name=f"/orders-{self.tag}/db/host")["Parameter"]["Value"],
            "vault": kv.read_secret_version(
                path=f"orders-{self.tag}/db", raise_on_deleted_version=True
            )["data"]["data"],
            "k8s": self.core.read_namespaced_config_map("db", self.namespace).data,
        }


@pytest.fixture
def failover(
    recording_proxies, moto_server: str, fake_gcs_server: str, vault, kubernetes_core, k8s_namespace
) -> Failover:
    tag = uuid.uuid4().hex[:8]
    blocks = recording_proxies.blocks()
    names = {system: f"dr-{system}-{tag}" for system in ("aws", "gcp", "vault", "kubernetes")}
    for system, name in names.items():
        blocks[system].save(name)
    rds = boto(moto_server, "rds", DR_REGION)
    rds.create_db_instance(
        DBInstanceIdentifier=f"orders-{tag}",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="orders",
        MasterUserPassword="not-a-real-password-1",
    )
    rds.create_db_snapshot(
        DBSnapshotIdentifier=f"orders-{tag}-copy", DBInstanceIdentifier=f"orders-{tag}"
    )
    s3 = boto(moto_server, "s3")
    for bucket in (f"orders-{tag}", f"orders-dr-{tag}"):
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
    for key in ("exports/a.csv", "exports/b.csv"):
        s3.put_object(Bucket=f"orders-{tag}", Key=key, Body=key.encode())
    client = gcs(fake_gcs_server)
    source = client.create_bucket(f"exports-{tag}")
    client.create_bucket(f"exports-dr-{tag}")
    source.blob("daily/x.csv").upload_from_string(b"x")
    boto(moto_server, "ssm").put_parameter(
        Name=f"/orders-{tag}/db/host", Value="orders.primary.internal", Type="String"
    )
    kv_client(vault).create_or_update_secret(
        path=f"orders-{tag}/db", secret={"host": "orders.primary.internal", "password": "pw-1"}
    )
    kubernetes_core.create_namespaced_config_map(
        k8s_namespace, {"metadata": {"name": "db"}, "data": {"host": "orders.primary.internal"}}
    )
    plan = {
        "name": f"orders-{tag}",
        "description": "Orders fails over to eu-central-1.",
        "steps": [
            {
                "kind": "rds-restore",
                "name": "orders-db",
                "connection": names["aws"],
                "region": DR_REGION,
                "source_db_instance_identifier": f"orders-{tag}",
                "db_instance_identifier": f"orders-dr-{tag}",
            },
            {
                "kind": "s3-copy",
                "name": "exports",
                "connection": names["aws"],
                "source_bucket": f"orders-{tag}",
                "destination_bucket": f"orders-dr-{tag}",
                "prefix": "exports/",
            },
            {
                "kind": "gcs-copy",
                "name": "gcs-exports",
                "connection": names["gcp"],
                "source_bucket": f"exports-{tag}",
                "destination_bucket": f"exports-dr-{tag}",
            },
            {
                "kind": "ssm-parameter",
                "name": "db-host-parameter",
                "connection": names["aws"],
                "parameter": f"/orders-{tag}/db/host",
                "value": "orders.dr.internal",
            },
            {
                "kind": "vault-kv",
                "name": "db-host-secret",
                "connection": names["vault"],
                "path": f"orders-{tag}/db",
                "values": {"host": "orders.dr.internal"},
            },
            {
                "kind": "k8s-configmap",
                "name": "db-host-config",
                "connection": names["kubernetes"],
                "namespace": k8s_namespace,
                "config_map": "db",
                "values": {"host": "orders.dr.internal"},
            },
        ],
    }
    found = Failover(moto_server, fake_gcs_server, vault, kubernetes_core, k8s_namespace, tag, plan)
    recording_proxies.reset()
    return found


PRIMARY = "orders.primary.internal"


def untouched(failover: Failover) -> dict[str, Any]:
    tag = failover.tag
    return {
        "rds": [f"orders-{tag}"],
        "s3": [],
        "gcs": [],
        "ssm": PRIMARY,
        "vault": {"host": PRIMARY, "password": "pw-1"},
        "k8s": {"host": PRIMARY},
    }


def applied(failover: Failover) -> dict[str, Any]:
    tag = failover.tag
    return {
        "rds": sorted([f"orders-dr-{tag}", f"orders-{tag}"]),
        "s3": ["exports/a.csv", "exports/b.csv"],
        "gcs": ["daily/x.csv"],
        "ssm": "orders.dr.internal",
        "vault": {"host": "orders.dr.internal", "password": "pw-1"},
        "k8s": {"host": "orders.dr.internal"},
    }


class Invocation:
    """A real invocation running in a thread, and its flow run."""

    def __init__(self, prefect: SyncPrefectClient, plan: dict[str, Any], **options: Any) -> None:
        self.prefect = prefect
        tag = f"test-{uuid.uuid4().hex[:8]}"
        run_tags = [tag, *options.pop("extra_tags", [])]

        def run() -> Any:
            with tags(*run_tags):
                return invoke_dr(plan, dry_run=False, return_state=True, **options)

        self._pool = ThreadPoolExecutor(1)
        self.future: Future[Any] = self._pool.submit(run)
        self.id: UUID = wait_until(
            lambda: next(
                (
                    r.id
                    for r in prefect.read_flow_runs(
                        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
                    )
                ),
                None,
            ),
            120,
            "the flow run exists",
        )

    def paused(self, not_state: UUID | None = None) -> UUID:
        """Waits until the run is paused (in a pause other than `not_state`); its state id."""

        def check() -> UUID | None:
            state = self.prefect.read_flow_run(self.id).state
            assert not self.future.done(), self.future.result()
            return state.id if state and state.is_paused() and state.id != not_state else None

        return wait_until(check, 120, "the run pauses for approval")

    def resume(self, **run_input: Any) -> Any:
        return resume_flow_run(self.id, run_input=run_input)

    def final_state(self) -> Any:
        state = self.future.result(timeout=180)
        self._pool.shutdown()
        return state


def test_dry_run_publishes_the_plan_and_changes_nothing(
    recording_proxies, failover: Failover, prefect: SyncPrefectClient
) -> None:
    with recording_proxies.no_writes():
        state = invoke_dr(failover.plan, return_state=True)
    assert state.is_completed(), state.message
    changes = state.result()
    assert [(c.action.value, c.dry_run) for c in changes] == [
        ("created", True),
        ("created", True),
        ("created", True),
        ("updated", True),
        ("updated", True),
        ("updated", True),
    ]
    assert changes[0].detail["restored_from"] == f"orders-{failover.tag}-copy"
    assert failover.state() == untouched(failover)
    run = prefect.read_flow_run(state.state_details.flow_run_id)
    assert not any(s.is_paused() for s in prefect.read_flow_run_states(run.id))
    (plan_artifact,) = [
        a
        for a in prefect.read_artifacts()
        if a.key == f"dr-plan-orders-{failover.tag}" and a.flow_run_id == run.id
    ]
    assert plan_artifact.data.startswith(
        f"# DR plan orders-{failover.tag}: 6 of 6 steps would change"
    )
    assert "Dry run: nothing is applied." in plan_artifact.data
    for step in (
        "orders-db",
        "exports",
        "gcs-exports",
        "db-host-parameter",
        "db-host-secret",
        "db-host-config",
    ):
        assert f"| {step} |" in plan_artifact.data


def test_an_approved_run_applies_every_step_after_refusing_bad_and_self_approvals(
    recording_proxies, failover: Failover, prefect: SyncPrefectClient
) -> None:
    run = Invocation(prefect, failover.plan, extra_tags=[f"{REQUESTED_BY_TAG_PREFIX}portal:alice"])
    first_pause = run.paused()
    assert recording_proxies.total_writes() == 0
    # No decision, no reason: the server checks the form's schema and refuses it.
    with pytest.raises(RuntimeError, match=r"Validation failed.*'decision' is a required"):
        run.resume(approver="bob")
    assert prefect.read_flow_run(run.id).state.id == first_pause
    # The requester approving their own request: accepted by Prefect, refused by the
    # flow, which pauses again for another person.
    run.resume(**approval_input("Alice", "approve", "it is down, trust me"))
    run.paused(not_state=first_pause)
    assert recording_proxies.total_writes() == 0 and failover.state() == untouched(failover)
    run.resume(**approval_input("bob", "approve", "primary region is down"))
    state = run.final_state()
    assert state.is_completed(), state.message
    assert [c.action.value for c in state.result()] == [
        "created",
        "created",
        "created",
        "updated",
        "updated",
        "updated",
    ]
    assert failover.state() == applied(failover)
    (approval,) = [
        a for a in prefect.read_artifacts() if a.key == f"dr-approval-orders-{failover.tag}"
    ]
    assert "Approved by **bob**" in approval.data and "requested by portal:alice" in approval.data


def test_a_denial_and_a_timeout_fail_with_nothing_changed(
    recording_proxies, failover: Failover, prefect: SyncPrefectClient
) -> None:
    denied = Invocation(prefect, failover.plan, requested_by="alice")
    denied.paused()
    denied.resume(**approval_input("bob", "deny", "we fail over tomorrow"))
    state = denied.final_state()
    assert state.is_failed() and "PermissionDeniedError" in state.message
    assert "denied by bob: we fail over tomorrow; nothing was changed" in state.message
    timed_out = Invocation(prefect, failover.plan, requested_by="alice", approval_timeout=2)
    state = timed_out.final_state()
    # Prefect's server fails a pause that outlived its timeout with its own message.
    assert state.is_failed() and "never resumed" in state.message
    assert recording_proxies.total_writes() == 0
    assert failover.state() == untouched(failover)


def test_a_rerun_after_a_failed_step_continues_and_reports_done_steps_unchanged(
    recording_proxies, failover: Failover, prefect: SyncPrefectClient
) -> None:
    vault_proxy = recording_proxies.proxies["vault"]
    vault_proxy.fail(
        403,
        method="POST",
        path=f"/v1/secret/data/orders-{failover.tag}/db",
        body='{"errors": ["permission denied"]}',
    )
    first = Invocation(prefect, failover.plan, requested_by="alice")
    first.paused()
    first.resume(**approval_input("bob", "approve", "primary region is down"))
    state = first.final_state()
    assert state.is_failed() and "dr:step/db-host-secret" in state.message
    half = applied(failover) | {
        "vault": untouched(failover)["vault"],
        "k8s": untouched(failover)["k8s"],
    }
    assert failover.state() == half
    recording_proxies.reset()
    second = Invocation(prefect, failover.plan, requested_by="alice")
    second.paused()
    planned_writes = recording_proxies.total_writes()
    second.resume(**approval_input("bob", "approve", "continue the failover"))
    state = second.final_state()
    assert state.is_completed(), state.message
    assert [c.action.value for c in state.result()] == ["unchanged"] * 4 + ["updated", "updated"]
    assert failover.state() == applied(failover)
    written = {w.path.split("/")[1] for w in recording_proxies.writes()}
    assert planned_writes == 0 and written == {"v1", "api"}  # only Vault and Kubernetes


def test_bad_plans_are_refused_naming_the_step_before_any_write(
    recording_proxies, failover: Failover
) -> None:
    steps = failover.plan["steps"]
    bad = {**failover.plan, "steps": [*steps[:1], {"kind": "dns", "name": "www"}]}
    with pytest.raises(InvalidInputError, match="dr:step/www: unknown kind 'dns'"):
        invoke_dr(bad)
    missing = {**steps[3], "parameter": f"/orders-{failover.tag}/missing"}
    with pytest.raises(
        NotFoundError, match=r"dr:step/db-host-parameter: aws:ssm:parameter/.*does not exist"
    ):
        invoke_dr(
            {**failover.plan, "steps": [*steps[:3], missing]}, dry_run=False, requested_by="alice"
        )
    with pytest.raises(InvalidInputError, match="dr:step/exports: this name is given to two steps"):
        invoke_dr({**failover.plan, "steps": [steps[1], steps[1]]})
    with pytest.raises(InvalidInputError, match="a real invocation needs requested_by"):
        invoke_dr(failover.plan, dry_run=False)
    with pytest.raises(InvalidInputError, match="dr:approval: decision"):
        approval_input("bob", "maybe", "why not")  # type: ignore[arg-type]
    assert recording_proxies.total_writes() == 0
    with pytest.raises(InvalidInputError, match=r"plan\.steps"):
        magicflow_registry().get("dr-invocation").validate_parameters({"plan": bad})

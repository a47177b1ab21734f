"""Disaster-recovery jobs against the real local backends: restore tests, checks, scratch
cleanup, failover repointing and report uploads.

Every writer proves its idempotency at the wire (`assert_idempotent_at_the_wire`); what
the jobs did is read back with clients of our own (`tests/fixtures/dr.py`), and every
restore test proves the source byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client as k8s

from blocks import AwsCredentials
from magicflow import InvalidInputError, NotFoundError
from magicflow.recovery import SCRATCH_PREFIX, scratch_name
from tasks import (
    check_backup_recovery_point,
    copy_gcs_objects,
    copy_s3_objects,
    delete_ebs_scratch_volumes,
    delete_gcs_scratch_buckets,
    delete_kv_scratch_secrets,
    delete_rds_scratch_instances,
    delete_s3_scratch_buckets,
    list_kv_secret_versions,
    list_tenant_resource_quotas,
    put_gcs_object,
    put_s3_object,
    repoint_ssm_parameter,
    restore_ebs_volume_from_snapshot,
    restore_gcs_object_generation,
    restore_kv_secret_version,
    restore_rds_instance_from_snapshot,
    restore_s3_object_version,
    set_config_map_keys,
    set_kv_secret_keys,
    verify_ebs_restore,
    verify_gcs_restore,
    verify_kv_restore,
    verify_rds_restore,
    verify_s3_restore,
)
from tasks.kubernetes import MANAGED_BY_LABEL
from tests.fixtures.dr import (
    BACKUP_VAULT,
    SCRATCH_MOUNT,
    DrSources,
    boto,
    gcs,
    kv_client,
    recovery_point,
)


def scratch() -> str:
    return scratch_name(uuid.uuid4(), "test")


# --- S3 -----------------------------------------------------------------------------------


def test_restore_s3_object_version_second_run_and_dry_run_send_no_writes(
    recording_proxies, dr_sources: DrSources
) -> None:
    aws = recording_proxies.aws()
    dr_sources.seed_s3([b"orders v1", b"orders v2"])
    before = dr_sources.fingerprint()
    bucket, key, (v1, _) = dr_sources.s3_bucket, dr_sources.s3_key, dr_sources.s3_versions
    target = scratch()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: restore_s3_object_version(aws, bucket, key, v1, target, **kw)
    )
    assert {w.path for w in writes} == {f"/{target}", f"/{target}/{key}"}  # never the source
    copy = boto(dr_sources.moto, "s3").get_object(Bucket=target, Key=key)
    assert copy["Body"].read() == b"orders v1"
    check = verify_s3_restore(aws, bucket, key, v1, target)
    assert check.passed and check.checked == ["md5", "sha256", "size"], check
    assert check.found["sha256"] == hashlib.sha256(b"orders v1").hexdigest()
    assert dr_sources.fingerprint() == before


def test_s3_restore_check_names_a_corrupted_backup(aws_credentials, dr_sources: DrSources) -> None:
    # The writer recorded the checksum of what it meant to write; the bytes stored differ.
    dr_sources.seed_s3([b"orders v1 (truncated"], recorded=[b"orders v1 (complete)"])
    bucket, key, (v1,) = dr_sources.s3_bucket, dr_sources.s3_key, dr_sources.s3_versions
    target = scratch()
    restore_s3_object_version(aws_credentials, bucket, key, v1, target)
    check = verify_s3_restore(aws_credentials, bucket, key, v1, target)
    assert not check.passed
    assert check.expected["sha256"] == hashlib.sha256(b"orders v1 (complete)").hexdigest()
    assert check.found["sha256"] == hashlib.sha256(b"orders v1 (truncated").hexdigest()
    assert check.expected["md5"] == check.found["md5"]  # restored intact: the backup is bad
    assert check.problem is not None and check.problem.startswith("sha256: expected")


def test_restore_s3_object_version_refuses_a_bucket_that_is_not_scratch(
    recording_proxies, dr_sources: DrSources
) -> None:
    aws = recording_proxies.aws()
    dr_sources.seed_s3([b"orders v1"])
    recording_proxies.reset()
    with pytest.raises(InvalidInputError, match="not a scratch"):
        restore_s3_object_version(aws, dr_sources.s3_bucket, "k", "v", dr_sources.s3_bucket)
    assert recording_proxies.requests() == []  # refused before any request
    with pytest.raises(NotFoundError, match="version nope does not exist"):
        restore_s3_object_version(aws, dr_sources.s3_bucket, dr_sources.s3_key, "nope", scratch())


def test_delete_s3_scratch_buckets_second_run_and_dry_run_send_no_writes(
    recording_proxies, moto_server
) -> None:
    aws = recording_proxies.aws()
    s3 = boto(moto_server, "s3")
    target, other = scratch(), "acme-keep-me"
    for name in (target, other):
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_versioning(Bucket=target, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=target, Key="a", Body=b"1")
    s3.put_object(Bucket=target, Key="a", Body=b"2")
    s3.delete_object(Bucket=target, Key="a")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    old_only = delete_s3_scratch_buckets(aws, SCRATCH_PREFIX, created_before=an_hour_ago)
    assert old_only.action == "unchanged"
    recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: delete_s3_scratch_buckets(aws, target, **kw), first="deleted"
    )
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == [other]
    with pytest.raises(InvalidInputError, match="not a scratch name"):
        delete_s3_scratch_buckets(aws, "acme-")


def test_copy_s3_objects_second_run_and_dry_run_send_no_writes(
    recording_proxies, moto_server
) -> None:
    aws = recording_proxies.aws()
    s3 = boto(moto_server, "s3")
    for name in ("acme-exports", "acme-exports-dr"):
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="acme-exports", Key="daily/a.csv", Body=b"a")
    s3.put_object(Bucket="acme-exports", Key="daily/b.csv", Body=b"b")
    s3.put_object(Bucket="acme-exports", Key="other/c.csv", Body=b"c")
    recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: copy_s3_objects(aws, "acme-exports", "acme-exports-dr", "daily/", **kw)
    )
    copied = s3.list_objects_v2(Bucket="acme-exports-dr")["Contents"]
    assert sorted(item["Key"] for item in copied) == ["daily/a.csv", "daily/b.csv"]
    s3.put_object(Bucket="acme-exports", Key="daily/a.csv", Body=b"a, changed")
    again = copy_s3_objects(aws, "acme-exports", "acme-exports-dr", "daily/")
    assert (again.action, again.detail["objects"]) == ("updated", 1)
    with pytest.raises(NotFoundError, match="destination bucket acme-nowhere does not exist"):
        copy_s3_objects(aws, "acme-exports", "acme-nowhere")


def test_put_s3_object_second_run_and_dry_run_send_no_writes(
    recording_proxies, moto_server
) -> None:
    aws = recording_proxies.aws()
    s3 = boto(moto_server, "s3")
    s3.create_bucket(
        Bucket="acme-reports", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: put_s3_object(aws, "acme-reports", "ops/report.md", **kw),
        wanted={"content": "# Report\n", "content_type": "text/markdown"},
        changed={"content": "# Report 2\n", "content_type": "text/markdown"},
    )
    stored = s3.get_object(Bucket="acme-reports", Key="ops/report.md")
    assert (stored["Body"].read(), stored["ContentType"]) == (b"# Report\n", "text/markdown")


# --- RDS, EBS, AWS Backup -----------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotKind:
    """How to seed, restore into scratch, check and list one kind of snapshot."""

    seed: Callable[[DrSources], None]
    snapshot: Callable[[DrSources], str]
    restore: Callable[..., Any]
    restore_action: str
    verify: Callable[..., Any]
    found: Callable[[DrSources], dict[str, Any]]
    """What the restore check finds on the restored resource, all of it."""
    listed: Callable[[DrSources], list[str]]
    source: Callable[[DrSources], str]


def rds_snapshot_facts(sources: DrSources) -> dict[str, Any]:
    (snapshot,) = boto(sources.moto, "rds").describe_db_snapshots(
        DBSnapshotIdentifier=sources.rds_snapshot
    )["DBSnapshots"]
    return {
        "status": "available",
        "engine": "postgres",
        "engine_version": snapshot["EngineVersion"],
        "allocated_storage_gib": 20,
        "encrypted": False,
    }


SNAPSHOT_KINDS = {
    "rds": SnapshotKind(
        DrSources.seed_rds,
        lambda sources: sources.rds_snapshot,
        restore_rds_instance_from_snapshot,
        "RestoreDBInstanceFromDBSnapshot",
        verify_rds_restore,
        rds_snapshot_facts,
        lambda sources: [
            i["DBInstanceIdentifier"]
            for i in boto(sources.moto, "rds").describe_db_instances()["DBInstances"]
        ],
        lambda sources: sources.rds_instance,
    ),
    "ebs": SnapshotKind(
        DrSources.seed_ebs,
        lambda sources: sources.ebs_snapshot,
        restore_ebs_volume_from_snapshot,
        "CreateVolume",
        verify_ebs_restore,
        lambda sources: {
            "encrypted": False,
            "size_gib": 8,
            "snapshot_id": sources.ebs_snapshot,
            "state": "available",
        },
        lambda sources: [
            v["VolumeId"] for v in boto(sources.moto, "ec2").describe_volumes()["Volumes"]
        ],
        lambda sources: sources.ebs_volume,
    ),
}


@pytest.mark.parametrize("kind", sorted(SNAPSHOT_KINDS))
def test_restore_from_snapshot_second_run_and_dry_run_send_no_writes(
    kind: str, recording_proxies, dr_sources: DrSources
) -> None:
    aws, backup = recording_proxies.aws(), SNAPSHOT_KINDS[kind]
    backup.seed(dr_sources)
    before = dr_sources.fingerprint()
    target = scratch()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: backup.restore(aws, backup.snapshot(dr_sources), target, **kw)
    )
    assert [w.action for w in writes] == [backup.restore_action]
    check = backup.verify(aws, target, backup.snapshot(dr_sources), poll_seconds=0.2)
    assert check.passed and check.found == backup.found(dr_sources), check
    assert dr_sources.fingerprint() == before
    if kind == "rds":
        with pytest.raises(NotFoundError, match="DBSnapshotNotFound"):
            restore_rds_instance_from_snapshot(aws, "no-such-snapshot", scratch())


def test_delete_rds_scratch_instances_second_run_and_dry_run_send_no_writes(
    recording_proxies, dr_sources: DrSources
) -> None:
    aws, target = restored_into_scratch("rds", recording_proxies, dr_sources)
    recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: delete_rds_scratch_instances(aws, target, **kw), first="deleted"
    )
    assert_only_the_source_is_left("rds", dr_sources)


def test_delete_ebs_scratch_volumes_second_run_and_dry_run_send_no_writes(
    recording_proxies, dr_sources: DrSources
) -> None:
    aws, target = restored_into_scratch("ebs", recording_proxies, dr_sources)
    recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: delete_ebs_scratch_volumes(aws, target, **kw), first="deleted"
    )
    assert_only_the_source_is_left("ebs", dr_sources)


def restored_into_scratch(
    kind: str, recording_proxies, dr_sources: DrSources
) -> tuple[AwsCredentials, str]:
    """A snapshot of this kind restored into a new scratch resource, through the proxy."""
    aws, backup = recording_proxies.aws(), SNAPSHOT_KINDS[kind]
    backup.seed(dr_sources)
    target = scratch()
    backup.restore(aws, backup.snapshot(dr_sources), target)
    return aws, target


def assert_only_the_source_is_left(kind: str, dr_sources: DrSources) -> None:
    backup = SNAPSHOT_KINDS[kind]
    assert dr_sources.scratch_left()[kind] == []
    assert backup.listed(dr_sources) == [backup.source(dr_sources)]


def test_backup_recovery_point_check_reads_what_backup_reports(
    recording_proxies, dr_sources: DrSources
) -> None:
    aws = recording_proxies.aws_quotas()
    sound = recovery_point("0000000000000001")
    partial = recovery_point("0000000000000002", status="PARTIAL", size=0)
    dr_sources.seed_backup([sound, partial])
    with recording_proxies.no_writes():
        good = check_backup_recovery_point(
            aws, BACKUP_VAULT, sound["RecoveryPointArn"], resource_arn=sound["ResourceArn"]
        )
        bad = check_backup_recovery_point(
            aws, BACKUP_VAULT, partial["RecoveryPointArn"], require_encrypted=True
        )
    assert good.passed and good.checked == ["has_data", "resource_arn", "retained", "status"]
    assert not bad.passed and bad.found["status"] == "PARTIAL" and bad.found["has_data"] is False
    assert (
        bad.problem
        == "has_data: expected True, found False; status: expected COMPLETED, found PARTIAL"
    )
    with pytest.raises(NotFoundError, match="not found"):
        check_backup_recovery_point(aws, BACKUP_VAULT, "arn:aws:ec2:eu-west-1::snapshot/snap-0")


def test_repoint_ssm_parameter_second_run_and_dry_run_send_no_writes(
    recording_proxies, moto_server, captured_logs
) -> None:
    aws = recording_proxies.aws()
    ssm = boto(moto_server, "ssm")
    ssm.put_parameter(
        Name="/orders/db/host", Value="orders.primary.internal", Type="SecureString",
        Description="orders database", Tags=[{"Key": "team", "Value": "orders"}],
    )  # fmt: skip
    recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: repoint_ssm_parameter(aws, "/orders/db/host", **kw),
        wanted={"value": "orders.dr.internal"},
        changed={"value": "orders.primary.internal"},
        first="updated",
    )
    stored = ssm.get_parameter(Name="/orders/db/host", WithDecryption=True)["Parameter"]
    assert (stored["Value"], stored["Type"]) == ("orders.dr.internal", "SecureString")
    described = ssm.describe_parameters()["Parameters"][0]
    assert described["Description"] == "orders database"
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/orders/db/host")
    assert tags["TagList"] == [{"Key": "team", "Value": "orders"}]
    assert "orders.primary.internal" not in captured_logs.text  # the old value is never logged
    with pytest.raises(NotFoundError, match="never creates"):
        repoint_ssm_parameter(aws, "/orders/db/missing", "x")


# --- GCS ----------------------------------------------------------------------------------


def test_restore_gcs_object_generation_second_run_and_dry_run_send_no_writes(
    recording_proxies, dr_sources: DrSources
) -> None:
    gcp = recording_proxies.gcp()
    dr_sources.seed_gcs([b"exports v1", b"exports v2"])
    before = dr_sources.fingerprint()
    bucket, name, (g1, _) = dr_sources.gcs_bucket, dr_sources.gcs_name, dr_sources.gcs_generations
    target = scratch()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: restore_gcs_object_generation(gcp, bucket, name, g1, target, **kw)
    )
    # A bucket creation, then a rewrite whose destination is the scratch bucket.
    assert writes[0].path == "/storage/v1/b"
    assert all(f"/rewriteTo/b/{target}/" in w.path for w in writes[1:]) and writes[1:], writes
    assert (
        gcs(dr_sources.gcs_endpoint).bucket(target).blob(name).download_as_bytes() == b"exports v1"
    )
    check = verify_gcs_restore(gcp, bucket, name, g1, target)
    assert check.passed and set(check.checked) == {"crc32c", "md5", "sha256", "size"}, check
    assert dr_sources.fingerprint() == before


def test_gcs_restore_check_names_a_corrupted_backup(gcp_connection, dr_sources: DrSources) -> None:
    dr_sources.seed_gcs([b"exports, half written"], recorded=[b"exports, whole"])
    bucket, name, (g1,) = dr_sources.gcs_bucket, dr_sources.gcs_name, dr_sources.gcs_generations
    target = scratch()
    restore_gcs_object_generation(gcp_connection, bucket, name, g1, target)
    check = verify_gcs_restore(gcp_connection, bucket, name, g1, target)
    assert not check.passed and check.problem is not None and "sha256" in check.problem
    assert check.expected["md5"] == check.found["md5"]
    delete_gcs_scratch_buckets(gcp_connection, target)


def test_delete_gcs_scratch_buckets_second_run_and_dry_run_send_no_writes(
    recording_proxies, dr_sources: DrSources
) -> None:
    gcp = recording_proxies.gcp()
    dr_sources.seed_gcs([b"exports v1"])
    target = scratch()
    restore_gcs_object_generation(
        gcp, dr_sources.gcs_bucket, dr_sources.gcs_name, dr_sources.gcs_generations[0], target
    )
    gcs(dr_sources.gcs_endpoint).bucket(target).blob("second").upload_from_string(b"x")
    recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: delete_gcs_scratch_buckets(gcp, target, **kw), first="deleted"
    )
    assert target not in dr_sources.scratch_left()["gcs"]
    assert gcs(dr_sources.gcs_endpoint).lookup_bucket(dr_sources.gcs_bucket) is not None


def test_copy_gcs_objects_second_run_and_dry_run_send_no_writes(
    recording_proxies, fake_gcs_server
) -> None:
    gcp = recording_proxies.gcp()
    client = gcs(fake_gcs_server)
    tag = uuid.uuid4().hex[:8]
    source, destination = (
        client.create_bucket(f"exports-{tag}"),
        client.create_bucket(f"exports-dr-{tag}"),
    )
    for name in ("daily/a.csv", "daily/b.csv", "other/c.csv"):
        source.blob(name).upload_from_string(name.encode())
    recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: copy_gcs_objects(gcp, source.name, destination.name, "daily/", **kw)
    )
    assert sorted(b.name for b in client.list_blobs(destination)) == ["daily/a.csv", "daily/b.csv"]
    with pytest.raises(NotFoundError, match="does not exist"):
        copy_gcs_objects(gcp, source.name, f"nowhere-{tag}")


def test_put_gcs_object_second_run_and_dry_run_send_no_writes(
    recording_proxies, fake_gcs_server
) -> None:
    gcp = recording_proxies.gcp()
    bucket = gcs(fake_gcs_server).create_bucket(f"reports-{uuid.uuid4().hex[:8]}")
    recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: put_gcs_object(gcp, bucket.name, "ops/chart.svg", **kw),
        wanted={"content": "<svg/>", "content_type": "image/svg+xml"},
        changed={"content": "<svg></svg>", "content_type": "image/svg+xml"},
    )
    blob = bucket.get_blob("ops/chart.svg")
    assert (blob.download_as_bytes(), blob.content_type) == (b"<svg/>", "image/svg+xml")


# --- Vault --------------------------------------------------------------------------------


def test_restore_kv_secret_version_second_run_and_dry_run_send_no_writes(
    recording_proxies, dr_sources: DrSources, captured_logs
) -> None:
    vault = recording_proxies.vault()
    dr_sources.seed_vault([{"password": "s3cret-v1"}, {"password": "s3cret-v2", "user": "orders"}])
    before = dr_sources.fingerprint()
    versions = list_kv_secret_versions(vault, dr_sources.vault_path)
    assert [v.version for v in versions] == [2, 1] and all(v.readable for v in versions)
    target = f"{scratch()}/{dr_sources.vault_path}"
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: restore_kv_secret_version(
            vault, dr_sources.vault_path, 1, SCRATCH_MOUNT, target, **kw
        )
    )
    assert all(w.path.startswith(f"/v1/{SCRATCH_MOUNT}/") for w in writes), writes
    stored = kv_client(dr_sources.vault).read_secret_version(
        path=target, mount_point=SCRATCH_MOUNT, raise_on_deleted_version=True
    )
    assert stored["data"]["data"] == {"password": "s3cret-v1"}
    check = verify_kv_restore(vault, dr_sources.vault_path, 1, SCRATCH_MOUNT, target)
    assert check.passed and check.found == {"keys": ["password"], "values": "those of version 1"}
    other = verify_kv_restore(vault, dr_sources.vault_path, 2, SCRATCH_MOUNT, target)
    assert not other.passed and other.found["keys"] == ["password"]
    assert "differ in password" in str(other.found["values"])
    assert "s3cret" not in captured_logs.text + check.model_dump_json() + other.model_dump_json()
    assert dr_sources.fingerprint() == before
    with pytest.raises(InvalidInputError, match="must not be the source mount"):
        restore_kv_secret_version(vault, dr_sources.vault_path, 1, "secret", target)


def test_delete_kv_scratch_secrets_second_run_and_dry_run_send_no_writes(
    recording_proxies, dr_sources: DrSources
) -> None:
    vault = recording_proxies.vault()
    dr_sources.seed_vault([{"password": "s3cret-v1"}])
    folder = scratch()
    for path in (f"{folder}/a/b", f"{folder}/c"):
        restore_kv_secret_version(vault, dr_sources.vault_path, 1, SCRATCH_MOUNT, path)
    change = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: delete_kv_scratch_secrets(vault, SCRATCH_MOUNT, folder, **kw), first="deleted"
    )
    assert len(change) == 2  # one DELETE of metadata and versions per secret
    assert folder + "/" not in dr_sources.scratch_left()["vault"]
    assert kv_client(dr_sources.vault).read_secret_version(
        path=dr_sources.vault_path, raise_on_deleted_version=True
    )["data"]["data"]


def test_set_kv_secret_keys_second_run_and_dry_run_send_no_writes(
    recording_proxies, vault_kv, vault_path
) -> None:
    vault = recording_proxies.vault()
    vault_kv.create_or_update_secret(
        path=vault_path, secret={"host": "db.primary", "password": "p"}
    )
    recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: set_kv_secret_keys(vault, vault_path, **kw),
        wanted={"values": {"host": "db.dr"}},
        changed={"values": {"host": "db.primary"}},
        first="updated",
    )
    stored = vault_kv.read_secret_version(path=vault_path, raise_on_deleted_version=True)["data"]
    assert (
        stored["data"] == {"host": "db.dr", "password": "p"} and stored["metadata"]["version"] == 2
    )
    with pytest.raises(NotFoundError, match="never creates"):
        set_kv_secret_keys(vault, f"{vault_path}-missing", {"host": "db.dr"})


# --- Kubernetes ---------------------------------------------------------------------------


def test_set_config_map_keys_second_run_and_dry_run_send_no_writes(
    recording_proxies, kubernetes_core: k8s.CoreV1Api, k8s_namespace: str
) -> None:
    cluster = recording_proxies.kubernetes()
    kubernetes_core.create_namespaced_config_map(
        k8s_namespace, {"metadata": {"name": "db"}, "data": {"host": "db.primary", "port": "5432"}}
    )
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: set_config_map_keys(cluster, k8s_namespace, "db", **kw),
        wanted={"values": {"host": "db.dr"}},
        changed={"values": {"host": "db.primary"}},
        first="updated",
    )
    assert [w.method for w in writes] == ["PATCH"]
    assert kubernetes_core.read_namespaced_config_map("db", k8s_namespace).data == {
        "host": "db.dr",
        "port": "5432",
    }
    with pytest.raises(NotFoundError, match="never creates"):
        set_config_map_keys(cluster, k8s_namespace, "missing", {"host": "x"})


def test_tenant_resource_quotas_are_those_of_managed_namespaces(
    kubernetes, kubernetes_core: k8s.CoreV1Api
) -> None:
    tag = uuid.uuid4().hex[:6]
    key, value = MANAGED_BY_LABEL
    managed = {f"acme-{tag}": {key: value, "tenant": "acme"}, f"globex-{tag}": {key: value}}
    for name, labels in {**managed, f"unmanaged-{tag}": {}}.items():
        kubernetes_core.create_namespace({"metadata": {"name": name, "labels": labels}})
        kubernetes_core.create_namespaced_resource_quota(
            name, {"metadata": {"name": "default"}, "spec": {"hard": {"requests.cpu": "4"}}}
        )
    quotas = [q for q in list_tenant_resource_quotas(kubernetes) if q.namespace.endswith(tag)]
    assert [(q.tenant, q.namespace, q.name, q.hard) for q in quotas] == [
        ("acme", f"acme-{tag}", "default", {"requests.cpu": "4"}),
        (f"globex-{tag}", f"globex-{tag}", "default", {"requests.cpu": "4"}),
    ]

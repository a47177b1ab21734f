"""The jobs the runbooks added: undo (delete, close), reads, and the explicit rotation.

Every undo job is proved like every writer job, at the wire, behind its backend's
recording proxy (`RecordingProxies.assert_idempotent_at_the_wire`): a dry run plans
the delete and sends no write, the job deletes (the tests' own client then finds
nothing), and a second call finds nothing to do and sends no write. What an undo
must never destroy (a bucket with objects, the default branch, a merged merge
request) is refused.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import gitlab as python_gitlab
import hvac.exceptions
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from kubernetes import client as k8s
from pydantic import SecretStr

from blocks import GcpConnection
from magicflow import Action, ConflictError
from tasks import (
    close_merge_request,
    delete_branch,
    delete_gcp_secret,
    delete_gcs_bucket,
    delete_iam_role,
    delete_kv_secret,
    delete_namespace,
    delete_namespaced_object,
    delete_s3_bucket,
    delete_secretsmanager_secret,
    delete_ssm_parameter,
    ensure_gcp_secret,
    get_resource_quota,
    read_repository_file,
    rotate_generated_kv_secret,
)
from tests.fixtures.aws import AWS_REGION
from tests.fixtures.gcp import GCP_PROJECT
from tests.fixtures.recording import RecordingProxies
from tests.fixtures.tenants import TRUST_POLICY


def undone(prove: Callable[..., Any], undo: Callable[..., Any], exists: Callable[[], bool]) -> None:
    """The undo proved at the wire by `prove` (the proxies' ``assert_idempotent_at_the_wire``),
    and the resource gone as the tests' own client sees it."""
    assert exists()
    prove(undo, first="deleted")
    assert not exists()


# --- Kubernetes ---------------------------------------------------------------------------


def k8s_present(read: Callable[..., Any], *args: str) -> bool:
    try:
        read(*args)
    except k8s.ApiException as error:
        assert error.status == 404
        return False
    return True


def test_delete_namespaced_object_second_run_and_dry_run_send_no_writes(
    recording_proxies: RecordingProxies, kubernetes_core: k8s.CoreV1Api, k8s_namespace: str
) -> None:
    kubernetes = recording_proxies.kubernetes()
    kubernetes_core.create_namespaced_resource_quota(
        k8s_namespace, {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "10"}}}
    )
    kubernetes_core.create_namespaced_secret(
        k8s_namespace, {"metadata": {"name": "s"}, "data": {"k": base64.b64encode(b"v").decode()}}
    )
    undone(
        recording_proxies.assert_idempotent_at_the_wire,
        lambda **o: delete_namespaced_object(kubernetes, "ResourceQuota", k8s_namespace, "q", **o),
        lambda: k8s_present(kubernetes_core.read_namespaced_resource_quota, "q", k8s_namespace),
    )
    undone(
        recording_proxies.assert_idempotent_at_the_wire,
        lambda **o: delete_namespaced_object(kubernetes, "Secret", k8s_namespace, "s", **o),
        lambda: k8s_present(kubernetes_core.read_namespaced_secret, "s", k8s_namespace),
    )


def test_delete_namespace_second_run_and_dry_run_send_no_writes(
    recording_proxies: RecordingProxies, kubernetes_core: k8s.CoreV1Api, k8s_namespace: str
) -> None:
    kubernetes = recording_proxies.kubernetes()
    undone(
        recording_proxies.assert_idempotent_at_the_wire,
        lambda **o: delete_namespace(kubernetes, k8s_namespace, **o),
        lambda: k8s_present(kubernetes_core.read_namespace, k8s_namespace),
    )


def test_get_resource_quota_reads_hard_limits(
    recording_proxies: RecordingProxies, kubernetes_core: k8s.CoreV1Api, k8s_namespace: str
) -> None:
    kubernetes = recording_proxies.kubernetes()
    kubernetes_core.create_namespaced_resource_quota(
        k8s_namespace, {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "10"}}}
    )
    with recording_proxies.no_writes():
        read = get_resource_quota(kubernetes, k8s_namespace, "q")
        absent = get_resource_quota(kubernetes, k8s_namespace, "none")
    assert (read.exists, read.hard) == (True, {"pods": "10"})
    assert (absent.exists, absent.hard) == (False, {})


# --- Vault --------------------------------------------------------------------------------


def test_rotate_generated_kv_secret_dry_run_sends_no_writes_and_every_run_rotates(
    recording_proxies: RecordingProxies, vault_kv: Any, vault_path: str
) -> None:
    # A rotation is asked for explicitly and writes a new value every time it runs, so
    # unlike other writers a second run is not "unchanged": it rotates again.
    vault = recording_proxies.vault()
    vault_kv.create_or_update_secret(path=vault_path, secret={"password": "old", "user": "app"})

    with recording_proxies.no_writes():
        planned = rotate_generated_kv_secret(vault, vault_path, length=24, dry_run=True)
    assert (planned.action, planned.dry_run) == (Action.UPDATED, True)
    values = []
    for version in (2, 3):
        rotated = rotate_generated_kv_secret(vault, vault_path, key="password", length=24)
        data = vault_kv.read_secret_version(path=vault_path, raise_on_deleted_version=True)
        assert (rotated.action, rotated.detail["version"]) == (Action.UPDATED, version)
        assert data["data"]["data"]["user"] == "app"
        values.append(data["data"]["data"]["password"])
        assert values[-1] not in rotated.model_dump_json()
    assert len(set(values)) == 2 and "old" not in values and len(values[0]) == 24


def test_delete_kv_secret_second_run_and_dry_run_send_no_writes(
    recording_proxies: RecordingProxies, vault_kv: Any, vault_path: str
) -> None:
    vault = recording_proxies.vault()
    vault_kv.create_or_update_secret(path=vault_path, secret={"password": "v"})

    def exists() -> bool:
        try:
            vault_kv.read_secret_metadata(path=vault_path)
        except hvac.exceptions.InvalidPath:
            return False
        return True

    undone(
        recording_proxies.assert_idempotent_at_the_wire,
        lambda **o: delete_kv_secret(vault, vault_path, **o),
        exists,
    )


# --- AWS ----------------------------------------------------------------------------------


@pytest.fixture
def aws_client(moto_server: str) -> Callable[[str], Any]:
    """boto3 clients built here, straight to moto (not through the proxy)."""

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=moto_server,
            region_name=AWS_REGION,
            aws_access_key_id="AKIAINDEPENDENT",
            aws_secret_access_key="independent",
        )

    return client


def test_delete_s3_bucket_second_run_and_dry_run_send_no_writes(
    recording_proxies: RecordingProxies, aws_client: Callable[[str], Any]
) -> None:
    aws = recording_proxies.aws()
    s3 = aws_client("s3")
    location = {"LocationConstraint": AWS_REGION}
    s3.create_bucket(Bucket="undo-empty", CreateBucketConfiguration=location)
    s3.create_bucket(Bucket="undo-full", CreateBucketConfiguration=location)
    s3.put_object(Bucket="undo-full", Key="data.csv", Body=b"1,2")

    def names() -> set[str]:
        return {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}

    undone(
        recording_proxies.assert_idempotent_at_the_wire,
        lambda **o: delete_s3_bucket(aws, "undo-empty", **o),
        lambda: "undo-empty" in names(),
    )
    with pytest.raises(ConflictError, match="holds objects"):
        delete_s3_bucket(aws, "undo-full")
    assert "undo-full" in names()


def test_delete_iam_role_second_run_and_dry_run_send_no_writes(
    recording_proxies: RecordingProxies, aws_client: Callable[[str], Any]
) -> None:
    aws = recording_proxies.aws()
    iam = aws_client("iam")
    iam.create_role(RoleName="undo-role", AssumeRolePolicyDocument=json.dumps(TRUST_POLICY))
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
    }
    iam.put_role_policy(
        RoleName="undo-role", PolicyName="inline", PolicyDocument=json.dumps(policy)
    )
    managed = iam.create_policy(PolicyName="undo-managed", PolicyDocument=json.dumps(policy))
    iam.attach_role_policy(RoleName="undo-role", PolicyArn=managed["Policy"]["Arn"])
    undone(
        recording_proxies.assert_idempotent_at_the_wire,
        lambda **o: delete_iam_role(aws, "undo-role", **o),
        lambda: "undo-role" in {role["RoleName"] for role in iam.list_roles()["Roles"]},
    )


def test_delete_ssm_parameter_second_run_and_dry_run_send_no_writes(
    recording_proxies: RecordingProxies, aws_client: Callable[[str], Any]
) -> None:
    aws = recording_proxies.aws()
    ssm = aws_client("ssm")
    ssm.put_parameter(Name="/undo/p", Value="v", Type="String")
    undone(
        recording_proxies.assert_idempotent_at_the_wire,
        lambda **o: delete_ssm_parameter(aws, "/undo/p", **o),
        lambda: bool(ssm.describe_parameters()["Parameters"]),
    )


def test_delete_secretsmanager_secret_second_run_and_dry_run_send_no_writes(
    recording_proxies: RecordingProxies, aws_client: Callable[[str], Any]
) -> None:
    aws = recording_proxies.aws()
    secrets = aws_client("secretsmanager")
    secrets.create_secret(Name="undo/s", SecretString="v")
    undone(
        recording_proxies.assert_idempotent_at_the_wire,
        lambda **o: delete_secretsmanager_secret(aws, "undo/s", **o),
        lambda: bool(secrets.list_secrets()["SecretList"]),
    )


# --- GCP (drongo: its Cloud Storage keeps labels, see tests/fixtures/tenants.py) -------------


@pytest.fixture
def drongo_gcp(recording_proxies: RecordingProxies) -> GcpConnection:
    """A `GcpConnection` whose Cloud Storage and Secret Manager are drongo's, proxied."""
    proxied = recording_proxies.gcp()
    return proxied.model_copy(update={"storage_endpoint": proxied.secret_manager_endpoint})


def test_delete_gcs_bucket_second_run_and_dry_run_send_no_writes(
    recording_proxies: RecordingProxies, drongo_gcp: GcpConnection, secret_manager_emulator: str
) -> None:
    buckets = storage.Client(
        project=GCP_PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": secret_manager_emulator},
    )
    suffix = uuid.uuid4().hex[:8]
    buckets.create_bucket(f"undo-empty-{suffix}")
    full = buckets.create_bucket(f"undo-full-{suffix}")
    full.blob("data.csv").upload_from_string(b"1,2")
    undone(
        recording_proxies.assert_idempotent_at_the_wire,
        lambda **o: delete_gcs_bucket(drongo_gcp, f"undo-empty-{suffix}", **o),
        lambda: buckets.lookup_bucket(f"undo-empty-{suffix}") is not None,
    )
    with pytest.raises(ConflictError, match="holds objects"):
        delete_gcs_bucket(drongo_gcp, f"undo-full-{suffix}")
    assert buckets.lookup_bucket(f"undo-full-{suffix}") is not None


def test_delete_gcp_secret_second_run_and_dry_run_send_no_writes(
    recording_proxies: RecordingProxies, drongo_gcp: GcpConnection, secret_manager_emulator: str
) -> None:
    secret_id = f"undo-{uuid.uuid4().hex[:8]}"
    ensure_gcp_secret(drongo_gcp, secret_id, SecretStr("v"))

    def exists() -> bool:
        url = f"{secret_manager_emulator}/v1/projects/{GCP_PROJECT}/secrets/{secret_id}"
        try:
            urllib.request.urlopen(url, timeout=10).close()
        except urllib.error.HTTPError as error:
            assert error.code == 404
            return False
        return True

    undone(
        recording_proxies.assert_idempotent_at_the_wire,
        lambda **o: delete_gcp_secret(drongo_gcp, secret_id, **o),
        exists,
    )


# --- GitLab -------------------------------------------------------------------------------


@pytest.fixture
def feature_branch(gitlab_server: str, gitlab_project: str) -> Any:
    """The project (read with the tests' own client) with a ``feature`` branch adding a file."""
    api = python_gitlab.Gitlab(gitlab_server, private_token="glpat-root").projects.get(
        gitlab_project
    )
    api.branches.create({"branch": "feature", "ref": "main"})
    api.commits.create(
        {
            "branch": "feature",
            "commit_message": "add",
            "actions": [{"action": "create", "file_path": "a/b.yaml", "content": "x: 1\n"}],
        }
    )
    return api


def test_read_repository_file_reads_text_at_a_ref(
    recording_proxies: RecordingProxies, feature_branch: Any, gitlab_project: str
) -> None:
    gitlab = recording_proxies.gitlab()
    with recording_proxies.no_writes():
        found = read_repository_file(gitlab, gitlab_project, "a/b.yaml", ref="feature")
        absent = read_repository_file(gitlab, gitlab_project, "a/b.yaml", ref="main")
    assert (found.exists, found.content) == (True, "x: 1\n")
    assert (absent.exists, absent.content) == (False, "")


def test_close_merge_request_second_run_and_dry_run_send_no_writes(
    recording_proxies: RecordingProxies, feature_branch: Any, gitlab_project: str
) -> None:
    gitlab = recording_proxies.gitlab()
    iid = feature_branch.mergerequests.create(
        {"source_branch": "feature", "target_branch": "main", "title": "Change"}
    ).iid
    recording_proxies.assert_idempotent_at_the_wire(
        lambda **o: close_merge_request(gitlab, gitlab_project, iid, **o), first="updated"
    )
    assert feature_branch.mergerequests.get(iid).state == "closed"


def test_delete_branch_second_run_and_dry_run_send_no_writes(
    recording_proxies: RecordingProxies, feature_branch: Any, gitlab_project: str
) -> None:
    gitlab = recording_proxies.gitlab()

    def names() -> set[str]:
        return {branch.name for branch in feature_branch.branches.list(get_all=True)}

    undone(
        recording_proxies.assert_idempotent_at_the_wire,
        lambda **o: delete_branch(gitlab, gitlab_project, "feature", **o),
        lambda: "feature" in names(),
    )
    with pytest.raises(ConflictError, match="default or a protected branch"):
        delete_branch(gitlab, gitlab_project, "main")
    assert "main" in names()

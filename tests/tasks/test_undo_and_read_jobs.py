"""The jobs the runbooks added: undo (delete, close), reads, and the explicit rotation.

Each undo job is checked the same way, against the real backend behind its recording
proxy and with the tests' own client: a dry run leaves the resource and sends no write,
the job deletes it, and a second call finds nothing to do and sends no write. What an
undo must never destroy (a bucket with objects, the default branch, a merged merge
request) is refused.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import boto3
import gitlab as python_gitlab
import hvac.exceptions
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from kubernetes import client as k8s
from pydantic import SecretStr

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


def undo_three_times(wire: RecordingProxies, undo: Any, exists: Any) -> None:
    """Dry run (kept, no write), real run (gone), again (absent, no write)."""
    assert exists()
    with wire.no_writes():
        planned = undo(dry_run=True)
    assert (planned.action, planned.dry_run) == (Action.DELETED, True)
    assert exists(), "a dry run deleted it"
    wire.reset()
    assert undo().action is Action.DELETED
    assert wire.writes(), "the delete did not go through the proxy"
    assert not exists()
    with wire.no_writes():
        again = undo()
    assert (again.action, again.detail) == (Action.UNCHANGED, {"absent": True})


def test_kubernetes_undo_and_quota_read(
    recording_proxies: RecordingProxies, kubernetes_core: k8s.CoreV1Api, k8s_namespace: str
) -> None:
    kubernetes = recording_proxies.kubernetes()
    kubernetes_core.create_namespaced_resource_quota(
        k8s_namespace, {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "10"}}}
    )
    kubernetes_core.create_namespaced_secret(
        k8s_namespace, {"metadata": {"name": "s"}, "data": {"k": base64.b64encode(b"v").decode()}}
    )
    read = get_resource_quota(kubernetes, k8s_namespace, "q")
    assert (read.exists, read.hard) == (True, {"pods": "10"})
    assert not get_resource_quota(kubernetes, k8s_namespace, "none").exists

    def present(read_object: Any, *args: str) -> bool:
        try:
            read_object(*args)
        except k8s.ApiException as error:
            assert error.status == 404
            return False
        return True

    undo_three_times(
        recording_proxies,
        lambda **o: delete_namespaced_object(kubernetes, "ResourceQuota", k8s_namespace, "q", **o),
        lambda: present(kubernetes_core.read_namespaced_resource_quota, "q", k8s_namespace),
    )
    undo_three_times(
        recording_proxies,
        lambda **o: delete_namespaced_object(kubernetes, "Secret", k8s_namespace, "s", **o),
        lambda: present(kubernetes_core.read_namespaced_secret, "s", k8s_namespace),
    )
    undo_three_times(
        recording_proxies,
        lambda **o: delete_namespace(kubernetes, k8s_namespace, **o),
        lambda: present(kubernetes_core.read_namespace, k8s_namespace),
    )


def test_vault_rotation_and_undo(
    recording_proxies: RecordingProxies, vault_kv: Any, vault_path: str
) -> None:
    vault = recording_proxies.vault()
    vault_kv.create_or_update_secret(path=vault_path, secret={"password": "old", "user": "app"})

    rotated = rotate_generated_kv_secret(vault, vault_path, key="password", length=24)

    data = vault_kv.read_secret_version(path=vault_path, raise_on_deleted_version=True)["data"]
    assert (rotated.action, rotated.detail["version"]) == (Action.UPDATED, 2)
    assert data["data"]["user"] == "app" and len(data["data"]["password"]) == 24
    assert data["data"]["password"] != "old"
    assert data["data"]["password"] not in rotated.model_dump_json()

    def exists() -> bool:
        try:
            vault_kv.read_secret_metadata(path=vault_path)
        except hvac.exceptions.InvalidPath:
            return False
        return True

    undo_three_times(
        recording_proxies, lambda **o: delete_kv_secret(vault, vault_path, **o), exists
    )


def test_aws_undo(recording_proxies: RecordingProxies, moto_server: str) -> None:
    aws_credentials = recording_proxies.aws()

    def client(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=moto_server,
            region_name=AWS_REGION,
            aws_access_key_id="AKIAINDEPENDENT",
            aws_secret_access_key="independent",
        )

    s3, iam, ssm, secrets = client("s3"), client("iam"), client("ssm"), client("secretsmanager")
    location = {"LocationConstraint": AWS_REGION}
    s3.create_bucket(Bucket="undo-empty", CreateBucketConfiguration=location)
    s3.create_bucket(Bucket="undo-full", CreateBucketConfiguration=location)
    s3.put_object(Bucket="undo-full", Key="data.csv", Body=b"1,2")
    iam.create_role(RoleName="undo-role", AssumeRolePolicyDocument=json.dumps(TRUST_POLICY))
    inline = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
    }
    iam.put_role_policy(
        RoleName="undo-role", PolicyName="inline", PolicyDocument=json.dumps(inline)
    )
    managed = iam.create_policy(PolicyName="undo-managed", PolicyDocument=json.dumps(inline))
    iam.attach_role_policy(RoleName="undo-role", PolicyArn=managed["Policy"]["Arn"])
    ssm.put_parameter(Name="/undo/p", Value="v", Type="String")
    secrets.create_secret(Name="undo/s", SecretString="v")

    def bucket_names() -> set[str]:
        return {b["Name"] for b in s3.list_buckets()["Buckets"]}

    undo_three_times(
        recording_proxies,
        lambda **o: delete_s3_bucket(aws_credentials, "undo-empty", **o),
        lambda: "undo-empty" in bucket_names(),
    )
    with pytest.raises(ConflictError, match="holds objects"):
        delete_s3_bucket(aws_credentials, "undo-full")
    assert "undo-full" in bucket_names()
    undo_three_times(
        recording_proxies,
        lambda **o: delete_iam_role(aws_credentials, "undo-role", **o),
        lambda: "undo-role" in {r["RoleName"] for r in iam.list_roles()["Roles"]},
    )
    undo_three_times(
        recording_proxies,
        lambda **o: delete_ssm_parameter(aws_credentials, "/undo/p", **o),
        lambda: bool(ssm.describe_parameters()["Parameters"]),
    )
    undo_three_times(
        recording_proxies,
        lambda **o: delete_secretsmanager_secret(aws_credentials, "undo/s", **o),
        lambda: bool(secrets.list_secrets()["SecretList"]),
    )


def test_gcp_undo(recording_proxies: RecordingProxies, secret_manager_emulator: str) -> None:
    # drongo's Cloud Storage and Secret Manager (see tests/fixtures/tenants.py).
    proxied = recording_proxies.gcp()
    gcp = proxied.model_copy(update={"storage_endpoint": proxied.secret_manager_endpoint})
    storage_client = storage.Client(
        project=GCP_PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": secret_manager_emulator},
    )
    suffix = uuid.uuid4().hex[:8]
    storage_client.create_bucket(f"undo-empty-{suffix}")
    full = storage_client.create_bucket(f"undo-full-{suffix}")
    full.blob("data.csv").upload_from_string(b"1,2")
    secret_id = f"undo-{suffix}"
    ensure_gcp_secret(gcp, secret_id, SecretStr("v"))

    undo_three_times(
        recording_proxies,
        lambda **o: delete_gcs_bucket(gcp, f"undo-empty-{suffix}", **o),
        lambda: storage_client.lookup_bucket(f"undo-empty-{suffix}") is not None,
    )
    with pytest.raises(ConflictError, match="holds objects"):
        delete_gcs_bucket(gcp, f"undo-full-{suffix}")
    assert storage_client.lookup_bucket(f"undo-full-{suffix}") is not None

    def secret_exists() -> bool:
        url = f"{secret_manager_emulator}/v1/projects/{GCP_PROJECT}/secrets/{secret_id}"
        try:
            urllib.request.urlopen(url, timeout=10).close()
        except urllib.error.HTTPError as error:
            assert error.code == 404
            return False
        return True

    undo_three_times(
        recording_proxies, lambda **o: delete_gcp_secret(gcp, secret_id, **o), secret_exists
    )


def test_gitlab_undo_and_file_read(
    recording_proxies: RecordingProxies, gitlab_server: str, gitlab_project: str
) -> None:
    gitlab = recording_proxies.gitlab()
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
    merge_request = api.mergerequests.create(
        {"source_branch": "feature", "target_branch": "main", "title": "Change"}
    )

    found = read_repository_file(gitlab, gitlab_project, "a/b.yaml", ref="feature")
    assert (found.exists, found.content) == (True, "x: 1\n")
    assert not read_repository_file(gitlab, gitlab_project, "a/b.yaml", ref="main").exists

    def state() -> str:
        return str(api.mergerequests.get(merge_request.iid).state)

    with recording_proxies.no_writes():
        planned = close_merge_request(gitlab, gitlab_project, merge_request.iid, dry_run=True)
    assert (planned.action, state()) == (Action.UPDATED, "opened")
    assert close_merge_request(gitlab, gitlab_project, merge_request.iid).action is Action.UPDATED
    assert state() == "closed"
    with recording_proxies.no_writes():
        again = close_merge_request(gitlab, gitlab_project, merge_request.iid)
    assert again.action is Action.UNCHANGED

    undo_three_times(
        recording_proxies,
        lambda **o: delete_branch(gitlab, gitlab_project, "feature", **o),
        lambda: "feature" in {b.name for b in api.branches.list(get_all=True)},
    )
    with pytest.raises(ConflictError, match="default or a protected branch"):
        delete_branch(gitlab, gitlab_project, "main")

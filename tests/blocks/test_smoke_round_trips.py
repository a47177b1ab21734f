"""One real round trip through each block against its real local server.

Each test would fail if the server were down or the block built a wrong client.
"""

import uuid

import boto3
import botocore.exceptions
import pytest
from kubernetes import client as k8s

from blocks import (
    GcpConnection,
    KafkaConnection,
    KubernetesConnection,
    VaultConnection,
)
from tasks.aws.session import aws_client


async def test_kafka_produce_then_consume_through_tansu(kafka: KafkaConnection) -> None:
    producer = kafka.get_producer()
    await producer.start()
    try:
        await producer.send_and_wait(
            kafka.requests_topic, b"hello", key=b"k1", headers=[("h", b"v")]
        )
    finally:
        await producer.stop()
    consumer = kafka.get_consumer(kafka.requests_topic)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
        records = [record for records in batch.values() for record in records]
        await consumer.commit()
    finally:
        await consumer.stop()
    assert [(r.key, r.value, list(r.headers)) for r in records] == [
        (b"k1", b"hello", [("h", b"v")])
    ]


def test_vault_kv_write_then_read_in_openbao(vault: VaultConnection) -> None:
    client = vault.get_client()
    path = f"smoke/{uuid.uuid4().hex}"
    client.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"k": "v"}, mount_point=vault.kv_mount
    )
    read = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point=vault.kv_mount, raise_on_deleted_version=True
    )
    assert read["data"]["data"] == {"k": "v"}
    assert read["data"]["metadata"]["version"] == 1


def test_s3_bucket_in_moto(recording_proxies, moto_server: str) -> None:
    """The client every AWS job uses (`aws_client`): built from the block, no retries of its own."""
    credentials = recording_proxies.aws()
    s3 = aws_client(credentials, "s3")
    s3.create_bucket(
        Bucket="smoke-bucket", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    # Read back with an independent client, not through the block or our client builder.
    independent = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="eu-west-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    assert [b["Name"] for b in independent.list_buckets()["Buckets"]] == ["smoke-bucket"]
    assert [str(w) for w in recording_proxies.writes("aws")] == ["PUT /smoke-bucket"]

    # One 503 is one request: botocore does not retry under Prefect's retries.
    proxy = recording_proxies.proxies["aws"]
    before = proxy.injected  # the proxy lives for the session: count from here
    proxy.fail(status=503, count=5, method="GET", body="")
    with pytest.raises(botocore.exceptions.ClientError):
        s3.get_bucket_versioning(Bucket="smoke-bucket")
    assert proxy.injected - before == 1
    proxy.clear()


def test_gcs_bucket_in_fake_gcs_server(gcp_connection: GcpConnection) -> None:
    storage = gcp_connection.get_cloud_storage_client()
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    storage.create_bucket(name, location="EU")
    storage.bucket(name).blob("hello.txt").upload_from_string("hi")
    assert storage.bucket(name).blob("hello.txt").download_as_bytes() == b"hi"
    assert name in [b.name for b in storage.list_buckets()]


def test_kubernetes_secret_in_emulator(kubernetes: KubernetesConnection) -> None:
    core = k8s.CoreV1Api(kubernetes.get_client())
    namespace = f"smoke-{uuid.uuid4().hex[:8]}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    core.create_namespaced_secret(
        namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="db"), string_data={"password": "x"})
    )
    secret = core.read_namespaced_secret("db", namespace)
    assert secret.metadata.name == "db"
    assert namespace in [ns.metadata.name for ns in core.list_namespace().items]

"""GCP jobs against local servers: fake-gcs-server, drongo (Secret Manager), a Cloud Quotas fake.

State is read back with independent clients: a separate anonymous
``google.cloud.storage.Client``, a separate ``SecretManagerServiceClient``, raw HTTP.
"""

import json
import urllib.request
import uuid

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import secretmanager, storage
from prefect import flow
from pydantic import SecretStr

from blocks import GcpConnection
from magicflow import (
    Change,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from tasks.gcp import (
    GcsObjectGenerations,
    ensure_gcp_secret,
    ensure_gcs_bucket,
    get_gcp_quota,
    list_gcs_object_generations,
    request_gcp_quota_increase,
)
from tests.fixtures.gcp import GCP_PROJECT, CloudQuotasFake

GCS_ERROR_503 = json.dumps({"error": {"code": 503, "message": "Backend Error"}})
GCS_ERROR_403 = json.dumps({"error": {"code": 403, "message": "Access denied."}})
COMPUTE = "compute.googleapis.com"
CPUS = "CPUS-per-project-region"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def storage_client(endpoint: str) -> storage.Client:
    """An anonymous Cloud Storage client of our own, not the block's."""
    return storage.Client(
        project=GCP_PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": endpoint},
    )


def secrets_client(endpoint: str) -> secretmanager.SecretManagerServiceClient:
    """An anonymous Secret Manager client of our own (REST), not the block's."""
    return secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options={"api_endpoint": endpoint},
    )


def fast(job):
    return job.with_options(retry_delay_seconds=0)


# --- ensure_gcs_bucket --------------------------------------------------------------


def test_bucket_is_created_then_unchanged_then_updated(
    gcp_connection: GcpConnection, fake_gcs_server: str
) -> None:
    name = unique("mf-bucket")
    independent = storage_client(fake_gcs_server)

    first = ensure_gcs_bucket(gcp_connection, name)
    assert (first.resource, first.action, first.dry_run) == (
        f"gcp:gcs:bucket/{name}",
        "created",
        False,
    )
    bucket = independent.get_bucket(name)
    assert bucket.versioning_enabled is True
    assert bucket.location == "EU"

    assert ensure_gcs_bucket(gcp_connection, name).action == "unchanged"

    third = ensure_gcs_bucket(gcp_connection, name, versioning=False)
    assert third.action == "updated"
    assert third.detail["changed"] == ["versioning"]
    assert independent.get_bucket(name).versioning_enabled is False
    assert ensure_gcs_bucket(gcp_connection, name, versioning=False).action == "unchanged"


def test_bucket_location_is_compared_without_case(gcp_connection: GcpConnection) -> None:
    name = unique("mf-bucket")
    ensure_gcs_bucket(gcp_connection, name, location="EU")
    assert ensure_gcs_bucket(gcp_connection, name, location="eu").action == "unchanged"


def test_bucket_in_another_location_is_a_conflict_naming_both(
    gcp_connection: GcpConnection, fake_gcs_server: str
) -> None:
    name = unique("mf-bucket")
    ensure_gcs_bucket(gcp_connection, name, location="EU")
    with pytest.raises(ConflictError, match=r"is in EU, not US") as raised:
        ensure_gcs_bucket(gcp_connection, name, location="US", versioning=False)
    assert f"gcp:gcs:bucket/{name}" in str(raised.value)
    assert storage_client(fake_gcs_server).get_bucket(name).versioning_enabled is True


def test_bucket_dry_run_plans_and_writes_nothing(
    gcp_connection: GcpConnection, fake_gcs_server: str
) -> None:
    name = unique("mf-bucket")
    independent = storage_client(fake_gcs_server)

    planned = ensure_gcs_bucket(gcp_connection, name, dry_run=True)
    assert (planned.action, planned.dry_run) == ("created", True)
    assert independent.lookup_bucket(name) is None

    ensure_gcs_bucket(gcp_connection, name)
    planned = ensure_gcs_bucket(gcp_connection, name, versioning=False, dry_run=True)
    assert (planned.action, planned.dry_run, planned.detail["changed"]) == (
        "updated",
        True,
        ["versioning"],
    )
    assert independent.get_bucket(name).versioning_enabled is True


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "x" * 64,
        "Upper-Case",
        "-leading-dash",
        "trailing-dash-",
        "has space",
        "goog-bucket",
        "my-google-data",
        "my-g00gle-data",
        "192.168.10.20",
        "a..b",
        "has/slash",
    ],
)
def test_bucket_name_breaking_the_rules_is_rejected_before_any_write(
    gcp_connection: GcpConnection, fake_gcs_server: str, name: str
) -> None:
    before = {b.name for b in storage_client(fake_gcs_server).list_buckets()}
    with pytest.raises(InvalidInputError, match="bucket name"):
        ensure_gcs_bucket(gcp_connection, name)
    assert {b.name for b in storage_client(fake_gcs_server).list_buckets()} == before


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ({"Team": "ops"}, "label key"),
        ({"team": "Ops"}, "value"),
        ({"1team": "ops"}, "label key"),
        ({f"k{i}": "v" for i in range(65)}, "at most 64"),
    ],
)
def test_bad_bucket_labels_are_rejected_before_any_write(
    gcp_connection: GcpConnection, fake_gcs_server: str, labels: dict[str, str], match: str
) -> None:
    name = unique("mf-bucket")
    with pytest.raises(InvalidInputError, match=match):
        ensure_gcs_bucket(gcp_connection, name, labels=labels)
    assert storage_client(fake_gcs_server).lookup_bucket(name) is None


def test_bucket_labels_converge_on_a_server_that_keeps_labels(
    gcp_connection: GcpConnection, secret_manager_emulator: str
) -> None:
    # fake-gcs-server drops bucket labels; drongo's Cloud Storage keeps them (but not
    # versioning on create, hence versioning=False here).
    drongo = gcp_connection.model_copy(update={"storage_endpoint": secret_manager_emulator})
    independent = storage_client(secret_manager_emulator)
    name = unique("mf-labels")

    created = ensure_gcs_bucket(
        drongo, name, versioning=False, labels={"team": "ops", "env": "dev"}
    )
    assert created.action == "created"
    assert independent.get_bucket(name).labels == {"team": "ops", "env": "dev"}
    again = ensure_gcs_bucket(drongo, name, versioning=False, labels={"env": "dev", "team": "ops"})
    assert again.action == "unchanged"

    wanted = {"team": "sre", "env": "dev", "tier": "gold"}
    updated = ensure_gcs_bucket(drongo, name, versioning=False, labels=wanted)
    assert (updated.action, updated.detail["changed"]) == ("updated", ["labels"])
    assert independent.get_bucket(name).labels == wanted
    assert ensure_gcs_bucket(drongo, name, versioning=False, labels=wanted).action == "unchanged"


def test_bucket_transient_errors_are_retried_until_created(
    gcp_connection: GcpConnection, fake_gcs_server: str, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(fake_gcs_server)
    injected_before = proxy.injected
    via_proxy = gcp_connection.model_copy(update={"storage_endpoint": proxy.url})
    name = unique("mf-bucket")
    proxy.fail(status=503, count=2, method="POST", path=r"^/storage/v1/b\?", body=GCS_ERROR_503)

    change = fast(ensure_gcs_bucket)(via_proxy, name)

    assert change.action == "created"
    assert proxy.injected - injected_before == 2
    assert storage_client(fake_gcs_server).get_bucket(name).versioning_enabled is True


def test_bucket_permanent_error_is_not_retried(
    gcp_connection: GcpConnection, fake_gcs_server: str, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(fake_gcs_server)
    injected_before = proxy.injected
    via_proxy = gcp_connection.model_copy(update={"storage_endpoint": proxy.url})
    name = unique("mf-bucket")
    proxy.fail(status=403, count=5, path=rf"^/storage/v1/b/{name}", body=GCS_ERROR_403)

    with pytest.raises(
        PermissionDeniedError, match=rf"gcp:gcs:bucket/{name}: could not read the bucket: HTTP 403"
    ):
        fast(ensure_gcs_bucket)(via_proxy, name)
    assert proxy.injected - injected_before == 1
    assert storage_client(fake_gcs_server).lookup_bucket(name) is None


# --- list_gcs_object_generations ----------------------------------------------------


def raw_generations(endpoint: str, bucket: str, prefix: str) -> dict[str, list[int]]:
    """Generations per object name, read over raw HTTP with the JSON API."""
    url = f"{endpoint}/storage/v1/b/{bucket}/o?versions=true&prefix={prefix}"
    with urllib.request.urlopen(url, timeout=5) as response:
        items = json.loads(response.read()).get("items", [])
    found: dict[str, list[int]] = {}
    for item in items:
        found.setdefault(item["name"], []).append(int(item["generation"]))
    return {name: sorted(gens, reverse=True) for name, gens in found.items()}


def test_object_generations_are_listed_newest_first(
    gcp_connection: GcpConnection, fake_gcs_server: str
) -> None:
    name = unique("mf-history")
    ensure_gcs_bucket(gcp_connection, name)
    bucket = storage_client(fake_gcs_server).bucket(name)
    for version in ("one", "two", "three!"):
        bucket.blob("db/dump.sql").upload_from_string(version)
    bucket.blob("db/gone.sql").upload_from_string("bye")
    bucket.blob("db/gone.sql").delete()
    bucket.blob("other/keep.txt").upload_from_string("x")

    history = list_gcs_object_generations(gcp_connection, name, prefix="db/")

    assert isinstance(history, GcsObjectGenerations)
    assert (history.bucket, history.prefix) == (name, "db/")
    expected = raw_generations(fake_gcs_server, name, "db/")
    assert {o.name: [g.generation for g in o.generations] for o in history.objects} == expected
    dump, gone = history.objects
    assert (dump.name, len(dump.generations)) == ("db/dump.sql", 3)
    assert dump.generations[0].size == len("three!")
    assert dump.generations[0].updated is not None
    assert gone.name == "db/gone.sql"
    assert [g.live for g in gone.generations] == [False]
    assert gone.generations[0].deleted is not None
    assert history.generation_count == 4

    everything = list_gcs_object_generations(gcp_connection, name)
    assert [o.name for o in everything.objects] == ["db/dump.sql", "db/gone.sql", "other/keep.txt"]


def test_listing_generations_of_a_missing_bucket_is_not_found(
    gcp_connection: GcpConnection,
) -> None:
    missing = unique("mf-missing")
    with pytest.raises(NotFoundError, match=rf"gcp:gcs:bucket/{missing}"):
        list_gcs_object_generations(gcp_connection, missing)


def test_listing_generations_rejects_a_bad_bucket_name(gcp_connection: GcpConnection) -> None:
    with pytest.raises(InvalidInputError, match="bucket name"):
        list_gcs_object_generations(gcp_connection, "Bad_Bucket")


def test_listing_generations_retries_transient_and_not_permanent_errors(
    gcp_connection: GcpConnection, fake_gcs_server: str, fault_proxy_factory
) -> None:
    name = unique("mf-history")
    ensure_gcs_bucket(gcp_connection, name)
    storage_client(fake_gcs_server).bucket(name).blob("a.txt").upload_from_string("a")
    proxy = fault_proxy_factory(fake_gcs_server)
    injected_before = proxy.injected
    via_proxy = gcp_connection.model_copy(update={"storage_endpoint": proxy.url})

    proxy.fail(status=503, count=2, method="GET", path=rf"/b/{name}/o", body=GCS_ERROR_503)
    assert [o.name for o in fast(list_gcs_object_generations)(via_proxy, name).objects] == ["a.txt"]
    assert proxy.injected - injected_before == 2

    proxy.fail(status=403, count=5, method="GET", path=rf"/b/{name}/o", body=GCS_ERROR_403)
    with pytest.raises(PermissionDeniedError):
        fast(list_gcs_object_generations)(via_proxy, name)
    assert proxy.injected - injected_before == 3


# --- ensure_gcp_secret --------------------------------------------------------------


def secret_name(secret_id: str) -> str:
    return f"projects/{GCP_PROJECT}/secrets/{secret_id}"


def latest_value(client: secretmanager.SecretManagerServiceClient, secret_id: str) -> bytes:
    return client.access_secret_version(
        name=f"{secret_name(secret_id)}/versions/latest"
    ).payload.data


def version_count(client: secretmanager.SecretManagerServiceClient, secret_id: str) -> int:
    return len(list(client.list_secret_versions(parent=secret_name(secret_id))))


def test_secret_is_created_then_unchanged_then_updated(
    gcp_connection: GcpConnection, secret_manager_emulator: str, captured_logs
) -> None:
    secret_id = unique("mf-secret")
    independent = secrets_client(secret_manager_emulator)
    first_value, second_value = "hunter2-first-9f3a", "hunter2-second-c71e"

    created = ensure_gcp_secret(
        gcp_connection, secret_id, SecretStr(first_value), labels={"app": "acme"}
    )
    assert created.resource == f"gcp:secret/{secret_name(secret_id)}"
    assert (created.action, created.detail["version"]) == ("created", 1)
    assert created.detail["version_name"] == f"{secret_name(secret_id)}/versions/1"
    assert latest_value(independent, secret_id) == first_value.encode()
    assert dict(independent.get_secret(name=secret_name(secret_id)).labels) == {"app": "acme"}

    unchanged = ensure_gcp_secret(
        gcp_connection, secret_id, SecretStr(first_value), labels={"app": "acme"}
    )
    assert (unchanged.action, unchanged.detail["version"]) == ("unchanged", 1)
    assert version_count(independent, secret_id) == 1

    updated = ensure_gcp_secret(
        gcp_connection, secret_id, SecretStr(second_value), labels={"app": "acme"}
    )
    assert (updated.action, updated.detail["version"], updated.detail["changed"]) == (
        "updated",
        2,
        ["value"],
    )
    assert latest_value(independent, secret_id) == second_value.encode()

    relabelled = ensure_gcp_secret(
        gcp_connection, secret_id, SecretStr(second_value), labels={"app": "b"}
    )
    assert (relabelled.action, relabelled.detail["changed"]) == ("updated", ["labels"])
    assert dict(independent.get_secret(name=secret_name(secret_id)).labels) == {"app": "b"}
    assert version_count(independent, secret_id) == 2

    for text in (
        captured_logs.text,
        *(c.model_dump_json() for c in (created, unchanged, updated, relabelled)),
    ):
        assert first_value not in text
        assert second_value not in text


def test_secret_compares_with_the_latest_enabled_version(
    gcp_connection: GcpConnection, secret_manager_emulator: str
) -> None:
    secret_id = unique("mf-secret")
    independent = secrets_client(secret_manager_emulator)
    ensure_gcp_secret(gcp_connection, secret_id, SecretStr("old-value"))
    ensure_gcp_secret(gcp_connection, secret_id, SecretStr("new-value"))
    independent.disable_secret_version(name=f"{secret_name(secret_id)}/versions/2")

    change = ensure_gcp_secret(gcp_connection, secret_id, SecretStr("old-value"))

    assert (change.action, change.detail["version"]) == ("unchanged", 1)
    assert version_count(independent, secret_id) == 2


def test_secret_dry_run_plans_and_writes_nothing(
    gcp_connection: GcpConnection, secret_manager_emulator: str
) -> None:
    secret_id = unique("mf-secret")
    independent = secrets_client(secret_manager_emulator)

    planned = ensure_gcp_secret(gcp_connection, secret_id, SecretStr("v1"), dry_run=True)
    assert (planned.action, planned.dry_run) == ("created", True)
    with pytest.raises(Exception, match="404"):
        independent.get_secret(name=secret_name(secret_id))

    ensure_gcp_secret(gcp_connection, secret_id, SecretStr("v1"))
    planned = ensure_gcp_secret(
        gcp_connection, secret_id, SecretStr("v2"), labels={"a": "b"}, dry_run=True
    )
    assert (planned.action, planned.dry_run, planned.detail["changed"]) == (
        "updated",
        True,
        ["labels", "value"],
    )
    assert version_count(independent, secret_id) == 1
    assert latest_value(independent, secret_id) == b"v1"
    assert dict(independent.get_secret(name=secret_name(secret_id)).labels) == {}


@pytest.mark.parametrize(
    ("secret_id", "value", "labels", "match"),
    [
        ("bad/id", "x", {}, "secret id"),
        ("", "x", {}, "secret id"),
        ("ok-id", "", {}, "empty"),
        ("ok-id", "x" * (64 * 1024 + 1), {}, "larger than"),
        ("ok-id", "x", {"Bad": "x"}, "label key"),
    ],
)
def test_bad_secret_input_is_rejected_before_any_write(
    gcp_connection: GcpConnection,
    secret_manager_emulator: str,
    secret_id: str,
    value: str,
    labels: dict[str, str],
    match: str,
) -> None:
    independent = secrets_client(secret_manager_emulator)
    before = [s.name for s in independent.list_secrets(parent=f"projects/{GCP_PROJECT}")]
    with pytest.raises(InvalidInputError, match=match) as raised:
        ensure_gcp_secret(gcp_connection, secret_id, SecretStr(value), labels=labels)
    if value:
        assert value not in str(raised.value)
    assert [s.name for s in independent.list_secrets(parent=f"projects/{GCP_PROJECT}")] == before


def test_secret_transient_errors_are_retried_until_created(
    gcp_connection: GcpConnection, secret_manager_emulator: str, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(secret_manager_emulator)
    injected_before = proxy.injected
    via_proxy = gcp_connection.model_copy(update={"secret_manager_endpoint": proxy.url})
    secret_id = unique("mf-secret")
    proxy.fail(status=503, count=2, method="POST", path=r"/secrets\?", body=GCS_ERROR_503)

    change = fast(ensure_gcp_secret)(via_proxy, secret_id, SecretStr("retried-value"))

    assert (change.action, change.detail["version"]) == ("created", 1)
    assert proxy.injected - injected_before == 2
    assert latest_value(secrets_client(secret_manager_emulator), secret_id) == b"retried-value"


def test_secret_permanent_error_is_not_retried_and_hides_the_value(
    gcp_connection: GcpConnection, secret_manager_emulator: str, fault_proxy_factory, captured_logs
) -> None:
    proxy = fault_proxy_factory(secret_manager_emulator)
    injected_before = proxy.injected
    via_proxy = gcp_connection.model_copy(update={"secret_manager_endpoint": proxy.url})
    secret_id = unique("mf-secret")
    value = "do-not-leak-5e0c1b"
    proxy.fail(status=403, count=5, method="POST", path=r":addVersion", body=GCS_ERROR_403)

    with pytest.raises(
        PermissionDeniedError, match="could not add a secret version: HTTP 403"
    ) as raised:
        fast(ensure_gcp_secret)(via_proxy, secret_id, SecretStr(value))

    assert proxy.injected - injected_before == 1
    assert version_count(secrets_client(secret_manager_emulator), secret_id) == 0
    assert value not in str(raised.value)
    assert value not in captured_logs.text


# --- Cloud Quotas -------------------------------------------------------------------


def cpus_quota(**overrides) -> dict:
    """A regional quota: 48 in us-central1, 24 elsewhere (v1 QuotaInfo JSON)."""
    return {
        "quotaId": CPUS,
        "service": COMPUTE,
        "metric": "compute.googleapis.com/cpus",
        "isPrecise": True,
        "containerType": "PROJECT",
        "dimensions": ["region"],
        "metricDisplayName": "CPUs",
        "quotaDisplayName": "CPUs per project per region",
        "metricUnit": "1/{project}/{region}",
        "quotaIncreaseEligibility": {"isEligible": True},
        "dimensionsInfos": [
            {
                "dimensions": {"region": "us-central1"},
                "details": {"value": "48"},
                "applicableLocations": ["us-central1"],
            },
            {
                "dimensions": {},
                "details": {"value": "24"},
                "applicableLocations": ["us-east1", "europe-west1"],
            },
        ],
        **overrides,
    }


def test_quota_value_is_read_for_a_location(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota())

    regional = get_gcp_quota(gcp_connection, COMPUTE, CPUS, location="us-central1")
    assert (regional.value, regional.dimensions, regional.unit) == (
        48,
        {"region": "us-central1"},
        "1/{project}/{region}",
    )
    assert regional.metric == "compute.googleapis.com/cpus"
    assert (
        regional.name
        == f"projects/{GCP_PROJECT}/locations/global/services/{COMPUTE}/quotaInfos/{CPUS}"
    )
    assert get_gcp_quota(gcp_connection, COMPUTE, CPUS, location="europe-west1").value == 24
    default = get_gcp_quota(gcp_connection, COMPUTE, CPUS)
    assert (default.location, default.value, default.dimensions, default.increase_eligible) == (
        "global",
        24,
        {},
        True,
    )


def test_quota_read_errors_are_typed(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota())
    with pytest.raises(NotFoundError, match="no value for location 'asia-east9'"):
        get_gcp_quota(gcp_connection, COMPUTE, CPUS, location="asia-east9")
    with pytest.raises(NotFoundError, match="HTTP 404"):
        get_gcp_quota(gcp_connection, COMPUTE, "NO-SUCH-QUOTA")
    with pytest.raises(InvalidInputError, match="service"):
        get_gcp_quota(gcp_connection, "not a service", CPUS)
    with pytest.raises(InvalidInputError, match="project"):
        get_gcp_quota(gcp_connection.model_copy(update={"project": None}), COMPUTE, CPUS)


def test_quota_read_retries_transient_and_not_permanent_errors(
    gcp_connection: GcpConnection,
    cloud_quotas: CloudQuotasFake,
    cloud_quotas_server: str,
    fault_proxy_factory,
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota())
    proxy = fault_proxy_factory(cloud_quotas_server)
    injected_before = proxy.injected
    via_proxy = gcp_connection.model_copy(update={"cloud_quotas_endpoint": proxy.url})

    proxy.fail(status=503, count=2, method="GET", path="/quotaInfos/", body=GCS_ERROR_503)
    assert fast(get_gcp_quota)(via_proxy, COMPUTE, CPUS, location="us-central1").value == 48
    assert proxy.injected - injected_before == 2

    proxy.fail(status=403, count=5, method="GET", path="/quotaInfos/", body=GCS_ERROR_403)
    with pytest.raises(PermissionDeniedError, match="could not read the quota: HTTP 403"):
        fast(get_gcp_quota)(via_proxy, COMPUTE, CPUS)
    assert proxy.injected - injected_before == 3


def test_quota_increase_is_unchanged_when_the_current_value_grants_it(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota())
    change = request_gcp_quota_increase(
        gcp_connection, COMPUTE, CPUS, 40, dimensions={"region": "us-central1"}
    )
    assert (change.action, change.detail["current_value"]) == ("unchanged", 48)
    assert cloud_quotas.preferences() == []


def test_quota_increase_creates_then_keeps_then_raises_a_preference(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota())
    region = {"region": "us-central1"}
    resource = (
        f"gcp:quota/projects/{GCP_PROJECT}/services/{COMPUTE}/quotaInfos/{CPUS}[region=us-central1]"
    )

    created = request_gcp_quota_increase(
        gcp_connection,
        COMPUTE,
        CPUS,
        96,
        dimensions=region,
        contact_email="ops@example.com",
        justification="Black Friday",
    )
    assert (created.resource, created.action, created.detail["reconciling"]) == (
        resource,
        "created",
        True,
    )
    [preference] = cloud_quotas.preferences()
    assert preference["name"] == created.detail["preference"]
    assert (preference["service"], preference["quotaId"], preference["dimensions"]) == (
        COMPUTE,
        CPUS,
        region,
    )
    assert preference["quotaConfig"]["preferredValue"] == "96"
    assert preference["justification"] == "Black Friday"

    pending = request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 96, dimensions=region)
    assert (pending.action, pending.detail["requested_value"]) == ("unchanged", 96)
    assert (
        request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 64, dimensions=region).action
        == "unchanged"
    )

    raised = request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 128, dimensions=region)
    assert (raised.action, raised.detail["preference"]) == ("updated", preference["name"])
    [preference] = cloud_quotas.preferences()
    assert preference["quotaConfig"]["preferredValue"] == "128"

    # Another slice of the same quota is a preference of its own.
    other = request_gcp_quota_increase(
        gcp_connection, COMPUTE, CPUS, 32, dimensions={"region": "europe-west1"}
    )
    assert other.action == "created"
    assert len(cloud_quotas.preferences()) == 2


def test_quota_increase_granted_at_once_leaves_nothing_to_do(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota(), auto_approve=True)
    created = request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 30)
    assert (created.action, created.detail["granted_value"], created.detail["reconciling"]) == (
        "created",
        30,
        False,
    )
    assert get_gcp_quota(gcp_connection, COMPUTE, CPUS).value == 30
    again = request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 30)
    assert (again.action, again.detail["current_value"]) == ("unchanged", 30)


def test_quota_increase_finds_its_preference_on_a_later_page(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota())
    base = f"projects/{GCP_PROJECT}/locations/global/quotaPreferences"
    for index, region in enumerate(["us-east1", "europe-west1", "asia-east1"]):
        cloud_quotas.seed_preference(
            {
                "name": f"{base}/other-{index}",
                "service": COMPUTE,
                "quotaId": CPUS,
                "dimensions": {"region": region},
                "quotaConfig": {"preferredValue": "50"},
            }
        )
    cloud_quotas.seed_preference(
        {
            "name": f"{base}/mine",
            "service": COMPUTE,
            "quotaId": CPUS,
            "dimensions": {"region": "us-central1"},
            "quotaConfig": {"preferredValue": "200"},
            "reconciling": True,
        }
    )
    change = request_gcp_quota_increase(
        gcp_connection, COMPUTE, CPUS, 150, dimensions={"region": "us-central1"}
    )
    assert (change.action, change.detail["preference"]) == ("unchanged", f"{base}/mine")
    assert len(cloud_quotas.preferences()) == 4


def test_quota_increase_dry_run_plans_and_writes_nothing(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota())
    planned = request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 96, dry_run=True)
    assert (planned.action, planned.dry_run) == ("created", True)
    assert cloud_quotas.preferences() == []

    request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 96)
    planned = request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 200, dry_run=True)
    assert (planned.action, planned.dry_run) == ("updated", True)
    assert [p["quotaConfig"]["preferredValue"] for p in cloud_quotas.preferences()] == ["96"]


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"preferred_value": -5}, "preferred value"),
        ({"dimensions": {"user": "x"}}, "'user'"),
        ({"dimensions": {"zone": "us-central1-a"}}, "no dimension"),
        ({"service": "bad service"}, "service"),
        ({"quota_id": "bad/id"}, "quota id"),
        ({"contact_email": "nobody"}, "email"),
        ({"dimensions": {"region": ""}}, "needs a value"),
    ],
)
def test_bad_quota_increase_input_is_rejected_before_any_write(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake, arguments: dict, match: str
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota())
    call = {"service": COMPUTE, "quota_id": CPUS, "preferred_value": 96, **arguments}
    with pytest.raises(InvalidInputError, match=match):
        request_gcp_quota_increase(gcp_connection, **call)
    assert cloud_quotas.preferences() == []


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"isFixed": True}, "fixed"),
        (
            {"quotaIncreaseEligibility": {"ineligibilityReason": "NO_VALID_BILLING_ACCOUNT"}},
            "NO_VALID_BILLING_ACCOUNT",
        ),
    ],
)
def test_quota_that_cannot_grow_is_a_conflict(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake, overrides: dict, match: str
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota(**overrides))
    with pytest.raises(ConflictError, match=match):
        request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 96)
    assert cloud_quotas.preferences() == []


def test_quota_increase_retries_transient_and_not_permanent_errors(
    gcp_connection: GcpConnection,
    cloud_quotas: CloudQuotasFake,
    cloud_quotas_server: str,
    fault_proxy_factory,
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota())
    proxy = fault_proxy_factory(cloud_quotas_server)
    injected_before = proxy.injected
    via_proxy = gcp_connection.model_copy(update={"cloud_quotas_endpoint": proxy.url})

    proxy.fail(status=403, count=5, method="POST", path="/quotaPreferences", body=GCS_ERROR_403)
    with pytest.raises(
        PermissionDeniedError, match="could not create the quota preference: HTTP 403"
    ):
        fast(request_gcp_quota_increase)(via_proxy, COMPUTE, CPUS, 96)
    assert proxy.injected - injected_before == 1
    assert cloud_quotas.preferences() == []

    proxy.clear()
    proxy.fail(status=429, count=2, method="POST", path="/quotaPreferences", body=GCS_ERROR_503)
    assert fast(request_gcp_quota_increase)(via_proxy, COMPUTE, CPUS, 96).action == "created"
    assert proxy.injected - injected_before == 3
    assert len(cloud_quotas.preferences()) == 1


# --- composition --------------------------------------------------------------------


def test_gcp_jobs_compose_in_a_flow_and_accept_a_saved_block_name(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake, captured_logs
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota())
    block_name = unique("gcp")
    gcp_connection.save(block_name)
    bucket, secret_id = unique("mf-tenant"), unique("mf-tenant-db")

    @flow
    def tenant_on_gcp(tenant_password: SecretStr) -> list[Change]:
        return [
            ensure_gcs_bucket(block_name, bucket, labels={}),
            ensure_gcp_secret(block_name, secret_id, tenant_password),
            request_gcp_quota_increase(
                block_name, COMPUTE, CPUS, 64, dimensions={"region": "europe-west1"}
            ),
        ]

    first = tenant_on_gcp(SecretStr("tenant-pass-77a1"))
    assert [c.action for c in first] == ["created", "created", "created"]
    second = tenant_on_gcp(SecretStr("tenant-pass-77a1"))
    assert [c.action for c in second] == ["unchanged", "unchanged", "unchanged"]
    assert "tenant-pass-77a1" not in captured_logs.text


# --- failures go through the one error table -------------------------------------------


def test_a_tls_failure_is_invalid_input_and_not_retried(
    gcp_connection: GcpConnection, fake_gcs_server: str, fault_proxy_factory, captured_logs
) -> None:
    # The proxy speaks plain HTTP: a TLS handshake with it fails like a wrong certificate.
    proxy = fault_proxy_factory(fake_gcs_server)
    via_tls = gcp_connection.model_copy(
        update={"storage_endpoint": proxy.url.replace("http://", "https://")}
    )
    with pytest.raises(InvalidInputError, match=r"TLS failed .*\(SSLError\)"):
        fast(ensure_gcs_bucket)(via_tls, unique("mf-tls"))
    assert " - Retry " not in captured_logs.text


def test_a_truncated_answer_is_retried(
    gcp_connection: GcpConnection, fake_gcs_server: str, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(fake_gcs_server)
    injected_before = proxy.injected
    via_proxy = gcp_connection.model_copy(update={"storage_endpoint": proxy.url})
    name = unique("mf-cut")
    storage_client(fake_gcs_server).create_bucket(name, location="EU")
    proxy.fail(count=1, method="GET", path=rf"^/storage/v1/b/{name}\?", truncate=5)

    change = fast(ensure_gcs_bucket)(via_proxy, name, versioning=False)

    assert change.action == "unchanged"
    assert proxy.injected - injected_before == 1


def test_a_truncated_quota_answer_is_retried(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake, fault_proxy_factory
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota())
    proxy = fault_proxy_factory(cloud_quotas.url)
    injected_before = proxy.injected
    via_proxy = gcp_connection.model_copy(update={"cloud_quotas_endpoint": proxy.url})
    proxy.fail(count=1, method="GET", path=r"/quotaInfos/", truncate=12)

    quota = fast(get_gcp_quota)(via_proxy, COMPUTE, CPUS, location="us-central1")

    assert quota.value > 0
    assert proxy.injected - injected_before == 1


# --- decided preferences: denied and partly granted are not success ------------------


def test_a_denied_preference_that_asked_for_enough_is_not_satisfied(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota(), deny=True)
    region = {"region": "us-central1"}
    created = request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 96, dimensions=region)
    assert (created.action, created.detail["reconciling"], created.detail["granted_value"]) == (
        "created",
        False,
        48,
    )
    [preference] = cloud_quotas.preferences()  # read back: Google's decision, as the fake keeps it
    assert preference["quotaConfig"]["stateDetail"].startswith("Denied")

    with pytest.raises(ConflictError, match=r"granted 48 of the 96 asked \(Denied"):
        request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 96, dimensions=region)
    with pytest.raises(ConflictError, match="granted 48 of the 96 asked"):
        request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 64, dimensions=region)
    assert len(cloud_quotas.preferences()) == 1


def test_a_partly_granted_preference_satisfies_only_what_was_granted(
    gcp_connection: GcpConnection, cloud_quotas: CloudQuotasFake
) -> None:
    cloud_quotas.seed_quota_info(cpus_quota(), grant_up_to=64)
    region = {"region": "us-central1"}
    created = request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 96, dimensions=region)
    assert (created.action, created.detail["granted_value"]) == ("created", 64)
    assert get_gcp_quota(gcp_connection, COMPUTE, CPUS, location="us-central1").value == 64

    assert request_gcp_quota_increase(
        gcp_connection, COMPUTE, CPUS, 64, dimensions=region
    ).action == ("unchanged")
    with pytest.raises(ConflictError, match=r"granted 64 of the 96 asked \(Partially granted"):
        request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 96, dimensions=region)
    # Asking for more than before is a new ask: the preference is raised.
    raised = request_gcp_quota_increase(gcp_connection, COMPUTE, CPUS, 128, dimensions=region)
    assert raised.action == "updated"
    [preference] = cloud_quotas.preferences()
    assert preference["quotaConfig"]["preferredValue"] == "128"


# --- idempotency at the wire: a second run and a dry run send no write ----------------


def test_ensure_gcs_bucket_second_run_and_dry_run_send_no_writes(recording_proxies) -> None:
    gcp = recording_proxies.gcp()
    name = unique("mf-wire")
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_gcs_bucket(gcp, name, **kw),
        wanted={"versioning": True},
        changed={"versioning": False},
    )
    assert [(w.method, w.path) for w in writes] == [("POST", "/storage/v1/b")]


def test_ensure_gcp_secret_second_run_and_dry_run_send_no_writes(recording_proxies) -> None:
    gcp = recording_proxies.gcp()
    secret_id = unique("mf-wire")
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_gcp_secret(gcp, secret_id, **kw),
        wanted={"value": SecretStr("wire-1"), "labels": {"app": "acme"}},
        changed={"value": SecretStr("wire-2"), "labels": {"app": "acme"}},
    )
    assert [w.method for w in writes] == ["POST", "POST"]  # the secret, its first version
    assert {w.path.rsplit(":", 1)[-1] for w in writes} >= {"addVersion"}


def test_request_gcp_quota_increase_second_run_and_dry_run_send_no_writes(
    recording_proxies, cloud_quotas: CloudQuotasFake
) -> None:
    gcp = recording_proxies.gcp()
    cloud_quotas.seed_quota_info(cpus_quota())
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: request_gcp_quota_increase(
            gcp, COMPUTE, CPUS, dimensions={"region": "us-central1"}, **kw
        ),
        wanted={"preferred_value": 96},
        changed={"preferred_value": 128},
    )
    assert [w.method for w in writes] == ["POST"]


def test_a_denied_preference_is_not_asked_again(
    recording_proxies, cloud_quotas: CloudQuotasFake
) -> None:
    gcp = recording_proxies.gcp()
    cloud_quotas.seed_quota_info(cpus_quota(), deny=True)
    request_gcp_quota_increase(gcp, COMPUTE, CPUS, 96)
    with recording_proxies.no_writes():
        with pytest.raises(ConflictError):
            request_gcp_quota_increase(gcp, COMPUTE, CPUS, 96)

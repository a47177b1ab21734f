"""Kubernetes jobs against the kmock API emulator, read back with an independent client."""

import base64
import json
import traceback
import uuid
from typing import Any

import pytest
from kubernetes import client as k8s
from prefect import flow
from pydantic import SecretStr

from blocks import KubernetesConnection
from magicflow import (
    Change,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    TransientError,
)
from tasks.kubernetes import (
    ensure_limit_range,
    ensure_namespace,
    ensure_resource_quota,
    ensure_secret,
)


def status_body(code: int, reason: str, message: str) -> str:
    """A Kubernetes Status object, what the API server answers errors with."""
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
    )


def fast(job: Any) -> Any:
    return job.with_options(retry_delay_seconds=0)


def read_or_none(read: Any, *args: str) -> Any:
    try:
        return read(*args)
    except k8s.ApiException as error:
        assert error.status == 404
        return None


def secret_data(core: k8s.CoreV1Api, namespace: str, name: str) -> dict[str, str]:
    secret = core.read_namespaced_secret(name, namespace)
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


# --- ensure_namespace -------------------------------------------------------------


def test_namespace_created_then_unchanged_then_updated(kubernetes, kubernetes_core) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    first = ensure_namespace(
        kubernetes, name, labels={"team": "acme"}, annotations={"owner": "ops"}
    )
    assert (first.action, first.resource, first.dry_run) == (
        "created",
        f"k8s:namespace/{name}",
        False,
    )
    metadata = kubernetes_core.read_namespace(name).metadata
    assert metadata.labels["team"] == "acme" and metadata.annotations == {"owner": "ops"}

    again = ensure_namespace(
        kubernetes, name, labels={"team": "acme"}, annotations={"owner": "ops"}
    )
    assert again.action == "unchanged"

    # Someone else adds a label: the job leaves keys it was not given alone.
    kubernetes_core.patch_namespace(name, {"metadata": {"labels": {"cost-center": "42"}}})
    changed = ensure_namespace(
        kubernetes, name, labels={"team": "beta", "env": None}, annotations={"owner": None}
    )
    assert changed.action == "updated"
    assert changed.detail == {"changed_labels": ["team"], "changed_annotations": ["owner"]}
    metadata = kubernetes_core.read_namespace(name).metadata
    assert metadata.labels["team"] == "beta" and metadata.labels["cost-center"] == "42"
    assert metadata.labels["kubernetes.io/metadata.name"] == name  # the server's own label
    assert not metadata.annotations  # None removed it (merge patch null)

    assert (
        ensure_namespace(kubernetes, name, labels={"team": "beta", "env": None}).action
        == "unchanged"
    )


def test_namespace_dry_run_reads_but_never_writes(
    kubernetes, kubernetes_core, k8s_namespace
) -> None:
    name = f"t-{uuid.uuid4().hex[:10]}"
    plan = ensure_namespace(kubernetes, name, labels={"team": "acme"}, dry_run=True)
    assert (plan.action, plan.dry_run) == ("created", True)
    assert read_or_none(kubernetes_core.read_namespace, name) is None

    plan = ensure_namespace(kubernetes, k8s_namespace, labels={"team": "acme"}, dry_run=True)
    assert (plan.action, plan.dry_run, plan.detail) == (
        "updated",
        True,
        {"changed_labels": ["team"]},
    )
    assert "team" not in (kubernetes_core.read_namespace(k8s_namespace).metadata.labels or {})


@pytest.mark.parametrize(
    ("name", "labels"),
    [("Acme_Prod", {}), ("a" * 64, {}), ("acme", {"team": "not valid!"}), ("acme", {"-bad": "x"})],
)
def test_namespace_invalid_input_writes_nothing(kubernetes, kubernetes_core, name, labels) -> None:
    before = {ns.metadata.name for ns in kubernetes_core.list_namespace().items}
    with pytest.raises(InvalidInputError):
        fast(ensure_namespace)(kubernetes, name, labels=labels)
    assert {ns.metadata.name for ns in kubernetes_core.list_namespace().items} == before


def test_namespace_created_concurrently_is_a_conflict(
    kubernetes, kubernetes_core, k8s_namespace, fault_proxy_factory
) -> None:
    # The read says "absent" (as if another run created it right after), so the job
    # creates and the API server answers 409 AlreadyExists: permanent, not retried.
    proxy = fault_proxy_factory(kubernetes.api_server_url)
    proxy.fail(
        status=404,
        method="GET",
        path=rf"/namespaces/{k8s_namespace}$",
        body=status_body(404, "NotFound", f'namespaces "{k8s_namespace}" not found'),
    )
    racing = KubernetesConnection(api_server_url=proxy.url, token="t")
    with pytest.raises(
        ConflictError, match=f"k8s:namespace/{k8s_namespace}: creating failed with HTTP 409"
    ):
        fast(ensure_namespace)(racing, k8s_namespace, labels={"team": "x"})


def test_namespace_in_a_flow_by_saved_block_name(kubernetes, kubernetes_core) -> None:
    kubernetes.save("magicflow-test-k8s", overwrite=True)
    name = f"t-{uuid.uuid4().hex[:10]}"

    @flow
    def onboard(team: str) -> list[Change]:
        return [
            ensure_namespace("magicflow-test-k8s", team, labels={"team": team}),
            ensure_resource_quota("magicflow-test-k8s", team, "default", {"pods": "10"}),
            ensure_limit_range(
                "magicflow-test-k8s",
                team,
                "defaults",
                [{"type": "Container", "default": {"cpu": "500m"}}],
            ),
        ]

    assert [c.action for c in onboard(name)] == ["created"] * 3
    assert [c.action for c in onboard(name)] == ["unchanged"] * 3
    assert kubernetes_core.read_namespaced_resource_quota("default", name).spec.hard == {
        "pods": "10"
    }


# --- ensure_resource_quota --------------------------------------------------------


def test_quota_compares_quantities_by_value(kubernetes, kubernetes_core, k8s_namespace) -> None:
    hard = {"requests.cpu": "2", "requests.memory": "1Gi", "pods": "20"}
    created = ensure_resource_quota(kubernetes, k8s_namespace, "default", hard)
    assert (created.action, created.resource) == (
        "created",
        f"k8s:resourcequota/{k8s_namespace}/default",
    )
    assert (
        kubernetes_core.read_namespaced_resource_quota("default", k8s_namespace).spec.hard == hard
    )

    same_values = {"requests.cpu": "2000m", "requests.memory": "1024Mi", "pods": "20"}
    assert (
        ensure_resource_quota(kubernetes, k8s_namespace, "default", same_values).action
        == "unchanged"
    )

    updated = ensure_resource_quota(
        kubernetes,
        k8s_namespace,
        "default",
        {"requests.cpu": "4", "requests.memory": "1Gi", "services": "5"},
    )
    assert updated.action == "updated"
    assert updated.detail == {"changed_resources": ["pods", "requests.cpu", "services"]}
    assert kubernetes_core.read_namespaced_resource_quota("default", k8s_namespace).spec.hard == {
        "requests.cpu": "4",
        "requests.memory": "1Gi",
        "services": "5",
    }


def test_quota_dry_run_and_invalid_input(kubernetes, kubernetes_core, k8s_namespace) -> None:
    plan = ensure_resource_quota(kubernetes, k8s_namespace, "q", {"pods": "1"}, dry_run=True)
    assert (plan.action, plan.dry_run) == ("created", True)
    assert read_or_none(kubernetes_core.read_namespaced_resource_quota, "q", k8s_namespace) is None

    for bad in ({"pods": "lots"}, {}, {"bad key!": "1"}):
        with pytest.raises(InvalidInputError):
            fast(ensure_resource_quota)(kubernetes, k8s_namespace, "q", bad)
    with pytest.raises(InvalidInputError, match="DNS subdomain"):
        fast(ensure_resource_quota)(kubernetes, k8s_namespace, "Q!", {"pods": "1"})
    assert read_or_none(kubernetes_core.read_namespaced_resource_quota, "q", k8s_namespace) is None


def test_quota_in_a_missing_namespace_is_not_found(kubernetes) -> None:
    with pytest.raises(NotFoundError, match='namespaces "t-missing" not found'):
        fast(ensure_resource_quota)(kubernetes, "t-missing", "default", {"pods": "1"})


# --- ensure_limit_range -----------------------------------------------------------

LIMITS = [
    {"type": "Container", "max": {"cpu": "2", "memory": "1Gi"}, "defaultRequest": {"cpu": "100m"}},
    {"type": "Pod", "max": {"memory": "2Gi"}},
]


def test_limit_range_is_idempotent_despite_server_defaulting(
    kubernetes, kubernetes_core, k8s_namespace
) -> None:
    created = ensure_limit_range(kubernetes, k8s_namespace, "defaults", LIMITS)
    assert (created.action, created.detail) == ("created", {"types": ["Container", "Pod"]})
    stored = kubernetes_core.read_namespaced_limit_range("defaults", k8s_namespace).spec.limits
    # The server filled in the defaults it derives from max: more than was written.
    assert stored[0].default == {"cpu": "2", "memory": "1Gi"}
    assert stored[0].default_request == {"cpu": "100m", "memory": "1Gi"}

    assert ensure_limit_range(kubernetes, k8s_namespace, "defaults", LIMITS).action == "unchanged"
    reordered = [LIMITS[1], {**LIMITS[0], "max": {"cpu": "2000m", "memory": "1024Mi"}}]
    assert (
        ensure_limit_range(kubernetes, k8s_namespace, "defaults", reordered).action == "unchanged"
    )

    changed = [LIMITS[0], {"type": "Pod", "max": {"memory": "4Gi"}}]
    updated = ensure_limit_range(kubernetes, k8s_namespace, "defaults", changed)
    assert (updated.action, updated.detail) == ("updated", {"changed_types": ["Pod"]})
    stored = kubernetes_core.read_namespaced_limit_range("defaults", k8s_namespace).spec.limits
    assert [item.max for item in stored] == [{"cpu": "2", "memory": "1Gi"}, {"memory": "4Gi"}]


def test_limit_range_dry_run_and_invalid_input(kubernetes, kubernetes_core, k8s_namespace) -> None:
    ensure_limit_range(kubernetes, k8s_namespace, "defaults", LIMITS)
    plan = ensure_limit_range(
        kubernetes,
        k8s_namespace,
        "defaults",
        [{"type": "Pod", "max": {"memory": "8Gi"}}],
        dry_run=True,
    )
    assert (plan.action, plan.dry_run, plan.detail) == (
        "updated",
        True,
        {"changed_types": ["Container", "Pod"]},
    )
    stored = kubernetes_core.read_namespaced_limit_range("defaults", k8s_namespace).spec.limits
    assert [item.type for item in stored] == ["Container", "Pod"]

    for bad in (
        [],
        [{"type": "Node", "max": {"cpu": "1"}}],
        [{"type": "Pod", "max": {"cpu": "x"}}],
        [{"type": "Pod", "maximum": {"cpu": "1"}}],
    ):
        with pytest.raises(InvalidInputError):
            fast(ensure_limit_range)(kubernetes, k8s_namespace, "other", bad)
    assert read_or_none(kubernetes_core.read_namespaced_limit_range, "other", k8s_namespace) is None


# --- ensure_secret ----------------------------------------------------------------

PASSWORD = "hunter2-" + uuid.uuid4().hex  # unique, so finding it anywhere is a leak


def assert_no_leak(text: str, *values: str) -> None:
    for value in values:
        assert value not in text
        assert base64.b64encode(value.encode()).decode() not in text


def test_secret_created_unchanged_updated_without_leaking(
    kubernetes, kubernetes_core, k8s_namespace, captured_logs
) -> None:
    data = {"username": SecretStr("app"), "password": SecretStr(PASSWORD)}
    created = ensure_secret(kubernetes, k8s_namespace, "db", data, labels={"app": "db"})
    assert (created.action, created.resource) == ("created", f"k8s:secret/{k8s_namespace}/db")
    assert created.detail == {"keys": ["password", "username"]}
    assert secret_data(kubernetes_core, k8s_namespace, "db") == {
        "username": "app",
        "password": PASSWORD,
    }
    stored = kubernetes_core.read_namespaced_secret("db", k8s_namespace)
    assert (stored.type, stored.metadata.labels) == ("Opaque", {"app": "db"})

    assert (
        ensure_secret(kubernetes, k8s_namespace, "db", data, labels={"app": "db"}).action
        == "unchanged"
    )

    rotated = f"{PASSWORD}-rotated"
    updated = ensure_secret(
        kubernetes,
        k8s_namespace,
        "db",
        {"password": SecretStr(rotated), "host": SecretStr("db.internal")},
    )
    assert updated.action == "updated"
    assert updated.detail == {"changed_keys": ["host", "password", "username"]}
    assert secret_data(kubernetes_core, k8s_namespace, "db") == {
        "password": rotated,
        "host": "db.internal",
    }
    assert kubernetes_core.read_namespaced_secret("db", k8s_namespace).metadata.labels == {
        "app": "db"
    }

    for change in (created, updated):
        assert_no_leak(change.model_dump_json(), PASSWORD, rotated)
    assert_no_leak(captured_logs.text, PASSWORD, rotated)
    assert "k8s:secret/" in captured_logs.text  # the logs were captured at all


def test_secret_dry_run_reads_but_never_writes(kubernetes, kubernetes_core, k8s_namespace) -> None:
    plan = ensure_secret(
        kubernetes, k8s_namespace, "db", {"password": SecretStr(PASSWORD)}, dry_run=True
    )
    assert (plan.action, plan.dry_run) == ("created", True)
    assert read_or_none(kubernetes_core.read_namespaced_secret, "db", k8s_namespace) is None

    kubernetes_core.create_namespaced_secret(
        k8s_namespace, {"metadata": {"name": "db"}, "stringData": {"password": "old"}}
    )
    plan = ensure_secret(
        kubernetes, k8s_namespace, "db", {"password": SecretStr(PASSWORD)}, dry_run=True
    )
    assert (plan.action, plan.dry_run, plan.detail) == (
        "updated",
        True,
        {"changed_keys": ["password"]},
    )
    assert secret_data(kubernetes_core, k8s_namespace, "db") == {"password": "old"}


@pytest.mark.parametrize(
    "data",
    [
        {"bad key": SecretStr("x")},
        {"password": SecretStr("")},
        {"password": "plain-str-" + PASSWORD},
    ],
)
def test_secret_invalid_input_writes_nothing_and_leaks_nothing(
    kubernetes, kubernetes_core, k8s_namespace, data
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        fast(ensure_secret)(kubernetes, k8s_namespace, "db", data)
    assert_no_leak("".join(traceback.format_exception(caught.value)), PASSWORD)
    assert read_or_none(kubernetes_core.read_namespaced_secret, "db", k8s_namespace) is None


def test_secret_type_cannot_change(kubernetes, kubernetes_core, k8s_namespace) -> None:
    ensure_secret(kubernetes, k8s_namespace, "db", {"password": SecretStr(PASSWORD)})
    with pytest.raises(ConflictError, match="type is immutable") as caught:
        fast(ensure_secret)(
            kubernetes,
            k8s_namespace,
            "db",
            {"password": SecretStr("x" + PASSWORD)},
            type="kubernetes.io/basic-auth",
        )
    assert_no_leak("".join(traceback.format_exception(caught.value)), PASSWORD)
    assert secret_data(kubernetes_core, k8s_namespace, "db") == {"password": PASSWORD}


# --- transient and permanent errors, every job ------------------------------------


def job_call(kind: str, namespace: str) -> tuple[Any, dict[str, Any], str]:
    """(job, keyword arguments, path regex of the object) for each Kubernetes job."""
    return {
        "namespace": (
            ensure_namespace,
            {"name": f"{namespace}-n"},
            rf"/namespaces(/{namespace}-n)?$",
        ),
        "resourcequota": (
            ensure_resource_quota,
            {"namespace": namespace, "name": "q", "hard": {"pods": "1"}},
            r"/resourcequotas",
        ),
        "limitrange": (
            ensure_limit_range,
            {"namespace": namespace, "name": "l", "limits": [{"type": "Pod", "max": {"cpu": "1"}}]},
            r"/limitranges",
        ),
        "secret": (
            ensure_secret,
            {"namespace": namespace, "name": "s", "data": {"password": SecretStr(PASSWORD)}},
            r"/secrets",
        ),
    }[kind]


KINDS = ["namespace", "resourcequota", "limitrange", "secret"]


@pytest.mark.parametrize("kind", KINDS)
def test_transient_errors_are_retried_until_success(
    kind, kubernetes, k8s_namespace, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(kubernetes.api_server_url)
    job, kwargs, path = job_call(kind, k8s_namespace)
    connection = KubernetesConnection(api_server_url=proxy.url, token="t")
    injected = proxy.injected  # the proxy lives for the session: count from here
    proxy.fail(
        status=503,
        count=1,
        method="GET",
        path=path,
        body=status_body(503, "ServiceUnavailable", "etcdserver: leader changed"),
    )
    proxy.fail(status=0, count=1, method="GET", path=path)  # connection dropped, no answer
    proxy.fail(
        status=429,
        count=1,
        method="POST",
        path=path,
        body=status_body(429, "TooManyRequests", "storage is (re)initializing"),
    )
    change = fast(job)(connection, **kwargs)
    assert change.action == "created"
    assert proxy.injected - injected == 3
    # Created exactly once, and a rerun through the proxy agrees.
    assert fast(job)(connection, **kwargs).action == "unchanged"


@pytest.mark.parametrize("kind", KINDS)
def test_permanent_errors_are_not_retried(
    kind, kubernetes, kubernetes_core, k8s_namespace, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(kubernetes.api_server_url)
    job, kwargs, path = job_call(kind, k8s_namespace)
    connection = KubernetesConnection(api_server_url=proxy.url, token="t")
    message = 'User "system:serviceaccount:ops:magicflow" cannot create resource'
    injected = proxy.injected
    proxy.fail(
        status=403, count=5, method="POST", path=path, body=status_body(403, "Forbidden", message)
    )
    with pytest.raises(
        PermissionDeniedError, match=f"creating failed with HTTP 403: {message}"
    ) as caught:
        fast(job)(connection, **kwargs)
    assert proxy.injected - injected == 1
    assert_no_leak("".join(traceback.format_exception(caught.value)), PASSWORD)
    if kind == "namespace":
        assert read_or_none(kubernetes_core.read_namespace, kwargs["name"]) is None


def test_client_does_not_retry_on_its_own(kubernetes, k8s_namespace, fault_proxy_factory) -> None:
    # One dropped connection and no Prefect retries: the job fails, so the kubernetes
    # client (urllib3) did not retry under the hood.
    proxy = fault_proxy_factory(kubernetes.api_server_url)
    injected = proxy.injected
    proxy.fail(status=0, count=1, method="GET", path=rf"/namespaces/{k8s_namespace}$")
    connection = KubernetesConnection(api_server_url=proxy.url, token="t")
    with pytest.raises(TransientError, match="reading failed: the answer was cut short"):
        ensure_namespace.with_options(retries=0)(connection, k8s_namespace)
    assert proxy.injected - injected == 1


# --- failures go through the one error table ----------------------------------------


def test_a_tls_failure_is_invalid_input_and_not_retried(
    kubernetes, k8s_namespace, fault_proxy_factory, captured_logs
) -> None:
    # The proxy speaks plain HTTP: a TLS handshake with it fails like a wrong certificate.
    proxy = fault_proxy_factory(kubernetes.api_server_url)
    tls = KubernetesConnection(
        api_server_url=proxy.url.replace("http://", "https://"),
        token="t",
        insecure_skip_tls_verify=True,
    )
    with pytest.raises(InvalidInputError, match=r"reading failed: TLS failed"):
        fast(ensure_namespace)(tls, k8s_namespace)
    assert " - Retry " not in captured_logs.text


def test_a_truncated_answer_is_retried(kubernetes, k8s_namespace, fault_proxy_factory) -> None:
    proxy = fault_proxy_factory(kubernetes.api_server_url)
    injected = proxy.injected
    proxy.fail(count=1, method="GET", path=rf"/namespaces/{k8s_namespace}$", truncate=15)
    connection = KubernetesConnection(api_server_url=proxy.url, token="t")
    assert fast(ensure_namespace)(connection, k8s_namespace).action == "unchanged"
    assert proxy.injected - injected == 1


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(405, InvalidInputError), (410, NotFoundError), (422, InvalidInputError), (504, None)],
)
def test_statuses_are_typed_by_the_table(
    status, error_type, kubernetes, k8s_namespace, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(kubernetes.api_server_url)
    injected = proxy.injected
    body = status_body(status, "Injected", f"answered {status}")
    path = rf"/namespaces/{k8s_namespace}$"
    proxy.fail(status=status, count=5, method="GET", path=path, body=body)
    connection = KubernetesConnection(api_server_url=proxy.url, token="t")
    if error_type is None:  # transient: retried until the budget is spent (1 + 3 retries)
        with pytest.raises(TransientError, match=f"answered {status}"):
            fast(ensure_namespace)(connection, k8s_namespace)
        assert proxy.injected - injected == 4
    else:
        with pytest.raises(error_type, match=f"reading failed with HTTP {status}"):
            fast(ensure_namespace)(connection, k8s_namespace)
        assert proxy.injected - injected == 1
    proxy.clear()


# --- idempotency at the wire: a second run and a dry run send no write --------------


def test_ensure_namespace_second_run_and_dry_run_send_no_writes(recording_proxies) -> None:
    k8s_connection = recording_proxies.kubernetes()
    name = f"t-{uuid.uuid4().hex[:10]}"
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_namespace(k8s_connection, name, **kw),
        wanted={"labels": {"team": "acme"}, "annotations": {"owner": "ops"}},
        changed={"labels": {"team": "platform"}},
    )
    assert [(w.method, w.path) for w in writes] == [("POST", "/api/v1/namespaces")]


def test_ensure_resource_quota_second_run_and_dry_run_send_no_writes(
    recording_proxies, k8s_namespace
) -> None:
    k8s_connection = recording_proxies.kubernetes()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_resource_quota(k8s_connection, k8s_namespace, "default", **kw),
        # Equal quantities written another way are not a change.
        wanted={"hard": {"requests.memory": "1Gi", "pods": "10"}},
        changed={"hard": {"requests.memory": "2Gi", "pods": "10"}},
    )
    assert [w.method for w in writes] == ["POST"]
    with recording_proxies.no_writes():
        same = ensure_resource_quota(
            k8s_connection, k8s_namespace, "default", {"requests.memory": "1024Mi", "pods": "10"}
        )
    assert same.action == "unchanged"


def test_ensure_limit_range_second_run_and_dry_run_send_no_writes(
    recording_proxies, k8s_namespace
) -> None:
    k8s_connection = recording_proxies.kubernetes()
    limits = [{"type": "Container", "default": {"cpu": "500m"}, "max": {"cpu": "2"}}]
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_limit_range(k8s_connection, k8s_namespace, "defaults", **kw),
        wanted={"limits": limits},
        changed={"limits": [{"type": "Container", "max": {"cpu": "4"}}]},
    )
    assert [w.method for w in writes] == ["POST"]


def test_ensure_secret_second_run_and_dry_run_send_no_writes(
    recording_proxies, k8s_namespace
) -> None:
    k8s_connection = recording_proxies.kubernetes()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_secret(k8s_connection, k8s_namespace, "db", **kw),
        wanted={"data": {"password": SecretStr(PASSWORD)}, "labels": {"app": "acme"}},
        changed={"data": {"password": SecretStr(PASSWORD + "-rotated")}},
    )
    assert [w.method for w in writes] == ["POST"]

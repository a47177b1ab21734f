"""Vault KV v2 jobs against a real OpenBao dev server, read back with an independent hvac client."""

import json
import string
import traceback
import uuid
from typing import Any

import hvac
import pytest
from prefect import flow
from pydantic import SecretStr

from blocks import VaultConnection
from magicflow import (
    Change,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    TransientError,
)
from tasks.vault import KvSecret, ensure_generated_kv_secret, ensure_kv_secret, read_kv_secret

PASSWORD = "hunter2-" + uuid.uuid4().hex  # unique, so finding it anywhere is a leak


def fast(job: Any) -> Any:
    return job.with_options(retry_delay_seconds=0)


def stored(vault_kv: Any, path: str) -> tuple[dict[str, Any], int] | None:
    """(data, version) of the latest version, or None when the path was never written."""
    try:
        response = vault_kv.read_secret_version(path=path, raise_on_deleted_version=True)
    except hvac.exceptions.InvalidPath:
        return None
    return response["data"]["data"], response["data"]["metadata"]["version"]


def exception_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


def vault_errors(*messages: str) -> str:
    """A Vault error body."""
    return json.dumps({"errors": list(messages)})


def through_proxy(vault: VaultConnection, proxy: Any) -> VaultConnection:
    return VaultConnection(url=proxy.url, token=vault.token)


class RacingVaultConnection(VaultConnection):
    """Another writer writes the secret right after the job's first read.

    The job's own code is untouched: this block hands it a real hvac client whose
    session, after the first GET response, lets an independent client write, so the
    job's check-and-set write meets a version it did not read, on the real server.
    """

    _block_type_name = "MagicFlow Test Racing Vault Connection"

    race_path: str
    race_data: dict[str, str]

    def get_client(self) -> hvac.Client:
        client = super().get_client()
        assert self.token is not None
        other = hvac.Client(url=self.url, token=self.token.get_secret_value())
        raced: list[bool] = []

        def write_after_first_read(response: Any, *args: Any, **kwargs: Any) -> None:
            if response.request.method == "GET" and not raced:
                raced.append(True)
                other.secrets.kv.v2.create_or_update_secret(
                    path=self.race_path, secret=self.race_data
                )

        client.adapter.session.hooks["response"].append(write_after_first_read)
        return client


# --- ensure_kv_secret -------------------------------------------------------------


def test_kv_secret_created_unchanged_updated(vault, vault_kv, vault_path, captured_logs) -> None:
    data = {"username": SecretStr("app"), "password": SecretStr(PASSWORD)}
    created = ensure_kv_secret(vault, vault_path, data)
    assert (created.action, created.resource) == ("created", f"vault:kv/secret/{vault_path}")
    assert created.detail == {
        "changed_keys": ["password", "username"],
        "previous_version": 0,
        "version": 1,
    }
    assert stored(vault_kv, vault_path) == ({"username": "app", "password": PASSWORD}, 1)

    again = ensure_kv_secret(vault, vault_path, data)
    assert (again.action, again.detail) == ("unchanged", {"version": 1})
    assert stored(vault_kv, vault_path)[1] == 1  # no new version written

    rotated = PASSWORD + "-rotated"
    updated = ensure_kv_secret(vault, vault_path, {"password": SecretStr(rotated)})
    assert updated.action == "updated"
    assert updated.detail == {
        "changed_keys": ["password", "username"],
        "previous_version": 1,
        "version": 2,
    }
    assert stored(vault_kv, vault_path) == ({"password": rotated}, 2)

    for text in (created.model_dump_json(), updated.model_dump_json(), captured_logs.text):
        assert PASSWORD not in text and rotated not in text
    assert f"vault:kv/secret/{vault_path}: updated" in captured_logs.text


def test_kv_secret_dry_run_reads_but_never_writes(vault, vault_kv, vault_path) -> None:
    plan = ensure_kv_secret(vault, vault_path, {"password": SecretStr(PASSWORD)}, dry_run=True)
    assert (plan.action, plan.dry_run) == ("created", True)
    assert stored(vault_kv, vault_path) is None

    vault_kv.create_or_update_secret(path=vault_path, secret={"password": "old"})
    plan = ensure_kv_secret(vault, vault_path, {"password": SecretStr(PASSWORD)}, dry_run=True)
    assert (plan.action, plan.dry_run, plan.detail) == (
        "updated",
        True,
        {"changed_keys": ["password"], "previous_version": 1},
    )
    assert stored(vault_kv, vault_path) == ({"password": "old"}, 1)


def test_create_only_never_rotates(vault, vault_kv, vault_path) -> None:
    first = ensure_kv_secret(
        vault, vault_path, {"password": SecretStr(PASSWORD)}, policy="create_only"
    )
    assert first.action == "created"
    other = ensure_kv_secret(
        vault, vault_path, {"password": SecretStr("different")}, policy="create_only"
    )
    assert (other.action, other.detail) == ("unchanged", {"version": 1, "policy": "create_only"})
    assert stored(vault_kv, vault_path) == ({"password": PASSWORD}, 1)


def test_deleted_latest_version_is_recreated_with_cas(vault, vault_kv, vault_path) -> None:
    vault_kv.create_or_update_secret(path=vault_path, secret={"password": "old"})
    vault_kv.delete_latest_version_of_secret(path=vault_path)
    change = ensure_kv_secret(
        vault, vault_path, {"password": SecretStr(PASSWORD)}, policy="create_only"
    )
    assert (change.action, change.detail["previous_version"], change.detail["version"]) == (
        "created",
        1,
        2,
    )
    assert stored(vault_kv, vault_path) == ({"password": PASSWORD}, 2)


@pytest.mark.parametrize(
    ("path", "data", "policy"),
    [
        ("/{p}", {"password": SecretStr("x")}, "overwrite"),
        ("{p}/../b", {"password": SecretStr("x")}, "overwrite"),
        ("{p}//b", {"password": SecretStr("x")}, "overwrite"),
        ("{p} b", {"password": SecretStr("x")}, "overwrite"),
        ("{p}", {}, "overwrite"),
        ("{p}", {"password": SecretStr("")}, "overwrite"),
        ("{p}", {"password": "plain-" + PASSWORD}, "overwrite"),
        ("{p}", {"password": SecretStr("x")}, "refrain"),
    ],
)
def test_kv_secret_invalid_input_writes_nothing(
    vault, vault_kv, vault_path, path, data, policy
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        fast(ensure_kv_secret)(vault, path.format(p=vault_path), data, policy=policy)
    assert PASSWORD not in exception_text(caught.value)
    with pytest.raises(hvac.exceptions.InvalidPath):  # nothing at all under the test's prefix
        vault_kv.list_secrets(path=vault_path.rsplit("/", 1)[0])


@pytest.mark.parametrize("existed", [False, True], ids=["create-race", "update-race"])
def test_concurrent_writer_is_a_conflict_and_survives(vault, vault_kv, vault_path, existed) -> None:
    if existed:
        vault_kv.create_or_update_secret(path=vault_path, secret={"password": "v1"})
    racing = RacingVaultConnection(
        url=vault.url,
        token=vault.token,
        race_path=vault_path,
        race_data={"password": "written-by-someone-else"},
    )
    with pytest.raises(ConflictError, match="check-and-set conflict") as caught:
        fast(ensure_kv_secret)(racing, vault_path, {"password": SecretStr(PASSWORD)})
    assert PASSWORD not in exception_text(caught.value)
    # Not retried (one race, one attempt), and the other writer's data is intact.
    assert stored(vault_kv, vault_path) == (
        {"password": "written-by-someone-else"},
        2 if existed else 1,
    )


def test_wrong_mount_is_not_found(vault, vault_path) -> None:
    wrong = VaultConnection(url=vault.url, token=vault.token, kv_mount="no-such-mount")
    with pytest.raises(NotFoundError, match=r"vault:kv/no-such-mount/.*no handler for route"):
        fast(ensure_kv_secret)(wrong, vault_path, {"password": SecretStr(PASSWORD)})


def test_jobs_compose_in_a_flow_with_a_saved_block(vault, vault_kv, vault_path) -> None:
    vault.save("magicflow-test-vault", overwrite=True)

    @flow
    def database_credentials(path: str) -> list[Change]:
        generated = ensure_generated_kv_secret("magicflow-test-vault", f"{path}-admin")
        stored_password = ensure_kv_secret(
            "magicflow-test-vault", path, {"password": SecretStr(PASSWORD)}
        )
        secret = read_kv_secret("magicflow-test-vault", path)
        assert secret.data["password"].get_secret_value() == PASSWORD
        return [generated, stored_password]

    assert [c.action for c in database_credentials(vault_path)] == ["created", "created"]
    assert [c.action for c in database_credentials(vault_path)] == ["unchanged", "unchanged"]


# --- ensure_generated_kv_secret ---------------------------------------------------


def test_generated_secret_is_created_once_and_never_shown(
    vault, vault_kv, vault_path, captured_logs
) -> None:
    plan = ensure_generated_kv_secret(vault, vault_path, key="token", length=40, dry_run=True)
    assert (plan.action, plan.dry_run) == ("created", True)
    assert stored(vault_kv, vault_path) is None

    created = ensure_generated_kv_secret(vault, vault_path, key="token", length=40)
    assert (created.action, created.detail["version"]) == ("created", 1)
    data, _ = stored(vault_kv, vault_path)
    value = data["token"]
    assert len(value) == 40 and set(value) <= set(string.ascii_letters + string.digits)

    rerun = ensure_generated_kv_secret(vault, vault_path, key="token", length=40)
    assert (rerun.action, rerun.detail) == ("unchanged", {"version": 1, "policy": "create_only"})
    assert stored(vault_kv, vault_path) == ({"token": value}, 1)

    for text in (created.model_dump_json(), rerun.model_dump_json(), captured_logs.text):
        assert value not in text


def test_generated_secret_leaves_a_foreign_secret_alone(vault, vault_kv, vault_path) -> None:
    vault_kv.create_or_update_secret(path=vault_path, secret={"username": "app"})
    with pytest.raises(ConflictError, match="exists without key 'password'"):
        fast(ensure_generated_kv_secret)(vault, vault_path)
    assert stored(vault_kv, vault_path) == ({"username": "app"}, 1)


@pytest.mark.parametrize(("key", "length"), [("", 32), ("password", 8), ("password", 10_000)])
def test_generated_secret_invalid_input_writes_nothing(
    vault, vault_kv, vault_path, key, length
) -> None:
    with pytest.raises(InvalidInputError):
        fast(ensure_generated_kv_secret)(vault, vault_path, key=key, length=length)
    assert stored(vault_kv, vault_path) is None


# --- read_kv_secret ---------------------------------------------------------------


def test_read_kv_secret_returns_secret_strs(vault, vault_kv, vault_path, captured_logs) -> None:
    vault_kv.create_or_update_secret(path=vault_path, secret={"password": "old", "port": 5432})
    vault_kv.create_or_update_secret(path=vault_path, secret={"password": PASSWORD})

    latest = read_kv_secret(vault, vault_path)
    assert isinstance(latest, KvSecret)
    assert (latest.resource, latest.version) == (f"vault:kv/secret/{vault_path}", 2)
    assert latest.data["password"].get_secret_value() == PASSWORD
    assert PASSWORD not in latest.model_dump_json() and PASSWORD not in repr(latest)
    assert PASSWORD not in captured_logs.text

    first = read_kv_secret(vault, vault_path, version=1)
    assert first.version == 1 and first.created_time < latest.created_time
    assert {k: v.get_secret_value() for k, v in first.data.items()} == {
        "password": "old",
        "port": "5432",
    }
    assert read_kv_secret.persist_result is False  # its result never reaches result storage


def test_read_kv_secret_missing_or_deleted_is_not_found(vault, vault_kv, vault_path) -> None:
    with pytest.raises(NotFoundError, match=f"vault:kv/secret/{vault_path}: reading failed"):
        fast(read_kv_secret)(vault, vault_path)
    vault_kv.create_or_update_secret(path=vault_path, secret={"password": "x"})
    vault_kv.delete_latest_version_of_secret(path=vault_path)
    with pytest.raises(NotFoundError):
        fast(read_kv_secret)(vault, vault_path)
    with pytest.raises(InvalidInputError):
        fast(read_kv_secret)(vault, vault_path, version=0)


# --- transient and permanent errors, every job ------------------------------------


def job_call(kind: str) -> tuple[Any, dict[str, Any]]:
    return {
        "ensure_kv_secret": (ensure_kv_secret, {"data": {"password": SecretStr(PASSWORD)}}),
        "ensure_generated_kv_secret": (ensure_generated_kv_secret, {}),
        "read_kv_secret": (read_kv_secret, {}),
    }[kind]


KINDS = ["ensure_kv_secret", "ensure_generated_kv_secret", "read_kv_secret"]


@pytest.mark.parametrize("kind", KINDS)
def test_transient_errors_are_retried_until_success(
    kind, vault, vault_kv, vault_path, fault_proxy_factory
) -> None:
    if kind == "read_kv_secret":
        vault_kv.create_or_update_secret(path=vault_path, secret={"password": PASSWORD})
    job, kwargs = job_call(kind)
    proxy = fault_proxy_factory(vault.url)
    injected = proxy.injected  # the proxy lives for the session: count from here
    path = f"/v1/secret/data/{vault_path}"
    proxy.fail(status=503, count=1, method="GET", path=path, body=vault_errors("Vault is sealed"))
    proxy.fail(status=0, count=1, method="GET", path=path)  # connection dropped, no answer
    if kind != "read_kv_secret":
        proxy.fail(
            status=500, count=1, method="POST", path=path, body=vault_errors("internal error")
        )
    result = fast(job)(through_proxy(vault, proxy), vault_path, **kwargs)
    assert proxy.injected - injected == (2 if kind == "read_kv_secret" else 3)
    if kind == "read_kv_secret":
        assert result.version == 1
    else:
        assert result.action == "created"
        assert stored(vault_kv, vault_path)[1] == 1  # written exactly once


@pytest.mark.parametrize("kind", KINDS)
def test_permanent_errors_are_not_retried(
    kind, vault, vault_kv, vault_path, fault_proxy_factory
) -> None:
    job, kwargs = job_call(kind)
    proxy = fault_proxy_factory(vault.url)
    injected = proxy.injected
    proxy.fail(
        status=403,
        count=5,
        path=f"/v1/secret/data/{vault_path}",
        body=vault_errors("1 error occurred:\n\t* permission denied\n\n"),
    )
    with pytest.raises(PermissionDeniedError, match="reading failed: 1 error occurred") as caught:
        fast(job)(through_proxy(vault, proxy), vault_path, **kwargs)
    assert proxy.injected - injected == 1
    assert PASSWORD not in exception_text(caught.value)
    assert stored(vault_kv, vault_path) is None


def test_a_bad_token_is_permission_denied(vault, vault_path) -> None:
    bad = VaultConnection(url=vault.url, token="not-a-token")
    with pytest.raises(PermissionDeniedError, match="permission denied"):
        fast(ensure_kv_secret)(bad, vault_path, {"password": SecretStr(PASSWORD)})


def test_an_unreachable_server_is_transient(vault_path) -> None:
    from tests.backends import free_port

    nowhere = VaultConnection(url=f"http://127.0.0.1:{free_port()}", token="t", timeout_seconds=2)
    with pytest.raises(TransientError, match="unreachable"):
        ensure_kv_secret.with_options(retries=0)(
            nowhere, vault_path, {"password": SecretStr(PASSWORD)}
        )


# --- failures go through the one error table ----------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(405, InvalidInputError), (409, ConflictError), (413, InvalidInputError)],
)
def test_statuses_hvac_does_not_name_are_typed_by_the_table_and_not_retried(
    status, error_type, vault, vault_kv, vault_path, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(vault.url)
    injected = proxy.injected
    proxy.fail(
        status=status,
        count=5,
        method="POST",
        path=f"/v1/secret/data/{vault_path}",
        body=vault_errors(f"refused with {status}"),
    )
    with pytest.raises(error_type, match=f"refused with {status}"):
        fast(ensure_kv_secret)(through_proxy(vault, proxy), vault_path, {"k": SecretStr(PASSWORD)})
    assert proxy.injected - injected == 1
    assert stored(vault_kv, vault_path) is None


def test_not_replicated_yet_412_is_retried(
    vault, vault_kv, vault_path, fault_proxy_factory
) -> None:
    proxy = fault_proxy_factory(vault.url)
    injected = proxy.injected
    path = f"/v1/secret/data/{vault_path}"
    proxy.fail(status=412, count=1, method="GET", path=path, body=vault_errors("retry later"))
    change = fast(ensure_kv_secret)(through_proxy(vault, proxy), vault_path, {"k": SecretStr("v")})
    assert change.action == "created"
    assert proxy.injected - injected == 1
    assert stored(vault_kv, vault_path) == ({"k": "v"}, 1)


def test_a_truncated_answer_is_retried(vault, vault_kv, vault_path, fault_proxy_factory) -> None:
    vault_kv.create_or_update_secret(path=vault_path, secret={"k": "v"})
    proxy = fault_proxy_factory(vault.url)
    injected = proxy.injected
    proxy.fail(count=1, method="GET", path=f"/v1/secret/data/{vault_path}", truncate=20)
    change = fast(ensure_kv_secret)(through_proxy(vault, proxy), vault_path, {"k": SecretStr("v")})
    assert change.action == "unchanged"
    assert proxy.injected - injected == 1


def test_a_tls_failure_is_invalid_input_and_not_retried(
    vault, vault_path, fault_proxy_factory, captured_logs
) -> None:
    proxy = fault_proxy_factory(vault.url)
    tls = VaultConnection(url=proxy.url.replace("http://", "https://"), token=vault.token)
    with pytest.raises(InvalidInputError, match=r"TLS failed .*\(SSLError\)"):
        fast(ensure_kv_secret)(tls, vault_path, {"k": SecretStr("v")})
    assert " - Retry " not in captured_logs.text


# --- idempotency at the wire: a second run and a dry run send no write ----------------


def test_ensure_kv_secret_second_run_and_dry_run_send_no_writes(
    recording_proxies, vault_path
) -> None:
    vault = recording_proxies.vault()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_kv_secret(vault, vault_path, **kw),
        wanted={"data": {"password": SecretStr(PASSWORD)}},
        changed={"data": {"password": SecretStr(PASSWORD + "-rotated")}},
    )
    assert [(w.method, w.path) for w in writes] == [("POST", f"/v1/secret/data/{vault_path}")]


def test_ensure_generated_kv_secret_second_run_and_dry_run_send_no_writes(
    recording_proxies, vault_kv, vault_path
) -> None:
    vault = recording_proxies.vault()
    writes = recording_proxies.assert_idempotent_at_the_wire(
        lambda **kw: ensure_generated_kv_secret(vault, vault_path, **kw),
        wanted={"key": "password"},
    )
    assert [w.method for w in writes] == ["POST"]
    assert stored(vault_kv, vault_path)[1] == 1  # generated once, never rotated

"""The job decorator's retry rule, run for real by Prefect."""

import pytest

from magicflow import Change, ConflictError, TransientError, job, report


def make_flaky_job(error: Exception, failures: int):
    calls: list[int] = []

    @job(retries=3)
    def flaky(dry_run: bool = False) -> Change:
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return report(Change(resource="demo:thing/x", action="unchanged", dry_run=dry_run))

    return flaky.with_options(retry_delay_seconds=0), calls


def test_transient_error_is_retried_until_success(captured_logs) -> None:
    flaky, calls = make_flaky_job(TransientError("demo:thing/x", "503 from upstream"), failures=2)
    change = flaky()
    assert change.action == "unchanged"
    assert len(calls) == 3
    assert "demo:thing/x: unchanged" in captured_logs.text


def test_permanent_error_is_not_retried() -> None:
    flaky, calls = make_flaky_job(ConflictError("demo:thing/x", "version moved"), failures=5)
    with pytest.raises(ConflictError, match="demo:thing/x: version moved"):
        flaky()
    assert len(calls) == 1


def test_untyped_error_is_not_retried() -> None:
    flaky, calls = make_flaky_job(KeyError("bug"), failures=5)
    with pytest.raises(KeyError):
        flaky()
    assert len(calls) == 1


def test_transient_error_gives_up_after_the_retry_budget() -> None:
    flaky, calls = make_flaky_job(TransientError("demo:thing/x", "timeout"), failures=10)
    with pytest.raises(TransientError):
        flaky()
    assert len(calls) == 4


def test_jobs_are_never_served_from_cache_even_when_only_a_secret_changed() -> None:
    from prefect import flow
    from pydantic import SecretStr

    seen: list[str] = []

    @job
    def write_secret(value: SecretStr, dry_run: bool = False) -> Change:
        seen.append(value.get_secret_value())
        return Change(resource="demo:secret/x", action="updated")

    @flow(persist_result=True)
    def rotate() -> None:
        write_secret(SecretStr("old"))
        write_secret(SecretStr("new"))
        write_secret(SecretStr("new"))

    rotate()
    assert seen == ["old", "new", "new"]


def test_a_missing_block_name_is_a_typed_error_saying_how_to_create_it() -> None:
    from blocks import VaultConnection
    from magicflow import NotFoundError, connection

    with pytest.raises(NotFoundError) as raised:
        connection("no-such-vault", VaultConnection)
    message = str(raised.value)
    assert message.startswith("block:magicflow-vault-connection/no-such-vault: ")
    assert "VaultConnection(...).save('no-such-vault')" in message
    assert "Prefect UI under Blocks" in message


def test_the_name_of_a_block_of_another_type_is_invalid_input_naming_it() -> None:
    from blocks import GitLabConnection, VaultConnection
    from magicflow import InvalidInputError, connection

    GitLabConnection(url="https://gitlab.example.com", token="glpat-x").save(
        "shared-name", overwrite=True
    )
    with pytest.raises(InvalidInputError) as raised:
        connection("shared-name", VaultConnection)
    assert str(raised.value) == (
        "block:magicflow-vault-connection/shared-name: 'shared-name' is a saved "
        "magicflow-gitlab-connection block, not a VaultConnection; pass the name of a "
        "VaultConnection block"
    )
    with pytest.raises(InvalidInputError, match="expected a VaultConnection"):
        connection(GitLabConnection.load("shared-name"), VaultConnection)
    with pytest.raises(InvalidInputError, match="is empty"):
        connection(" ", VaultConnection)


def test_a_job_given_a_missing_block_fails_at_once_with_the_typed_error(captured_logs) -> None:
    from pydantic import SecretStr

    from magicflow import NotFoundError
    from tasks import ensure_kv_secret

    with pytest.raises(NotFoundError, match="no VaultConnection block is saved as 'nowhere'"):
        ensure_kv_secret.with_options(retry_delay_seconds=0)(
            "nowhere", "a/b", {"k": SecretStr("v")}
        )
    assert " - Retry " not in captured_logs.text


def test_a_job_called_directly_is_named_after_its_resource_not_at_random() -> None:
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    @job
    def ensure_demo_bucket(connection: str, bucket: str, dry_run: bool = False) -> Change:
        return Change(resource=f"demo:bucket/{bucket}", action="unchanged", dry_run=dry_run)

    ensure_demo_bucket("aws", "acme-data-7f3", dry_run=True)
    ensure_demo_bucket("aws", "acme-data-7f3")
    with get_client(sync_client=True) as client:
        names = [
            run.name
            for run in client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    name=TaskRunFilterName(like_="ensure_demo_bucket: acme-data-7f3")
                )
            )
        ]
    assert sorted(names) == [
        "ensure_demo_bucket: acme-data-7f3",
        "ensure_demo_bucket: acme-data-7f3 (dry run)",
    ]


def test_a_flow_run_reads_a_block_once_and_the_next_run_reads_it_again(monkeypatch) -> None:
    from prefect import flow, task

    import magicflow.jobs
    from blocks import VaultConnection
    from magicflow import connection

    VaultConnection(url="http://127.0.0.1:1", token="t").save("reused-vault", overwrite=True)
    loaded: list[VaultConnection] = []

    @task
    def load_by_name() -> str:
        loaded.append(connection("reused-vault", VaultConnection))
        return loaded[-1].url

    @flow
    def three_jobs_and_an_edit() -> list[str]:
        urls = [load_by_name(), load_by_name()]
        VaultConnection(url="http://127.0.0.1:2", token="t").save("reused-vault", overwrite=True)
        return [*urls, load_by_name()]

    # One read for the whole run (a load always builds a new object), edits included...
    assert three_jobs_and_an_edit() == ["http://127.0.0.1:1"] * 3
    assert loaded[0] is loaded[1] is loaded[2]
    # ...and the next run reads the edited block.
    assert three_jobs_and_an_edit()[0] == "http://127.0.0.1:2"
    assert loaded[3] is not loaded[2]
    # After the reuse window, a long run reads it again too.
    monkeypatch.setattr(magicflow.jobs, "BLOCK_REUSE_SECONDS", 0.0)
    loaded.clear()
    assert three_jobs_and_an_edit() == ["http://127.0.0.1:2"] * 3
    assert loaded[0] is not loaded[1]
    # Outside any flow run nothing is reused.
    assert connection("reused-vault", VaultConnection) is not connection(
        "reused-vault", VaultConnection
    )

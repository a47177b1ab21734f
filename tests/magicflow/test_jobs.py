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

"""Every exported job follows the contract's shape and is in the README's catalogue."""

import inspect
from pathlib import Path

import pytest
from prefect import Task
from prefect.cache_policies import NO_CACHE

import tasks
from magicflow import retry_on_transient

JOBS = {
    name: getattr(tasks, name) for name in tasks.__all__ if isinstance(getattr(tasks, name), Task)
}
WRITING_PREFIXES = (
    "ensure_",
    "put_",
    "commit_",
    "merge_",
    "request_",
    "rotate_",
    "delete_",
    "close_",
)
README = (Path(__file__).parents[2] / "README.md").read_text()


def test_catalogue_is_not_empty() -> None:
    assert len(JOBS) >= 20


@pytest.mark.parametrize("name", sorted(JOBS))
def test_job_is_documented_with_an_example(name: str) -> None:
    doc = inspect.getdoc(JOBS[name].fn) or ""
    for section in ("Args:", "Returns:", "Example"):
        assert section in doc, f"{name}'s docstring has no {section}"


@pytest.mark.parametrize("name", sorted(JOBS))
def test_job_uses_the_shared_retry_rule_and_is_never_cached(name: str) -> None:
    job = JOBS[name]
    assert job.retry_condition_fn is retry_on_transient
    assert job.retries >= 1
    assert job.cache_policy is NO_CACHE


@pytest.mark.parametrize("name", sorted(n for n in JOBS if n.startswith(WRITING_PREFIXES)))
def test_writing_job_supports_dry_run(name: str) -> None:
    parameter = inspect.signature(JOBS[name].fn).parameters.get("dry_run")
    assert parameter is not None and parameter.default is False


@pytest.mark.parametrize("name", sorted(JOBS))
def test_job_is_in_the_readme_catalogue(name: str) -> None:
    assert f"| `{name}` |" in README


TESTS = "\n".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))


ROTATIONS = frozenset({"rotate_generated_kv_secret"})
"""Writers that write on every call by design (an explicit rotation): no second run is
``unchanged``, so their test proves that a dry run sends no write instead."""


@pytest.mark.parametrize(
    "name", sorted(n for n in JOBS if n.startswith(WRITING_PREFIXES) and n not in ROTATIONS)
)
def test_writing_job_has_a_zero_write_test_at_the_wire(name: str) -> None:
    """Every writer job proves, by counting requests, that reruns and dry runs write nothing."""
    test = f"def test_{name}_second_run_and_dry_run_send_no_writes("
    assert test in TESTS, f"no {test}...) in tests/tasks"
    body = TESTS.split(test, 1)[1].split("\ndef ", 1)[0]
    assert "assert_idempotent_at_the_wire" in body, f"{name}'s test does not count writes"


@pytest.mark.parametrize("name", sorted(ROTATIONS))
def test_rotating_job_has_a_dry_run_zero_write_test_at_the_wire(name: str) -> None:
    test = f"def test_{name}_dry_run_sends_no_writes"
    assert test in TESTS, f"no {test}...) in tests/tasks"
    body = TESTS.split(test, 1)[1].split("\ndef ", 1)[0]
    assert "no_writes()" in body, f"{name}'s test does not count writes"

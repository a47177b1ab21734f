"""``magicflow check`` on the repository's prefect.yaml and on broken copies of it.

Each broken copy differs from the real file by one edit, and the test asserts the
exact line the check reports: the file, the deployment, the key and the problem.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deployments.check import check_prefect_yaml
from magicflow.cli import ExitCode
from tests.fixtures.kafka import PROJECT_ROOT, subprocess_env

PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"
BLOCKS_YAML = PROJECT_ROOT / "deployments" / "local-stack-blocks.yaml"
LISTENER = "deployment 'listener'"
AFTER_LISTENER_TAGS = "\n    parameters:\n      kafka: magicflow\n      #"
"""Follows the listener's tags only (the crash follower has the same tags)."""


def broken_copy(tmp_path: Path, *edits: tuple[str, str], append: str = "") -> Path:
    """prefect.yaml with each (old, new) edit applied once, and text appended."""
    text = PREFECT_YAML.read_text()
    for old, new in edits:
        assert text.count(old) == 1, f"edit target not unique in prefect.yaml: {old!r}"
        text = text.replace(old, new)
    copy = tmp_path / "prefect.yaml"
    copy.write_text(text + append)
    return copy


def problems_of(path: Path) -> list[str]:
    return [str(problem) for problem in check_prefect_yaml(path, BLOCKS_YAML).problems]


def run_check(*args: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "magicflow.cli", "check", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=cwd,
        timeout=240,
        check=False,
    )


def test_the_repository_prefect_yaml_passes_from_the_command_line() -> None:
    done = run_check()
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr
    count = len(yaml.safe_load(PREFECT_YAML.read_text())["deployments"])
    assert f"prefect.yaml: {count} deployment(s)" in done.stdout and "no problems" in done.stdout
    assert done.stderr == ""


def test_a_copy_with_no_edit_passes(tmp_path: Path) -> None:
    result = check_prefect_yaml(broken_copy(tmp_path), BLOCKS_YAML)
    assert result.problems == []
    # The listener's kafka parameter, its env's Kafka block, and the kubernetes variant's.
    assert result.deployments == len(yaml.safe_load(PREFECT_YAML.read_text())["deployments"])
    assert result.blocks >= 2


@pytest.mark.parametrize(
    ("edit", "where", "problem"),
    [
        (
            (
                # the listener's (the crash follower has the same tags)
                "    tags: [magicflow, kafka, service]" + AFTER_LISTENER_TAGS,
                "    tagz: [magicflow, kafka, service]" + AFTER_LISTENER_TAGS,
            ),
            f"{LISTENER}: tagz",
            "unknown key (did you mean 'tags'?",
        ),
        (
            ("prefect-version: 3.8.8", "prefect-versoin: 3.8.8"),
            "prefect-versoin",
            "unknown key (did you mean 'prefect-version'?",
        ),
        (
            (
                "      job_variables:\n        env: &flow-run-env",
                "      job_vars:\n        env: &flow-run-env",
            ),
            "definitions.work_pools.process.job_vars",
            "unknown key (did you mean 'job_variables'?",
        ),
        (
            (
                'PREFECT_RESULTS_PERSIST_BY_DEFAULT: "true"',
                'PREFECT_RESULT_PERSIST_BY_DEFAULT: "true"',
            ),
            f"{LISTENER}: work_pool.job_variables.env.PREFECT_RESULT_PERSIST_BY_DEFAULT",
            "unknown key (did you mean 'PREFECT_RESULTS_PERSIST_BY_DEFAULT'?",
        ),
        (
            ("        namespace: magicflow\n", "        namespaces: magicflow\n"),
            "definitions.work_pools.kubernetes.job_variables.namespaces",
            "unknown key (did you mean 'namespace'?",
        ),
        (
            ('      cron: "0 7 * * 1-5"', '      crontab: "0 7 * * 1-5"'),
            "definitions.schedules.weekday-mornings.crontab",
            "unknown key (did you mean 'cron'?",
        ),
        (
            ("          variable: MAGICFLOW_CHECKOUT", "          varible: MAGICFLOW_CHECKOUT"),
            "definitions.pull.checkout[0].deployments.steps.use_checkout.varible",
            "unknown key (did you mean 'variable'?",
        ),
    ],
    ids=[
        "deployment",
        "top-level",
        "work-pool",
        "prefect-setting",
        "job-variable",
        "schedule",
        "step-argument",
    ],
)
def test_a_typod_key_anywhere_is_an_error_naming_it(
    tmp_path: Path, edit: tuple[str, str], where: str, problem: str
) -> None:
    problems = problems_of(broken_copy(tmp_path, edit))
    expected = f"{tmp_path / 'prefect.yaml'}: {where}: {problem}"
    assert any(line.startswith(expected) for line in problems), problems


def listener_with(tmp_path: Path, lines: str) -> Path:
    """A copy whose listener deployment gets extra keys (indented YAML lines)."""
    return broken_copy(
        tmp_path,
        (
            "    concurrency_limit:\n      limit: 4",
            f"{lines}    concurrency_limit:\n      limit: 4",
        ),
    )


def test_a_bad_cron_is_an_error(tmp_path: Path) -> None:
    copy = listener_with(
        tmp_path, '    schedules:\n      - cron: "61 * * * *"\n        timezone: Europe/London\n'
    )
    assert problems_of(copy) == [
        f'{copy}: {LISTENER}: schedules[0].cron: Value error, Invalid cron string: "61 * * * *"'
    ]


def test_an_unknown_timezone_is_an_error(tmp_path: Path) -> None:
    copy = listener_with(
        tmp_path, '    schedules:\n      - cron: "0 2 * * *"\n        timezone: Europe/Atlantis\n'
    )
    (problem,) = problems_of(copy)
    assert problem.startswith(f"{copy}: {LISTENER}: schedules[0].timezone: ")
    assert 'Invalid timezone: "Europe/Atlantis"' in problem


def test_a_schedule_without_timezone_and_a_bad_rrule_are_errors(tmp_path: Path) -> None:
    copy = listener_with(
        tmp_path,
        '    schedules:\n      - interval: 3600\n      - rrule: "FREQ=SOMETIMES"\n'
        "        timezone: UTC\n",
    )
    assert problems_of(copy) == [
        f"{copy}: {LISTENER}: schedules[0].timezone: missing: name the timezone "
        "(e.g. Europe/London), or UTC",
        f"{copy}: {LISTENER}: schedules[1].rrule: Value error, Invalid RRule string "
        "\"FREQ=SOMETIMES\": invalid 'FREQ': SOMETIMES",
    ]


def test_a_missing_entrypoint_is_an_error(tmp_path: Path) -> None:
    typo = broken_copy(
        tmp_path,
        (
            "entrypoint: flows.kafka_trigger.kafka_trigger",
            "entrypoint: flows.kafka_trigger.kafka_triger",
        ),
    )
    assert problems_of(typo) == [
        f"{typo}: {LISTENER}: entrypoint: 'flows.kafka_trigger.kafka_triger' does not load: "
        "MissingFlowError: Flow function with name 'kafka_triger' not found in "
        "'flows.kafka_trigger'."
    ]
    absent = broken_copy(tmp_path, ("    entrypoint: flows.kafka_trigger.kafka_trigger\n", ""))
    assert f"{absent}: {LISTENER}: entrypoint: missing (module.flow_function)" in problems_of(
        absent
    )


def test_an_entrypoint_that_is_not_a_flow_is_an_error(tmp_path: Path) -> None:
    copy = broken_copy(
        tmp_path,
        (
            "entrypoint: flows.kafka_trigger.kafka_trigger",
            "entrypoint: flows.kafka_trigger.load_registry",
        ),
    )
    (problem, *_) = problems_of(copy)
    assert problem.startswith(
        f"{copy}: {LISTENER}: entrypoint: 'flows.kafka_trigger.load_registry'"
    )
    assert "is not a flow" in problem


def test_an_invalid_or_unknown_default_parameter_is_an_error(tmp_path: Path) -> None:
    copy = broken_copy(
        tmp_path,
        ("      max_in_flight: 16\n", "      max_in_flight: sixteen\n      max_inflight: 3\n"),
    )
    assert problems_of(copy) == [
        f"{copy}: {LISTENER}: parameters.max_in_flight: Input should be a valid integer, "
        "unable to parse string as an integer",
        f"{copy}: {LISTENER}: parameters.max_inflight: Extra inputs are not permitted",
    ]


def test_an_unknown_work_pool_is_an_error(tmp_path: Path) -> None:
    copy = listener_with(tmp_path, "    work_pool:\n      name: magicflw\n")
    assert problems_of(copy) == [
        f"{copy}: {LISTENER}: work_pool.name: work pool 'magicflw' is not declared in "
        "definitions.work_pools (declared: magicflow, magicflow-kubernetes)"
    ]


def test_a_registered_workflow_without_a_deployment_is_an_error(tmp_path: Path) -> None:
    team_registry = (
        "registry: flows.registry:default_registry",
        "registry: tests.deployments.check_registry:registry",
    )
    copy = broken_copy(tmp_path, team_registry)
    assert problems_of(copy) == [
        f"{copy}: deployments: registered workflow 'audit-report' "
        "(tests.deployments.check_registry:registry) has no deployment; add `- <<: *workflow` "
        "with name: audit-report and entrypoint: module.flow"
    ]
    deployed = broken_copy(
        tmp_path,
        team_registry,
        append="  - <<: *workflow\n    name: audit-report\n"
        "    entrypoint: tests.deployments.check_registry.audit_report\n",
    )
    assert problems_of(deployed) == []


def test_a_deployment_of_the_wrong_flow_for_its_workflow_is_an_error(tmp_path: Path) -> None:
    copy = broken_copy(
        tmp_path,
        (
            "registry: flows.registry:default_registry",
            "registry: tests.deployments.check_registry:registry",
        ),
        append="  - <<: *workflow\n    name: audit-report\n"
        "    entrypoint: flows.kafka_trigger.kafka_trigger\n",
    )
    assert problems_of(copy) == [
        f"{copy}: deployment 'audit-report': entrypoint: runs flow 'kafka-trigger', but "
        "registered workflow 'audit-report' starts 'audit-report/audit-report'"
    ]


def test_a_block_missing_from_the_blocks_configuration_is_an_error(tmp_path: Path) -> None:
    copy = broken_copy(
        tmp_path, ("      kafka: magicflow\n      #", "      kafka: magicflw\n      #")
    )
    assert problems_of(copy) == [
        f"{copy}: {LISTENER}: parameters kafka: block 'magicflw' (KafkaConnection) is not in "
        f"{BLOCKS_YAML}; add it there (magicflow blocks apply creates it)"
    ]


def test_prefect_settings_in_the_flow_run_env_must_validate(tmp_path: Path) -> None:
    copy = broken_copy(
        tmp_path,
        ('PREFECT_FLOWS_HEARTBEAT_FREQUENCY: "30"', 'PREFECT_FLOWS_HEARTBEAT_FREQUENCY: "10"'),
        ('PREFECT_FLOWS_DEFAULT_RETRIES: "0"', 'PREFECT_FLOWS_DEFAULT_RETRIES: "none"'),
    )
    problems = problems_of(copy)
    env = "work_pool.job_variables.env"
    assert (
        f"{copy}: {LISTENER}: {env}.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: "
        "Input should be greater than or equal to 30" in problems
    )
    assert any(
        line.startswith(
            f"{copy}: {LISTENER}: {env}.PREFECT_FLOWS_DEFAULT_RETRIES: "
            "Input should be a valid integer"
        )
        for line in problems
    ), problems


def test_the_heartbeat_the_zombie_automation_needs_is_required(tmp_path: Path) -> None:
    copy = broken_copy(tmp_path, ('          PREFECT_FLOWS_HEARTBEAT_FREQUENCY: "30"\n', ""))
    problem = (
        "work_pool.job_variables.env.PREFECT_FLOWS_HEARTBEAT_FREQUENCY: "
        "missing: the zombie automation expects a heartbeat every 30 s (Prefect's default is "
        "180 s, so longer runs would be marked crashed)"
    )
    problems = problems_of(copy)
    # Every deployment shares the work pool's env: each one is reported.
    assert f"{copy}: {LISTENER}: {problem}" in problems
    assert all(line.endswith(f": {problem}") for line in problems), problems


def test_a_template_naming_no_step_and_a_step_that_does_not_import_are_errors(
    tmp_path: Path,
) -> None:
    copy = broken_copy(
        tmp_path,
        (
            '      version: "{{ magicflow-version.version }}"\n      tags',
            '      version: "{{ magicflow-versoin.version }}"\n      tags',
        ),
        ("deployments.steps.use_checkout:", "deployments.steps.use_chekout:"),
    )
    template = (
        "template {{ magicflow-versoin.version }} names no build or push step id "
        "(ids: magicflow-version)"
    )
    problems = problems_of(copy)
    assert problems[0] == (
        f"{copy}: definitions.pull.checkout[0]: step 'deployments.steps.use_chekout' does not "
        "import: AttributeError"
    )
    # The version template is in the defaults every deployment shares.
    assert f"{copy}: {LISTENER}: {template}" in problems[1:]
    assert all(line.endswith(f": {template}") for line in problems[1:]), problems


def test_a_bad_concurrency_limit_is_an_error(tmp_path: Path) -> None:
    copy = broken_copy(
        tmp_path,
        (
            "      limit: 4\n      collision_strategy: CANCEL_NEW",
            "      limit: 4\n      collision_strategy: QUEUE",
        ),
    )
    assert problems_of(copy) == [
        f"{copy}: {LISTENER}: concurrency_limit.collision_strategy: 'QUEUE' is not one of "
        "ENQUEUE, CANCEL_NEW"
    ]


def test_a_pinned_prefect_version_other_than_the_installed_one_is_an_error(tmp_path: Path) -> None:
    import prefect

    copy = broken_copy(tmp_path, ("prefect-version: 3.8.8", "prefect-version: 3.9.0"))
    assert problems_of(copy) == [
        f"{copy}: prefect-version: is '3.9.0' but Prefect {prefect.__version__} is installed; "
        "pin the version the project installs (constraints.txt)"
    ]


def test_bad_files_give_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    blocks = ("--blocks", str(BLOCKS_YAML))
    malformed = tmp_path / "malformed" / "prefect.yaml"
    malformed.parent.mkdir()
    malformed.write_text("name: magicflow\ndeployments:\n  - name: [listener\n")
    done = run_check("--file", str(malformed), *blocks)
    assert done.returncode == ExitCode.NOT_CONFIGURED
    assert done.stderr.splitlines() == [
        f"magicflow: error: {malformed}: line 4, column 1: not valid YAML: while parsing a "
        "flow sequence expected ',' or ']', but got '<stream end>'"
    ]

    twice = broken_copy(
        tmp_path,
        append="  - <<: *workflow\n    name: listener\n"
        "    entrypoint: flows.kafka_trigger.kafka_trigger\n",
    )
    done = run_check("--file", str(twice), *blocks)
    assert done.returncode == ExitCode.NOT_CONFIGURED
    last = len(yaml.safe_load(PREFECT_YAML.read_text())["deployments"])
    assert done.stderr.splitlines() == [
        f"magicflow: error: {twice}: deployment 'listener': name: is used twice "
        f"(deployments[0] and [{last}])"
    ]
    assert "Traceback" not in done.stdout + done.stderr

    repeated = broken_copy(
        tmp_path,
        (
            "    tags: [magicflow, kafka, service]" + AFTER_LISTENER_TAGS,
            "    tags: [a]\n    tags: [b]" + AFTER_LISTENER_TAGS,
        ),
    )
    done = run_check("--file", str(repeated), *blocks)
    assert done.returncode == ExitCode.NOT_CONFIGURED
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"magicflow: error: {repeated}: line ")
    assert "key 'tags' appears twice in one mapping" in line

    missing = run_check("--file", str(tmp_path / "nowhere.yaml"), *blocks)
    assert missing.returncode == ExitCode.NOT_CONFIGURED
    assert missing.stderr.splitlines() == [
        f"magicflow: error: {tmp_path / 'nowhere.yaml'}: no such file"
    ]

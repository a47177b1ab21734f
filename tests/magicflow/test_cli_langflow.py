"""``magicflow langflow`` run as a subprocess against the LangFlow fake and the Prefect server.

Each schedule is read back with an independent Prefect client; every bad input must
give one line, a non-zero exit code, no traceback, and never the API key.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prefect import get_client
from prefect.client.orchestration import SyncPrefectClient

from blocks import LangflowConnection
from deployments.langflow import read_langflow_deployments
from flows.langflow import run_langflow
from magicflow.cli import ExitCode
from tests.backends import free_port
from tests.fixtures.kafka import PROJECT_ROOT, subprocess_env
from tests.fixtures.langflow import LANGFLOW_TEST_KEY, LangflowApi, chat_graph

# Every command is a fresh interpreter importing Prefect and the job modules: about 5 s
# of CPU each, several times that on a shared, loaded machine.
pytestmark = pytest.mark.timeout(900)


def magicflow(*args: str, url: str, key: str = LANGFLOW_TEST_KEY) -> tuple[int, str]:
    environment = {
        **subprocess_env(),
        "LANGFLOW_API_URL": url,
        "LANGFLOW_API_KEY": key,
        "MAGICFLOW_LANGFLOW_BLOCK": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "magicflow.cli", "langflow", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=PROJECT_ROOT,
        timeout=240,
        check=False,
    )
    output = done.stdout + done.stderr
    assert key not in output
    return done.returncode, output


def assert_one_line_error(output: str, *words: str) -> None:
    lines = output.strip().splitlines()
    assert "Traceback" not in output, output
    assert len(lines) == 1 and lines[0].startswith("magicflow: error: "), output
    for word in words:
        assert word in lines[0], output


@pytest.fixture
def prefect() -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as client:
        for deployment in read_langflow_deployments(client):
            client.delete_deployment(deployment.id)
        yield client


def test_flows_list_show_and_sync(
    langflow_api: LangflowApi,
    langflow_server: str,
    prefect: SyncPrefectClient,
    work_pool: str,
) -> None:
    echo = langflow_api.create_flow("Echo", chat_graph())
    langflow_api.create_flow("Broken", {"nodes": chat_graph()["nodes"][:1], "edges": []})
    url = langflow_server

    code, output = magicflow("flows", "list", url=url)
    assert code == 0, output
    lines = output.splitlines()
    assert any(line.startswith("Echo ") and line.endswith(" ok") for line in lines), output
    assert any(line.startswith("Broken ") and "no-output" in line for line in lines), output

    code, output = magicflow("flows", "show", "Echo", url=url)
    assert code == 0 and "run order:   ChatInput-x1 -> ChatOutput-x2" in output, output

    code, output = magicflow("flows", "sync", "--work-pool", work_pool, url=url)
    assert code == 0, output
    assert "prefect:deployment/run-langflow/Echo  created" in output, output
    assert "langflow:flow/Broken" in output and "skipped" in output
    (deployment,) = read_langflow_deployments(prefect)
    assert deployment.parameters["flow"] == echo["id"] and deployment.work_pool_name == work_pool


def test_schedules_round_trip_through_the_prefect_api(
    langflow_api: LangflowApi,
    langflow_server: str,
    prefect: SyncPrefectClient,
    work_pool: str,
) -> None:
    echo = langflow_api.create_flow("Echo", chat_graph())
    url = langflow_server
    tweaks = {"Chat Output": {"prefix": "> "}}
    # No sync first: creating a schedule deploys the flow itself.
    code, output = magicflow(
        "schedules",
        "create",
        "Echo",
        "--cron",
        "0 7 * * 1-5",
        "--timezone",
        "Europe/Paris",
        "--input",
        "good morning",
        "--tweaks",
        json.dumps(tweaks),
        "--work-pool",
        work_pool,
        url=url,
    )
    assert code == 0, output
    cron_id = output.split()[1].rstrip(":")
    code, output = magicflow("schedules", "create", echo["id"], "--interval", "30m", url=url)
    assert code == 0 and "every 0:30:00 (UTC)" in output, output
    interval_id = output.split()[1].rstrip(":")

    (deployment,) = read_langflow_deployments(prefect)
    assert deployment.name == "Echo" and deployment.parameters["flow"] == echo["id"]
    schedules = {str(s.id): s for s in prefect.read_deployment_schedules(deployment.id)}
    assert set(schedules) == {cron_id, interval_id}
    cron = schedules[cron_id].schedule
    assert (cron.cron, cron.timezone) == ("0 7 * * 1-5", "Europe/Paris")  # type: ignore[union-attr]
    assert schedules[cron_id].parameters == {"input_value": "good morning", "tweaks": tweaks}
    interval = schedules[interval_id].schedule
    assert interval.interval.total_seconds() == 1800  # type: ignore[union-attr]

    code, output = magicflow("schedules", "list", url=url)
    assert code == 0 and cron_id in output and interval_id in output, output
    assert "cron 0 7 * * 1-5" in output and "good morning" in output
    code, output = magicflow("schedules", "delete", interval_id, url=url)
    assert code == 0, output
    assert [str(s.id) for s in prefect.read_deployment_schedules(deployment.id)] == [cron_id]


def test_runs_list_output_and_logs(
    langflow_api: LangflowApi, langflow_server: str, langflow: LangflowConnection
) -> None:
    langflow_api.create_flow("Echo", chat_graph(output_prefix="echo: "))
    url = langflow_server
    block = f"langflow-{uuid.uuid4().hex[:8]}"
    langflow.save(block, overwrite=True)
    state = run_langflow("Echo", input_value="hi there", langflow=block, return_state=True)
    run_id = str(state.state_details.flow_run_id)

    code, output = magicflow("runs", "list", "--flow", "Echo", url=url)
    assert code == 0 and run_id in output and "Completed" in output, output
    code, output = magicflow("runs", "output", run_id, url=url)
    assert (code, output) == (0, "echo: hi there\n")
    code, output = magicflow("runs", "output", run_id, "--json", url=url)
    record = json.loads(output)
    assert (record["input"], record["output"]) == ("hi there", "echo: hi there")
    assert record["outputs"][0]["outputs"][0]["component_id"] == "ChatOutput-x2"
    code, output = magicflow("runs", "logs", run_id, url=url)
    assert code == 0 and "ran in" in output and "Finished in state Completed" in output, output


def test_bad_input_is_one_clear_line_with_its_exit_code(
    langflow_api: LangflowApi, langflow_server: str, prefect: SyncPrefectClient
) -> None:
    langflow_api.create_flow("Echo", chat_graph())
    url = langflow_server
    wrong_key = "sk-wrong-" + uuid.uuid4().hex
    nowhere = f"http://127.0.0.1:{free_port()}"
    cron = ("schedules", "create", "Echo", "--cron", "0 7 * * *")
    cases = [
        # (arguments, url, key, exit code, words the one line must hold)
        (("flows", "list"), url, wrong_key, ExitCode.NOT_CONFIGURED, ("403", "LANGFLOW_API_KEY")),
        (("flows", "show", "Nope"), url, None, ExitCode.USAGE, ("langflow:flow/Nope", "'Echo'")),
        (
            ("flows", "list"),
            nowhere,
            None,
            ExitCode.UNREACHABLE,
            ("unreachable", "LANGFLOW_API_URL"),
        ),
        (
            ("schedules", "create", "Echo", "--cron", "every day"),
            url,
            None,
            ExitCode.USAGE,
            ("schedule:cron", "every day", "--cron"),
        ),
        (
            (*cron, "--timezone", "Mars/Base"),
            url,
            None,
            ExitCode.USAGE,
            ("schedule:timezone", "Mars/Base", "--timezone"),
        ),
        (
            ("schedules", "create", "Echo", "--interval", "soon"),
            url,
            None,
            ExitCode.USAGE,
            ("schedule:interval", "soon"),
        ),
        ((*cron, "--tweaks", '{"Chat Output": 3}'), url, None, ExitCode.USAGE, ("'Chat Output'",)),
        (("runs", "output", "last-one"), url, None, ExitCode.USAGE, ("not a flow run id",)),
        (
            ("flows", "sync", "--work-pool", "no-such-pool"),
            url,
            None,
            ExitCode.NOT_CONFIGURED,
            ("prefect:work-pool/no-such-pool", "prefect work-pool create no-such-pool"),
        ),
        (("runs", "output", str(uuid.uuid4())), url, None, ExitCode.USAGE, ("no flow run",)),
    ]
    # Independent commands: run them side by side (each one starts Python and Prefect).
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(
            pool.map(
                lambda case: magicflow(*case[0], url=case[1], key=case[2] or LANGFLOW_TEST_KEY),
                cases,
            )
        )
    for (arguments, _, _, exit_code, words), (code, output) in zip(cases, results, strict=True):
        assert code == exit_code, (arguments, output)
        assert_one_line_error(output, *words)
    assert wrong_key not in "".join(output for _, output in results)
    assert read_langflow_deployments(prefect) == []  # nothing was created by any of these


def test_the_command_line_loads_no_client_library_until_a_command_runs() -> None:
    probe = (
        "import sys; from magicflow.cli import build_parser; build_parser(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'prefect', 'httpx', 'tasks', 'flows', 'deployments', 'blocks'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "[]"

"""``import magicflow`` and ``import tasks`` stay light: no SDK loads until something needs it."""

import json
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CLOUD_SDKS = ("boto3", "botocore", "google", "hvac", "gitlab", "kubernetes", "kubernetes_asyncio",
              "prefect_aws", "prefect_gcp", "aiokafka")  # fmt: skip


def modules_after(code: str) -> set[str]:
    """The top-level packages loaded by a fresh interpreter that runs `code`."""
    report = "import json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    script = f"{code}\n{report}"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_contract_the_cli_and_blocks_import_no_cloud_sdk() -> None:
    loaded = modules_after(
        "import magicflow, magicflow.errors, magicflow.cli, blocks\n"
        "from magicflow import Action, InvalidInputError"
    )
    assert "magicflow" in loaded and "blocks" in loaded
    assert not loaded & set(CLOUD_SDKS), sorted(loaded & set(CLOUD_SDKS))


def test_a_block_loads_only_its_own_sdk() -> None:
    loaded = modules_after("from blocks import VaultConnection")
    assert "hvac" in loaded  # the check can see an SDK when one is loaded
    assert not loaded & (set(CLOUD_SDKS) - {"hvac"}), sorted(loaded & set(CLOUD_SDKS))


def test_import_tasks_loads_no_sdk_and_a_job_loads_only_its_own() -> None:
    loaded = modules_after("import tasks\nassert 'ensure_kv_secret' in tasks.__all__")
    assert "tasks" in loaded
    assert not loaded & {"prefect", *CLOUD_SDKS}, sorted(loaded & {"prefect", *CLOUD_SDKS})
    loaded = modules_after("from tasks import ensure_kv_secret")
    assert "hvac" in loaded and "prefect" in loaded  # the check sees what a job loads
    assert not loaded & (set(CLOUD_SDKS) - {"hvac"}), sorted(loaded & set(CLOUD_SDKS))


def test_magicflow_help_answers_without_loading_prefect() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "magicflow.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
        check=True,
    )
    assert "usage:" in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
    assert not imported & {"prefect", *CLOUD_SDKS}, sorted(imported & {"prefect", *CLOUD_SDKS})

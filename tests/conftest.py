"""Test configuration: a private Prefect home, and the real local backends as fixtures.

Each backend's fixtures live in ``tests/fixtures/<backend>.py``; every server is
started once per session on a free 127.0.0.1 port and stopped by PID.
"""

import os
import tempfile

# Prefect reads these when it is first imported: set them before any test module imports it.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="magicflow-prefect-home-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ["PREFECT_LOGGING_TO_API_BATCH_INTERVAL"] = "0.3"
# Jobs are also called outside flows in tests; their logs have no run to go to.
os.environ["PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"] = "ignore"
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("PREFECT_API_KEY", None)

pytest_plugins = [
    "tests.fixtures.processes",
    "tests.fixtures.prefect",
    "tests.fixtures.kafka",
    "tests.fixtures.aws",
    "tests.fixtures.gcp",
    "tests.fixtures.vault",
    "tests.fixtures.kubernetes",
    "tests.fixtures.gitlab",
    "tests.fixtures.langflow",
    "tests.fixtures.workflows",
    "tests.fixtures.recording",
    "tests.fixtures.tenants",
    "tests.fixtures.dr",
]

"""prefect.yaml stays deployable: entrypoints load and parameters fit the flows."""

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

PREFECT_YAML = yaml.safe_load((Path(__file__).parents[2] / "prefect.yaml").read_text())
DEPLOYMENTS = PREFECT_YAML["deployments"]


def test_prefect_yaml_pins_the_prefect_version_we_test() -> None:
    import prefect

    assert PREFECT_YAML["prefect-version"] == prefect.__version__


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_deployment_entrypoint_loads_and_parameters_validate(deployment: dict) -> None:
    flow = load_flow_from_entrypoint(deployment["entrypoint"], use_placeholder_flow=False)
    flow.validate_parameters(deployment.get("parameters", {}))
    assert deployment["work_pool"]["name"]
    assert deployment.get("description")

"""prefect.yaml stays deployable: entrypoints load and parameters fit the flows."""

from pathlib import Path

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint
from pydantic import ValidationError

from flows.registry import MAGICFLOW_WORKFLOWS, parameters_model_for

PREFECT_YAML = yaml.safe_load((Path(__file__).parents[2] / "prefect.yaml").read_text())
DEPLOYMENTS = PREFECT_YAML["deployments"]


def test_prefect_yaml_pins_the_prefect_version_we_test() -> None:
    import prefect

    assert PREFECT_YAML["prefect-version"] == prefect.__version__


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d["name"])
def test_deployment_entrypoint_loads_and_parameters_validate(deployment: dict) -> None:
    flow = load_flow_from_entrypoint(deployment["entrypoint"], use_placeholder_flow=False)
    parameters = deployment.get("parameters", {})
    # A parameter without a default is each run's to give (a Kafka request, the UI's
    # form): only that may be missing; everything given must fit, and nothing extra.
    try:
        parameters_model_for(flow.fn, deployment["name"]).model_validate(parameters)
    except ValidationError as error:
        problems = [e for e in error.errors(include_url=False) if e["type"] != "missing"]
        assert not problems, problems
    else:
        flow.validate_parameters(parameters)
    assert deployment["work_pool"]["name"]
    assert deployment.get("description")


def test_every_registered_workflow_has_its_deployment() -> None:
    names = {deployment["name"]: deployment["entrypoint"] for deployment in DEPLOYMENTS}
    for name, path in MAGICFLOW_WORKFLOWS.items():
        assert name in names, f"{name} is registered but not deployed in prefect.yaml"
        assert names[name].replace(":", ".") == path.replace(":", ".")

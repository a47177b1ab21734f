"""The runbooks are registered for Kafka requests, deployed by name, and loaded only on use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flows.registry import InvalidParametersError, magicflow_registry
from tests.fixtures.tenants import TenantSystems


def test_both_runbooks_are_registered_under_their_request_names() -> None:
    registry = magicflow_registry()
    assert registry.get("tenant-provisioning").deployment == "provision-tenant/tenant-provisioning"
    assert registry.get("quota-adjustment").deployment == "adjust-quota/quota-adjustment"
    assert registry.get("tenant-provisioning").accepts_dry_run
    assert registry.get("quota-adjustment").secret_parameters == frozenset()


def test_a_request_is_checked_against_the_spec_before_any_run(
    tenant_systems: TenantSystems,
) -> None:
    registered = magicflow_registry().get("tenant-provisioning")
    spec = json.loads(tenant_systems.spec(name="acme").model_dump_json(by_alias=True))
    assert registered.validate_parameters({"spec": spec}, dry_run=True) == {
        "spec": spec,
        "dry_run": True,
    }
    spec["aws"]["bucket"] = "Not_A_Bucket"
    spec["quotas"]["hard"]["pods"] = 20  # a number where a quantity string belongs
    with pytest.raises(InvalidParametersError) as rejected:
        registered.validate_parameters({"spec": spec})
    assert "spec.aws.bucket" in str(rejected.value)
    assert "spec.quotas.hard.pods: Input should be a valid string" in str(rejected.value)


def test_importing_flows_and_the_registry_loads_no_runbook_and_no_cloud_sdk() -> None:
    code = (
        "import sys, flows, flows.registry\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('boto3', 'botocore', 'google', 'hvac', 'gitlab', 'kubernetes') "
        "or m in ('flows.tenant_provisioning', 'flows.quota_adjustment', 'tasks')]\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"

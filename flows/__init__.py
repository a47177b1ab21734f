"""Workflows: Prefect flows, one module per workflow, and the registry Kafka requests use.

- `flows.tenant_provisioning`: `provision_tenant`, a tenant on every system from a
  `TenantSpec` (`flows.tenant_spec`).
- `flows.quota_adjustment`: `adjust_quota`, a tenant's quotas changed through a
  reviewed merge request.
- `flows.dr_validation`: `validate_dr_backups`, every backup's RPO and a restore test
  into scratch (targets in `flows.dr_targets`).
- `flows.dr_invocation`: `invoke_dr`, a failover plan (`flows.dr_plan`) applied after a
  second person's approval.
- `flows.reports`: `generate_report`, the operations report of a period.
- `flows.kafka_trigger`: the long-running flow that turns Kafka requests into runs;
  its parts (request checks, runs, dead letters, offsets, the loop, the crash
  follower) are the package `flows.listener`.
- `flows.crash_follower`: `follow_crashes`, the crash follower as a service of its
  own (the ``crash-follower`` deployment).
- `flows.registry`: the allow-list of workflows a request may start.

Workflows are decorated with `magicflow.workflow`, so every run publishes its status.
Names are imported on first use: the listener imports `flows.registry` and
`flows.kafka_trigger` without loading every workflow's client libraries.

Example:
    ```python
    from flows import TenantSpec, provision_tenant
    ```
"""

from typing import TYPE_CHECKING

from magicflow.lazy import lazy_exports

if TYPE_CHECKING:
    from flows.dr_invocation import invoke_dr
    from flows.dr_plan import DrPlan
    from flows.dr_validation import validate_dr_backups
    from flows.quota_adjustment import QuotaChange, adjust_quota
    from flows.reports import generate_report
    from flows.tenant_provisioning import provision_tenant
    from flows.tenant_spec import TenantSpec

_EXPORTS = {
    "DrPlan": "flows.dr_plan",
    "QuotaChange": "flows.quota_adjustment",
    "TenantSpec": "flows.tenant_spec",
    "adjust_quota": "flows.quota_adjustment",
    "generate_report": "flows.reports",
    "invoke_dr": "flows.dr_invocation",
    "provision_tenant": "flows.tenant_provisioning",
    "validate_dr_backups": "flows.dr_validation",
}

__all__ = [
    "DrPlan",
    "QuotaChange",
    "TenantSpec",
    "adjust_quota",
    "generate_report",
    "invoke_dr",
    "provision_tenant",
    "validate_dr_backups",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)

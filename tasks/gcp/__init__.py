"""GCP jobs: one module per service.

* `tasks.gcp.storage`: `ensure_gcs_bucket`, `list_gcs_object_generations`, `delete_gcs_bucket`,
  `restore_gcs_object_generation`, `verify_gcs_restore`, `delete_gcs_scratch_buckets`,
  `copy_gcs_objects`, `put_gcs_object`
* `tasks.gcp.secret_manager`: `ensure_gcp_secret`, `delete_gcp_secret`
* `tasks.gcp.cloud_quotas`: `get_gcp_quota`, `request_gcp_quota_increase`
* `tasks.gcp.session`: Google errors through the one error table, project and label rules

Every job takes a `blocks.GcpConnection` (or the name of a saved one), reads the
current state first and writes only what differs.

Example:
    ```python
    from prefect import flow
    from tasks.gcp import ensure_gcs_bucket

    @flow
    def storage_for_tenant(tenant: str):
        return ensure_gcs_bucket("gcp", f"acme-{tenant}-data", labels={"tenant": tenant})
    ```
"""

from tasks.gcp.cloud_quotas import GcpQuota, get_gcp_quota, request_gcp_quota_increase
from tasks.gcp.secret_manager import delete_gcp_secret, ensure_gcp_secret
from tasks.gcp.storage import (
    GcsObjectGeneration,
    GcsObjectGenerations,
    GcsObjectHistory,
    copy_gcs_objects,
    delete_gcs_bucket,
    delete_gcs_scratch_buckets,
    ensure_gcs_bucket,
    list_gcs_object_generations,
    put_gcs_object,
    restore_gcs_object_generation,
    verify_gcs_restore,
)

__all__ = [
    "GcpQuota",
    "GcsObjectGeneration",
    "GcsObjectGenerations",
    "GcsObjectHistory",
    "copy_gcs_objects",
    "delete_gcp_secret",
    "delete_gcs_bucket",
    "delete_gcs_scratch_buckets",
    "ensure_gcp_secret",
    "ensure_gcs_bucket",
    "get_gcp_quota",
    "list_gcs_object_generations",
    "put_gcs_object",
    "request_gcp_quota_increase",
    "restore_gcs_object_generation",
    "verify_gcs_restore",
]

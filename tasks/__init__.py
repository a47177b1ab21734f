"""Jobs: idempotent, dry-runnable Prefect tasks, one module per external system.

Every job takes its connection as a block (or a saved block's name), returns a
`magicflow.Change` (check jobs return a small result model), supports
``dry_run=True`` and raises typed `magicflow` errors. See the README's job catalogue.

Example:
    ```python
    from prefect import flow
    from tasks import ensure_namespace, ensure_resource_quota

    @flow
    def onboard(team: str):
        return [
            ensure_namespace("prod-cluster", team, labels={"team": team}),
            ensure_resource_quota("prod-cluster", team, "default", {"requests.cpu": "4"}),
        ]
    ```
"""

from tasks.aws import (
    BackupRecoveryPoint,
    EbsSnapshot,
    RdsSnapshot,
    S3ObjectVersion,
    ServiceQuota,
    delete_iam_role,
    delete_s3_bucket,
    delete_secretsmanager_secret,
    delete_ssm_parameter,
    ensure_iam_role,
    ensure_kms_key,
    ensure_s3_bucket,
    ensure_secretsmanager_secret,
    get_service_quota,
    list_backup_recovery_points,
    list_ebs_snapshots,
    list_rds_snapshots,
    list_s3_object_versions,
    put_ssm_parameter,
    request_service_quota_increase,
)
from tasks.gcp import (
    GcpQuota,
    GcsObjectGeneration,
    GcsObjectGenerations,
    GcsObjectHistory,
    delete_gcp_secret,
    delete_gcs_bucket,
    ensure_gcp_secret,
    ensure_gcs_bucket,
    get_gcp_quota,
    list_gcs_object_generations,
    request_gcp_quota_increase,
)
from tasks.gitlab import (
    MergeRequestApproval,
    RepositoryFile,
    close_merge_request,
    commit_files,
    delete_branch,
    ensure_branch,
    ensure_merge_request,
    get_merge_request_approval,
    merge_merge_request,
    read_repository_file,
    wait_for_merge_request_approval,
)
from tasks.kubernetes import (
    ResourceQuotaState,
    delete_namespace,
    delete_namespaced_object,
    ensure_limit_range,
    ensure_namespace,
    ensure_resource_quota,
    ensure_secret,
    get_resource_quota,
)
from tasks.langflow import (
    LangflowFlow,
    LangflowFlowAnalysis,
    LangflowRunResult,
    analyze_langflow_flow,
    get_langflow_flow,
    list_langflow_flows,
    run_langflow_flow,
)
from tasks.vault import (
    KvSecret,
    delete_kv_secret,
    ensure_generated_kv_secret,
    ensure_kv_secret,
    read_kv_secret,
    rotate_generated_kv_secret,
)

__all__ = [
    "BackupRecoveryPoint",
    "EbsSnapshot",
    "GcpQuota",
    "GcsObjectGeneration",
    "GcsObjectGenerations",
    "GcsObjectHistory",
    "KvSecret",
    "LangflowFlow",
    "LangflowFlowAnalysis",
    "LangflowRunResult",
    "MergeRequestApproval",
    "RdsSnapshot",
    "RepositoryFile",
    "ResourceQuotaState",
    "S3ObjectVersion",
    "ServiceQuota",
    "analyze_langflow_flow",
    "close_merge_request",
    "commit_files",
    "delete_branch",
    "delete_gcp_secret",
    "delete_gcs_bucket",
    "delete_iam_role",
    "delete_kv_secret",
    "delete_namespace",
    "delete_namespaced_object",
    "delete_s3_bucket",
    "delete_secretsmanager_secret",
    "delete_ssm_parameter",
    "ensure_branch",
    "ensure_gcp_secret",
    "ensure_gcs_bucket",
    "ensure_generated_kv_secret",
    "ensure_iam_role",
    "ensure_kms_key",
    "ensure_kv_secret",
    "ensure_limit_range",
    "ensure_merge_request",
    "ensure_namespace",
    "ensure_resource_quota",
    "ensure_s3_bucket",
    "ensure_secret",
    "ensure_secretsmanager_secret",
    "get_gcp_quota",
    "get_langflow_flow",
    "get_merge_request_approval",
    "get_resource_quota",
    "get_service_quota",
    "list_backup_recovery_points",
    "list_ebs_snapshots",
    "list_gcs_object_generations",
    "list_langflow_flows",
    "list_rds_snapshots",
    "list_s3_object_versions",
    "merge_merge_request",
    "put_ssm_parameter",
    "read_kv_secret",
    "read_repository_file",
    "request_gcp_quota_increase",
    "request_service_quota_increase",
    "rotate_generated_kv_secret",
    "run_langflow_flow",
    "wait_for_merge_request_approval",
]

"""AWS jobs: one module per service, as prefect-aws has them.

* `tasks.aws.s3`: `ensure_s3_bucket`, `list_s3_object_versions`, `delete_s3_bucket`,
  `copy_s3_objects`, `put_s3_object`; `tasks.aws.s3_restore`: `restore_s3_object_version`,
  `verify_s3_restore`, `delete_s3_scratch_buckets` (restore tests into scratch buckets)
* `tasks.aws.iam`: `ensure_iam_role`, `delete_iam_role`
* `tasks.aws.kms`: `ensure_kms_key`
* `tasks.aws.ssm`: `put_ssm_parameter`, `delete_ssm_parameter`, `repoint_ssm_parameter`
* `tasks.aws.secrets_manager`: `ensure_secretsmanager_secret`,
  `delete_secretsmanager_secret`
* `tasks.aws.service_quotas`: `get_service_quota`, `request_service_quota_increase`
* `tasks.aws.rds`, `tasks.aws.ec2`, `tasks.aws.backup`: disaster recovery: snapshots and
  recovery points, restores from them (scratch or DR), their checks and scratch cleanup
* `tasks.aws.session`: clients from the block (botocore retries off) and AWS errors
  as typed errors; `tasks.aws.inputs`: input rules and tags shared by the services.

Every job takes prefect-aws `AwsCredentials` (or a saved block's name). The block decides
where the calls go: AWS itself, or a local endpoint such as moto through
``aws_client_parameters.endpoint_url``.

Example:
    ```python
    from prefect import flow
    from blocks import AwsCredentials
    from tasks.aws import ensure_s3_bucket

    @flow
    def bucket_for_tenant(tenant: str):
        return ensure_s3_bucket(AwsCredentials.load("prod"), f"acme-{tenant}-data")
    ```
"""

from tasks.aws.backup import (
    BackupRecoveryPoint,
    check_backup_recovery_point,
    list_backup_recovery_points,
)
from tasks.aws.ec2 import (
    EbsSnapshot,
    delete_ebs_scratch_volumes,
    list_ebs_snapshots,
    restore_ebs_volume_from_snapshot,
    verify_ebs_restore,
)
from tasks.aws.iam import delete_iam_role, ensure_iam_role
from tasks.aws.kms import ensure_kms_key
from tasks.aws.rds import (
    RdsSnapshot,
    delete_rds_scratch_instances,
    list_rds_snapshots,
    restore_rds_instance_from_snapshot,
    verify_rds_restore,
)
from tasks.aws.s3 import (
    S3ObjectVersion,
    copy_s3_objects,
    delete_s3_bucket,
    ensure_s3_bucket,
    list_s3_object_versions,
    put_s3_object,
)
from tasks.aws.s3_restore import (
    delete_s3_scratch_buckets,
    restore_s3_object_version,
    verify_s3_restore,
)
from tasks.aws.secrets_manager import delete_secretsmanager_secret, ensure_secretsmanager_secret
from tasks.aws.service_quotas import (
    ServiceQuota,
    get_service_quota,
    request_service_quota_increase,
)
from tasks.aws.ssm import delete_ssm_parameter, put_ssm_parameter, repoint_ssm_parameter

__all__ = [
    "BackupRecoveryPoint",
    "EbsSnapshot",
    "RdsSnapshot",
    "S3ObjectVersion",
    "ServiceQuota",
    "check_backup_recovery_point",
    "copy_s3_objects",
    "delete_ebs_scratch_volumes",
    "delete_iam_role",
    "delete_rds_scratch_instances",
    "delete_s3_bucket",
    "delete_s3_scratch_buckets",
    "delete_secretsmanager_secret",
    "delete_ssm_parameter",
    "ensure_iam_role",
    "ensure_kms_key",
    "ensure_s3_bucket",
    "ensure_secretsmanager_secret",
    "get_service_quota",
    "list_backup_recovery_points",
    "list_ebs_snapshots",
    "list_rds_snapshots",
    "list_s3_object_versions",
    "put_s3_object",
    "put_ssm_parameter",
    "repoint_ssm_parameter",
    "request_service_quota_increase",
    "restore_ebs_volume_from_snapshot",
    "restore_rds_instance_from_snapshot",
    "restore_s3_object_version",
    "verify_ebs_restore",
    "verify_rds_restore",
    "verify_s3_restore",
]

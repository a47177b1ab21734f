"""AWS jobs: one module per service, as prefect-aws has them.

* `tasks.aws.s3`: `ensure_s3_bucket`, `list_s3_object_versions`, `delete_s3_bucket`
* `tasks.aws.iam`: `ensure_iam_role`, `delete_iam_role`
* `tasks.aws.kms`: `ensure_kms_key`
* `tasks.aws.ssm`: `put_ssm_parameter`, `delete_ssm_parameter`
* `tasks.aws.secrets_manager`: `ensure_secretsmanager_secret`,
  `delete_secretsmanager_secret`
* `tasks.aws.service_quotas`: `get_service_quota`, `request_service_quota_increase`
* `tasks.aws.rds`, `tasks.aws.ec2`, `tasks.aws.backup`: disaster-recovery reads
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

from tasks.aws.backup import BackupRecoveryPoint, list_backup_recovery_points
from tasks.aws.ec2 import EbsSnapshot, list_ebs_snapshots
from tasks.aws.iam import delete_iam_role, ensure_iam_role
from tasks.aws.kms import ensure_kms_key
from tasks.aws.rds import RdsSnapshot, list_rds_snapshots
from tasks.aws.s3 import (
    S3ObjectVersion,
    delete_s3_bucket,
    ensure_s3_bucket,
    list_s3_object_versions,
)
from tasks.aws.secrets_manager import delete_secretsmanager_secret, ensure_secretsmanager_secret
from tasks.aws.service_quotas import (
    ServiceQuota,
    get_service_quota,
    request_service_quota_increase,
)
from tasks.aws.ssm import delete_ssm_parameter, put_ssm_parameter

__all__ = [
    "BackupRecoveryPoint",
    "EbsSnapshot",
    "RdsSnapshot",
    "S3ObjectVersion",
    "ServiceQuota",
    "delete_iam_role",
    "delete_s3_bucket",
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
    "put_ssm_parameter",
    "request_service_quota_increase",
]

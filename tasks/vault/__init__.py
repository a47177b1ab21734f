"""Vault (or OpenBao) jobs: secrets in a KV version 2 engine, written with check-and-set.

Every write carries ``cas`` = the version the job read (``0`` when the secret did not
exist), so a writer that changed the secret in between is never silently overwritten:
Vault refuses the write and the job raises `ConflictError`. Values are ``SecretStr``
and never reach logs, results or errors; `Change.detail` lists changed KEYS only.

For disaster recovery: versions are listed from the metadata, restored under a
separate scratch mount for restore tests (never the source mount) and compared key
by key; a failover sets some keys of an existing secret (endpoints) and keeps the rest.

* `tasks.vault.kv_secrets`: `ensure_kv_secret`, `ensure_generated_kv_secret`,
  `read_kv_secret`, `rotate_generated_kv_secret`, `delete_kv_secret`
* `tasks.vault.disaster_recovery`: `list_kv_secret_versions`,
  `restore_kv_secret_version`, `verify_kv_restore`, `delete_kv_scratch_secrets`,
  `set_kv_secret_keys`
* `tasks.vault.session`: paths, the KV v2 client, check-and-set writes, and hvac's
  errors through the one error table.
"""

from tasks.vault.disaster_recovery import (
    KvSecretVersion,
    delete_kv_scratch_secrets,
    list_kv_secret_versions,
    restore_kv_secret_version,
    set_kv_secret_keys,
    verify_kv_restore,
)
from tasks.vault.kv_secrets import (
    KvSecret,
    WritePolicy,
    delete_kv_secret,
    ensure_generated_kv_secret,
    ensure_kv_secret,
    read_kv_secret,
    rotate_generated_kv_secret,
)

__all__ = [
    "KvSecret",
    "KvSecretVersion",
    "WritePolicy",
    "delete_kv_scratch_secrets",
    "delete_kv_secret",
    "ensure_generated_kv_secret",
    "ensure_kv_secret",
    "list_kv_secret_versions",
    "read_kv_secret",
    "restore_kv_secret_version",
    "rotate_generated_kv_secret",
    "set_kv_secret_keys",
    "verify_kv_restore",
]

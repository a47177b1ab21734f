"""``magicflow up``, ``magicflow down`` and ``magicflow status``: the local stack.

``magicflow up`` starts every server MagicFlow needs on 127.0.0.1 (a Prefect server
with its UI, Kafka, AWS, GCP, Vault, Kubernetes and GitLab stand-ins), deploys
every workflow, starts a worker and the listener, submits a sample
tenant-provisioning request over Kafka and returns once it completed, leaving the
stack running. ``magicflow down`` stops it; ``magicflow status`` shows each process.
The logic is `deployments.local_stack`; this module only parses and prints.

Example:
    ```console
    $ magicflow up
    $ magicflow status
    $ magicflow down
    ```
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from magicflow.cli import CliError, ExitCode

if TYPE_CHECKING:
    from deployments.local_stack import Stack, StackError

STATE_DIR_HELP = (
    "state folder: logs, PIDs, ports, Prefect home and database "
    "(default: $MAGICFLOW_STATE_DIR or .magicflow in the current directory)"
)
SAMPLE_TIMEOUT_SECONDS = 600.0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``magicflow up``, ``down`` and ``status`` to the command line.

    Args:
        commands: The ``magicflow`` subcommands.
    """
    up = commands.add_parser(
        "up",
        help="start the local stack, deploy every workflow and run a sample request",
        description=(
            "Start a Prefect server (UI on 127.0.0.1:4200), Kafka (Tansu), moto, "
            "fake-gcs-server, drongo, OpenBao, a Kubernetes emulator and a GitLab fake "
            "that auto-approves merge requests; save blocks for them, deploy prefect.yaml, "
            "start a process worker and the listener, then submit a sample "
            "tenant-provisioning request over Kafka and wait for it. The stack keeps "
            "running in the background: magicflow down stops it."
        ),
    )
    up.add_argument("--state-dir", type=Path, default=None, help=STATE_DIR_HELP)
    up.add_argument(
        "--prefect-port",
        type=_port,
        default=4200,
        metavar="PORT",
        help="port of the Prefect server and UI on 127.0.0.1 (default 4200)",
    )
    up.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="Prefect's database, postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB "
        "(default: SQLite in the state folder)",
    )
    up.add_argument(
        "--no-sample", action="store_true", help="start the stack without the sample request"
    )
    up.add_argument(
        "--restart",
        action="store_true",
        help="stop a stack already running from the state folder and start afresh "
        "(default: report it and reuse it)",
    )
    up.set_defaults(handler=up_command)
    down = commands.add_parser(
        "down",
        help="stop the local stack (every process magicflow up started)",
        description="Stop every process the state folder recorded, by PID; check they are gone.",
    )
    down.add_argument("--state-dir", type=Path, default=None, help=STATE_DIR_HELP)
    down.set_defaults(handler=down_command)
    status = commands.add_parser(
        "status",
        help="show each process of the local stack: PID, port, health",
        description="Show each process of the local stack with its PID, port and health.",
    )
    status.add_argument("--state-dir", type=Path, default=None, help=STATE_DIR_HELP)
    status.set_defaults(handler=status_command)


def _explain(error: StackError) -> CliError:
    codes = {
        "unreachable": ExitCode.UNREACHABLE,
        "not-running": ExitCode.NOT_CONFIGURED,
        "not-configured": ExitCode.NOT_CONFIGURED,
        "usage": ExitCode.USAGE,
    }
    return CliError(error.cause, error.fix, codes.get(error.kind, ExitCode.ENVIRONMENT))


def _state_dir(args: argparse.Namespace) -> Path:
    from deployments.local_stack import default_state_dir

    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _print_stack(stack: Stack) -> None:
    print(f"Prefect UI:   {stack.prefect_ui_url}", flush=True)
    print(f"state folder: {stack.state_dir} (logs in logs/, one per process)", flush=True)
    if stack.listener_metrics_url:
        print(f"listener:     {stack.listener_metrics_url} (health: /healthz)", flush=True)
    print(f"in a shell:   . {Path(stack.state_dir) / 'env'}   (PREFECT_API_URL and friends)")


def up_command(args: argparse.Namespace) -> int:
    """Runs ``magicflow up``.

    Args:
        args: The parsed command line.

    Returns:
        The exit code (see `magicflow.cli.ExitCode`); 1 when the sample run did not complete.
    """
    from deployments.local_stack import StackError, StackOptions, start_stack

    options = StackOptions(
        state_dir=_state_dir(args),
        prefect_port=args.prefect_port,
        database_url=args.database_url,
        sample=not args.no_sample,
        restart=args.restart,
    )
    try:
        stack, reused = start_stack(options, lambda line: print(line, flush=True))
    except StackError as error:
        raise _explain(error) from None
    if reused:
        print(f"a stack is already running from {stack.state_dir}; reusing it", flush=True)
        _print_stack(stack)
        return status_command(args)
    _print_stack(stack)
    if not options.sample:
        return int(ExitCode.OK)
    return _run_sample(stack)


def _run_sample(stack: Stack) -> int:
    from deployments.local_backends import GITOPS_PROJECT, sample_tenant_parameters
    from magicflow.cli.submit import print_status
    from magicflow.submit import submit

    request_id = f"sample-{uuid.uuid4().hex[:8]}"
    print(
        f"sample: tenant-provisioning request {request_id} over Kafka: tenant 'sample' on "
        f"Kubernetes, Vault, AWS (moto), GCP (fake-gcs-server, drongo) and GitOps "
        f"({GITOPS_PROJECT} in the GitLab fake, which auto-approves merge requests; "
        "start it without --auto-approve to approve by hand)",
        flush=True,
    )
    result = submit(
        "tenant-provisioning",
        sample_tenant_parameters(),
        kafka="magicflow",
        request_id=request_id,
        requested_by="magicflow-up",
        wait=True,
        timeout_seconds=SAMPLE_TIMEOUT_SECONDS,
        on_status=print_status,
    )
    final = result.final
    if final is None:
        raise CliError(
            f"the sample request {request_id} had no final status after "
            f"{SAMPLE_TIMEOUT_SECONDS:g}s",
            f"look at the run in the UI and at {Path(stack.state_dir) / 'logs' / 'worker.log'}",
            ExitCode.TIMED_OUT,
        )
    print(f"sample run {final.state.value}: {final.ui_url or stack.prefect_ui_url}", flush=True)
    print("the stack keeps running; magicflow down stops it", flush=True)
    return int(result.exit_code)


def down_command(args: argparse.Namespace) -> int:
    """Runs ``magicflow down``.

    Args:
        args: The parsed command line.

    Returns:
        The exit code (see `magicflow.cli.ExitCode`).
    """
    from deployments.local_stack import StackError, stop_stack

    try:
        stop_stack(_state_dir(args), lambda line: print(line, flush=True))
    except StackError as error:
        raise _explain(error) from None
    return int(ExitCode.OK)


def status_command(args: argparse.Namespace) -> int:
    """Runs ``magicflow status``: one line per process; exit 7 when one is down.

    Args:
        args: The parsed command line.

    Returns:
        The exit code (see `magicflow.cli.ExitCode`).
    """
    from deployments.local_stack import StackError, read_status

    try:
        stack, statuses, listener_state = read_status(_state_dir(args))
    except StackError as error:
        raise _explain(error) from None
    print(f"{'process':<20} {'pid':>7} {'port':>6}  {'health':<9} where", flush=True)
    for status in statuses:
        service = status.service
        health = "ok" if status.healthy else ("no answer" if status.alive else "stopped")
        where = service.url or "-"
        if service.name == "listener":
            run = stack.listener_flow_run_id or "-"
            where += f" (flow run {run}: {listener_state or 'unknown'})"
        print(
            f"{service.name:<20} {service.pid:>7} {service.port or '-':>6}  {health:<9} {where}",
            flush=True,
        )
    broken = [s.service.name for s in statuses if not s.healthy]
    if (listener_state or "Running") != "Running" and "listener" not in broken:
        broken.append("listener")
    if broken:
        raise CliError(
            f"{', '.join(broken)} of the stack in {stack.state_dir} "
            + ("do not answer" if len(broken) > 1 else "does not answer"),
            f"read {Path(stack.state_dir) / 'logs'}; magicflow up --restart starts afresh",
            ExitCode.ENVIRONMENT,
        )
    return int(ExitCode.OK)

"""Serves kmock's KubernetesEmulator on 127.0.0.1:PORT until terminated.

Run: ``python kubernetes_emulator.py --port P``. It keeps namespaced and cluster
objects in memory and answers the Kubernetes REST API with real Status bodies.
"""

import argparse
import asyncio
import signal

from kmock import KubernetesEmulator, Server
from kmock._internal import parsing

_parse_path = parsing.parse_path


def parse_path(path: str) -> parsing.ParsedPath:
    """kmock's parser, except that Namespace objects themselves are cluster-scoped.

    kmock reads ``/api/v1/namespaces/acme`` as "the namespace acme, no resource";
    the real API server reads it as the Namespace object named acme.
    """
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) in (3, 4) and parts[2] == "namespaces":
        name = parts[3] if len(parts) == 4 else None
        return parsing.ParsedPath("", parts[1], "namespaces", None, name, None)
    return _parse_path(path)


parsing.parse_path = parse_path


async def serve(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with KubernetesEmulator() as emulator, Server(emulator, host="127.0.0.1", port=port):
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()

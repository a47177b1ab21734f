"""A small flow the deploy tests add to a copy of prefect.yaml.

``tests`` is not part of the installed package; the deploy tests give the deployer
and the workers this checkout on ``PYTHONPATH`` for it, as a team would install a
package of its own.
"""

import os
from importlib import metadata

from prefect import flow


@flow(name="magicflow-deploy-probe")
def deploy_probe(marker: str) -> dict[str, str]:
    """Says where it ran: the working directory and the magicflow version it imported."""
    return {"marker": marker, "cwd": os.getcwd(), "magicflow": metadata.version("magicflow")}

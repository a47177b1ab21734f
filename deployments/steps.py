"""Deployment steps named in ``prefect.yaml``: where a worker finds MagicFlow's code.

Without a ``pull`` section, ``prefect deploy`` stores ``set_working_directory`` with
the deployer's own checkout path, and a worker on any other host (or in any other
directory) fails. MagicFlow's deployments name their code explicitly instead:

- production, `require_installed_version`: the worker runs the ``magicflow``
  package installed in its own environment (a virtualenv or an image built from
  ``constraints.txt``). Nothing is fetched at run time, and a worker whose
  installed version is not the deployed one fails the run at once, saying so,
  instead of running other code than was checked and deployed.
- local use, `use_checkout`: a worker runs the code of a checkout named in the
  worker's own environment (``MAGICFLOW_CHECKOUT``), never the deployer's path.

`installed_version` is the build step that records, at deploy time, the version the
pull step will require (``{{ magicflow-version.version }}`` in ``prefect.yaml``).

Example:
    ```yaml
    build:
      - deployments.steps.installed_version:
          id: magicflow-version
          package: magicflow
    pull:
      - deployments.steps.require_installed_version:
          package: magicflow
          version: "{{ magicflow-version.version }}"
    ```
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

from magicflow.errors import ConflictError, InvalidInputError, NotFoundError

CHECKOUT_VARIABLE = "MAGICFLOW_CHECKOUT"
"""The worker's environment variable naming the checkout `use_checkout` runs from."""


def installed_version(package: str = "magicflow") -> dict[str, str]:
    """Build step: the version of a package installed where ``prefect deploy`` runs.

    Args:
        package: The distribution name.

    Returns:
        ``{"version": "0.1.0"}``, for templating as ``{{ <step id>.version }}``.

    Raises:
        NotFoundError: The package is not installed here.

    Example:
        >>> installed_version("magicflow")["version"].count(".") >= 1
        True
    """
    try:
        return {"version": metadata.version(package)}
    except metadata.PackageNotFoundError:
        raise NotFoundError(
            f"python:{package}", "not installed where prefect deploy runs; pip install it first"
        ) from None


def require_installed_version(package: str, version: str) -> dict[str, str]:
    """Pull step: runs the installed package, and only at the version that was deployed.

    Args:
        package: The distribution name.
        version: The version the deployment was made with.

    Returns:
        ``{"version": ...}``, the version found.

    Raises:
        NotFoundError: The package is not installed in the worker's environment.
        ConflictError: Another version is installed; the run fails before any of
            its code runs, and the message says which versions and what to do.

    Example:
        ```python
        require_installed_version("magicflow", "0.1.0")  # {"version": "0.1.0"}
        ```
    """
    resource = f"python:{package}"
    try:
        found = metadata.version(package)
    except metadata.PackageNotFoundError:
        raise NotFoundError(
            resource,
            f"not installed in this worker's environment ({sys.executable}); "
            f"install {package}=={version} where the worker runs",
        ) from None
    if found != version:
        raise ConflictError(
            resource,
            f"this worker runs {package} {found} but the deployment was made with {version}; "
            f"install {package}=={version} on the worker, or redeploy from {found}",
        )
    return {"version": found}


def use_checkout(variable: str = CHECKOUT_VARIABLE) -> dict[str, str]:
    """Pull step for local use: runs the code of the checkout the worker's environment names.

    Changes into the checkout and puts it first on ``sys.path``, so module
    entrypoints (``flows.kafka_trigger.kafka_trigger``) import from it even when the
    project is not installed in the worker's environment.

    Args:
        variable: The environment variable holding the checkout's path.

    Returns:
        ``{"directory": <the checkout>}``.

    Raises:
        InvalidInputError: The variable is unset, or does not name a checkout (a
            folder holding ``prefect.yaml``).

    Example:
        ```console
        $ MAGICFLOW_CHECKOUT=~/src/magicflow prefect worker start --pool magicflow
        ```
    """
    value = os.environ.get(variable)
    if not value:
        raise InvalidInputError(
            f"env:{variable}",
            f"not set on this worker; start the worker with {variable}=<path of the checkout>",
        )
    directory = Path(value).expanduser().resolve()
    if not (directory / "prefect.yaml").is_file():
        raise InvalidInputError(
            f"env:{variable}", f"{directory} is not a MagicFlow checkout (no prefect.yaml)"
        )
    os.chdir(directory)
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    return {"directory": str(directory)}

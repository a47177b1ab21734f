"""The cheap workflow the scale-out test sends 100 requests for, and its registry.

``tests`` is not part of the installed package; the scale-out test gives its
workers and listeners this checkout on ``PYTHONPATH``, as a team would install a
package of its own.
"""

from prefect import flow

from flows.registry import Registry

SCALE_DEPLOYMENT = "scale"


@flow(name="magicflow-scale-probe")
def scale_probe(index: int) -> int:
    """Does nothing but finish: what is measured is dispatch and execution, not work."""
    return index


scale_registry = Registry()
scale_registry.register(
    "scale-probe", scale_probe, deployment=f"{scale_probe.name}/{SCALE_DEPLOYMENT}"
)

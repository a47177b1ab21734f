"""``python -m deployments.fakes.gitlab --port P [--auto-approve]``: serves the fake."""

from deployments.fakes.gitlab.server import main

main()

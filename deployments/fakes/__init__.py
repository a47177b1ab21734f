"""Loopback fakes of the systems no real server can run for locally: GitLab and Kubernetes.

They ship with the package because ``magicflow up`` starts them; the tests start the
same modules. Each runs as ``python -m deployments.fakes.<system> --port P``.
"""

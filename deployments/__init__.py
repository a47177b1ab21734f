"""Code that builds and registers MagicFlow's deployments beyond ``prefect.yaml``."""

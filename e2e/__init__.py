"""The e2e harness (a Kubernetes cluster built from upstream components) and what the e2e tests
share, as one package: imported as ``e2e.<module>`` from the repository root (the ``e2e/cluster``
command puts its checkout's root first on sys.path; pytest, through pyproject.toml's pythonpath)."""

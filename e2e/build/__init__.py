"""Builds (once) and caches every binary the e2e cluster runs, from upstream sources.

Kubernetes, etcd, CoreDNS, local-path-provisioner and kube-router come from the Go module proxy:
each is built in a throwaway module whose go.mod requires the upstream module at the pinned
version (e2e/versions.py). The pod sandbox ("pause"), netcheck and the CRI cleanup tool are a
few lines of Go in e2e/go. Results go to ``<cache>/bin``; a stamp per component records what was
built so a later run skips it (``python -m e2e.build`` builds them all).
"""

"""Where the cluster's builds and state live: ``$JUP2KUB_CACHE/k8s-<version>/`` holds bin/ and
images/ (kept across clusters) and state/ (the running cluster's, removed by ``down``)."""

from __future__ import annotations

import os
from pathlib import Path

from e2e import versions

E2E = Path(__file__).resolve().parents[1]
MANIFESTS = E2E / "manifests"

CACHE_ROOT = Path(os.environ.get("JUP2KUB_CACHE", Path.home() / ".cache" / "jup2kub"))
HOME = CACHE_ROOT / f"k8s-{versions.KUBERNETES}"
BIN = HOME / "bin"
IMAGES = HOME / "images"
STATE = HOME / "state"
PKI = STATE / "pki"
LOGS = STATE / "logs"
PIDS = STATE / "pids"
CTRD_SOCK = STATE / "containerd" / "containerd.sock"
KUBECONFIG = STATE / "admin.kubeconfig"

"""The cluster the e2e tests run against.

By default the harness's own cluster (``e2e/cluster up``, a no-op when it already runs). With
``J2K_E2E_KUBECONFIG=PATH`` (or ``J2K_E2E_KUBECONFIG=current`` for the current kube context) the
tests run against an existing cluster instead (kind, minikube, a cloud one); the images they
use must then be pullable there (``J2K_E2E_BUSYBOX_IMAGE``, the Kafka image of the chart).
``J2K_E2E_DOWN=1`` stops the harness's cluster after the session.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

E2E = Path(__file__).resolve().parents[1]
REPO = E2E.parent
sys.path.insert(0, str(E2E))
# shared test helpers (tests/nb_outputs.py); appended, so this directory's conftest stays first
sys.path.append(str(REPO / "tests"))

import cluster as harness  # noqa: E402
import images  # noqa: E402


@dataclass
class Cluster:
    kubeconfig: str | None  # None: the current context
    own: bool  # the harness's cluster (images are imported, not pulled)
    busybox: str

    def kubectl(self, *args: str, check: bool = True, timeout: float = 180,
                input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        exe = str(harness.BIN / "kubectl") if self.own else (shutil.which("kubectl") or "kubectl")
        cmd = [exe] + (["--kubeconfig", self.kubeconfig] if self.kubeconfig else []) + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           input=input_text)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        return r

    def state_claim(self, namespace: str, size: str = "256Mi") -> str:
        """A claim "state" of the default StorageClass, for the chart's existingClaim mode."""
        claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "metadata": {"name": "state"},
                 "spec": {"accessModes": ["ReadWriteOnce"],
                          "resources": {"requests": {"storage": size}}}}
        self.kubectl("-n", namespace, "apply", "-f", "-", input_text=yaml.safe_dump(claim))
        return "state"

    def kafka_bootstrap(self, namespace: str) -> str:
        """The chart's first broker by its stable in-cluster name (what Kafka advertises)."""
        sts = json.loads(self.kubectl("-n", namespace, "get", "statefulset", "-l",
                                      "app.kubernetes.io/component=kafka", "-o", "json"
                                      ).stdout)["items"][0]
        return (f"{sts['metadata']['name']}-0.{sts['spec']['serviceName']}.{namespace}"
                f".svc.cluster.local:9092")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig
        if self.own:
            env["PATH"] = f"{harness.BIN}:{env.get('PATH', '')}"
        return env


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    existing = os.environ.get("J2K_E2E_KUBECONFIG")
    if existing:
        yield Cluster(None if existing == "current" else existing, own=False,
                      busybox=os.environ.get("J2K_E2E_BUSYBOX_IMAGE", "busybox:1.36"))
        return
    if os.geteuid() != 0:
        pytest.skip("the harness's cluster needs root (or set J2K_E2E_KUBECONFIG)")
    subprocess.run([str(E2E / "cluster"), "up"], check=True, timeout=3 * 3600)
    yield Cluster(str(harness.KUBECONFIG), own=True, busybox=images.BUSYBOX_IMAGE)
    if os.environ.get("J2K_E2E_DOWN") == "1":
        subprocess.run([str(E2E / "cluster"), "down"], check=True, timeout=900)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"j2k-e2e-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)

"""What the e2e tests share besides fixtures (those are in e2e/tests/conftest.py): the cluster
handle, helm, commands with cluster DNS, the state volume's directory on the node."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.addons import SHARED_CLASS
from e2e.host.layout import BIN, CTRD_SOCK
from e2e.lifecycle import default_node_count
from e2e.network import membership

E2E = Path(__file__).resolve().parent
REPO = E2E.parent


@dataclass
class Cluster:
    kubeconfig: str | None  # None: the current context
    own: bool  # the harness's cluster (images are imported, not pulled)
    busybox: str

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 180, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        exe = str(BIN / "kubectl") if self.own else (shutil.which("kubectl") or "kubectl")
        cmd = [exe] + (["--kubeconfig", self.kubeconfig] if self.kubeconfig else []) + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input_text)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        return r

    def state_claim(
        self,
        namespace: str,
        size: str = "256Mi",
        storage_class: str | None = None,
        access: str | None = None,
    ) -> str:
        """A claim "state" for the chart's existingClaim mode, of ``storage_class`` ("" for
        the default class) with ``access``; by default ``state_storage()``'s."""
        default_class, default_access = state_storage()
        storage_class = default_class if storage_class is None else storage_class
        spec: dict[str, Any] = {
            "accessModes": [access or default_access],
            "resources": {"requests": {"storage": size}},
        }
        if storage_class:
            spec["storageClassName"] = storage_class
        claim = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "state"},
            "spec": spec,
        }
        self.kubectl("-n", namespace, "apply", "-f", "-", input_text=yaml.safe_dump(claim))
        return "state"

    def kafka_bootstrap(self, namespace: str) -> str:
        """Every broker of the chart's Kafka by its stable in-cluster name (what Kafka
        advertises), comma-separated: a client still connects while one broker is away."""
        sts = json.loads(
            self.kubectl(
                "-n",
                namespace,
                "get",
                "statefulset",
                "-l",
                "app.kubernetes.io/component=kafka",
                "-o",
                "json",
            ).stdout
        )["items"][0]
        name, service = sts["metadata"]["name"], sts["spec"]["serviceName"]
        brokers = int(sts["spec"].get("replicas", 1))
        return ",".join(
            f"{name}-{i}.{service}.{namespace}.svc.cluster.local:9092" for i in range(brokers)
        )

    def run(self, *cmd: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """A command on the host with this cluster's kubeconfig (and kubectl) in its
        environment, its output captured."""
        return subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, env=self.env()
        )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.kubeconfig:
            env["KUBECONFIG"] = self.kubeconfig
        if self.own:
            env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
        return env


def state_storage() -> tuple[str, str]:
    """(StorageClass, access mode) of the tests' state claims: ``J2K_E2E_STATE_CLASS`` (else
    j2k-shared) and ReadWriteMany when it is set or the cluster has several nodes, so that
    step replicas on distinct nodes share the volume; else the default class ("") and
    ReadWriteOnce, as on one node."""
    chosen = os.environ.get("J2K_E2E_STATE_CLASS", "").strip()
    if chosen or default_node_count() > 1:
        return chosen or SHARED_CLASS, "ReadWriteMany"
    return "", "ReadWriteOnce"


def containerd_socket(node: str) -> Path:
    """The containerd socket of the harness's node named ``node`` (a pod's
    ``spec.nodeName``): its own (``STATE/nodes/<node>/containerd/containerd.sock``) on a
    cluster of several nodes, else the single node's."""
    try:
        own = membership.by_name(node).socket
    except LookupError:  # not a node of the harness's cluster
        return CTRD_SOCK
    return own if own.exists() else CTRD_SOCK


def docker_ok() -> bool:
    return (
        bool(shutil.which("docker"))
        and subprocess.run(["docker", "version"], capture_output=True, timeout=30).returncode == 0
    )


def with_cluster_dns(
    cluster: Cluster, *cmd: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    prefix = (
        [str(E2E / "cluster"), "exec", "--"]
        if cluster.own
        else shlex.split(os.environ.get("J2K_E2E_RUN", ""))
    )
    return subprocess.run(
        [*prefix, *cmd], capture_output=True, text=True, timeout=timeout, env=cluster.env()
    )


FINAL_STATES = ("succeeded", "failed")


def wait_final(
    cluster: Cluster, notebook: str, broker: str, run_id: str, steps: int, timeout: float = 600
) -> dict[str, Any]:
    """Follow ``jup2kub status --json`` until ``steps`` steps of the run are final (succeeded
    or failed); their states. A run that does not get there within ``timeout`` fails the test."""
    deadline = time.monotonic() + timeout
    states: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = with_cluster_dns(
            cluster, "jup2kub", "status", notebook, run_id, "--kafka", broker, "--json"
        )
        if r.returncode == 0:
            states = json.loads(r.stdout)
            if sum(s.get("state") in FINAL_STATES for s in states.values()) >= steps:
                return states
        time.sleep(3)
    raise AssertionError(f"run {run_id} did not finish: {states}")


def state_dir(cluster: Cluster, ns: str) -> Path:
    pv = cluster.kubectl(
        "-n", ns, "get", "pvc", "state", "-o", "jsonpath={.spec.volumeName}"
    ).stdout
    spec = json.loads(cluster.kubectl("get", "pv", pv, "-o", "json").stdout)["spec"]
    path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
    if not path or not Path(path).is_dir():
        pytest.skip("the state volume is not a directory on this machine")
    return Path(path)


def result_file(root: Path, run_id: str, step: str, name: str = "outputs.json") -> Path:
    """A file of a step's result on the state volume (``root``): in the attempt directory its
    completion marker names (the runtime's layout, ``StateStore.result_dir``)."""
    from jup2kub_runtime.storage.state_store import StateStore

    return StateStore(root).result_dir(run_id, step) / name


def _helm() -> str:
    helm = os.environ.get("J2K_HELM") or shutil.which("helm")
    if not helm:
        cached = Path(os.environ.get("JUP2KUB_CACHE", Path.home() / ".cache" / "jup2kub"))
        helm = str(cached / "bin" / "helm")
    if not Path(helm).is_file():
        pytest.skip("helm not found (bash e2e/run.sh builds it)")
    return helm


def helm(
    cluster: Cluster, *args: str, check: bool = True, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [_helm(), *args], capture_output=True, text=True, timeout=timeout, env=cluster.env()
    )
    if check and r.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{r.stdout}{r.stderr}")
    return r

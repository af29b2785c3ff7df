"""The cluster itself: a node that is Ready, DNS through CoreDNS, ClusterIP Services through
kube-proxy, dynamic volumes through the default StorageClass, images loaded from tarballs."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from e2e.addons import render_manifest
from e2e.host.processes import pid_of
from e2e.network import membership
from e2e.support import E2E, Cluster

MANIFESTS = E2E / "tests" / "manifests"


def _wait_pod_done(cluster: Cluster, ns: str, pod: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline:
        phase = cluster.kubectl(
            "-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.phase}"
        ).stdout
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    logs = cluster.kubectl("-n", ns, "logs", pod, check=False).stdout
    assert phase == "Succeeded", (
        f"pod {pod}: {phase}\n{logs}\n"
        + cluster.kubectl("-n", ns, "describe", "pod", pod, check=False).stdout
    )
    return logs


def test_node_ready(cluster: Cluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert nodes
    for node in nodes:
        conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conds.get("Ready") == "True", conds


def test_dns_and_clusterip_service(cluster: Cluster, namespace: str) -> None:
    _check_service(cluster, namespace)


def test_a_second_cluster_up_keeps_new_services_reachable(cluster: Cluster, namespace: str) -> None:
    """The cause of this test's former flake: `cluster up` on a running cluster rewrote
    kube-proxy's configuration, kube-proxy exits when that file is written, and Services
    created afterwards were never programmed. A second `up` now leaves kube-proxy running."""
    if not cluster.own:
        pytest.skip("`cluster up` is the harness's own cluster's command")
    proxies = [node.daemon("kube-proxy") for node in membership.current()]
    before = [pid_of(name) for name in proxies]
    assert None not in before
    subprocess.run([str(E2E / "cluster"), "up"], check=True, timeout=900, capture_output=True)
    time.sleep(2)  # kube-proxy noticed a written file within a second, then exited
    assert [pid_of(name) for name in proxies] == before
    _check_service(cluster, namespace)


def _check_service(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        input_text=render_manifest(MANIFESTS / "web.yaml", image=cluster.busybox),
    )
    cluster.kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s")
    fqdn = f"web.{namespace}.svc.cluster.local"
    # the Service's name through CoreDNS, then the Service's ClusterIP through kube-proxy,
    # by its short name (the pod's DNS search path)
    # kube-proxy programs a new Service within seconds; allow for a loaded machine
    script = (
        f"nslookup {fqdn} && for i in $(seq 30); do "
        "netcheck get http://web/index.html && exit 0; sleep 2; done; exit 1"
    )
    cluster.kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        input_text=render_manifest(MANIFESTS / "client.yaml", image=cluster.busybox, script=script),
    )
    logs = _wait_pod_done(cluster, namespace, "client")
    svc_ip = cluster.kubectl(
        "-n", namespace, "get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"
    ).stdout
    assert svc_ip in logs, logs
    assert "hello-from-web-" in logs, logs


def test_dynamic_volume(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        input_text=render_manifest(MANIFESTS / "pvc.yaml", image=cluster.busybox),
    )
    logs = _wait_pod_done(cluster, namespace, "writer")
    assert "persisted" in logs
    phase = cluster.kubectl(
        "-n", namespace, "get", "pvc", "data", "-o", "jsonpath={.status.phase}"
    ).stdout
    assert phase == "Bound"

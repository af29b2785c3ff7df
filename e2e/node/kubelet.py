"""The kubelet on this machine: cgroup v1 with cgroupfs (no systemd), no swap check, no image
garbage collection (imported images cannot be pulled again), no upstream resolvers."""

from __future__ import annotations

import json
from pathlib import Path

from e2e.control_plane.kubectl import kubectl
from e2e.control_plane.pki import kubelet_cert, kubelet_kubeconfig
from e2e.host.layout import BIN, PKI
from e2e.host.processes import start, write_config
from e2e.network.addresses import CLUSTER_DOMAIN, DNS_IP, Node


def _several_nodes(node: Node, count: int) -> dict[str, object]:
    """A node among several: its pods nested under its own cgroup (killed whole), and an
    honest share of the machine's memory as allocatable, else every kubelet offers all of it
    and the scheduler packs one node until the machine runs out."""
    if not node.cgroup:
        return {}
    total = _mem_total_bytes()
    return {
        "cgroupRoot": node.cgroup,
        "systemReserved": {"memory": str(total - total // count)},
    }


def _mem_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no MemTotal in /proc/meminfo")


def kubelet_config(node: Node, count: int = 1) -> str:
    cert = kubelet_cert(node)
    return json.dumps(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": node.ip,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(PKI / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(PKI / f"{cert}.crt"),
            "tlsPrivateKeyFile": str(PKI / f"{cert}.key"),
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{node.socket}",
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [DNS_IP],
            # no upstream resolvers: names outside the cluster do not resolve (no traffic out)
            "resolvConf": "",
            "failSwapOn": False,
            "protectKernelDefaults": False,
            "podLogsDir": str(node.state / "pod-logs"),
            "volumePluginDir": str(node.state / "kubelet-plugins"),
            # the images cannot be pulled again: never garbage-collect them
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "200Mi",
                "nodefs.available": "2%",
                "nodefs.inodesFree": "2%",
                "imagefs.available": "2%",
            },
            "serializeImagePulls": False,
            "maxPods": 110,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "shutdownGracePeriod": "0s",
            **_several_nodes(node, count),
        },
        indent=2,
    )


def start_kubelet(node: Node, count: int = 1) -> None:
    config = node.state / "kubelet-config.json"
    for sub in ("kubelet", "pod-logs"):
        (node.state / sub).mkdir(parents=True, exist_ok=True)
    write_config(config, kubelet_config(node, count))
    start(
        node.daemon("kubelet"),
        [
            str(BIN / "kubelet"),
            f"--config={config}",
            f"--kubeconfig={kubelet_kubeconfig(node)}",
            f"--root-dir={node.state}/kubelet",
            f"--hostname-override={node.name}",
            f"--node-ip={node.ip}",
        ],
        netns=node.netns,
        cgroup=node.daemons_cgroup,
    )


def node_ready(node: Node) -> bool:
    r = kubectl(
        "get",
        "node",
        node.name,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        check=False,
    )
    return r.returncode == 0 and r.stdout.strip() == "True"

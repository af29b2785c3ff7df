"""The kubelet on this machine: cgroup v1 with cgroupfs (no systemd), no swap check, no image
garbage collection (imported images cannot be pulled again), no upstream resolvers."""

from __future__ import annotations

import json

from e2e.control_plane.kubectl import kubectl
from e2e.host.layout import BIN, CTRD_SOCK, PKI, STATE
from e2e.host.processes import start, write_config
from e2e.network.addresses import CLUSTER_DOMAIN, DNS_IP, NODE_IP, NODE_NAME


def kubelet_config() -> str:
    return json.dumps(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
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
            "tlsCertFile": str(PKI / "kubelet.crt"),
            "tlsPrivateKeyFile": str(PKI / "kubelet.key"),
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,
            "containerRuntimeEndpoint": f"unix://{CTRD_SOCK}",
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [DNS_IP],
            # no upstream resolvers: names outside the cluster do not resolve (no traffic out)
            "resolvConf": "",
            "failSwapOn": False,
            "protectKernelDefaults": False,
            "podLogsDir": str(STATE / "pod-logs"),
            "volumePluginDir": str(STATE / "kubelet-plugins"),
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
        },
        indent=2,
    )


def start_kubelet() -> None:
    write_config(STATE / "kubelet-config.json", kubelet_config())
    start(
        "kubelet",
        [
            str(BIN / "kubelet"),
            f"--config={STATE}/kubelet-config.json",
            f"--kubeconfig={STATE}/kubelet.kubeconfig",
            f"--root-dir={STATE}/kubelet",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
        ],
    )


def node_ready() -> bool:
    r = kubectl(
        "get",
        "node",
        NODE_NAME,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        check=False,
    )
    return r.returncode == 0 and r.stdout.strip() == "True"

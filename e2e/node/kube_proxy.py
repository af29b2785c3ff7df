"""kube-proxy in iptables mode: Services for pods and the host, NodePorts only on the node
address, the host's conntrack and route_localnet settings left alone."""

from __future__ import annotations

import json

from e2e.host.layout import BIN, STATE
from e2e.host.processes import start, write_config
from e2e.network.addresses import NODE_IP, NODE_NAME, POD_CIDR


def kube_proxy_config() -> str:
    return json.dumps(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(STATE / "kube-proxy.kubeconfig")},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # NodePorts only on the node address, never on the machine's real interfaces
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # leave the host's conntrack and route_localnet settings alone
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
        },
        indent=2,
    )


def start_kube_proxy() -> None:
    write_config(STATE / "kube-proxy-config.json", kube_proxy_config())
    start("kube-proxy", [str(BIN / "kube-proxy"), f"--config={STATE}/kube-proxy-config.json"])

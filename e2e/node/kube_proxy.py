"""kube-proxy in iptables mode: Services for pods and the host, NodePorts only on the node
address, the host's conntrack and route_localnet settings left alone.

With several nodes, one runs in each node's network namespace (its pods' Services) and one on
the host (the host's own clients: ``e2e/cluster exec``, helm, the tests' Kafka clients), which
has no Node object of its own: it waits 30 s for one, then serves anyway (kube-proxy's
documented backward-compatible behaviour), so it is started before the nodes."""

from __future__ import annotations

import json

from e2e.host.layout import BIN, STATE
from e2e.host.processes import start, write_config
from e2e.network.addresses import NODE_IP, Node, cluster_cidr

#: the host's kube-proxy, with several nodes
HOST_PROXY = "j2k-control-plane"


def kube_proxy_config(name: str, address: str, nodes: tuple[Node, ...]) -> str:
    return json.dumps(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(STATE / "kube-proxy.kubeconfig")},
            "hostnameOverride": name,
            "clusterCIDR": cluster_cidr(nodes),
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # NodePorts only on the node address, never on the machine's real interfaces
            "nodePortAddresses": [f"{address}/32"],
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


def start_kube_proxy(node: Node, nodes: tuple[Node, ...]) -> None:
    config = node.state / "kube-proxy-config.json"
    write_config(config, kube_proxy_config(node.name, node.ip, nodes))
    start(
        node.daemon("kube-proxy"),
        [str(BIN / "kube-proxy"), f"--config={config}"],
        netns=node.netns,
        cgroup=node.daemons_cgroup,
    )


def start_host_proxy(nodes: tuple[Node, ...]) -> None:
    """The host's Services (only with several nodes: the single node's proxy is the host's)."""
    config = STATE / "kube-proxy-host.json"
    write_config(config, kube_proxy_config(HOST_PROXY, NODE_IP, nodes))
    start(f"kube-proxy@{HOST_PROXY}", [str(BIN / "kube-proxy"), f"--config={config}"])

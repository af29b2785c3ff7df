"""Private addresses on interfaces this harness creates: reachable from the host and from pods,
never from outside.

One node (the default) lives in the host's network namespace, as it always has. With
``--nodes N`` (N > 1) every node is a network namespace of its own, joined to the host's
``j2k0`` bridge by a veth pair: node ``j2k-node-<i>`` has the address ``10.233.255.<10+i>`` and
the pod range ``10.233.<i>.0/24``; the control plane stays on the host at ``10.233.255.1``.
Static routes (kind's design: a pod range via its node's address) join the pod ranges."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from e2e.host.layout import STATE

NODE_NAME = "j2k-node"
#: interface holding the node address: a port-less bridge (this kernel has no dummy driver);
#: its address is local, so it is reachable from the host and from pods, never from outside
NODE_DEV = "j2k0"
NODE_IP = "10.233.255.1"
BRIDGE = "j2kbr0"
POD_CIDR = "10.233.0.0/24"
SERVICE_CIDR = "10.233.128.0/24"
API_SERVICE_IP = "10.233.128.1"
DNS_IP = "10.233.128.10"
CLUSTER_DOMAIN = "cluster.local"
API_PORT = 6443
ETCD_CLIENT = "http://127.0.0.1:23790"
ETCD_PEER = "http://127.0.0.1:23800"
FORWARD_CHAIN = "J2K-FORWARD"

#: several nodes: every pod range (10.233.<i>.0/24, i < 128) and the nodes' link
MULTI_POD_CIDR = "10.233.0.0/17"
NODE_LINK_CIDR = "10.233.255.0/24"
#: node indices fit the pod ranges below the Service range (10.233.128.0/24)
MAX_NODES = 9


@dataclass(frozen=True)
class Node:
    """One kubelet with its container runtime: where it lives on the network."""

    name: str
    ip: str
    pod_cidr: str
    #: 0 for the single node in the host's namespace, else 1..N
    index: int = 0

    @property
    def netns(self) -> str | None:
        """Its network namespace, None for the single node (the host's)."""
        return f"j2k-n{self.index}" if self.index else None

    @property
    def veth(self) -> str | None:
        """The host end of its cable (in ``j2k0``), None for the single node."""
        return f"j2kv{self.index}" if self.index else None

    @property
    def state(self) -> Path:
        """Its own directories (containerd, kubelet, CNI, logs of pods): the cluster's state
        directory itself for the single node, as it always was."""
        return STATE / "nodes" / self.name if self.index else STATE

    @property
    def socket(self) -> Path:
        """Its containerd's socket."""
        return self.state / "containerd" / "containerd.sock"

    @property
    def cgroup(self) -> str | None:
        """The cgroup holding all of it (daemons, shims, pods), killed whole; None for the
        single node (its pods sit in ``/kubepods``, its daemons where they were started)."""
        return f"/{self.name}" if self.index else None

    @property
    def daemons_cgroup(self) -> str | None:
        """Where its daemons run (containerd, kubelet, kube-proxy; the shims inherit it)."""
        return f"{self.cgroup}/daemons" if self.cgroup else None

    def daemon(self, component: str) -> str:
        """The name its ``component`` is started under (pid and log files)."""
        return f"{component}@{self.name}" if self.index else component

    @property
    def gateway(self) -> str:
        """The pod bridge's address: the first of its pod range."""
        return self.pod_cidr.rsplit(".", 1)[0] + ".1"


SINGLE_NODE = Node(NODE_NAME, NODE_IP, POD_CIDR)


def topology(count: int) -> tuple[Node, ...]:
    """The nodes of a cluster of ``count``: the single node as it always was, or N namespaces."""
    if count < 1 or count > MAX_NODES:
        raise ValueError(f"a cluster has 1 to {MAX_NODES} nodes, not {count}")
    if count == 1:
        return (SINGLE_NODE,)
    return tuple(
        Node(f"{NODE_NAME}-{i}", f"10.233.255.{10 + i}", f"10.233.{i}.0/24", i)
        for i in range(1, count + 1)
    )


def cluster_cidr(nodes: tuple[Node, ...]) -> str:
    """Every pod range: what kube-proxy calls cluster-local, and the forward guard allows."""
    return POD_CIDR if nodes == (SINGLE_NODE,) else MULTI_POD_CIDR


def host_cidr(nodes: tuple[Node, ...]) -> str:
    """The host's address on ``j2k0``: a /32 alone, the nodes' /24 link with several."""
    return f"{NODE_IP}/32" if nodes == (SINGLE_NODE,) else f"{NODE_IP}/24"

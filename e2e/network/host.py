"""The host side of the network: the node address on its own bridge, bridge netfilter (Services
between pods on one bridge), the forward guard (pods reach nothing beyond this machine), and
removing all of it, with what kube-proxy and the kubelet installed, on ``down``.

With several nodes, each node is a network namespace with a cable (a veth pair) into ``j2k0``;
the nodes' traffic to each other is bridged there, so it crosses the host's FORWARD chain (bridge
netfilter) and the forward guard allows exactly the cluster's ranges. Pulling a node's cable
(``link``) is its network failure."""

from __future__ import annotations

from pathlib import Path

from e2e.host import sysctls
from e2e.host.commands import run
from e2e.host.layout import BIN
from e2e.host.processes import in_netns
from e2e.network.addresses import (
    BRIDGE,
    FORWARD_CHAIN,
    NODE_DEV,
    NODE_LINK_CIDR,
    Node,
    cluster_cidr,
    host_cidr,
)

#: what the kubelet installs (KUBE-FIREWALL, canaries, hint chain): table, chain, jumps from
_KUBELET_CHAINS = (
    ("filter", "KUBE-FIREWALL", ("INPUT", "OUTPUT")),
    ("filter", "KUBE-KUBELET-CANARY", ()),
    ("nat", "KUBE-KUBELET-CANARY", ()),
    ("mangle", "KUBE-KUBELET-CANARY", ()),
    ("mangle", "KUBE-IPTABLES-HINT", ()),
)
NETNS_DIR = Path("/run/netns")


def iptables(*args: str, check: bool = False) -> bool:
    return run(["iptables", "-w", "5", *args], check=check, capture=True).returncode == 0


def _ip(*args: str, netns: str | None = None, check: bool = True) -> bool:
    r = run(in_netns(netns, ["ip", *args]), check=check, capture=True)
    return r.returncode == 0


def _guard_rules(nodes: tuple[Node, ...]) -> list[tuple[str, ...]]:
    """Pods (and, with several nodes, the nodes' link) talk to each other, never beyond."""
    pods = cluster_cidr(nodes)
    ranges: tuple[str, ...] = (pods,) if len(nodes) == 1 else (pods, NODE_LINK_CIDR)
    rules: list[tuple[str, ...]] = [
        ("-s", a, "-d", b, "-j", "ACCEPT") for a in ranges for b in ranges
    ]
    rules += [(flag, r, "-j", "DROP") for r in ranges for flag in ("-s", "-d")]
    return rules


def setup_host(nodes: tuple[Node, ...]) -> None:
    sysctls.save()
    if not _ip("link", "show", NODE_DEV, check=False):
        _ip("link", "add", NODE_DEV, "type", "bridge")
    _ip("addr", "replace", host_cidr(nodes), "dev", NODE_DEV)
    _ip("link", "set", NODE_DEV, "up")
    # Services are implemented by iptables DNAT, which bridged pod-to-pod traffic only
    # traverses when bridge netfilter is on.
    sysctls.sysctl_path("net/bridge/bridge-nf-call-iptables").write_text("1\n")
    # Forward guard: pods may talk to each other (even if another tool set the FORWARD
    # policy to DROP) and never to anything beyond this machine, even with ip_forward on.
    iptables("-N", FORWARD_CHAIN)
    iptables("-F", FORWARD_CHAIN)
    for rule in _guard_rules(nodes):
        iptables("-A", FORWARD_CHAIN, *rule)
    if not iptables("-C", "FORWARD", "-j", FORWARD_CHAIN):
        iptables("-I", "FORWARD", "1", "-j", FORWARD_CHAIN)
    for node in nodes:
        if node.netns:
            _setup_node(node, nodes)


def _setup_node(node: Node, nodes: tuple[Node, ...]) -> None:
    """Its namespace, its cable into ``j2k0``, its address, routes to the other pod ranges (and
    none out), forwarding for its pods; the host's route to its pod range."""
    assert node.netns and node.veth
    ns = node.netns
    if not (NETNS_DIR / ns).exists():
        _ip("netns", "add", ns)
    if not _ip("link", "show", node.veth, check=False):
        _ip("link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("link", "set", node.veth, "master", NODE_DEV, "up")
    _ip("addr", "replace", f"{node.ip}/24", "dev", "eth0", netns=ns)
    _ip("link", "set", "eth0", "up", netns=ns)
    _ip("link", "set", "lo", "up", netns=ns)
    for other in nodes:
        if other != node:
            _ip("route", "replace", other.pod_cidr, "via", other.ip, netns=ns)
    for key in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables"):
        run(in_netns(ns, ["sysctl", "-qw", f"{key}=1"]), capture=True)
    _ip("route", "replace", node.pod_cidr, "via", node.ip, "dev", NODE_DEV)


def link(node: Node, up: bool) -> None:
    """The node's cable plugged in or pulled: all its traffic to the host and the other nodes
    stops (its own pods still reach each other); its processes notice nothing else."""
    assert node.veth, "the single node has no cable to pull"
    _ip("link", "set", node.veth, "up" if up else "down")


def remove_node_namespaces() -> None:
    """Every node namespace of this harness (its veth pair goes with it)."""
    for ns in sorted(NETNS_DIR.glob("j2k-n*")) if NETNS_DIR.is_dir() else ():
        _ip("netns", "del", ns.name, check=False)


def teardown_host() -> None:
    remove_node_namespaces()
    for dev in (BRIDGE, NODE_DEV):
        run(["ip", "link", "del", dev], check=False, capture=True)
    while iptables("-D", "FORWARD", "-j", FORWARD_CHAIN):
        pass
    iptables("-F", FORWARD_CHAIN)
    iptables("-X", FORWARD_CHAIN)
    # what kube-proxy installed
    if (BIN / "kube-proxy").is_file():
        run([str(BIN / "kube-proxy"), "--cleanup"], check=False, capture=True)
    for table, chain, parents in _KUBELET_CHAINS:
        for parent in parents:
            while iptables("-t", table, "-D", parent, "-j", chain):
                pass
        iptables("-t", table, "-F", chain)
        iptables("-t", table, "-X", chain)
    sysctls.restore()

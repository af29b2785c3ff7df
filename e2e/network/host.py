"""The host side of the network: the node address on its own bridge, bridge netfilter (Services
between pods on one bridge), the forward guard (pods reach nothing beyond this machine), and
removing all of it, with what kube-proxy and the kubelet installed, on ``down``."""

from __future__ import annotations

from e2e.host import sysctls
from e2e.host.commands import run
from e2e.host.layout import BIN
from e2e.network.addresses import BRIDGE, FORWARD_CHAIN, NODE_DEV, NODE_IP, POD_CIDR

#: what the kubelet installs (KUBE-FIREWALL, canaries, hint chain): table, chain, jumps from
_KUBELET_CHAINS = (
    ("filter", "KUBE-FIREWALL", ("INPUT", "OUTPUT")),
    ("filter", "KUBE-KUBELET-CANARY", ()),
    ("nat", "KUBE-KUBELET-CANARY", ()),
    ("mangle", "KUBE-KUBELET-CANARY", ()),
    ("mangle", "KUBE-IPTABLES-HINT", ()),
)


def iptables(*args: str, check: bool = False) -> bool:
    return run(["iptables", "-w", "5", *args], check=check, capture=True).returncode == 0


def setup_host() -> None:
    sysctls.save()
    if run(["ip", "link", "show", NODE_DEV], check=False, capture=True).returncode != 0:
        run(["ip", "link", "add", NODE_DEV, "type", "bridge"])
    run(["ip", "addr", "replace", f"{NODE_IP}/32", "dev", NODE_DEV])
    run(["ip", "link", "set", NODE_DEV, "up"])
    # Services are implemented by iptables DNAT, which bridged pod-to-pod traffic only
    # traverses when bridge netfilter is on.
    sysctls.sysctl_path("net/bridge/bridge-nf-call-iptables").write_text("1\n")
    # Forward guard: pods may talk to each other (even if another tool set the FORWARD
    # policy to DROP) and never to anything beyond this machine, even with ip_forward on.
    iptables("-N", FORWARD_CHAIN)
    iptables("-F", FORWARD_CHAIN)
    iptables("-A", FORWARD_CHAIN, "-s", POD_CIDR, "-d", POD_CIDR, "-j", "ACCEPT")
    iptables("-A", FORWARD_CHAIN, "-s", POD_CIDR, "-j", "DROP")
    iptables("-A", FORWARD_CHAIN, "-d", POD_CIDR, "-j", "DROP")
    if not iptables("-C", "FORWARD", "-j", FORWARD_CHAIN):
        iptables("-I", "FORWARD", "1", "-j", FORWARD_CHAIN)


def teardown_host() -> None:
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

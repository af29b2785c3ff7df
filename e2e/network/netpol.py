"""NetworkPolicies enforced on the harness's cluster: kube-router's network policy controller
alone (no routing, no service proxy, no CNI: the bridge CNI stays), built from its Go module,
running on the host like the other components. It filters bridged pod traffic with iptables
(physdev) and ipsets; traffic from the node itself (kubelet probes, the API server's pod proxy,
commands run with `e2e/cluster exec`) stays allowed, as NetworkPolicy semantics require.

Off by default (the other e2e tests were written against a non-enforcing CNI):
`e2e/cluster netpol up|down`; `e2e/cluster down` stops it too and removes its rules and ipsets.
"""

from __future__ import annotations

import shlex
import shutil

from e2e.build.components import build_kube_router
from e2e.host.commands import log, run, wait_for
from e2e.host.layout import BIN, HOME, KUBECONFIG
from e2e.host.processes import in_netns, pid_of, start, stop
from e2e.network import membership
from e2e.network.addresses import POD_CIDR, SERVICE_CIDR, Node

NAME = "kube-router"
#: the chain kube-router hooks into FORWARD once its controller has synced
FORWARD_CHAIN = "KUBE-ROUTER-FORWARD"
#: what kube-router's policy controller creates: filter chains and ipsets (by name prefix)
CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "kube-router-")


#: what a node's own traffic may reach with several nodes: the pod ranges, the Services and the
#: nodes' link (the control plane's address among them) are all in 10.233.0.0/16
HARNESS_RANGE = "10.233.0.0/16"


def _guard_rules(node: Node) -> tuple[tuple[str, ...], ...]:
    """The harness's forward guard (pods reach nothing beyond this machine) sits in filter
    FORWARD behind kube-router's jump, whose chain ACCEPTs policy-compliant traffic before the
    guard is reached; and Docker turns ip_forward on. So while kube-router runs the guard is
    repeated in mangle FORWARD, which every forwarded packet passes first. A node among several
    forwards its pods' traffic to the control plane and other nodes too: its guard allows the
    harness's whole range."""
    inside = POD_CIDR if node.netns is None else HARNESS_RANGE
    pods = node.pod_cidr
    return (
        ("-s", pods, "!", "-d", inside, "-j", "DROP"),
        ("!", "-s", inside, "-d", pods, "-j", "DROP"),
    )


def _iptables(node: Node, *args: str, check: bool = False) -> bool:
    cmd = in_netns(node.netns, ["iptables", "-w", "5", *args])
    return run(cmd, check=check, capture=True).returncode == 0


def _guard(node: Node, on: bool) -> None:
    for rule in _guard_rules(node):
        present = _iptables(node, "-t", "mangle", "-C", "FORWARD", *rule)
        if on and not present:
            _iptables(node, "-t", "mangle", "-I", "FORWARD", "1", *rule, check=True)
        while not on and _iptables(node, "-t", "mangle", "-D", "FORWARD", *rule):
            pass


def running() -> bool:
    return all(pid_of(n.daemon(NAME)) is not None for n in membership.current())


def up() -> None:
    """kube-router's policy controller on every node (in its network namespace: its iptables
    rules and ipsets are the node's own), each enforcing the policies of its own pods."""
    if not pid_of("kube-apiserver"):
        raise SystemExit("the cluster is not running (e2e/cluster up)")
    if not shutil.which("ipset"):
        raise SystemExit("kube-router needs ipset: apt-get install ipset")
    build_kube_router(HOME)
    for node in membership.current():
        _up(node)
    log("NetworkPolicies are enforced (kube-router)")


def _up(node: Node) -> None:
    _guard(node, True)
    start(
        node.daemon(NAME),
        [
            str(BIN / NAME),
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--enable-cni=false",
            f"--kubeconfig={KUBECONFIG}",
            f"--hostname-override={node.name}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--health-port=0",
            "--metrics-port=0",
        ],
        netns=node.netns,
        cgroup=node.daemons_cgroup,
    )
    wait_for(
        f"kube-router's firewall chains on {node.name}",
        lambda: (
            _iptables(node, "-L", FORWARD_CHAIN, "-n") and pid_of(node.daemon(NAME)) is not None
        ),
        timeout=120,
    )


def down() -> None:
    for node in membership.current():
        _down(node)


def _down(node: Node) -> None:
    """Stop kube-router and remove its iptables rules and ipsets (a no-op when it never ran).

    Not with `kube-router --cleanup-config`: in v2.1.0 it deletes every IPVS service on the
    machine ("we assume that we own all of them") and then panics in the service proxy's
    cleanup, before the policy rules are removed."""
    stop(node.daemon(NAME))
    saved = run(
        in_netns(node.netns, ["iptables-save", "-t", "filter"]), check=False, capture=True
    ).stdout
    for line in saved.splitlines():
        parts = shlex.split(line)
        # the jumps from the built-in chains, tagged "kube-router netpol - <id>"
        if (
            parts[:1] == ["-A"]
            and parts[1] in ("INPUT", "FORWARD", "OUTPUT")
            and any(p.startswith("kube-router netpol") for p in parts)
        ):
            _iptables(node, "-D", *parts[1:])
    chains = [
        line[1:].split()[0]
        for line in saved.splitlines()
        if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES)
    ]
    for op in ("-F", "-X"):
        for chain in chains:
            _iptables(node, op, chain)
    if shutil.which("ipset"):
        listed = run(in_netns(node.netns, ["ipset", "list", "-n"]), check=False, capture=True)
        for name in listed.stdout.split():
            if name.removeprefix("inet6:").startswith(IPSET_PREFIXES):
                run(in_netns(node.netns, ["ipset", "destroy", name]), check=False, capture=True)
    _guard(node, False)

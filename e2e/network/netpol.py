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
from e2e.host.processes import pid_of, start, stop
from e2e.network.addresses import NODE_NAME, POD_CIDR, SERVICE_CIDR
from e2e.network.host import iptables

NAME = "kube-router"
#: the chain kube-router hooks into FORWARD once its controller has synced
FORWARD_CHAIN = "KUBE-ROUTER-FORWARD"
#: what kube-router's policy controller creates: filter chains and ipsets (by name prefix)
CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-", "kube-router-")


#: The harness's forward guard (pods reach nothing beyond this machine) sits in filter FORWARD
#: behind kube-router's jump, whose chain ACCEPTs policy-compliant traffic before the guard is
#: reached; and Docker turns ip_forward on. So while kube-router runs the guard is repeated in
#: mangle FORWARD, which every forwarded packet passes first.
GUARD = (
    ("-s", POD_CIDR, "!", "-d", POD_CIDR, "-j", "DROP"),
    ("!", "-s", POD_CIDR, "-d", POD_CIDR, "-j", "DROP"),
)


def _guard(on: bool) -> None:
    for rule in GUARD:
        present = iptables("-t", "mangle", "-C", "FORWARD", *rule)
        if on and not present:
            iptables("-t", "mangle", "-I", "FORWARD", "1", *rule, check=True)
        while not on and iptables("-t", "mangle", "-D", "FORWARD", *rule):
            pass


def running() -> bool:
    return pid_of(NAME) is not None


def up() -> None:
    if not pid_of("kube-apiserver"):
        raise SystemExit("the cluster is not running (e2e/cluster up)")
    if not shutil.which("ipset"):
        raise SystemExit("kube-router needs ipset: apt-get install ipset")
    build_kube_router(HOME)
    _guard(True)
    start(
        NAME,
        [
            str(BIN / NAME),
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--enable-cni=false",
            f"--kubeconfig={KUBECONFIG}",
            f"--hostname-override={NODE_NAME}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--health-port=0",
            "--metrics-port=0",
        ],
    )
    wait_for(
        "kube-router's firewall chains",
        lambda: iptables("-L", FORWARD_CHAIN, "-n") and running(),
        timeout=120,
    )
    log("NetworkPolicies are enforced (kube-router)")


def down() -> None:
    """Stop kube-router and remove its iptables rules and ipsets (a no-op when it never ran).

    Not with `kube-router --cleanup-config`: in v2.1.0 it deletes every IPVS service on the
    machine ("we assume that we own all of them") and then panics in the service proxy's
    cleanup, before the policy rules are removed."""
    stop(NAME)
    saved = run(["iptables-save", "-t", "filter"], check=False, capture=True).stdout
    for line in saved.splitlines():
        parts = shlex.split(line)
        # the jumps from the built-in chains, tagged "kube-router netpol - <id>"
        if (
            parts[:1] == ["-A"]
            and parts[1] in ("INPUT", "FORWARD", "OUTPUT")
            and any(p.startswith("kube-router netpol") for p in parts)
        ):
            iptables("-D", *parts[1:])
    chains = [
        line[1:].split()[0]
        for line in saved.splitlines()
        if line.startswith(":") and line[1:].startswith(CHAIN_PREFIXES)
    ]
    for op in ("-F", "-X"):
        for chain in chains:
            iptables(op, chain)
    if shutil.which("ipset"):
        names = run(["ipset", "list", "-n"], check=False, capture=True).stdout.split()
        for name in names:
            if name.removeprefix("inet6:").startswith(IPSET_PREFIXES):
                run(["ipset", "destroy", name], check=False, capture=True)
    _guard(False)

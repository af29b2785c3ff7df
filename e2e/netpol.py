"""NetworkPolicies enforced on the harness's cluster: kube-router's network policy controller
alone (no routing, no service proxy, no CNI: the bridge CNI stays), built from its Go module,
running on the host like the other components. It filters bridged pod traffic with iptables
(physdev) and ipsets; traffic from the node itself (kubelet probes, the API server's pod proxy,
commands run with `e2e/cluster exec`) stays allowed, as NetworkPolicy semantics require.

Off by default (the other e2e tests were written against a non-enforcing CNI):
`e2e/cluster netpol up|down`; `e2e/cluster down` stops it too and removes its rules and ipsets.
"""

from __future__ import annotations

import shutil

from e2e import build
from e2e import cluster as harness

NAME = "kube-router"
#: the chain kube-router hooks into FORWARD once its controller has synced
FORWARD_CHAIN = "KUBE-ROUTER-FORWARD"


def running() -> bool:
    return harness._pid_of(NAME) is not None


def up() -> None:
    if not harness._pid_of("kube-apiserver"):
        raise SystemExit("the cluster is not running (e2e/cluster up)")
    if not shutil.which("ipset"):
        raise SystemExit("kube-router needs ipset: apt-get install ipset")
    build.build_kube_router(harness.HOME)
    harness.start(
        NAME,
        [
            str(harness.BIN / NAME),
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",
            "--enable-cni=false",
            f"--kubeconfig={harness.KUBECONFIG}",
            f"--hostname-override={harness.NODE_NAME}",
            f"--service-cluster-ip-range={harness.SERVICE_CIDR}",
            "--health-port=0",
            "--metrics-port=0",
        ],
    )
    harness.wait_for(
        "kube-router's firewall chains",
        lambda: harness._iptables("-L", FORWARD_CHAIN, "-n") and running(),
        timeout=120,
    )
    harness.log("NetworkPolicies are enforced (kube-router)")


def down() -> None:
    """Stop kube-router and remove its iptables rules and ipsets (a no-op when it never ran)."""
    was_running = running()
    harness.stop(NAME)
    binary = harness.BIN / NAME
    if binary.is_file() and (was_running or harness._iptables("-L", FORWARD_CHAIN, "-n")):
        harness.run([str(binary), "--cleanup-config"], check=False, capture=True, timeout=120)

"""``e2e/cluster exec``: a command on the host that resolves cluster names."""

from __future__ import annotations

import os
from collections.abc import Sequence

from e2e.host.layout import BIN, KUBECONFIG, STATE
from e2e.network.addresses import CLUSTER_DOMAIN, DNS_IP


def exec_with_cluster_dns(cmd: Sequence[str]) -> None:
    """Runs CMD on the host, with cluster DNS: in a private mount namespace whose
    /etc/resolv.conf points at CoreDNS. The host reaches pod and Service IPs directly (the pod
    bridge and kube-proxy's OUTPUT rules), so in-cluster names such as Kafka's advertised
    listeners work from outside the cluster; nothing changes for other processes."""
    if not cmd:
        raise SystemExit("usage: e2e/cluster exec -- COMMAND [ARGS...]")
    resolv = STATE / "cluster-resolv.conf"
    resolv.write_text(
        f"nameserver {DNS_IP}\n"
        f"search default.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} "
        f"{CLUSTER_DOMAIN}\noptions ndots:5\n"
    )
    os.environ["KUBECONFIG"] = str(KUBECONFIG)
    os.environ["PATH"] = f"{BIN}:{os.environ.get('PATH', '')}"
    os.execvp(
        "unshare",
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(resolv),
            *cmd,
        ],
    )

"""The pods' network: the plain bridge CNI plugin on ``j2kbr0``, host-local IPAM, no
masquerading (the forward guard drops anything leaving the pod range)."""

from __future__ import annotations

import json
from pathlib import Path

from e2e.network.addresses import BRIDGE, Node


def conf_dir(node: Node) -> Path:
    return node.state / "cni" / "net.d"


def cni_bin_dir() -> str:
    for d in ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"):
        if Path(d, "bridge").is_file():
            return d
    raise SystemExit("CNI plugins missing: apt-get install containernetworking-plugins")


def cni_config(node: Node) -> str:
    """The node's pod range on its bridge (in the node's network namespace: the plugins run in
    containerd's)."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "j2k",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": node.pod_cidr}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(node.state / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )

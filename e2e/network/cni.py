"""The pods' network: the plain bridge CNI plugin on ``j2kbr0``, host-local IPAM, no
masquerading (the forward guard drops anything leaving the pod range)."""

from __future__ import annotations

import json
from pathlib import Path

from e2e.host.layout import STATE
from e2e.network.addresses import BRIDGE, POD_CIDR

CONF_DIR = STATE / "cni" / "net.d"


def cni_bin_dir() -> str:
    for d in ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"):
        if Path(d, "bridge").is_file():
            return d
    raise SystemExit("CNI plugins missing: apt-get install containernetworking-plugins")


def cni_config() -> str:
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
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(STATE / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )

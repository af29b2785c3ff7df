"""The cluster's add-ons, as Deployments from e2e/manifests: CoreDNS (cluster DNS) and the
local-path provisioner (the default StorageClass ``standard``, volumes under state/volumes;
``j2k-shared``, ReadWriteMany, under state/shared)."""

from __future__ import annotations

import functools
import string
from pathlib import Path

from e2e.control_plane.kubectl import kubectl
from e2e.host.commands import wait_for
from e2e.host.layout import MANIFESTS, STATE
from e2e.images.system import BUSYBOX_IMAGE, COREDNS_IMAGE, LOCAL_PATH_IMAGE
from e2e.network.addresses import CLUSTER_DOMAIN, DNS_IP, Node

#: the ReadWriteMany class every node can mount (a host directory standing in for EFS/NFS)
SHARED_CLASS = "j2k-shared"
SHARED_DIR = STATE / "shared"

#: what ``up`` waits for: (namespace, deployment)
DEPLOYMENTS = {
    "CoreDNS": ("kube-system", "coredns"),
    "local-path-provisioner": ("local-path-storage", "local-path-provisioner"),
}


def render_manifest(path: Path, **values: object) -> str:
    """A YAML file with string.Template placeholders, filled: the manifests stay plain files
    (readable, lintable), the values (images, addresses, paths) come from this harness."""
    return string.Template(path.read_text()).substitute({k: str(v) for k, v in values.items()})


def apply_addons(nodes: tuple[Node, ...]) -> None:
    """CoreDNS (a replica on each of two nodes when there are several) and local-path (the
    default class, node-local, and j2k-shared)."""
    coredns = render_manifest(
        MANIFESTS / "coredns.yaml",
        image=COREDNS_IMAGE,
        domain=CLUSTER_DOMAIN,
        dns_ip=DNS_IP,
        replicas=min(2, len(nodes)),
    )
    kubectl("apply", "-f", "-", input_text=coredns)
    (STATE / "volumes").mkdir(exist_ok=True)
    SHARED_DIR.mkdir(exist_ok=True)
    local_path = render_manifest(
        MANIFESTS / "local-path-provisioner.yaml",
        image=LOCAL_PATH_IMAGE,
        helper=BUSYBOX_IMAGE,
        volumes=STATE / "volumes",
        shared=SHARED_DIR,
    )
    kubectl("apply", "-f", "-", input_text=local_path)


def _rolled_out(namespace: str, deployment: str) -> bool:
    r = kubectl(
        "-n",
        namespace,
        "rollout",
        "status",
        f"deployment/{deployment}",
        "--timeout=5s",
        check=False,
    )
    return r.returncode == 0


def wait_rolled_out() -> None:
    for what, (namespace, deployment) in DEPLOYMENTS.items():
        wait_for(f"{what} ready", functools.partial(_rolled_out, namespace, deployment), 180, 1)

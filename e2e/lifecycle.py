"""The cluster's life: ``up`` (preflight, builds, host setup, each component in order, the
add-ons), ``down`` (everything ``up`` started or changed, in reverse) and ``status``."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from e2e import addons
from e2e.build.components import build_all
from e2e.control_plane import components as control_plane
from e2e.control_plane.kubectl import kubectl
from e2e.control_plane.pki import make_pki, write_kubeconfigs
from e2e.host import mounts
from e2e.host.commands import log, run, wait_for
from e2e.host.layout import BIN, HOME, IMAGES, KUBECONFIG, STATE
from e2e.host.processes import pid_of, stop
from e2e.images import system
from e2e.images.load import load_images
from e2e.network import netpol
from e2e.network.addresses import NODE_NAME
from e2e.network.host import setup_host, teardown_host
from e2e.node import containerd
from e2e.node.kube_proxy import start_kube_proxy
from e2e.node.kubelet import node_ready, start_kubelet

#: start order; `down` stops in reverse
COMPONENTS = (
    "etcd",
    "containerd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
)

REQUIRED_COMMANDS = {
    "containerd": "containerd",
    "runc": "runc",
    "ctr": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "iptables": "iptables",
    "ip": "iproute2",
    "conntrack": "conntrack",
    "openssl": "openssl",
    "go": "golang (Go >= 1.24)",
    "mount": "mount",
}

STATE_DIRS = ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "etcd")


def preflight() -> None:
    if os.geteuid() != 0:
        raise SystemExit("e2e/cluster must run as root (it runs a kubelet and containerd)")
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if not shutil.which(cmd)})
    if missing:
        raise SystemExit(
            "missing packages: apt-get install " + " ".join(missing) + "\n"
            "(see e2e/README.md for the full list)"
        )
    if not Path("/proc/sys/net/bridge").is_dir():
        run(["modprobe", "br_netfilter"], check=False)


def build_everything() -> None:
    t0 = time.monotonic()
    build_all(HOME)
    IMAGES.mkdir(parents=True, exist_ok=True)
    system.pause(BIN, IMAGES)
    system.coredns(BIN, IMAGES)
    system.busybox(BIN, IMAGES)
    system.local_path(BIN, IMAGES)
    log(f"binaries and images ready in {BIN} and {IMAGES} ({time.monotonic() - t0:.0f} s)")


def _prepare_state() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    for sub in STATE_DIRS:
        (STATE / sub).mkdir(parents=True, exist_ok=True)
    make_pki()
    write_kubeconfigs()


def up() -> None:
    preflight()
    t_all = time.monotonic()
    build_everything()
    t0 = time.monotonic()
    _prepare_state()
    setup_host()
    control_plane.start_etcd()
    containerd.start_containerd(system.PAUSE_IMAGE)
    control_plane.start_apiserver()
    control_plane.start_controller_manager()
    control_plane.start_scheduler()
    log("loading the cluster's own images into containerd")
    load_images(
        [
            IMAGES / "pause.tar",
            IMAGES / "coredns.tar",
            IMAGES / "busybox.tar",
            IMAGES / "local-path-provisioner.tar",
        ]
    )
    start_kubelet()
    start_kube_proxy()
    wait_for(f"node {NODE_NAME} Ready", node_ready, 180, 2)
    addons.apply_addons()
    addons.wait_rolled_out()
    log(
        f"cluster up: started in {time.monotonic() - t0:.0f} s "
        f"({time.monotonic() - t_all:.0f} s with builds); KUBECONFIG={KUBECONFIG}"
    )


def down() -> None:
    if os.geteuid() != 0:
        raise SystemExit("e2e/cluster must run as root")
    netpol.down()
    stop("kube-proxy")
    stop("kubelet")
    containerd.stop_pod_sandboxes()
    for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "containerd"):
        stop(name)
    containerd.kill_shims()
    stop("etcd")
    mounts.unmount_ours()
    teardown_host()
    if mounts.ours():
        raise SystemExit(f"still mounted under {STATE}: {mounts.ours()}")
    shutil.rmtree(STATE, ignore_errors=True)
    log("cluster down, state removed")


def status() -> int:
    if not STATE.is_dir():
        print("cluster: not running (no state)")
        return 1
    healthy = True
    for name in COMPONENTS:
        pid = pid_of(name)
        print(f"{name:26} {'running, pid ' + str(pid) if pid else 'NOT RUNNING'}")
        healthy = healthy and pid is not None
    if pid_of("kube-apiserver"):
        ready = node_ready()
        print(f"{'node ' + NODE_NAME:26} {'Ready' if ready else 'NOT Ready'}")
        healthy = healthy and ready
        r = kubectl("get", "pods", "-A", "-o", "wide", check=False)
        print(r.stdout.rstrip() or r.stderr.rstrip())
    print(f"kubeconfig: {KUBECONFIG}")
    return 0 if healthy else 1

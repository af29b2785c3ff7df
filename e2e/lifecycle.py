"""The cluster's life: ``up`` (preflight, builds, host setup, each component in order, the
add-ons), ``down`` (everything ``up`` started or changed, in reverse) and ``status``."""

from __future__ import annotations

import functools
import os
import shutil
import time
from pathlib import Path

from e2e import addons
from e2e.build.components import build_all
from e2e.control_plane import components as control_plane
from e2e.control_plane.kubectl import kubectl
from e2e.control_plane.pki import make_pki, write_kubeconfigs
from e2e.host import cgroups, mounts
from e2e.host.commands import log, run, wait_for
from e2e.host.layout import BIN, HOME, IMAGES, KUBECONFIG, STATE
from e2e.host.processes import pid_of, stop
from e2e.images import system
from e2e.images.load import load_images
from e2e.network import membership, netpol
from e2e.network.addresses import MAX_NODES, Node, topology
from e2e.network.host import setup_host, teardown_host
from e2e.node import containerd, power, registries
from e2e.node.kube_proxy import HOST_PROXY, start_host_proxy
from e2e.node.kubelet import node_ready

#: the control plane's daemons, on the host, one each
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")

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

#: what a node costs the machine, measured (e2e/README.md): its containerd, kubelet and
#: kube-proxy idle, plus a share of the pipeline's pods; J2K_E2E_NODE_MIB overrides it
NODE_MIB = int(os.environ.get("J2K_E2E_NODE_MIB", "1536"))
#: what the control plane (etcd, API server, controllers) and the tests' own processes need
CONTROL_PLANE_MIB = 1024


class UsageError(Exception):
    """Bad input to a command (exit 2), as opposed to a cluster that fails (exit 1)."""


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


def _mem_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def check_node_count(count: int) -> None:
    """Bad counts are usage errors: none, more than the addresses allow, more than memory
    holds (a node costs NODE_MIB), or another count than the running cluster's."""
    if count < 1 or count > MAX_NODES:
        raise UsageError(f"--nodes must be 1 to {MAX_NODES}, not {count}")
    if pid_of("kube-apiserver"):
        have = len(membership.current())
        if have != count:
            raise UsageError(
                f"a cluster of {have} node(s) is running: e2e/cluster down first, "
                f"then e2e/cluster up --nodes {count}"
            )
        return
    if count > 1:
        need = count * NODE_MIB + CONTROL_PLANE_MIB
        have_mib = _mem_available_mib()
        if need > have_mib:
            raise UsageError(
                f"{count} nodes need about {need} MiB ({NODE_MIB} MiB a node, "
                f"J2K_E2E_NODE_MIB, plus {CONTROL_PLANE_MIB} MiB for the control plane); "
                f"this machine has {have_mib} MiB available: use fewer nodes"
            )
        cgroups.require_freezer()
        if not shutil.which("nsenter"):
            raise SystemExit("several nodes need nsenter: apt-get install util-linux")


def default_node_count() -> int:
    """The running cluster's count, else J2K_E2E_NODES, else one."""
    if pid_of("kube-apiserver"):
        return len(membership.current())
    try:
        return int(os.environ.get("J2K_E2E_NODES", "1"))
    except ValueError:
        raise UsageError(
            f"J2K_E2E_NODES must be a number, not {os.environ['J2K_E2E_NODES']!r}"
        ) from None


def build_everything() -> None:
    t0 = time.monotonic()
    build_all(HOME)
    IMAGES.mkdir(parents=True, exist_ok=True)
    system.pause(BIN, IMAGES)
    system.coredns(BIN, IMAGES)
    system.busybox(BIN, IMAGES)
    system.local_path(BIN, IMAGES)
    log(f"binaries and images ready in {BIN} and {IMAGES} ({time.monotonic() - t0:.0f} s)")


def _prepare_state(nodes: tuple[Node, ...]) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "etcd").mkdir(exist_ok=True)
    membership.record(nodes)
    make_pki(nodes)
    write_kubeconfigs(nodes)


def up(count: int) -> None:
    check_node_count(count)
    preflight()
    t_all = time.monotonic()
    build_everything()
    t0 = time.monotonic()
    nodes = topology(count)
    _prepare_state(nodes)
    setup_host(nodes)
    control_plane.start_etcd()
    for node in nodes:
        containerd.start_containerd(node, system.PAUSE_IMAGE)
    control_plane.start_apiserver()
    if len(nodes) > 1:
        start_host_proxy(nodes)  # waits 30 s for a Node it will never find: start it early
    control_plane.start_controller_manager(nodes)
    control_plane.start_scheduler()
    log("loading the cluster's own images into containerd")
    load_images(
        [
            IMAGES / "pause.tar",
            IMAGES / "coredns.tar",
            IMAGES / "busybox.tar",
            IMAGES / "local-path-provisioner.tar",
        ],
        nodes,
    )
    for node in nodes:
        power.start_node(node, nodes, system.PAUSE_IMAGE)
    for node in nodes:
        wait_for(f"node {node.name} Ready", functools.partial(node_ready, node), 300, 2)
    addons.apply_addons(nodes)
    addons.wait_rolled_out()
    log(
        f"cluster up: {len(nodes)} node(s) started in {time.monotonic() - t0:.0f} s "
        f"({time.monotonic() - t_all:.0f} s with builds); KUBECONFIG={KUBECONFIG}"
    )


def down() -> None:
    if os.geteuid() != 0:
        raise SystemExit("e2e/cluster must run as root")
    netpol.down()
    registries.stop_relays()
    nodes = membership.current()
    stop(f"kube-proxy@{HOST_PROXY}")
    for node in nodes:
        power.stop_node(node, system.PAUSE_IMAGE)
    for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver"):
        stop(name)
    stop("etcd")
    mounts.unmount_ours()
    teardown_host()
    if mounts.ours():
        raise SystemExit(f"still mounted under {STATE}: {mounts.ours()}")
    shutil.rmtree(STATE, ignore_errors=True)
    log("cluster down, state removed")


def _daemons() -> list[str]:
    nodes = membership.current()
    names = list(CONTROL_PLANE)
    if len(nodes) > 1:
        names.append(f"kube-proxy@{HOST_PROXY}")
    names += [n.daemon(d) for n in nodes for d in power.DAEMONS]
    return names


def nodes_table() -> str:
    """``e2e/cluster nodes``: name, address, pod range, harness state, Ready."""
    rows = [f"{'NAME':14} {'IP':15} {'POD RANGE':16} {'STATE':12} READY"]
    api = pid_of("kube-apiserver") is not None
    for node in membership.current():
        ready = ("True" if node_ready(node) else "False") if api else "-"
        state = membership.state_of(node)
        rows.append(f"{node.name:14} {node.ip:15} {node.pod_cidr:16} {state:12} {ready}")
    return "\n".join(rows)


def status() -> int:
    if not STATE.is_dir():
        print("cluster: not running (no state)")
        return 1
    healthy = True
    for name in _daemons():
        pid = pid_of(name)
        print(f"{name:26} {'running, pid ' + str(pid) if pid else 'NOT RUNNING'}")
        healthy = healthy and pid is not None
    if pid_of("kube-apiserver"):
        for node in membership.current():
            ready = node_ready(node)
            print(f"{'node ' + node.name:26} {'Ready' if ready else 'NOT Ready'}")
            healthy = healthy and ready
        r = kubectl("get", "pods", "-A", "-o", "wide", check=False)
        print(r.stdout.rstrip() or r.stderr.rstrip())
    print(f"kubeconfig: {KUBECONFIG}")
    return 0 if healthy else 1

"""A node's life on its own: started (containerd, kubelet, kube-proxy in its namespace and
cgroup), killed as by a power loss, cut off from the network and back, stopped for ``down``.

A power loss pulls the cable first, so the dying processes' last packets (FIN, RST) reach
nobody, then freezes the node's cgroup subtree and SIGKILLs everything in it (daemons, shims,
containers): nobody is warned, as when a machine loses power. Its disks (``state/nodes/<name>``)
stay; ``start`` brings it back with them."""

from __future__ import annotations

import contextlib
import os
import signal

from e2e.host import cgroups
from e2e.host.commands import log, wait_for
from e2e.host.processes import pid_of, stop
from e2e.network import membership
from e2e.network.addresses import Node
from e2e.network.host import link
from e2e.node import containerd
from e2e.node.kube_proxy import start_kube_proxy
from e2e.node.kubelet import node_ready, start_kubelet

DAEMONS = ("containerd", "kubelet", "kube-proxy")
#: a node goes Ready well within this, even with three kubelets on two cores
READY_TIMEOUT = 300


def start_node(node: Node, nodes: tuple[Node, ...], sandbox_image: str) -> None:
    """Its daemons started (those not running), in its cgroup subtree when it has one."""
    containerd.start_containerd(node, sandbox_image)
    start_kubelet(node, len(nodes))
    start_kube_proxy(node, nodes)


def _several(node: Node, what: str) -> None:
    if not node.cgroup:
        raise ValueError(
            f"the single node cannot be {what}: start a cluster of several "
            "(e2e/cluster down; e2e/cluster up --nodes 3)"
        )


def kill(node: Node) -> None:
    if node.cgroup:
        link(node, up=False)
        cgroups.kill_all(node.cgroup)
    else:
        _kill_single(node)
    for daemon in DAEMONS:
        stop(node.daemon(daemon))  # only forgets the pid files: nothing of it runs
    membership.set_state(node, "killed")
    log(f"{node.name}: power lost (network cut, every process of it SIGKILLed)")


def _kill_single(node: Node) -> None:
    """The single node shares the host's network (there is no cable to pull) and has no
    subtree of its own: its daemons and shims are SIGKILLed by pid, its pods' cgroup
    (``/kubepods``) frozen and killed whole. The control plane keeps running, as it would on a
    machine of its own."""
    for daemon in DAEMONS:
        pid = pid_of(node.daemon(daemon))
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    containerd.kill_shims(node)
    cgroups.kill_all(cgroups.SINGLE_NODE_PODS)


def power_on(node: Node, sandbox_image: str) -> None:
    if node.veth:
        link(node, up=True)
    start_node(node, membership.current(), sandbox_image)
    wait_for(f"node {node.name} Ready", lambda: node_ready(node), READY_TIMEOUT, 2)
    membership.set_state(node, "up")
    log(f"{node.name}: back, Ready")


def partition(node: Node) -> None:
    _several(node, "cut off (it is the host's network)")
    link(node, up=False)
    membership.set_state(node, "partitioned")
    log(f"{node.name}: cut off the network (its processes keep running)")


def heal(node: Node) -> None:
    _several(node, "healed (it is the host's network)")
    link(node, up=True)
    membership.set_state(node, "up")
    log(f"{node.name}: network back")


def stop_node(node: Node, sandbox_image: str) -> None:
    """For ``down``: pods stopped through CRI (CNI DEL; a killed node's containerd is started
    for that alone), daemons stopped, whatever is left killed, its cgroups removed."""
    if node.cgroup and membership.state_of(node) == "killed":
        containerd.start_containerd(node, sandbox_image)
    stop(node.daemon("kube-proxy"))
    stop(node.daemon("kubelet"))
    containerd.stop_pod_sandboxes(node)
    stop(node.daemon("containerd"))
    containerd.kill_shims(node)
    if node.cgroup:
        cgroups.kill_all(node.cgroup)
        cgroups.remove(node.cgroup)

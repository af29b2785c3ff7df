"""A real single-node Kubernetes cluster on this machine, built from upstream components.

    e2e/cluster up [--nodes N] | down | status | nodes | kubeconfig | env
                | load-image FILE.tar... | build | kafka-image [--load]
                | node kill|start|partition|heal NAME | registry add|remove HOST:PORT

Everything is built once into ``$JUP2KUB_CACHE/k8s-<version>/`` (bin/, images/); the running
cluster's state (certificates, etcd data, containerd root, kubelet root, logs, pids) lives in
``.../state/`` and ``down`` removes it. Control-plane components listen on 127.0.0.1 or on the
node address, a /32 on a port-less bridge this harness creates; pods sit on a private bridge with
no NAT and no route out (see README.md in this directory).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from e2e.host.layout import BIN, CACHE_ROOT, HOME, KUBECONFIG
from e2e.host.processes import pid_of
from e2e.images import kafka, system
from e2e.images.load import load_images, load_images_or_refs
from e2e.lifecycle import (
    UsageError,
    build_everything,
    default_node_count,
    down,
    nodes_table,
    status,
    up,
)
from e2e.network import membership, netpol
from e2e.network.cluster_dns import exec_with_cluster_dns
from e2e.node import power, registries


def kafka_image(load: bool) -> Path:
    tar = kafka.build(CACHE_ROOT, HOME / "images")
    if load:
        print("\n".join(load_images([tar])))
    return tar


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="e2e/cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    up_ = sub.add_parser("up", help="build (first time) and start the cluster")
    up_.add_argument(
        "--nodes",
        type=int,
        default=None,
        help="how many nodes (default: the running cluster's, else $J2K_E2E_NODES, else 1); "
        "each node of several is a network namespace with its own containerd and kubelet",
    )
    sub.add_parser("nodes", help="the nodes: name, address, pod range, state, Ready")
    node = sub.add_parser(
        "node",
        help="kill (power loss: network cut, every process SIGKILLed), start (back with its "
        "disks), partition (network cut only) or heal a node",
    )
    node.add_argument("action", choices=("kill", "start", "partition", "heal"))
    node.add_argument("name", help="a node's name (e2e/cluster nodes)")
    sub.add_parser("down", help="stop everything this harness started and remove its state")
    sub.add_parser("status", help="components, node readiness, pods")
    sub.add_parser("kubeconfig", help="print the admin kubeconfig path")
    sub.add_parser("env", help="print shell exports (KUBECONFIG, PATH with kubectl)")
    sub.add_parser("build", help="only build binaries and images (cached)")
    li = sub.add_parser(
        "load-image",
        help="import images into the node's containerd: "
        "docker-save/OCI tarballs, or image names in the local Docker engine",
    )
    li.add_argument("images", nargs="+", help="FILE.tar or a Docker image reference")
    ex = sub.add_parser("exec", help="run a command with cluster DNS (and KUBECONFIG)")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    np = sub.add_parser(
        "netpol", help="enforce NetworkPolicies (kube-router's policy controller) or stop it"
    )
    np.add_argument("action", choices=("up", "down"))
    rg = sub.add_parser(
        "registry",
        help="let every node pull from a plain-HTTP registry (containerd's hosts.toml; a "
        "registry on the host's 127.0.0.1 is relayed into the nodes' namespaces) or forget it",
    )
    rg.add_argument("action", choices=("add", "remove"))
    rg.add_argument("host", metavar="HOST:PORT", help="the registry, e.g. 127.0.0.1:5000")
    ki = sub.add_parser("kafka-image", help="build the apache/kafka-compatible image")
    ki.add_argument("--load", action="store_true", help="also import it into the cluster")
    return p


def _node_action(action: str, name: str) -> None:
    if not pid_of("kube-apiserver"):
        raise SystemExit("the cluster is not running (e2e/cluster up)")
    node = membership.by_name(name)
    if action == "kill":
        power.kill(node)
    elif action == "start":
        power.power_on(node, system.PAUSE_IMAGE)
    elif action == "partition":
        power.partition(node)
    else:
        power.heal(node)


def _registry(action: str, host: str) -> None:
    registries.parse(host)  # a usage error before anything else
    if not pid_of("kube-apiserver"):
        raise SystemExit("the cluster is not running (e2e/cluster up)")
    if action == "add":
        for f in registries.add(host):
            print(f)
    else:
        registries.remove(host)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except (UsageError, LookupError, ValueError) as e:
        parser.exit(2, f"e2e/cluster: error: {e}\n")


def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd == "up":
        up(args.nodes if args.nodes is not None else default_node_count())
    elif args.cmd == "nodes":
        print(nodes_table())
    elif args.cmd == "node":
        _node_action(args.action, args.name)
    elif args.cmd == "down":
        down()
    elif args.cmd == "status":
        return status()
    elif args.cmd == "kubeconfig":
        print(KUBECONFIG)
    elif args.cmd == "env":
        print(f"export KUBECONFIG={KUBECONFIG}\nexport PATH={BIN}:$PATH")
    elif args.cmd == "build":
        build_everything()
    elif args.cmd == "load-image":
        print("\n".join(load_images_or_refs(args.images)))
    elif args.cmd == "exec":
        cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
        exec_with_cluster_dns(cmd)
    elif args.cmd == "netpol":
        netpol.up() if args.action == "up" else netpol.down()
    elif args.cmd == "registry":
        _registry(args.action, args.host)
    elif args.cmd == "kafka-image":
        print(kafka_image(args.load))
    return 0


if __name__ == "__main__":
    sys.exit(main())

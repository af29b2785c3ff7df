"""Which nodes the running cluster has and what state each is in (``state/nodes.json``,
written by ``up`` and the ``node`` commands, read by every other command)."""

from __future__ import annotations

import json
from typing import Literal

from e2e.host.layout import STATE
from e2e.network.addresses import Node, topology

NODES_FILE = STATE / "nodes.json"
NodeState = Literal["up", "killed", "partitioned"]


def record(nodes: tuple[Node, ...]) -> None:
    """A new cluster's nodes, all up (kept as they are when the cluster already runs)."""
    if NODES_FILE.is_file():
        return
    NODES_FILE.write_text(json.dumps({n.name: "up" for n in nodes}, indent=2) + "\n")


def _read() -> dict[str, NodeState]:
    try:
        data: dict[str, NodeState] = json.loads(NODES_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return data


def current() -> tuple[Node, ...]:
    """The running cluster's nodes (one when none was recorded: a cluster from before)."""
    return topology(max(1, len(_read())))


def by_name(name: str) -> Node:
    nodes = current()
    for node in nodes:
        if node.name == name:
            return node
    raise LookupError(f"no node named {name!r}: the cluster has {', '.join(n.name for n in nodes)}")


def state_of(node: Node) -> NodeState:
    return _read().get(node.name, "up")


def set_state(node: Node, state: NodeState) -> None:
    data = _read() or {n.name: "up" for n in current()}
    data[node.name] = state
    tmp = NODES_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(NODES_FILE)

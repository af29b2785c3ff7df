"""Registries the nodes pull from over plain HTTP (``e2e/cluster registry add|remove HOST:PORT``).

Each node's containerd reads ``certs.d/<HOST:PORT>/hosts.toml`` (its ``config_path``) at every
pull, so adding a registry needs no restart: the file says to reach it over ``http://`` for pull
and resolve. A registry on the host's loopback (``127.0.0.1:PORT`` or ``localhost:PORT``, where
the tests run theirs) is reachable as such from the single node, which shares the host's network
namespace; with several nodes a relay (``loopback_relay.py``) listens on ``127.0.0.1:PORT``
inside every node's namespace and forwards to the host's, so image references name the same
``127.0.0.1:PORT`` everywhere. ``down`` stops the relays (their pids are recorded like every
daemon's); the hosts files go with the nodes' state."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from e2e.host.commands import log, wait_for
from e2e.host.layout import LOGS, PIDS
from e2e.host.processes import start, stop
from e2e.network import membership
from e2e.network.addresses import Node
from e2e.node.containerd import hosts_dir

RELAY = "registry-relay"
RELAY_SCRIPT = Path(__file__).resolve().parents[1] / "network" / "loopback_relay.py"
LOOPBACK = ("127.0.0.1", "localhost")


def parse(host: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (HOST, PORT); anything else is a usage error (ValueError)."""
    name, sep, port = host.rpartition(":")
    if not sep or not name or "/" in host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a registry is HOST:PORT (say 127.0.0.1:5000), not {host!r}")
    return name, int(port)


def hosts_toml(host: str) -> str:
    """containerd's hosts file for a registry served over plain HTTP."""
    return (
        f'server = "http://{host}"\n\n'
        f'[host."http://{host}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )


def _relay_name(port: int) -> str:
    return f"{RELAY}@{port}"


def add(host: str) -> list[Path]:
    """Every node pulls from ``host`` over plain HTTP (and reaches it, when it is the host's
    loopback); the hosts files written."""
    name, port = parse(host)
    nodes = membership.current()
    written = []
    for node in nodes:
        f = hosts_dir(node) / host / "hosts.toml"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(hosts_toml(host))
        written.append(f)
    namespaces = [n.netns for n in nodes if n.netns]
    if name in LOOPBACK and namespaces:
        _start_relay(port, namespaces)
    return written


def _start_relay(port: int, namespaces: list[str]) -> None:
    relay = _relay_name(port)
    start(relay, [sys.executable, str(RELAY_SCRIPT), str(port), *namespaces])
    log_file = LOGS / f"{relay}.log"
    wait_for(
        f"{relay} listening in the nodes",
        lambda: f"relaying 127.0.0.1:{port}" in log_file.read_text(errors="replace"),
        30,
        0.2,
    )
    log(f"127.0.0.1:{port} relayed into {', '.join(namespaces)}")


def remove(host: str) -> None:
    """The hosts files gone from every node, the relay (if any) stopped."""
    name, port = parse(host)
    for node in membership.current():
        shutil.rmtree(hosts_dir(node) / host, ignore_errors=True)
    if name in LOOPBACK:
        stop(_relay_name(port))


def stop_relays() -> None:
    """Every relay this harness started (``down``)."""
    for pid_file in sorted(PIDS.glob(f"{RELAY}@*.pid")) if PIDS.is_dir() else ():
        stop(pid_file.name.removesuffix(".pid"))


def configured(node: Node) -> list[str]:
    """The registries ``node`` has a hosts file for."""
    root = hosts_dir(node)
    return sorted(p.parent.name for p in root.glob("*/hosts.toml")) if root.is_dir() else []

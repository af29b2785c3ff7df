"""The cluster-free part of the e2e harness, in the default suite so that it cannot rot between
full e2e runs (`bash e2e/run.sh`): the pod sandbox image the harness assembles by hand (no
registry to pull ``pause`` from) must load into and run on a real container engine."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from e2e.build.components import build_pause
from e2e.host.processes import write_config
from e2e.images import system as images


def _docker() -> str:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "version"], capture_output=True, timeout=60).returncode != 0
    ):
        pytest.skip("no Docker engine (tests/setup.d/40-docker.sh starts one)")
    return docker


def test_hand_assembled_pause_image_runs_on_a_real_engine(tmp_path: Path) -> None:
    if shutil.which("go") is None:
        pytest.skip("Go is needed to build the pause binary (as for helm)")
    docker = _docker()
    cache = tmp_path / "cache"
    (cache / "bin").mkdir(parents=True)
    build_pause(cache)
    tar = images.pause(cache / "bin", tmp_path / "images")
    loaded = subprocess.run(
        [docker, "load", "-i", str(tar)], capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr
    assert images.PAUSE_IMAGE in loaded.stdout
    name = f"j2k-pause-test-{tmp_path.name}"
    started = subprocess.run(
        [
            docker,
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--read-only",
            images.PAUSE_IMAGE,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert started.returncode == 0, started.stderr
        info = json.loads(
            subprocess.run(
                [docker, "inspect", name], capture_output=True, text=True, timeout=60, check=True
            ).stdout
        )[0]
        assert info["State"]["Running"] is True
        assert info["Config"]["User"] == "65535:65535"  # non-root, as the kubelet expects
        # the sandbox exits cleanly on SIGTERM, so pod deletion is quick
        stopped = subprocess.run(
            [docker, "stop", "-t", "10", name], capture_output=True, text=True, timeout=60
        )
        assert stopped.returncode == 0, stopped.stderr
        state = json.loads(
            subprocess.run(
                [docker, "inspect", name], capture_output=True, text=True, timeout=60, check=True
            ).stdout
        )[0]["State"]
        assert state["ExitCode"] == 0, state
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run([docker, "rmi", images.PAUSE_IMAGE], capture_output=True, timeout=60)


def test_daemon_configs_are_rewritten_only_when_they_change(tmp_path: Path) -> None:
    """kube-proxy exits when its configuration file is written at all: a second `cluster up`
    that rewrote it left new Services unreachable (the e2e flake of
    test_dns_and_clusterip_service). An unchanged configuration is not written again."""
    path = tmp_path / "kube-proxy-config.json"
    write_config(path, "{}")
    first = path.stat().st_mtime_ns
    time.sleep(0.05)  # more than the kernel's coarse clock tick: a write would move the mtime
    write_config(path, "{}")
    assert path.stat().st_mtime_ns == first
    write_config(path, '{"mode": "iptables"}')
    assert path.read_text() == '{"mode": "iptables"}'


def test_a_cluster_of_several_nodes_gives_each_its_own_address_range_and_directories() -> None:
    """One node stays exactly as it was (the host's namespace, state/ itself, the old names);
    N nodes are namespaces with addresses, pod ranges and directories of their own, inside
    the ranges the forward guard and kube-proxy call the cluster's."""
    import ipaddress

    from e2e.host.layout import CTRD_SOCK, STATE
    from e2e.network import addresses as a

    (single,) = a.topology(1)
    assert (single.name, single.ip, single.pod_cidr) == (a.NODE_NAME, a.NODE_IP, a.POD_CIDR)
    assert (single.netns, single.cgroup, single.state) == (None, None, STATE)
    assert single.socket == CTRD_SOCK and single.daemon("kubelet") == "kubelet"
    nodes = a.topology(3)
    assert [n.name for n in nodes] == ["j2k-node-1", "j2k-node-2", "j2k-node-3"]
    assert len({n.ip for n in nodes}) == len({n.pod_cidr for n in nodes}) == 3
    cluster = ipaddress.ip_network(a.cluster_cidr(nodes))
    link = ipaddress.ip_network(a.NODE_LINK_CIDR)
    services = ipaddress.ip_network(a.SERVICE_CIDR)
    for n in nodes:
        pods = ipaddress.ip_network(n.pod_cidr)
        assert pods.subnet_of(cluster) and not pods.overlaps(services)  # type: ignore[arg-type]
        assert ipaddress.ip_address(n.ip) in link and ipaddress.ip_address(n.gateway) in pods
        assert n.state == STATE / "nodes" / n.name and n.cgroup == f"/{n.name}"
        assert n.daemon("containerd") == f"containerd@{n.name}"
    assert not cluster.overlaps(services) and not cluster.overlaps(link)
    with pytest.raises(ValueError, match="1 to 9"):
        a.topology(0)


def test_each_node_runs_in_its_cgroup_with_an_honest_share_of_memory() -> None:
    from e2e.control_plane.pki import certs
    from e2e.network.addresses import topology
    from e2e.node.containerd import containerd_config
    from e2e.node.kubelet import kubelet_config

    nodes = topology(3)
    second = json.loads(kubelet_config(nodes[1], 3))
    assert second["cgroupRoot"] == "/j2k-node-2"
    assert second["address"] == nodes[1].ip
    assert second["containerRuntimeEndpoint"] == f"unix://{nodes[1].socket}"
    total = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    assert int(second["systemReserved"]["memory"]) == total - total // 3
    assert "cgroupRoot" not in json.loads(kubelet_config(topology(1)[0]))
    assert f'address = "{nodes[1].socket}"' in containerd_config(nodes[1], "pause")
    # each kubelet its own identity, which the Node authorizer holds it to
    names = {c.cn for c in certs(nodes)}
    assert {f"system:node:{n.name}" for n in nodes} <= names


def test_the_forward_guard_allows_the_nodes_link_only_with_several_nodes() -> None:
    from e2e.network.addresses import NODE_LINK_CIDR, POD_CIDR, topology
    from e2e.network.host import _guard_rules

    assert _guard_rules(topology(1)) == [
        ("-s", POD_CIDR, "-d", POD_CIDR, "-j", "ACCEPT"),
        ("-s", POD_CIDR, "-j", "DROP"),
        ("-d", POD_CIDR, "-j", "DROP"),
    ]
    several = _guard_rules(topology(3))
    assert ("-s", NODE_LINK_CIDR, "-d", "10.233.0.0/17", "-j", "ACCEPT") in several
    assert several[-4:] == [
        ("-s", "10.233.0.0/17", "-j", "DROP"),
        ("-d", "10.233.0.0/17", "-j", "DROP"),
        ("-s", NODE_LINK_CIDR, "-j", "DROP"),
        ("-d", NODE_LINK_CIDR, "-j", "DROP"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--nodes", "0"], "--nodes must be 1 to 9, not 0"),
        (["up", "--nodes", "12"], "--nodes must be 1 to 9, not 12"),
        (["up", "--nodes", "three"], "invalid int value"),
        (["node", "reboot", "j2k-node-1"], "invalid choice"),
        (["registry", "add", "nonsense"], "a registry is HOST:PORT"),
        (["registry", "add", "127.0.0.1:99999"], "a registry is HOST:PORT"),
        (["registry", "add", "127.0.0.1:5000/team"], "a registry is HOST:PORT"),
        (["registry", "forget", "127.0.0.1:5000"], "invalid choice"),
    ],
)
def test_bad_cluster_commands_exit_2_with_the_reason(args: list[str], message: str) -> None:
    r = subprocess.run(
        [str(Path(__file__).resolve().parents[1] / "e2e" / "cluster"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_too_many_nodes_for_the_memory_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from e2e import lifecycle

    monkeypatch.setattr(lifecycle, "pid_of", lambda name: None)
    monkeypatch.setattr(lifecycle, "NODE_MIB", 10**7)
    with pytest.raises(lifecycle.UsageError, match="MiB a node, J2K_E2E_NODE_MIB"):
        lifecycle.check_node_count(3)


def test_a_registry_is_a_plain_http_hosts_file_for_containerd() -> None:
    from e2e.node.registries import hosts_toml, parse

    assert parse("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse("registry.example:443") == ("registry.example", 443)
    assert hosts_toml("127.0.0.1:5000") == (
        'server = "http://127.0.0.1:5000"\n\n'
        '[host."http://127.0.0.1:5000"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )


def test_the_loopback_relay_reaches_the_hosts_loopback_from_another_network_namespace(
    tmp_path: Path,
) -> None:
    """What lets several nodes (network namespaces) pull from a registry on the host's
    127.0.0.1: the relay listens on 127.0.0.1:PORT inside the namespace and forwards there."""
    import http.server
    import os
    import sys
    import threading
    import uuid

    from e2e.node.registries import RELAY_SCRIPT

    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nsenter"):
        pytest.skip("needs root, ip and nsenter (network namespaces)")
    body = uuid.uuid4().hex.encode()

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ns = f"j2k-test-relay-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    relay = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=30)
        fetch = [
            "nsenter",
            f"--net=/run/netns/{ns}",
            "--",
            sys.executable,
            "-c",
            f"import urllib.request; print(urllib.request.urlopen("
            f"'http://127.0.0.1:{port}/v2/', timeout=5).read().decode())",
        ]
        # the namespace's own loopback: nothing there before the relay
        assert subprocess.run(fetch, capture_output=True, timeout=30).returncode != 0
        log = tmp_path / "relay.log"
        with log.open("wb") as out:
            relay = subprocess.Popen(
                [sys.executable, str(RELAY_SCRIPT), str(port), ns], stdout=out, stderr=out
            )
        deadline = time.monotonic() + 20
        while b"relaying" not in log.read_bytes():
            assert relay.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        r = subprocess.run(fetch, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == body.decode()
    finally:
        if relay is not None:
            relay.terminate()
            assert relay.wait(10) == 0
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
        server.shutdown()

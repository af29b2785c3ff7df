"""The harness's nodes (``bash e2e/run.sh --nodes 3``): each its own kubelet, containerd and
address; pods talk across nodes by IP and by Service name; the host reaches pods on any node;
``j2k-shared`` is mounted by pods on every node at once; a node cut off goes NotReady while its
processes keep running and comes back; a killed node loses every process and comes back with
its disks (its images still there). With one node only the usage errors are checked."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.host import cgroups
from e2e.host.processes import pid_of
from e2e.network import membership
from e2e.network.addresses import Node
from e2e.support import E2E, Cluster

CLUSTER = E2E / "cluster"


def _cluster_cmd(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLUSTER), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def nodes(cluster: Cluster) -> tuple[Node, ...]:
    if not cluster.own:
        pytest.skip("node failures are the harness's own cluster's commands")
    have = membership.current()
    if len(have) < 3:
        pytest.skip("a cluster of 3 nodes is needed: bash e2e/run.sh --nodes 3")
    return have


def _apply(cluster: Cluster, ns: str, *objects: dict[str, Any]) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input_text=yaml.safe_dump_all(objects))


def _pod(
    cluster: Cluster, name: str, node: str, script: str, volume: str | None = None, **labels: str
) -> dict[str, Any]:
    """A busybox pod pinned to ``node`` running ``script``."""
    container: dict[str, Any] = {
        "name": "main",
        "image": cluster.busybox,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
    }
    spec: dict[str, Any] = {
        "nodeName": node,
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [container],
    }
    if volume:
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": volume}}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def _wait(what: str, probe: Callable[[], bool], timeout: float, interval: float = 1.0) -> float:
    """Seconds until ``probe`` holds (fails the test after ``timeout``)."""
    t0 = time.monotonic()
    while not probe():
        assert time.monotonic() - t0 < timeout, f"timed out after {timeout:.0f} s: {what}"
        time.sleep(interval)
    return time.monotonic() - t0


def _phase(cluster: Cluster, ns: str, pod: str) -> str:
    return cluster.kubectl(
        "-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.phase}", check=False
    ).stdout


def _done(cluster: Cluster, ns: str, pod: str, timeout: float = 180) -> str:
    _wait(f"pod {pod} done", lambda: _phase(cluster, ns, pod) in ("Succeeded", "Failed"), timeout)
    logs = cluster.kubectl("-n", ns, "logs", pod, check=False).stdout
    assert _phase(cluster, ns, pod) == "Succeeded", logs
    return logs


def _pod_ip(cluster: Cluster, ns: str, pod: str) -> str:
    _wait(f"pod {pod} running", lambda: _phase(cluster, ns, pod) == "Running", 180)
    return cluster.kubectl("-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}").stdout


def _ready(cluster: Cluster, node: str) -> str:
    return cluster.kubectl(
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        check=False,
    ).stdout


def test_nodes_have_their_own_addresses_ranges_and_daemons(
    cluster: Cluster, nodes: tuple[Node, ...]
) -> None:
    items = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    addresses = {
        n["metadata"]["name"]: next(
            a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"
        )
        for n in items
    }
    assert addresses == {node.name: node.ip for node in nodes}
    listed = _cluster_cmd("nodes")
    assert listed.returncode == 0, listed.stderr
    for node in nodes:
        assert _ready(cluster, node.name) == "True"
        row = next(line for line in listed.stdout.splitlines() if line.startswith(node.name))
        assert row.split() == [node.name, node.ip, node.pod_cidr, "up", "True"]
        for daemon in ("containerd", "kubelet", "kube-proxy"):
            pid = pid_of(node.daemon(daemon))
            assert pid is not None, node.daemon(daemon)
            # in the node's network namespace and cgroup subtree, not the host's
            assert Path(f"/proc/{pid}/ns/net").readlink() != Path("/proc/self/ns/net").readlink()
            assert node.cgroup and pid in cgroups.pids(node.cgroup)


def test_pods_talk_across_nodes_and_the_host_reaches_them(
    cluster: Cluster, namespace: str, nodes: tuple[Node, ...]
) -> None:
    far, near = nodes[-1].name, nodes[0].name
    web = (
        "mkdir -p /tmp/w && echo hello-from-$(hostname) > /tmp/w/i && "
        "exec httpd -f -p 8080 -h /tmp/w"
    )
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "far"},
        "spec": {"selector": {"app": "far"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    _apply(cluster, namespace, _pod(cluster, "web", far, web, app="far"), service)
    ip = _pod_ip(cluster, namespace, "web")
    assert ip.startswith(nodes[-1].pod_cidr.rsplit(".", 1)[0] + "."), ip
    # kube-proxy programs a new Service within seconds: retried, and only the round where both
    # answered is printed (a round where the Service was not there yet printed the first)
    script = (
        f"for i in $(seq 30); do a=$(netcheck get http://{ip}:8080/i) && "
        'b=$(netcheck get http://far/i) && echo "$a" && echo "$b" && exit 0; sleep 2; done; exit 1'
    )
    _apply(cluster, namespace, _pod(cluster, "client", near, script))
    logs = _done(cluster, namespace, "client")
    assert logs.count("hello-from-web") == 2, logs
    host = subprocess.run(
        ["curl", "-sf", "--max-time", "5", f"http://{ip}:8080/i"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert host.stdout.strip() == "hello-from-web", host.stderr


@pytest.fixture
def restore_nodes(nodes: tuple[Node, ...]) -> Iterator[None]:
    """Whatever a test did to the nodes is undone, even when it fails: the tests after it need
    the whole cluster."""
    yield
    for node in nodes:
        state = membership.state_of(node)
        if state != "up":
            _cluster_cmd("node", "start" if state == "killed" else "heal", node.name)


@pytest.fixture
def shared(cluster: Cluster, namespace: str) -> Iterator[Path]:
    """A j2k-shared claim, ReadWriteMany, and its directory on the host."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "shared"},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "j2k-shared",
            "resources": {"requests": {"storage": "64Mi"}},
        },
    }
    _apply(cluster, namespace, claim)

    def bound() -> bool:
        return (
            cluster.kubectl(
                "-n", namespace, "get", "pvc", "shared", "-o", "jsonpath={.status.phase}"
            ).stdout
            == "Bound"
        )

    _wait("the shared claim bound", bound, 120)
    pv_name = cluster.kubectl(
        "-n", namespace, "get", "pvc", "shared", "-o", "jsonpath={.spec.volumeName}"
    ).stdout
    pv = json.loads(cluster.kubectl("get", "pv", pv_name, "-o", "json").stdout)
    assert "nodeAffinity" not in pv["spec"], pv["spec"]  # any node may mount it
    source = pv["spec"].get("hostPath") or pv["spec"]["local"]
    yield Path(source["path"])


def test_a_shared_volume_is_written_and_read_from_every_node(
    cluster: Cluster, namespace: str, nodes: tuple[Node, ...], shared: Path
) -> None:
    writers = [
        _pod(cluster, f"w{n.index}", n.name, f"echo {n.name} > /data/{n.name}", volume="shared")
        for n in nodes
    ]
    _apply(cluster, namespace, *writers)
    for n in nodes:
        _done(cluster, namespace, f"w{n.index}")
    reader = _pod(cluster, "reader", nodes[1].name, "cat /data/j2k-node-*", volume="shared")
    _apply(cluster, namespace, reader)
    assert _done(cluster, namespace, "reader").split() == [n.name for n in nodes]
    assert sorted(p.name for p in shared.iterdir()) == [n.name for n in nodes]


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.is_file() else []


@pytest.mark.usefixtures("restore_nodes")
def test_a_partitioned_node_goes_not_ready_keeps_running_and_comes_back(
    cluster: Cluster, namespace: str, nodes: tuple[Node, ...], shared: Path
) -> None:
    cut, other = nodes[1], nodes[0]
    web = "mkdir -p /tmp/w && echo up > /tmp/w/i && exec httpd -f -p 8080 -h /tmp/w"
    _apply(cluster, namespace, _pod(cluster, "peer", other.name, web))
    peer = _pod_ip(cluster, namespace, "peer")
    # its heartbeat (a process alive) and whether it reaches a pod on another node, each second
    beat = (
        "(while true; do "
        f"if netcheck get http://{peer}:8080/i >/dev/null 2>&1; then r=ok; else r=cut; fi; "
        "echo $(date +%s):$r >> /data/probe; sleep 1; done) & "
        "while true; do date +%s >> /data/beat; sleep 1; done"
    )
    _apply(cluster, namespace, _pod(cluster, "beat", cut.name, beat, volume="shared"))
    _wait("first probes", lambda: "ok" in " ".join(_lines(shared / "probe")), 120)

    assert _cluster_cmd("node", "partition", cut.name).returncode == 0
    t_cut = time.time()
    not_ready = _wait(f"{cut.name} NotReady", lambda: _ready(cluster, cut.name) != "True", 180)
    assert membership.state_of(cut) == "partitioned"
    beats_then = len(_lines(shared / "beat"))
    time.sleep(3)
    assert len(_lines(shared / "beat")) > beats_then  # its processes still run
    after = [p for p in _lines(shared / "probe") if int(p.split(":")[0]) > t_cut + 2]
    assert after and all(p.endswith(":cut") for p in after), after

    assert _cluster_cmd("node", "heal", cut.name).returncode == 0
    t_heal = time.time()
    back = _wait(f"{cut.name} Ready again", lambda: _ready(cluster, cut.name) == "True", 180)
    _wait(
        "the peer reachable again",
        lambda: any(
            p.endswith(":ok") and int(p.split(":")[0]) > t_heal for p in _lines(shared / "probe")
        ),
        60,
    )
    print(f"\npartition: NotReady after {not_ready:.0f} s; Ready {back:.0f} s after heal")


@pytest.mark.usefixtures("restore_nodes")
def test_a_killed_node_loses_every_process_and_comes_back_with_its_disks(
    cluster: Cluster, namespace: str, nodes: tuple[Node, ...]
) -> None:
    victim = nodes[-1]
    assert victim.cgroup
    _apply(cluster, namespace, _pod(cluster, "doomed", victim.name, "sleep 3600"))
    _wait("doomed running", lambda: _phase(cluster, namespace, "doomed") == "Running", 180)
    before = cgroups.pids(victim.cgroup)
    assert len(before) > 3  # three daemons, shims and containers

    killed = _cluster_cmd("node", "kill", victim.name)
    assert killed.returncode == 0, killed.stderr
    assert cgroups.pids(victim.cgroup) == set()
    assert all(not Path(f"/proc/{pid}").exists() for pid in before)
    assert pid_of(victim.daemon("kubelet")) is None
    not_ready = _wait(
        f"{victim.name} NotReady", lambda: _ready(cluster, victim.name) != "True", 180
    )
    assert "killed" in _cluster_cmd("nodes").stdout

    started = _cluster_cmd("node", "start", victim.name)
    assert started.returncode == 0, started.stderr
    assert _ready(cluster, victim.name) == "True"
    images = subprocess.run(
        ["ctr", "--address", str(victim.socket), "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert cluster.busybox in images  # loaded before the kill, still on its disk
    _apply(cluster, namespace, _pod(cluster, "again", victim.name, "echo back"))
    assert _done(cluster, namespace, "again").strip() == "back"
    print(f"\nkill: NotReady after {not_ready:.0f} s")


def test_bad_node_commands_are_usage_errors(cluster: Cluster) -> None:
    if not cluster.own:
        pytest.skip("the harness's own commands")
    count = len(membership.current())
    unknown = _cluster_cmd("node", "kill", "no-such-node")
    assert unknown.returncode == 2 and "no node named 'no-such-node'" in unknown.stderr
    other = _cluster_cmd("up", "--nodes", str(count % 3 + 1))
    assert other.returncode == 2 and "down first" in other.stderr, other.stderr
    assert _cluster_cmd("up", "--nodes", "0").returncode == 2
    if count == 1:
        single = _cluster_cmd("node", "partition", "j2k-node")
        assert single.returncode == 2 and "single node" in single.stderr


def test_the_single_node_power_cycles(cluster: Cluster, namespace: str) -> None:
    """One node: ``node kill`` SIGKILLs its daemons, shims and every pod process (``/kubepods``)
    while the control plane keeps running; ``node start`` brings it back, with its images."""
    if not cluster.own:
        pytest.skip("the harness's own commands")
    if len(membership.current()) != 1:
        pytest.skip("the single node's power cycle (the several nodes' is tested above)")
    node = membership.current()[0]
    _apply(cluster, namespace, _pod(cluster, "doomed", node.name, "sleep 3600"))
    _wait("doomed running", lambda: _phase(cluster, namespace, "doomed") == "Running", 180)
    daemons = [pid_of(node.daemon(d)) for d in ("containerd", "kubelet", "kube-proxy")]
    assert None not in daemons and cgroups.pids(cgroups.SINGLE_NODE_PODS)
    try:
        killed = _cluster_cmd("node", "kill", node.name)
        assert killed.returncode == 0, killed.stderr
        assert cgroups.pids(cgroups.SINGLE_NODE_PODS) == set()
        assert all(not Path(f"/proc/{pid}").exists() for pid in daemons)
        assert pid_of("kube-apiserver") is not None
    finally:
        started = _cluster_cmd("node", "start", node.name)
    assert started.returncode == 0, started.stderr
    assert _ready(cluster, node.name) == "True"
    _apply(cluster, namespace, _pod(cluster, "again", node.name, "echo back"))
    assert _done(cluster, namespace, "again").strip() == "back"

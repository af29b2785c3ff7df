"""The chart's promises on several nodes (``bash e2e/run.sh --nodes 3``): brokers and step
replicas spread over nodes, topics replicated three times with ``min.insync.replicas`` 2, and a
stream of runs that survives losing a node (power loss, then a network partition), a drain and
a rolling upgrade: every run completes exactly once with the right result. On one node the
power loss is a power cycle (the node is back after 30 s): the same checks, and the figures to
compare with.

A generated two-step notebook: ``work`` (2 replicas) computes ``y`` from the run's parameter
``x``; ``after`` (2 replicas) makes the result ``f"{x}:{2 * y}"``. Runs are submitted with
distinct ``x``, so a result in the wrong run, a lost run and a doubled one are all visible.
Figures (runs lost, doubled, time from the fault to the first completion after it, the longest
stall) go to ``$JUP2KUB_CACHE/k8s-<version>/figures/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from nbformat import v4

from e2e.host.layout import HOME
from e2e.network import membership
from e2e.support import E2E, Cluster, docker_ok, helm, result_file

RELEASE = "multi"
STEPS = ("work", "after")
RUNS = int(os.environ.get("J2K_E2E_NODE_LOSS_RUNS", "300"))
FIGURES = HOME / "figures"
#: how the tests set the chart up for this cluster: small requests (three brokers and four
#: step pods share two cores), a fixed replica count, the state on j2k-shared (ReadWriteMany)
VALUES: dict[str, Any] = {
    "storage": {"mode": "existingClaim", "existingClaim": "state"},
    "stepDefaults": {
        "replicas": 2,
        "autoscaling": {"enabled": False},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
    },
    "kafka": {
        "nodes": 3,
        "heapOpts": "-Xms384m -Xmx384m",
        "resources": {"requests": {"cpu": "100m", "memory": "768Mi"}},
        "persistence": {"size": "1Gi"},
    },
}


def _values(several: bool) -> dict[str, Any]:
    """VALUES for this cluster: one broker on a single node."""
    if several:
        return VALUES
    return {**VALUES, "kafka": {**VALUES["kafka"], "nodes": 1}}


def _three_nodes() -> None:
    if len(membership.current()) < 3:
        pytest.skip("a cluster of 3 nodes is needed: bash e2e/run.sh --nodes 3")


# Submits runs <prefix>0000.. with x = offset + i through the pipeline's Kafka, each retried
# until a broker takes it (one may be gone meanwhile); runs with cluster DNS.
SUBMITTER = """
import sys, time
from jup2kub.errors import KafkaUnavailableError
from jup2kub.run.remote import submit_run
bootstrap, pipeline, prefix, offset, n = sys.argv[1:6]
for i in range(int(n)):
    run_id = f"{prefix}{i:04d}"
    while True:
        try:
            submit_run(bootstrap, pipeline, run_id, {"x": int(offset) + i}, connect_timeout=600)
            break
        except KafkaUnavailableError:
            time.sleep(1)
    print(run_id, flush=True)
"""

# Reads the status topic from its start: per run and step, how often each state was said.
STATUS = """
import json, sys
from kafka import KafkaConsumer
bootstrap, topic = sys.argv[1:3]
c = KafkaConsumer(topic, bootstrap_servers=bootstrap.split(","), auto_offset_reset="earliest",
                  enable_auto_commit=False, consumer_timeout_ms=8000)
seen = {}
for m in c:
    s = json.loads(m.value)
    key = f"{s['run_id']}/{s['step']}"
    seen.setdefault(key, {}).setdefault(s["state"], 0)
    seen[key][s["state"]] += 1
print(json.dumps(seen))
"""


def _notebook(path: Path) -> Path:
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    params = v4.new_code_cell("x = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        v4.new_code_cell("#| step: work\nimport time\n\ntime.sleep(0.05)\ny = 3 * x + 1"),
        v4.new_code_cell("#| step: after\nresult = f'{x}:{2 * y}'\nprint(result)"),
    ]
    nbformat.write(nb, path)
    return path


def expected(x: int) -> str:
    return f"{x}:{2 * (3 * x + 1)}"


@dataclass
class Multi:
    cluster: Cluster
    ns: str
    pipeline: str
    bootstrap: str
    state: Path
    chart: Path

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl("-n", self.ns, *args, **kw)

    def pods(self, component: str) -> dict[str, str]:
        """Running pods of a component -> their node."""
        items = json.loads(
            self.kubectl(
                "get", "pods", "-l", f"app.kubernetes.io/component={component}", "-o", "json"
            ).stdout
        )["items"]
        return {
            p["metadata"]["name"]: p["spec"].get("nodeName", "")
            for p in items
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        }

    def run_dir(self, run_id: str) -> Path:
        return self.state / "runs" / run_id

    def completed_at(self, run_id: str) -> float | None:
        """When the run's last step completed (its marker's time), None while it has not."""
        try:
            return (self.run_dir(run_id) / "after" / "COMPLETE").stat().st_mtime
        except OSError:
            return None

    def exec_host(self, *cmd: str, timeout: float = 1800) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(E2E / "cluster"), "exec", "--", *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.cluster.env(),
        )

    def kafka_tool(self, tool: str, *args: str) -> str:
        pod = sorted(self.pods("kafka"))[0]
        return self.kubectl(
            "exec",
            pod,
            "--",
            f"/opt/kafka/bin/{tool}",
            "--bootstrap-server",
            "localhost:9092",
            *args,
            timeout=120,
        ).stdout


@pytest.fixture(scope="module")
def multi(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Multi]:
    if not cluster.own:
        pytest.skip("node failures are the harness's own cluster's commands")
    several = len(membership.current()) >= 3
    if not shutil.which("jup2kub") or not docker_ok():
        pytest.skip("needs jup2kub and a Docker engine (bash e2e/run.sh)")
    work = tmp_path_factory.mktemp("multi")
    nb = _notebook(work / "spread.ipynb")
    out = work / "out"
    base = os.environ.get("J2K_BASE_IMAGE", "jup2kub-test-base:bookworm-py311-1")
    subprocess.run(
        [
            "jup2kub",
            "build",
            str(nb),
            "-o",
            str(out),
            "--kafka-nodes",
            "3" if several else "1",
            "--replicas",
            "2",
            "--base-image",
            base,
        ],
        check=True,
        timeout=3600,
    )
    values = yaml.safe_load((out / "values.yaml").read_text())
    refs = [f"{s['image']['repository']}:{s['image']['tag']}" for s in values["steps"].values()]
    subprocess.run([str(E2E / "cluster"), "load-image", *refs], check=True, timeout=1800)
    ns = f"j2k-e2e-multi-{os.getpid()}"
    cluster.kubectl("create", "namespace", ns)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "state"},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "j2k-shared",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    cluster.kubectl("-n", ns, "apply", "-f", "-", input_text=yaml.safe_dump(claim))
    (work / "e2e-values.yaml").write_text(yaml.safe_dump(_values(several)))
    helm(
        cluster,
        "install",
        RELEASE,
        str(out),
        "-n",
        ns,
        "-f",
        str(work / "e2e-values.yaml"),
        "--wait",
        "--timeout",
        "15m",
        timeout=1000,
    )
    pv = cluster.kubectl(
        "-n", ns, "get", "pvc", "state", "-o", "jsonpath={.spec.volumeName}"
    ).stdout
    spec = json.loads(cluster.kubectl("get", "pv", pv, "-o", "json").stdout)["spec"]
    sts = json.loads(
        cluster.kubectl(
            "-n", ns, "get", "statefulset", "-l", "app.kubernetes.io/component=kafka", "-o", "json"
        ).stdout
    )["items"][0]
    name, svc = sts["metadata"]["name"], sts["spec"]["serviceName"]
    bootstrap = ",".join(
        f"{name}-{i}.{svc}.{ns}.svc.cluster.local:9092" for i in range(sts["spec"]["replicas"])
    )
    pipeline = json.loads((out / "pipeline.json").read_text())["name"]
    state = Path((spec.get("hostPath") or spec["local"])["path"])
    yield Multi(cluster, ns, pipeline, bootstrap, state, out)
    helm(cluster, "uninstall", RELEASE, "-n", ns, "--wait", check=False)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
def restore_nodes() -> Iterator[None]:
    """Nodes killed, cut off or cordoned by a test are back afterwards, even when it fails."""
    yield
    for node in membership.current():
        state = membership.state_of(node)
        if state != "up":
            subprocess.run(
                [str(E2E / "cluster"), "node", "start" if state == "killed" else "heal", node.name],
                check=False,
                timeout=900,
            )


def test_brokers_and_replicas_spread_over_the_nodes(multi: Multi) -> None:
    _three_nodes()
    brokers = multi.pods("kafka")
    assert len(brokers) == 3 and len(set(brokers.values())) == 3, brokers
    for step in STEPS:
        replicas = multi.pods(step)
        assert len(replicas) == 2 and len(set(replicas.values())) == 2, (step, replicas)


def test_topics_are_replicated_three_times_with_two_in_sync(multi: Multi) -> None:
    """On the topic itself (``Configs:`` lists a topic's own settings), not only as the
    brokers' default: it holds against any broker configuration."""
    _three_nodes()
    for topic in ("runs", "status"):
        described = multi.kafka_tool(
            "kafka-topics.sh", "--describe", "--topic", f"{multi.pipeline}.{topic}"
        )
        assert "ReplicationFactor: 3" in described, described
        assert "min.insync.replicas=2" in described, described


def _leader_node(multi: Multi) -> str:
    """The node of the broker leading the runs topic's first partition."""
    described = multi.kafka_tool(
        "kafka-topics.sh", "--describe", "--topic", f"{multi.pipeline}.runs"
    )
    leader = next(
        line.split("Leader:")[1].split()[0] for line in described.splitlines() if "Leader:" in line
    )
    brokers = multi.pods("kafka")
    return next(node for pod, node in brokers.items() if pod.endswith(f"-{leader}"))


def _stream(multi: Multi, prefix: str, count: int, fault: Any) -> dict[str, Any]:
    """``count`` runs submitted while ``fault()`` strikes once a third have completed; every
    run checked: completed once, the right result, ``succeeded`` on the status topic.
    ``fault`` returns when it struck (time.time()) and a label; the figures of the run."""
    offset = 10_000 * (1 + sum(ord(c) for c in prefix) % 50)
    runs = [f"{prefix}{i:04d}" for i in range(count)]
    submitter = multi.exec_host(
        sys.executable,
        "-c",
        SUBMITTER,
        multi.bootstrap,
        multi.pipeline,
        prefix,
        str(offset),
        str(count),
    )
    t0 = time.time()
    struck: float | None = None
    label = ""
    try:
        deadline = time.monotonic() + 1800
        while True:
            done = sum(multi.completed_at(r) is not None for r in runs)
            if struck is None and done >= count // 3:
                struck, label = fault()
            if done == count:
                break
            assert time.monotonic() < deadline, f"only {done} of {count} runs completed"
            assert submitter.poll() in (None, 0), (
                submitter.stderr.read() if submitter.stderr else ""
            )
            time.sleep(1)
        _, err = submitter.communicate(timeout=600)
        assert submitter.returncode == 0, err[-3000:]
    finally:
        if submitter.poll() is None:
            submitter.kill()
            submitter.wait()
    assert struck is not None
    doubled, wrong = [], []
    for i, run_id in enumerate(runs):
        run = multi.run_dir(run_id)
        if (run / "after" / "attempts").read_text().strip() != "1":
            doubled.append(run_id)
        if expected(offset + i) not in result_file(multi.state, run_id, "after").read_text():
            wrong.append(run_id)
    status = multi.exec_host(
        sys.executable, "-c", STATUS, multi.bootstrap, f"{multi.pipeline}.status"
    )
    said, err = status.communicate(timeout=600)
    assert status.returncode == 0, err[-3000:]
    states = json.loads(said)
    not_succeeded = [
        f"{r}/{s}" for r in runs for s in STEPS if not states.get(f"{r}/{s}", {}).get("succeeded")
    ]
    failed = [k for k, v in states.items() if k.split("/")[0] in runs and v.get("failed")]
    times = sorted(t for r in runs if (t := multi.completed_at(r)) is not None)
    after = [t for t in times if t > struck]
    gaps = [b - a for a, b in zip([struck, *after], after, strict=False)]
    figures = {
        "fault": label,
        "nodes": len(membership.current()),
        "runs": count,
        "lost": count - len(times),
        "doubled": len(doubled),
        "wrong": len(wrong),
        "first_completion_after_fault_s": round(after[0] - struck, 1) if after else None,
        "longest_stall_s": round(max(gaps), 1) if gaps else None,
        "total_s": round(times[-1] - t0, 1),
        "fault_at": struck,
    }
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{prefix}-{figures['nodes']}nodes.json").write_text(json.dumps(figures, indent=2))
    print(f"\n{prefix}: {figures}")
    assert (doubled, wrong, not_succeeded, failed) == ([], [], [], []), figures
    return figures


#: how long the single node stays dead before it is powered on again
OUTAGE_S = 30


def _cluster(*args: str) -> None:
    r = subprocess.run([str(E2E / "cluster"), *args], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr


@pytest.mark.usefixtures("restore_nodes")
def test_losing_a_node_mid_stream_loses_and_doubles_no_run(multi: Multi) -> None:
    """Power loss of the node leading the runs topic (a broker) that also runs a replica of
    ``work``: the other brokers take over the partitions, the other replica the runs, the lost
    node's pods are moved after the chart's tolerationSeconds. On a single node: the node
    power-cycles (back after OUTAGE_S), and the pipeline goes on where it stopped."""
    several = len(membership.current()) >= 3
    restored: list[float] = []

    def kill() -> tuple[float, str]:
        node = _leader_node(multi)
        if node not in multi.pods("work").values():
            node = next(iter(multi.pods("work").values()))
        _cluster("node", "kill", node)
        struck = time.time()
        if not several:

            def power_on() -> None:
                time.sleep(OUTAGE_S)
                _cluster("node", "start", node)

            threading.Thread(target=power_on, daemon=True).start()
            return struck, f"power cycle ({OUTAGE_S} s off) of {node}"
        watcher = threading.Thread(
            target=_watch_replicas, args=(multi, node, restored), daemon=True
        )
        watcher.start()
        return struck, f"power loss of {node}"

    figures = _stream(multi, "k", RUNS, kill)
    assert figures["lost"] == 0
    if several:
        deadline = time.monotonic() + 900
        while not restored:
            assert time.monotonic() < deadline, {s: multi.pods(s) for s in STEPS}
            time.sleep(2)
        figures["replicas_restored_s"] = round(restored[0] - figures["fault_at"], 1)
        figures["toleration_s"] = _toleration(multi)
        (FIGURES / f"k-{figures['nodes']}nodes.json").write_text(json.dumps(figures, indent=2))
        print(f"\nreplicas restored {figures['replicas_restored_s']} s after the kill")


def _watch_replicas(multi: Multi, dead: str, restored: list[float]) -> None:
    """Records when every step again has two running replicas off the lost node: its pods are
    replaced once the node's taint outlives their toleration (the chart's
    nodeFailureTolerationSeconds; the API server's default is 300 s)."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        try:
            if all(len([n for n in multi.pods(s).values() if n != dead]) == 2 for s in STEPS):
                restored.append(time.time())
                return
        except (AssertionError, subprocess.SubprocessError):
            pass  # the API server answers again on the next round
        time.sleep(1)


def _toleration(multi: Multi) -> int | None:
    """The step pods' toleration of an unreachable node, as the API server left it."""
    pod = json.loads(
        multi.kubectl("get", "pods", "-l", "app.kubernetes.io/component=work", "-o", "json").stdout
    )["items"][0]
    return next(
        (
            t.get("tolerationSeconds")
            for t in pod["spec"].get("tolerations", [])
            if t.get("key") == "node.kubernetes.io/unreachable"
        ),
        None,
    )


@pytest.mark.usefixtures("restore_nodes")
def test_a_partition_and_heal_mid_stream_apply_no_run_twice(multi: Multi) -> None:
    """A node cut off (its replica keeps running, believing it owns its partitions and its
    lock), then healed while runs still flow: none is applied twice."""
    _three_nodes()
    _wait_all_ready(multi)

    def cut() -> tuple[float, str]:
        node = next(iter(multi.pods("work").values()))
        r = subprocess.run(
            [str(E2E / "cluster"), "node", "partition", node],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        struck = time.time()

        def heal_later() -> None:
            time.sleep(75)  # past the node monitor's grace period: the node goes NotReady
            subprocess.run([str(E2E / "cluster"), "node", "heal", node], check=False, timeout=300)

        threading.Thread(target=heal_later, daemon=True).start()
        return struck, f"partition of {node} for 75 s"

    _stream(multi, "p", RUNS, cut)


def _wait_all_ready(multi: Multi, timeout: float = 900) -> None:
    """Every node Ready and every workload of the release back at full strength."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = multi.cluster.kubectl(
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}",
        ).stdout.split()
        if (
            ready
            and all(r == "True" for r in ready)
            and len(multi.pods("kafka")) == 3
            and all(len(multi.pods(s)) == 2 for s in STEPS)
        ):
            return
        time.sleep(3)
    raise AssertionError("the release did not come back to full strength")


@pytest.mark.usefixtures("restore_nodes")
def test_draining_a_node_mid_stream_fails_no_run(multi: Multi) -> None:
    """``kubectl drain`` while runs flow: evictions respect the PodDisruptionBudgets (one pod
    of a workload at a time); the evicted broker waits on its node-local volume until the node
    is uncordoned."""
    _three_nodes()
    _wait_all_ready(multi)
    drained: list[str] = []

    def drain() -> tuple[float, str]:
        t = time.time()
        node = next(iter(multi.pods("work").values()))
        drained.append(node)
        r = multi.cluster.kubectl(
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=600s",
            timeout=700,
            check=False,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        return t, f"drain of {node}"

    try:
        _stream(multi, "d", RUNS // 2, drain)
    finally:
        for node in drained:
            multi.cluster.kubectl("uncordon", node, check=False)


@pytest.mark.usefixtures("restore_nodes")
def test_a_rolling_upgrade_across_nodes_loses_and_doubles_no_run(
    multi: Multi, tmp_path: Path
) -> None:
    """``helm upgrade`` that rolls every step (their spread made ``required``) while runs
    flow: none lost or doubled, and the replicas end on distinct nodes."""
    _three_nodes()
    _wait_all_ready(multi)
    values = tmp_path / "required.yaml"
    values.write_text(
        yaml.safe_dump({**VALUES, "stepDefaults": {**VALUES["stepDefaults"], "spread": "required"}})
    )

    def upgrade() -> tuple[float, str]:
        t = time.time()
        helm(
            multi.cluster,
            "upgrade",
            RELEASE,
            str(multi.chart),
            "-n",
            multi.ns,
            "-f",
            str(values),
            "--wait",
            "--timeout",
            "10m",
            timeout=700,
        )
        return t, "rolling upgrade (spread required)"

    _stream(multi, "u", RUNS // 2, upgrade)
    for step in STEPS:
        replicas = multi.pods(step)
        assert len(set(replicas.values())) == len(replicas) == 2, replicas

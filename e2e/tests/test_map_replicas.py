"""A map step (issue 18) on the cluster: its 3 replicas split one run's elements evenly.

Every replica of the map step's Deployment consumes the step's input topic in the step's group
and the elements topic in ``GROUP.elements``; the replica executing the step announces one
message per chunk (here one element each, ``#| map-chunk: 1``) spread over the elements
topic's partitions, and each replica runs the chunks of the partitions it owns. The split is
read from the replicas' logs (one ``map chunk N of cell`` line per chunk run) and must be
within 20% of even; the run's result must equal the notebook's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from e2e.support import (
    E2E,
    Cluster,
    docker_ok,
    helm,
    result_file,
    state_dir,
    wait_final,
    with_cluster_dns,
)

RELEASE = "maprel"
REPLICAS = 3
ELEMENTS = 36
CELLS = [
    "import time\n"
    f"xs = list(range({ELEMENTS}))\n"
    "def work(x):\n    time.sleep(0.2)\n    return x * x",
    "#| map: true\n#| map-chunk: 1\nys = [work(x) for x in xs]",
    "print(sum(ys))",
]


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> tuple[Path, Path]:
    """The notebook, and its chart with the step images loaded into the cluster."""
    jup2kub = shutil.which("jup2kub")
    if not jup2kub:
        pytest.skip("jup2kub is not installed (bash e2e/run.sh installs it)")
    if not docker_ok():
        pytest.skip("no Docker engine to build the step images")
    base = os.environ.get("J2K_BASE_IMAGE", "jup2kub-test-base:bookworm-py311-1")
    tmp = tmp_path_factory.mktemp("mapstep")
    nb = _notebook(tmp / "mapsplit.ipynb")
    out = tmp / "out"
    cmd = [jup2kub, "build", str(nb), "-o", str(out), "--kafka-nodes", "1", "--replicas", "1"]
    subprocess.run([*cmd, "--base-image", base], check=True, timeout=3600)
    values = yaml.safe_load((out / "values.yaml").read_text())
    refs = [f"{s['image']['repository']}:{s['image']['tag']}" for s in values["steps"].values()]
    if cluster.own:
        subprocess.run([str(E2E / "cluster"), "load-image", *refs], check=True, timeout=1800)
    elif os.environ.get("J2K_E2E_LOAD_IMAGES"):
        load = os.environ["J2K_E2E_LOAD_IMAGES"].split()
        subprocess.run([*load, *refs], check=True, timeout=1800)
    return nb, out


def _map_step(chart: Path) -> str:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    [name] = [n for n, s in values["steps"].items() if s.get("mapTopic")]
    return str(name)


@pytest.fixture(scope="module")
def release(
    cluster: Cluster, built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    _, chart = built
    ns = f"j2k-e2e-map-{os.getpid()}"
    cluster.kubectl("create", "namespace", ns)
    cluster.state_claim(ns, "256Mi")
    step = _map_step(chart)
    values = tmp_path_factory.mktemp("values") / "map-values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "storage": {"mode": "existingClaim", "existingClaim": "state"},
                "steps": {step: {"replicas": REPLICAS}},
            }
        )
    )
    deploy = ["jup2kub", "deploy", str(chart), "--release", RELEASE, "-n", ns]
    files = ["-f", str(chart / "values-dev.yaml"), "-f", str(values), "--timeout", "15m"]
    r = subprocess.run(
        [*deploy, *files], capture_output=True, text=True, timeout=1000, env=cluster.env()
    )
    assert r.returncode == 0, r.stdout + r.stderr
    yield {"namespace": ns, "broker": cluster.kafka_bootstrap(ns), "step": step}
    helm(cluster, "uninstall", RELEASE, "-n", ns, "--wait", check=False)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _wait_run(cluster: Cluster, nb: Path, broker: str, run_id: str) -> dict[str, Any]:
    return wait_final(cluster, str(nb), broker, run_id, steps=len(CELLS))  # a step per cell


def _replica_logs(cluster: Cluster, ns: str, step: str) -> dict[str, str]:
    pods = json.loads(
        cluster.kubectl(
            "-n", ns, "get", "pods", "-l", f"app.kubernetes.io/component={step}", "-o", "json"
        ).stdout
    )["items"]
    return {
        p["metadata"]["name"]: cluster.kubectl("-n", ns, "logs", p["metadata"]["name"]).stdout
        for p in pods
    }


def test_three_replicas_split_a_runs_elements_evenly(
    cluster: Cluster, built: tuple[Path, Path], release: dict[str, str]
) -> None:
    nb, _ = built
    ns, broker, step = release["namespace"], release["broker"], release["step"]
    r = with_cluster_dns(cluster, "jup2kub", "submit", str(nb), "--kafka", broker)
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = r.stdout.strip().splitlines()[-1]
    states = _wait_run(cluster, nb, broker, run_id)
    assert {s["state"] for s in states.values()} == {"succeeded"}, states
    logs = _replica_logs(cluster, ns, step)
    assert len(logs) == REPLICAS, sorted(logs)
    done = {
        pod: len(re.findall(rf"run {re.escape(run_id)}: map chunk \d+ of cell", text))
        for pod, text in logs.items()
    }
    print(f"elements per replica: {done}")
    for pod, text in logs.items():  # the timeline, for the record
        print(
            pod,
            *re.findall(r".*(?:partitions assigned|announced|chunks of cell).*", text),
            sep="\n  ",
        )
    assert sum(done.values()) == ELEMENTS, done
    even = ELEMENTS / REPLICAS
    assert all(abs(n - even) <= 0.2 * even for n in done.values()), done
    for pod, text in logs.items():
        # every replica is a member of both groups: the step's topic and the elements topic
        assert re.search(r"consuming \S+ as group \S+", text), pod
        assert re.search(r"map elements partitions assigned: \d", text), pod
    root = state_dir(cluster, ns)
    printed = [
        result_file(root, run_id, step.name).read_text()
        for step in (root / "runs" / run_id).iterdir()
        if (step / "COMPLETE").exists()
    ]
    assert any(f"{sum(x * x for x in range(ELEMENTS))}\\n" in text for text in printed), printed

"""Faults on a real cluster: the pod executing a run is deleted, its process is killed with
SIGKILL, the Kafka pod is deleted mid-stream. Every run still completes, exactly once.

A generated two-step notebook: ``slow`` (2 replicas) sleeps ``duration`` seconds after writing
``executing-<pod name>`` to its run's directory on the state volume (so the test knows which pod
holds the run),
``after`` consumes its value. "Exactly once": every run ends ``succeeded`` with the right value,
and ``after`` executed it once (its ``attempts`` file in the state volume).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat import v4

from e2e.support import (
    E2E,
    Cluster,
    containerd_socket,
    docker_ok,
    helm,
    result_file,
    state_dir,
    wait_final,
    with_cluster_dns,
)

RELEASE = "faults"
STEPS = ("slow", "after")


AFTER_V1 = "#| step: after\nresult = f'{label}:{total + 1}'\nprint(result)"
AFTER_V2 = "#| step: after\nresult = f'{label}={total + 1}'\nprint(result)"


def _notebook(path: Path, after: str = AFTER_V1) -> Path:
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    params = v4.new_code_cell("duration = 20\nlabel = 'x'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        v4.new_code_cell(
            "#| step: slow\nimport os\nimport time\n\n"
            "marker = 'executing-' + os.environ.get('HOSTNAME', 'local')\n"
            "open(marker, 'w').write(label)\n"
            "time.sleep(duration)\ntotal = duration * 2"
        ),
        v4.new_code_cell(after),
    ]
    nbformat.write(nb, path)
    return path


def _build_and_load(nb: Path, out: Path) -> Path:
    base = os.environ.get("J2K_BASE_IMAGE", "jup2kub-test-base:bookworm-py311-1")
    subprocess.run(
        [
            "jup2kub",
            "build",
            str(nb),
            "-o",
            str(out),
            "--kafka-nodes",
            "1",
            "--replicas",
            "1",
            "--base-image",
            base,
        ],
        check=True,
        timeout=3600,
    )
    values = yaml.safe_load((out / "values.yaml").read_text())
    refs = [f"{s['image']['repository']}:{s['image']['tag']}" for s in values["steps"].values()]
    subprocess.run([str(E2E / "cluster"), "load-image", *refs], check=True, timeout=1800)
    return out


@pytest.fixture(scope="module")
def faults(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if not shutil.which("jup2kub") or not docker_ok():
        pytest.skip("needs jup2kub and a Docker engine (bash e2e/run.sh)")
    if not cluster.own:
        pytest.skip("SIGKILL of a container process needs the harness's containerd")
    work = tmp_path_factory.mktemp("faults")
    nb = _notebook(work / "slow-steps.ipynb")
    out = _build_and_load(nb, work / "out")
    ns = f"j2k-e2e-faults-{os.getpid()}"
    cluster.kubectl("create", "namespace", ns)
    cluster.state_claim(ns)
    e2e_values = work / "e2e-values.yaml"
    e2e_values.write_text(
        yaml.safe_dump(
            {
                "storage": {"mode": "existingClaim", "existingClaim": "state"},
                "steps": {"slow": {"replicas": 2}},
            }
        )
    )
    helm(
        cluster,
        "install",
        RELEASE,
        str(out),
        "-n",
        ns,
        "-f",
        str(out / "values-dev.yaml"),
        "-f",
        str(e2e_values),
        "--wait",
        "--timeout",
        "15m",
    )
    for d in cluster.kubectl("-n", ns, "get", "deployments", "-o", "name").stdout.split():
        cluster.kubectl("-n", ns, "rollout", "status", d, "--timeout=10m", timeout=700)
    broker = cluster.kafka_bootstrap(ns)
    yield {
        "namespace": ns,
        "broker": broker,
        "notebook": str(nb),
        "work": str(work),
        "values": str(e2e_values),
    }
    helm(cluster, "uninstall", RELEASE, "-n", ns, "--wait", check=False)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _submit(cluster: Cluster, f: dict[str, str], label: str, duration: int) -> str:
    r = with_cluster_dns(
        cluster,
        "jup2kub",
        "submit",
        f["notebook"],
        "--kafka",
        f["broker"],
        "-p",
        "label",
        label,
        "-p",
        "duration",
        str(duration),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def _wait(cluster: Cluster, f: dict[str, str], run_id: str, timeout: float = 600) -> None:
    states = wait_final(cluster, f["notebook"], f["broker"], run_id, len(STEPS), timeout)
    assert {s: states.get(s, {}).get("state") for s in STEPS} == {s: "succeeded" for s in STEPS}, (
        states
    )


def _check_once(
    cluster: Cluster, f: dict[str, str], run_id: str, label: str, duration: int
) -> dict[str, int]:
    root = state_dir(cluster, f["namespace"])
    run = root / "runs" / run_id
    attempts = {s: int((run / s / "attempts").read_text().strip() or 0) for s in STEPS}
    assert attempts["after"] == 1, attempts
    outputs = result_file(root, run_id, "after").read_text()
    assert f"{label}:{duration * 2 + 1}" in outputs
    return attempts


def _executing_pod(cluster: Cluster, f: dict[str, str], label: str, timeout: float = 120) -> str:
    """The slow pod whose marker file holds ``label`` (written when it started the run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        root = state_dir(cluster, f["namespace"])
        # relative files land in the run's own directory (runs/<id>/files)
        for marker in (*root.glob("executing-*"), *root.glob("runs/*/files/executing-*")):
            if marker.read_text() == label:
                return marker.name.removeprefix("executing-")
        time.sleep(0.5)
    logs = cluster.kubectl(
        "-n",
        f["namespace"],
        "logs",
        "-l",
        "app.kubernetes.io/component in (slow,after)",
        "--tail=30",
        "--prefix",
        check=False,
    )
    raise AssertionError(
        f"no slow pod started the run labelled {label}:\n{logs.stdout}{logs.stderr}"
    )


def test_deleting_the_executing_pod(cluster: Cluster, faults: dict[str, str]) -> None:
    run_id = _submit(cluster, faults, "deleted", 25)
    pod = _executing_pod(cluster, faults, "deleted")
    cluster.kubectl("-n", faults["namespace"], "delete", "pod", pod, "--wait=false")
    _wait(cluster, faults, run_id)
    _check_once(cluster, faults, run_id, "deleted", 25)


def test_results_right_after_a_pod_is_replaced(
    cluster: Cluster, faults: dict[str, str], tmp_path: Path
) -> None:
    """`results --release` while the only pod of a step is being replaced waits (bounded) for
    the new one to be ready instead of failing at once with "no ready pod"."""
    ns = faults["namespace"]
    run_id = _submit(cluster, faults, "replaced", 1)
    _wait(cluster, faults, run_id)
    cluster.kubectl("-n", ns, "delete", "pod", "-l", "app.kubernetes.io/component=after")
    out = tmp_path / "replaced.ipynb"
    r = cluster.run(
        "jup2kub",
        "results",
        faults["notebook"],
        run_id,
        "--release",
        RELEASE,
        "-n",
        ns,
        "-o",
        out,
        "--timeout",
        "5m",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replaced:3" in out.read_text()  # after's printed result: label:total + 1


def test_sigkill_of_the_executing_process(cluster: Cluster, faults: dict[str, str]) -> None:
    ns = faults["namespace"]
    for d in cluster.kubectl("-n", ns, "get", "deployments", "-o", "name").stdout.split():
        cluster.kubectl("-n", ns, "rollout", "status", d, "--timeout=5m", timeout=400)
    run_id = _submit(cluster, faults, "killed", 25)
    pod = _executing_pod(cluster, faults, "killed")
    found = json.loads(cluster.kubectl("-n", ns, "get", "pod", pod, "-o", "json").stdout)
    container = found["status"]["containerStatuses"][0]["containerID"]
    container = container.removeprefix("containerd://")
    socket = containerd_socket(found["spec"]["nodeName"])  # the runtime of the pod's node
    pid = subprocess.run(
        ["ctr", "--address", str(socket), "-n", "k8s.io", "tasks", "ls"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    task_pid = next(int(line.split()[1]) for line in pid.splitlines() if line.startswith(container))
    os.kill(task_pid, 9)  # the container's main process (the runtime), as `kill -9` would
    _wait(cluster, faults, run_id)
    attempts = _check_once(cluster, faults, run_id, "killed", 25)
    assert attempts["slow"] >= 2, attempts  # the killed execution did not count


SOAK_RUNS = int(os.environ.get("J2K_E2E_SOAK_RUNS", "24"))

# Submits runs s0000.. (label = run id, duration 0) through the pipeline's Kafka, one producer
# per run as `jup2kub submit` does, each retried until the broker takes it: the broker is
# deleted meanwhile. Runs with cluster DNS (the broker advertises its pod name).
SUBMITTER = """
import sys, time
from jup2kub.errors import KafkaUnavailableError
from jup2kub.run.remote import submit_run
bootstrap, pipeline, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    run_id = f"s{i:04d}"
    while True:
        try:
            submit_run(bootstrap, pipeline, run_id, {"label": run_id, "duration": 0},
                       connect_timeout=600)
            break
        except KafkaUnavailableError:
            time.sleep(1)
    print(run_id, flush=True)
"""


def test_deleting_kafka_mid_stream(cluster: Cluster, faults: dict[str, str]) -> None:
    """A stream of runs (J2K_E2E_SOAK_RUNS, default 24) while the Kafka pod is deleted twice,
    once a third and once two thirds of them are done: every run completes, once, with the
    right value, and says so on the status topic."""
    ns = faults["namespace"]
    _rolled_out(cluster, ns)
    prefix = [str(E2E / "cluster"), "exec", "--"] if cluster.own else []
    pipeline = json.loads((Path(faults["work"]) / "out" / "pipeline.json").read_text())["name"]
    submitter = subprocess.Popen(
        [*prefix, sys.executable, "-c", SUBMITTER, faults["broker"], pipeline, str(SOAK_RUNS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.env(),
    )
    runs = [f"s{i:04d}" for i in range(SOAK_RUNS)]
    try:
        for share in (1 / 3, 2 / 3):
            _await_done(cluster, ns, runs, int(SOAK_RUNS * share), timeout=900)
            kafka = _kafka_pod(cluster, ns)
            cluster.kubectl("-n", ns, "delete", "pod", kafka, "--wait=false")
            _await_new_kafka(cluster, ns, kafka)
        _, err = submitter.communicate(timeout=1800)
        assert submitter.returncode == 0, err[-3000:]
        _await_done(cluster, ns, runs, len(runs), timeout=900 + 2 * len(runs))
    finally:
        if submitter.poll() is None:
            submitter.kill()
            submitter.wait()
    for run_id in runs:
        _check_once(cluster, faults, run_id, run_id, 0)
    for run_id in (runs[0], runs[len(runs) // 2], runs[-1]):
        _wait(cluster, faults, run_id, timeout=120)  # "succeeded" on the status topic


def _await_done(cluster: Cluster, ns: str, runs: list[str], count: int, timeout: float) -> None:
    """Wait until ``count`` of ``runs`` have completed their last step (its COMPLETE marker)."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        root = state_dir(cluster, ns) / "runs"
        done = sum((root / r / "after" / "COMPLETE").exists() for r in runs)
        if done >= count:
            return
        time.sleep(2)
    raise AssertionError(f"only {done} of {count} runs completed in {timeout:.0f} s")


def _kafka_pod(cluster: Cluster, ns: str) -> str:
    return cluster.kubectl(
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/component=kafka",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ).stdout


def _await_new_kafka(cluster: Cluster, ns: str, name: str, timeout: float = 600) -> None:
    """Wait until the Kafka pod ``name`` (a StatefulSet keeps the name) is a new, ready pod."""
    uid = "jsonpath={.metadata.uid}"
    before = cluster.kubectl("-n", ns, "get", "pod", name, "-o", uid, check=False).stdout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = cluster.kubectl("-n", ns, "get", "pod", name, "-o", uid, check=False).stdout
        if now and now != before:
            r = cluster.kubectl(
                "-n",
                ns,
                "wait",
                "--for=condition=Ready",
                f"pod/{name}",
                "--timeout=10m",
                timeout=700,
                check=False,
            )
            if r.returncode == 0:
                return
        time.sleep(2)
    raise AssertionError(f"Kafka pod {name} was not replaced by a ready one")


def _deployments(cluster: Cluster, ns: str) -> dict[str, tuple[str, str, int]]:
    """Per step: its image, the checksum of its code bundle (the chart's ConfigMap) on the pod
    template, and the Deployment's generation."""
    items = json.loads(cluster.kubectl("-n", ns, "get", "deployments", "-o", "json").stdout)[
        "items"
    ]
    return {
        d["metadata"]["name"].rsplit("-", 1)[-1]: (
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            d["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/code", ""),
            d["metadata"]["generation"],
        )
        for d in items
    }


def _rolled_out(cluster: Cluster, ns: str) -> None:
    for d in cluster.kubectl("-n", ns, "get", "deployments", "-o", "name").stdout.split():
        cluster.kubectl("-n", ns, "rollout", "status", d, "--timeout=10m", timeout=700)


def test_upgrade_rolls_only_the_changed_step_then_rollback(
    cluster: Cluster, faults: dict[str, str]
) -> None:
    ns, work = faults["namespace"], Path(faults["work"])
    # v1 rebuilt next to v2: the step images also hash the runtime, which may have changed
    # since the fixture's build (a shared work tree); upgrade to it first
    builds = {}
    for version, after_code in (("v1", AFTER_V1), ("v2", AFTER_V2)):
        (work / version).mkdir()
        builds[version] = _build_and_load(
            _notebook(work / version / "slow-steps.ipynb", after_code), work / version / "out"
        )
    tags = {
        v: {
            n: s["image"]["tag"]
            for n, s in yaml.safe_load((out / "values.yaml").read_text())["steps"].items()
        }
        for v, out in builds.items()
    }
    # a code edit changes no image (the code is the chart's, in a ConfigMap per step)
    assert tags["v1"] == tags["v2"]
    helm(
        cluster,
        "upgrade",
        RELEASE,
        str(builds["v1"]),
        "-n",
        ns,
        "-f",
        str(builds["v1"] / "values-dev.yaml"),
        "-f",
        faults["values"],
        "--wait",
        "--timeout",
        "10m",
    )
    _rolled_out(cluster, ns)
    v1_revision = json.loads(helm(cluster, "history", RELEASE, "-n", ns, "-o", "json").stdout)[-1][
        "revision"
    ]
    before = _deployments(cluster, ns)
    out2 = builds["v2"]
    in_flight = _submit(cluster, faults, "upg", 20)
    _executing_pod(cluster, faults, "upg")
    # the upgrade through `jup2kub deploy`, which waits for the rolled pods' readiness
    r = subprocess.run(
        [
            "jup2kub",
            "deploy",
            str(out2),
            "--release",
            RELEASE,
            "-n",
            ns,
            "-f",
            str(out2 / "values-dev.yaml"),
            "-f",
            faults["values"],
            "--timeout",
            "10m",
        ],
        capture_output=True,
        text=True,
        timeout=700,
        env=cluster.env(),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "revision" in r.stdout and "workloads ready" in r.stdout
    after = _deployments(cluster, ns)
    assert after["slow"] == before["slow"]  # same image and code: not rolled
    assert after["after"][0] == before["after"][0]  # same image ...
    assert after["after"][1] != before["after"][1]  # ... new code: rolled
    assert after["after"][2] > before["after"][2]
    _wait(cluster, faults, in_flight)
    run = state_dir(cluster, ns) / "runs" / in_flight
    assert (run / "after" / "attempts").read_text().strip() == "1"
    out = result_file(state_dir(cluster, ns), in_flight, "after").read_text()
    assert "upg=41" in out or "upg:41" in out  # whichever version took it, exactly once
    new = _submit(cluster, faults, "v2", 1)
    _wait(cluster, faults, new)
    assert "v2=3" in result_file(state_dir(cluster, ns), new, "after").read_text()

    helm(cluster, "rollback", RELEASE, str(v1_revision), "-n", ns, "--wait", "--timeout", "10m")
    _rolled_out(cluster, ns)
    assert _deployments(cluster, ns)["after"][1] == before["after"][1]
    old = _submit(cluster, faults, "v1", 1)
    _wait(cluster, faults, old)
    assert "v1:3" in result_file(state_dir(cluster, ns), old, "after").read_text()

"""A whole pipeline on the cluster: `jup2kub build` (chart + step images), `helm install`,
runs submitted from outside the cluster, results equal to a local `jup2kub run`.

Runs are submitted with `jup2kub submit --kafka <broker>` straight to Kafka's advertised
in-cluster name: on the harness's cluster through ``e2e/cluster exec`` (cluster DNS for one
command; the host reaches pod IPs). Results are assembled with `jup2kub results --state` from
the state volume's directory on the node. Needs a Docker engine and the step base image
(J2K_BASE_IMAGE, as tests/setup.d/40-docker.sh provides); on an existing cluster the step images
must reach it: set J2K_E2E_LOAD_IMAGES to a command that takes image references (e.g.
``kind load docker-image``) and J2K_E2E_RUN to run commands with cluster DNS.
"""

from __future__ import annotations

import json
import os
import re
import shlex
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
    REPO,
    Cluster,
    docker_ok,
    helm,
    result_file,
    state_dir,
    wait_final,
    with_cluster_dns,
)
from tests.support.nb_outputs import text_outputs

NOTEBOOK = REPO / "tests" / "corpus" / "sales_markers.ipynb"
PIPELINE = "sales-markers"
RELEASE = "mypipeline"
TIMING = re.compile(r"\d+(\.\d+)?\s*(s|ms|seconds)\b")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Path:
    """The chart and step images of NOTEBOOK, the images loaded into the cluster."""
    jup2kub = shutil.which("jup2kub")
    if not jup2kub:
        pytest.skip("jup2kub is not installed (bash e2e/run.sh installs it)")
    base = os.environ.get("J2K_BASE_IMAGE", "jup2kub-test-base:bookworm-py311-1")
    if not docker_ok():
        pytest.skip("no Docker engine to build the step images")
    out = tmp_path_factory.mktemp("pipeline") / "out"
    subprocess.run(
        [
            jup2kub,
            "build",
            str(NOTEBOOK),
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
    if cluster.own:
        subprocess.run([str(E2E / "cluster"), "load-image", *refs], check=True, timeout=1800)
    elif os.environ.get("J2K_E2E_LOAD_IMAGES"):
        subprocess.run(
            [*shlex.split(os.environ["J2K_E2E_LOAD_IMAGES"]), *refs], check=True, timeout=1800
        )
    return out


@pytest.fixture(scope="module")
def release(
    cluster: Cluster, built: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    ns = f"j2k-e2e-pipeline-{os.getpid()}"
    cluster.kubectl("create", "namespace", ns)
    cluster.state_claim(ns, "512Mi")
    values = tmp_path_factory.mktemp("values") / "e2e-values.yaml"
    values.write_text(
        yaml.safe_dump({"storage": {"mode": "existingClaim", "existingClaim": "state"}})
    )
    # `jup2kub deploy`: helm upgrade --install through pyhelm3, then a readiness wait on every
    # pod's probes (helm's own --wait counts a 1-replica Deployment as ready at once)
    r = subprocess.run(
        [
            "jup2kub",
            "deploy",
            str(built),
            "--release",
            RELEASE,
            "-n",
            ns,
            "-f",
            str(built / "values-dev.yaml"),
            "-f",
            str(values),
            "--timeout",
            "15m",
        ],
        capture_output=True,
        text=True,
        timeout=1000,
        env=cluster.env(),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6/6 workloads ready" in r.stdout, r.stdout
    broker = cluster.kafka_bootstrap(ns)
    yield {"namespace": ns, "broker": broker}
    helm(cluster, "uninstall", RELEASE, "-n", ns, "--wait", check=False)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def submit(cluster: Cluster, broker: str, *params: str) -> str:
    args = ["jup2kub", "submit", str(NOTEBOOK), "--kafka", broker]
    for p in params:
        name, value = p.split("=", 1)
        args += ["-p", name, value]
    r = with_cluster_dns(cluster, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def wait_run(cluster: Cluster, broker: str, run_id: str, timeout: float = 900) -> dict[str, Any]:
    return wait_final(cluster, str(NOTEBOOK), broker, run_id, steps=5, timeout=timeout)


def test_runs_complete_and_equal_local_runs(
    cluster: Cluster, release: dict[str, str], tmp_path: Path
) -> None:
    ns, broker = release["namespace"], release["broker"]
    deployments = json.loads(cluster.kubectl("-n", ns, "get", "deployments", "-o", "json").stdout)[
        "items"
    ]
    assert len(deployments) == 5
    for d in deployments:
        assert d["status"].get("readyReplicas") == d["spec"]["replicas"], d["metadata"]["name"]
    for params in ((), ("n_rows=200", "seed=3")):
        run_id = submit(cluster, broker, *params)
        states = wait_run(cluster, broker, run_id)
        assert {s["state"] for s in states.values()} == {"succeeded"}, states
        remote = tmp_path / f"{run_id}.ipynb"
        r = subprocess.run(
            [
                "jup2kub",
                "results",
                str(NOTEBOOK),
                run_id,
                "--state",
                str(state_dir(cluster, ns)),
                "-o",
                str(remote),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        local_args = ["jup2kub", "run", str(NOTEBOOK), "--workdir", str(tmp_path / run_id)]
        for p in params:
            local_args += ["-p", *p.split("=", 1)]
        r = subprocess.run(local_args, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        local = next((tmp_path / run_id / "runs").glob("*/result.ipynb"))
        assert text_outputs(nbformat.read(remote, 4), TIMING) == text_outputs(
            nbformat.read(local, 4), TIMING
        )
        # the same notebook through the API server, without access to the volume
        fetched = tmp_path / f"{run_id}-release.ipynb"
        r = subprocess.run(
            [
                "jup2kub",
                "results",
                str(NOTEBOOK),
                run_id,
                "--release",
                RELEASE,
                "-n",
                ns,
                "-o",
                str(fetched),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=cluster.env(),
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "succeeded" in r.stdout
        assert nbformat.read(fetched, 4) == nbformat.read(remote, 4)


def test_status_of_the_release_shows_pods_readiness_and_runs(
    cluster: Cluster, release: dict[str, str]
) -> None:
    ns, broker = release["namespace"], release["broker"]
    run_id = submit(cluster, broker, "n_rows=100", "seed=5")
    states = wait_run(cluster, broker, run_id)
    assert {s["state"] for s in states.values()} == {"succeeded"}, states
    r = subprocess.run(
        ["jup2kub", "status", "--release", RELEASE, "-n", ns, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=cluster.env(),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    st = json.loads(r.stdout)
    assert st["ready"] is True and st["status"] == "deployed" and st["revision"] >= 1
    assert sorted(w["kind"] for w in st["workloads"]) == ["Deployment"] * 5 + ["StatefulSet"]
    assert all(p["ready"] and p["phase"] == "Running" for p in st["pods"]), st["pods"]
    assert {p["component"] for p in st["pods"]} == {
        "kafka",
        "load",
        "clean",
        "summarize",
        "model",
        "report",
    }
    assert st["run_errors"] == {}
    row = next(r for r in st["runs"] if r["run_id"] == run_id)
    assert row["state"] == "succeeded"
    assert sorted(row["steps"]) == ["clean", "load", "model", "report", "summarize"]
    assert all(s["state"] == "succeeded" and s["attempts"] == 1 for s in row["steps"].values())
    text = subprocess.run(
        ["jup2kub", "status", "--release", RELEASE, "-n", ns],
        capture_output=True,
        text=True,
        timeout=300,
        env=cluster.env(),
    )
    assert text.returncode == 0, text.stderr
    assert run_id in text.stdout and "6/6 workloads ready" in text.stdout
    missing = subprocess.run(
        ["jup2kub", "status", "--release", "no-such-release", "-n", ns],
        capture_output=True,
        text=True,
        timeout=300,
        env=cluster.env(),
    )
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_status_watch_of_the_release_follows_runs_until_done(
    cluster: Cluster, release: dict[str, str]
) -> None:
    """`status --release --watch --until-done`: replicas from the Deployments, the rest from
    the step pods' /metrics through the pod proxy; it ends once the recent runs are done."""
    ns, broker = release["namespace"], release["broker"]
    runs = [submit(cluster, broker, "n_rows=50", f"seed={seed}") for seed in (11, 12)]
    watch = ["jup2kub", "status", "--release", RELEASE, "-n", ns, "--watch", "--until-done"]
    r = subprocess.run(
        [*watch, "--json", "--interval", "1"],
        capture_output=True,
        text=True,
        timeout=1200,
        env=cluster.env(),
    )
    assert r.returncode == 0, r.stdout + r.stderr  # no run of this module fails
    last = json.loads(r.stdout.splitlines()[-1])
    assert last["settled"] is True and last["problems"] == [], last
    assert last["runs"]["failed"] == 0 and last["runs"]["submitted"] >= len(runs), last
    steps = {s["step"]: s for s in last["steps"]}
    assert sorted(steps) == ["clean", "load", "model", "report", "summarize"]
    for name, s in steps.items():
        assert s["ready"] == s["desired"] == 1, (name, s)
        assert s["done"] >= len(runs) and s["failed"] == 0, (name, s)
        assert s["in_flight"] == 0 and s["lag"] == 0, (name, s)
        assert s["p50"] is not None and s["p50"] <= s["p95"], (name, s)
    plain = subprocess.run(
        [*watch, "--interval", "1"], capture_output=True, text=True, timeout=600, env=cluster.env()
    )
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "\x1b[" not in plain.stdout and "replicas" in plain.stdout


def test_concurrent_runs_keep_their_files_apart(cluster: Cluster, release: dict[str, str]) -> None:
    ns, broker = release["namespace"], release["broker"]
    """clean writes clean_sales.csv, report reads it back: each run must see its own file
    (they once shared the volume's root, and a run reported the other run's row count)."""
    big = submit(cluster, broker)
    small = submit(cluster, broker, "n_rows=200", "seed=3")
    rows = {}
    for run_id in (big, small):
        states = wait_run(cluster, broker, run_id)
        assert {s["state"] for s in states.values()} == {"succeeded"}, states
        outputs = json.loads(result_file(state_dir(cluster, ns), run_id, "report").read_text())
        rows[run_id] = re.findall(r"'rows': (\d+)", json.dumps(outputs))
    assert rows == {big: ["490"], small: ["190"]}


def test_the_panels_runs_view_shows_the_release_and_opens_results_in_a_real_browser(
    cluster: Cluster, release: dict[str, str], tmp_path: Path
) -> None:
    """The JupyterLab panel's Runs view on the real release: the runs through the API
    server's pod proxy, each step's state, and a run's results notebook opened in Lab."""
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    from tests.support.jupyterlab import TOKEN, chromium, jupyterlab, widen_the_panel

    ns, broker = release["namespace"], release["broker"]
    run_id = submit(cluster, broker, "n_rows=40", "seed=21")
    wait_run(cluster, broker, run_id)
    with jupyterlab(tmp_path) as (url, root):
        # the server reads its kubeconfig when asked: the cluster's, not the stand-in's
        shutil.copy(cluster.kubeconfig or "", root.parent / "kubeconfig")
        shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            try:
                page.goto(f"{url}lab/tree/{NOTEBOOK.name}?token={TOKEN}")
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
                page.click(".lm-TabBar-tab[data-id='jup2kub-panel']")
                widen_the_panel(page)
                form = page.locator(".jp-Jup2Kub-runs-form")
                form.locator("input[name='release']").fill(RELEASE)
                form.locator("input[name='namespace']").fill(ns)
                form.locator("button[data-action='runs']").click()
                row = page.locator(f"tr.jp-Jup2Kub-run-row[data-run='{run_id}']")
                row.wait_for(timeout=180_000)
                badges = row.locator(".jp-Jup2Kub-run-steps span")
                states = {
                    b.get_attribute("data-step"): b.get_attribute("data-state")
                    for b in badges.all()
                }
                assert states == dict.fromkeys(
                    ("load", "clean", "summarize", "model", "report"), "succeeded"
                ), states
                row.locator("button").click()
                results = f"{NOTEBOOK.stem}-{run_id}.ipynb"
                page.locator(".lm-TabBar-tab", has_text=results).wait_for(timeout=300_000)
            finally:
                browser.close()
        written = nbformat.read(root / results, as_version=4)
        assert written.metadata["jup2kub"]["run_id"] == run_id, written.metadata.get("jup2kub")

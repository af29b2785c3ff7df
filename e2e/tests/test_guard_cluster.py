"""A change in place the analysis cannot see, on the cluster (issue 28, item 2): a step's runtime
is long-lived and cannot re-plan, so the run fails with the guard's message, which names the
step, cell, variable and the fix; the fix it names works: `jup2kub run` on one machine learns the
change (``.jup2kub/learned.json``), the chart built again from that directory hands the value
on, and after `jup2kub deploy` of that chart the same notebook's runs succeed with the
notebook's results.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from nbformat import v4

from e2e.support import (
    E2E,
    FINAL_STATES,
    Cluster,
    docker_ok,
    helm,
    state_dir,
    wait_final,
    with_cluster_dns,
)
from tests.support import hidden_change

RELEASE = "hidden"


def _jup2kub(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(
        ["jup2kub", *args], capture_output=True, text=True, timeout=3600, cwd=cwd, env=env
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _build_and_deploy(cluster: Cluster, work: Path, notebook: Path, ns: str) -> str:
    base = os.environ.get("J2K_BASE_IMAGE", "jup2kub-test-base:bookworm-py311-1")
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)  # the chart this test built before, if any
    _jup2kub(
        "build", str(notebook), "-o", str(out), "--kafka-nodes", "1", "--replicas", "1",
        "--base-image", base, cwd=work,
    )  # fmt: skip
    values = yaml.safe_load((out / "values.yaml").read_text())
    refs = [f"{s['image']['repository']}:{s['image']['tag']}" for s in values["steps"].values()]
    if cluster.own:
        subprocess.run([str(E2E / "cluster"), "load-image", *refs], check=True, timeout=1800)
    extra = work / "e2e-values.yaml"
    extra.write_text(
        yaml.safe_dump({"storage": {"mode": "existingClaim", "existingClaim": "state"}})
    )
    _jup2kub(
        "deploy", str(out), "--release", RELEASE, "-n", ns, "-f", str(out / "values-dev.yaml"),
        "-f", str(extra), "--timeout", "15m", cwd=work, env=cluster.env(),
    )  # fmt: skip
    return cluster.kafka_bootstrap(ns)


def _submit(cluster: Cluster, notebook: Path, broker: str) -> str:
    r = with_cluster_dns(cluster, "jup2kub", "submit", str(notebook), "--kafka", broker)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def _final(cluster: Cluster, notebook: Path, broker: str, run_id: str, step: str) -> dict[str, Any]:
    """``step``'s status message once it is final (others may stay blocked)."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        r = with_cluster_dns(
            cluster, "jup2kub", "status", str(notebook), run_id, "--kafka", broker, "--json"
        )
        if r.returncode == 0:
            found = json.loads(r.stdout).get(step) or {}
            if found.get("state") in FINAL_STATES:
                return dict(found)
        time.sleep(3)
    raise AssertionError(f"step {step!r} of run {run_id} did not finish")


def test_the_guard_fails_the_cluster_run_and_its_fix_works(
    cluster: Cluster, tmp_path: Path
) -> None:
    if not shutil.which("jup2kub"):
        pytest.skip("jup2kub is not installed (bash e2e/run.sh installs it)")
    if not docker_ok():
        pytest.skip("no Docker engine to build the step images")
    work = tmp_path / "project"
    work.mkdir()
    notebook = work / "hidden.ipynb"
    nb = v4.new_notebook(cells=[v4.new_code_cell(c) for c in hidden_change.CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nb, notebook)
    ns = f"j2k-e2e-guard-{os.getpid()}"
    cluster.kubectl("create", "namespace", ns)
    try:
        cluster.state_claim(ns, "256Mi")
        broker = _build_and_deploy(cluster, work, notebook, ns)
        # 1. the chart of the analysis' own plan: the guard fails step clean, naming the fix
        run_id = _submit(cluster, notebook, broker)
        clean = _final(cluster, notebook, broker, run_id, "clean")
        assert clean["state"] == "failed", clean
        error = clean["error"]
        assert (error["ename"], error["cell"], error.get("variable")) == (
            "InputChangedError",
            2,
            "df",
        )
        assert "step 'clean' changed 'df' in place (cell 2)" in error["evalue"]
        assert "run the notebook once with `jup2kub run`" in error["evalue"]
        # 2. the fix: a local run recovers and learns; the chart built after it hands df on
        local = subprocess.run(
            ["jup2kub", "run", str(notebook)], capture_output=True, text=True, cwd=work,
            timeout=900,
        )  # fmt: skip
        assert local.returncode == 0, local.stdout + local.stderr
        assert "re-planned with 'df' made an output of step 'clean'" in local.stderr
        assert (work / ".jup2kub" / "learned.json").is_file()
        broker = _build_and_deploy(cluster, work, notebook, ns)
        spec = (work / "out" / "files" / "steps" / "clean" / "step.json").read_text()
        assert '"df"' in spec.split('"outputs"')[1].split("]")[0]
        # 3. the same notebook's runs now succeed, with the notebook's results
        run_id = _submit(cluster, notebook, broker)
        states = wait_final(cluster, str(notebook), broker, run_id, steps=5, timeout=900)
        assert {s["state"] for s in states.values()} == {"succeeded"}, states
        result = work / "remote.ipynb"
        _jup2kub(
            "results", str(notebook), run_id, "--state", str(state_dir(cluster, ns)),
            "-o", str(result), cwd=work,
        )  # fmt: skip
        cells = nbformat.read(result, as_version=4).cells
        report = "".join(o.get("text", "") for o in cells[4].outputs)
        assert report.strip() == hidden_change.REPORT
    finally:
        helm(cluster, "uninstall", RELEASE, "-n", ns, "--wait", check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)

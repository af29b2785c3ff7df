"""Every run's provenance: a Provenance Run Crate (RO-Crate) in the run's directory, valid for
rocrate-validator at severity REQUIRED (offline, its cache seeded with the vendored JSON-LD
contexts), saying what ran, when, how it ended, with what and what it wrote; secrets by name
only; ``runs export`` packs it as an RO-Crate zip."""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jup2kub import api
from jup2kub.cluster.pods import RemoteRun
from jup2kub.provenance.crate import METADATA
from jup2kub.provenance.facts import Image
from jup2kub.provenance.remote import ReadRun, write_results_crate
from tests.support.cli_runner import jup2kub
from tests.support.crate_validation import validate

MakeNb = Callable[..., Path]
SECRET = "hunter2-crate-literal"
SCHEMA = "http://schema.org/"


def _graph(path: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {e["@id"]: e for e in doc["@graph"]}


def _ids(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value] if value else []
    return [i["@id"] for i in items]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _types(entity: dict[str, Any]) -> list[str]:
    kind = entity.get("@type")
    return kind if isinstance(kind, list) else [kind]


def _actions(graph: dict[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in graph.values() if kind in _types(e)]


def _notebook(make_notebook: MakeNb, *, fail: bool = False, secret: bool = False) -> Path:
    params = "rows = 3\nlabel = 'x'" + (f'\ndb_password = "{SECRET}"' if secret else "")
    check = "assert total < 0, 'too big'\nok = True" if fail else "ok = total > 0"
    return make_notebook(
        [
            ("code", params, ["parameters"]),
            "#| step: load\nvalues = list(range(rows))",
            "#| step: total\ntotal = sum(values)"
            + ("\nsecret_len = len(db_password)" if secret else ""),
            f"#| step: check\n{check}",
            "#| step: report\nprint(label, total, ok)",
        ],
        name="flow.ipynb",
    )


def _run(nb: Path, tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> Any:
    proc = jup2kub(
        "run",
        nb,
        "-o",
        tmp_path / "out.ipynb",
        "--workdir",
        tmp_path / "wd",
        *extra,
        cwd=tmp_path,
        env=env,
    )
    runs = sorted((tmp_path / "wd" / "runs").iterdir())
    return proc, runs[-1]


def test_a_local_run_s_crate_is_a_valid_provenance_run_crate(
    make_notebook: MakeNb, tmp_path: Path
) -> None:
    nb = _notebook(make_notebook)
    proc, run_dir = _run(nb, tmp_path, "-p", "rows", "4")
    assert proc.returncode == 0, proc.stderr
    crate = run_dir / METADATA
    assert f"provenance (RO-Crate): {crate}" in proc.stdout
    checked = validate(run_dir)
    assert checked.passed, "\n".join(checked.issues) or checked.output
    # the profile the issue names, on its own too (Provenance Run Crate builds on it)
    workflow_run = validate(run_dir, profile="workflow-run-crate")
    assert workflow_run.passed, "\n".join(workflow_run.issues) or workflow_run.output
    graph = _graph(crate)
    root = graph["./"]
    assert "https://w3id.org/ro/wfrun/provenance/0.5" in _ids(root["conformsTo"])
    workflow = graph[root["mainEntity"]["@id"]]
    assert {"File", "ComputationalWorkflow", "SoftwareSourceCode"} <= set(_types(workflow))
    assert workflow["sha256"] == _sha(nb) == _sha(run_dir / workflow["@id"])
    assert "isBasedOn" not in workflow  # the copy is the file itself
    run = graph[f"#{run_dir.name}"]
    assert run["identifier"] == run_dir.name
    assert run["actionStatus"]["@id"] == SCHEMA + "CompletedActionStatus"
    assert run["startTime"] <= run["endTime"]
    values = {graph[i]["name"]: graph[i]["value"] for i in _ids(run["object"])}
    assert values == {"rows": 4, "label": "x"}
    engine = graph[_actions(graph, "OrganizeAction")[0]["instrument"]["@id"]]
    assert engine["name"] == "Jup2Kub" and engine["version"] == api_version()


def api_version() -> str:
    from jup2kub.version import __version__

    return __version__


def test_each_step_s_execution_and_outputs_are_recorded(
    make_notebook: MakeNb, tmp_path: Path
) -> None:
    nb = _notebook(make_notebook)
    proc, run_dir = _run(nb, tmp_path)
    assert proc.returncode == 0, proc.stderr
    graph = _graph(run_dir / METADATA)
    steps = {
        a["name"].rsplit(" ", 1)[-1]: a
        for a in _actions(graph, "CreateAction")
        if "step" in a["name"]
    }
    assert sorted(steps) == ["check", "load", "report", "total"]
    for action in steps.values():
        assert action["actionStatus"]["@id"] == SCHEMA + "CompletedActionStatus"
        assert action["startTime"] <= action["endTime"]
    controls = _actions(graph, "ControlAction")
    assert sorted(graph[c["object"]["@id"]]["name"] for c in controls) == sorted(
        a["name"] for a in steps.values()
    )
    values = _ids(steps["load"]["result"])
    assert len(values) == 1 and values[0].endswith("/values/values.pkl")
    for path in [*values, *_ids(graph[f"#{run_dir.name}"]["result"])]:
        assert graph[path]["sha256"] == _sha(run_dir / path), path
    assert "result.ipynb" in _ids(graph[f"#{run_dir.name}"]["result"])
    lock = (run_dir / "environment.txt").read_text()
    assert lock.startswith("# python ") and "rocrate==" in lock
    tool = graph["#step-load"]
    assert {"@id": "environment.txt"} in tool["softwareRequirements"]


def test_the_files_a_step_writes_are_outputs_of_the_crate(
    make_notebook: MakeNb, tmp_path: Path
) -> None:
    """Files written under literal names are copied into the crate (the next run may overwrite
    the originals) and listed with their sha256 as the writing step's results."""
    nb = make_notebook(
        [
            "#| step: make\nrows = [f'{i},{i * i}' for i in range(5)]",
            "#| step: save\nimport os\nos.makedirs('out', exist_ok=True)\n"
            "with open('out/squares.csv', 'w') as f:\n    f.write('\\n'.join(rows))",
        ],
        name="writes.ipynb",
    )
    proc, run_dir = _run(nb, tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = tmp_path / "out" / "squares.csv"
    copy = run_dir / "outputs" / "save" / "out" / "squares.csv"
    assert copy.read_bytes() == written.read_bytes()
    graph = _graph(run_dir / METADATA)
    save = next(
        a for a in _actions(graph, "CreateAction") if a["name"].rsplit(" ", 1)[-1] == "save"
    )
    rel = copy.relative_to(run_dir).as_posix()
    assert rel in _ids(save["result"])
    assert graph[rel]["sha256"] == _sha(written)
    checked = validate(run_dir)
    assert checked.passed, "\n".join(checked.issues) or checked.output


def test_a_secret_is_named_never_valued(make_notebook: MakeNb, tmp_path: Path) -> None:
    nb = _notebook(make_notebook, secret=True)
    env = {**os.environ, "DB_PASSWORD": "from-the-environment-42"}
    proc, run_dir = _run(nb, tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    checked = validate(run_dir)
    assert checked.passed, "\n".join(checked.issues)
    text = (run_dir / METADATA).read_text()
    graph = _graph(run_dir / METADATA)
    param = graph["#param-db_password"]
    assert "DB_PASSWORD" in param["description"]
    assert "#pv-db_password" not in graph
    workflow = graph["notebook.ipynb"]
    source = graph[workflow["isBasedOn"]["@id"]]
    assert source["sha256"] == _sha(nb)  # what ran, by hash
    assert workflow["sha256"] == _sha(run_dir / "notebook.ipynb") != _sha(nb)
    out = tmp_path / "crate.zip"
    assert (
        jup2kub("runs", "export", run_dir.name, out, "--workdir", tmp_path / "wd").returncode == 0
    )
    with zipfile.ZipFile(out) as zf:
        packed = b"".join(zf.read(n) for n in zf.namelist())
    for secret in (SECRET, "from-the-environment-42"):
        assert secret not in text and secret.encode() not in packed


def test_a_failed_run_s_crate_says_it_failed(make_notebook: MakeNb, tmp_path: Path) -> None:
    nb = _notebook(make_notebook, fail=True)
    proc, run_dir = _run(nb, tmp_path)
    assert proc.returncode == 1, proc.stderr
    checked = validate(run_dir)
    assert checked.passed, "\n".join(checked.issues)
    graph = _graph(run_dir / METADATA)
    run = graph[f"#{run_dir.name}"]
    assert run["actionStatus"]["@id"] == SCHEMA + "FailedActionStatus"
    assert "AssertionError: too big" in run["error"] and "'check'" in run["error"]
    check = graph[f"#{run_dir.name}/check"]
    assert check["actionStatus"]["@id"] == SCHEMA + "FailedActionStatus"
    assert "AssertionError" in check["error"] and "result" not in check
    report = graph[f"#{run_dir.name}/report"]  # never ran: a potential action only
    assert report["actionStatus"]["@id"] == SCHEMA + "PotentialActionStatus"
    assert "startTime" not in report and "result" not in report
    assert "completed" not in graph["./"]["description"]


def test_runs_export_packs_an_ro_crate_zip(make_notebook: MakeNb, tmp_path: Path) -> None:
    nb = _notebook(make_notebook)
    proc, run_dir = _run(nb, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "share" / "crate.zip"
    wd = ("--workdir", tmp_path / "wd")
    done = jup2kub("runs", "export", run_dir.name, out, *wd)
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert zf.read(METADATA) == (run_dir / METADATA).read_bytes()
        assert zf.read("notebook.ipynb") == nb.read_bytes()
    assert {METADATA, "notebook.ipynb", "result.ipynb", "summary.json"} <= names
    assert any(n.endswith("/values/values.pkl") for n in names)
    checked = validate(out)
    assert checked.passed, "\n".join(checked.issues)
    assert jup2kub("runs", "export", run_dir.name, out, *wd).returncode == 0  # ours: replaced


@pytest.mark.parametrize(
    ("run_id", "target", "message"),
    [
        ("run-20990101T000000-abcdef", "c.zip", "there is no run"),
        ("../escape", "c.zip", "invalid"),
        (None, "notes.txt", "not a crate `jup2kub runs export` wrote"),
        (None, "notes.txt/c.zip", "cannot write the crate's zip"),
    ],
)
def test_runs_export_refuses_bad_input(
    make_notebook: MakeNb, tmp_path: Path, run_id: str | None, target: str, message: str
) -> None:
    nb = _notebook(make_notebook)
    proc, run_dir = _run(nb, tmp_path)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "notes.txt").write_text("mine")
    done = jup2kub(
        "runs", "export", run_id or run_dir.name, target, "--workdir", tmp_path / "wd", cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "c.zip").exists()


def test_the_validator_really_reads_the_seeded_contexts(
    make_notebook: MakeNb, tmp_path: Path
) -> None:
    """Offline and unseeded, the contexts cannot be read: the seed is what validates."""
    proc, run_dir = _run(_notebook(make_notebook), tmp_path)
    assert proc.returncode == 0, proc.stderr
    checked = validate(run_dir, documents={})
    assert not checked.passed
    assert any("Unable to retrieve the JSON-LD context" in i for i in checked.issues)


def test_a_cluster_run_s_crate_names_each_step_s_image(tmp_path: Path) -> None:
    """``results --release`` reads a run from the step pods (``RemoteRun``) and the images
    from what the release runs: the crate gives each step's image digest."""
    nb = tmp_path / "flow.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    results = tmp_path / "out" / "run-1.ipynb"
    results.parent.mkdir()
    results.write_text(nb.read_text())

    def doc(start: float, ok: bool) -> dict[str, Any]:
        cells = [{"index": 1, "started_at": start, "seconds": 0.5}]
        error = None if ok else {"cell": 2, "ename": "ValueError", "evalue": "bad"}
        state = "succeeded" if ok else "failed"
        return {"outputs": {"cells": cells, "error": error}, "status": {"state": state}}

    source = RemoteRun("run-1", {"n": 2}, {"a": doc(1e9, True), "b": doc(1e9 + 1, False)})
    digest = "sha256:" + "ab" * 32
    images = {"a": Image("registry.example:5000/ns/flow-a:1f2e", digest)}
    read = ReadRun("run-1", "flow", nb, nb.read_bytes(), results, ["a", "b"], {"n": 2}, {}, images)
    crate = write_results_crate(source, read)
    assert crate == tmp_path / "out" / "run-1-crate" / METADATA
    checked = validate(crate.parent)
    assert checked.passed, "\n".join(checked.issues)
    graph = _graph(crate)
    image = graph[graph["#run-1/a"]["containerImage"]["@id"]]
    assert image["sha256"] == "ab" * 32 and image["tag"] == "1f2e"
    assert image["registry"] == "registry.example:5000" and image["name"] == "ns/flow-a"
    assert graph["#run-1/b"]["actionStatus"]["@id"] == SCHEMA + "FailedActionStatus"
    assert graph["#run-1"]["actionStatus"]["@id"] == SCHEMA + "FailedActionStatus"
    assert graph["#run-1"]["startTime"].startswith("2001-09-09T01:46:40")
    assert graph["result.ipynb"]["sha256"] == _sha(results)


def test_a_kafka_run_has_a_valid_crate(make_notebook: MakeNb, tmp_path: Path, kafka: str) -> None:
    nb = _notebook(make_notebook)
    result = api.run(nb, workdir=tmp_path / "wd", kafka=kafka)
    assert result.ok and result.crate is not None
    checked = validate(result.crate.parent)
    assert checked.passed, "\n".join(checked.issues)
    graph = _graph(result.crate)
    steps = [a for a in _actions(graph, "CreateAction") if "step" in a["name"]]
    assert len(steps) == 4 and all("startTime" in a for a in steps)


def test_results_of_a_release_write_a_crate_with_each_step_s_image_digest(
    make_notebook: MakeNb, tmp_path: Path
) -> None:
    """``results --release`` through the real Kubernetes client, from an API server standing
    in for a cluster (the e2e cluster is not ours to use) whose step pods answer
    ``/runs/ID/outputs`` with the runtime's own function over a real run's state: the crate is
    written beside the results notebook, and names each step's image by the digest its pod
    runs."""
    from jup2kub_runtime.serving.history import run_outputs
    from jup2kub_runtime.storage.state_store import StateStore
    from tests.support.canned_kube import NS, CannedApiServer, deployment, kubeconfig, pod

    nb = _notebook(make_notebook)
    proc, run_dir = _run(nb, tmp_path)
    assert proc.returncode == 0, proc.stderr
    store, run_id = StateStore(tmp_path / "wd"), run_dir.name
    steps = ("load", "total", "check", "report")
    digests = {s: "sha256:" + hashlib.sha256(s.encode()).hexdigest() for s in steps}

    def step_pod(step: str) -> dict[str, Any]:
        doc = pod(step, f"demo-{step}-a", True)
        image = f"registry.test:5000/team/flow-{step}:c0ffee"
        doc["spec"]["containers"][0]["image"] = image
        doc["status"]["containerStatuses"][0]["imageID"] = (
            f"registry.test:5000/team/flow-{step}@{digests[step]}"
        )
        return doc

    def listed(kind: str, items: list[dict[str, Any]]) -> tuple[str, bytes]:
        return "application/json", json.dumps(
            {"kind": kind, "metadata": {}, "items": items}
        ).encode()

    proxy = f"/api/v1/namespaces/{NS}/pods"
    answers = {
        f"/apis/apps/v1/namespaces/{NS}/deployments": listed(
            "DeploymentList", [deployment(s, 1, 1) for s in steps]
        ),
        f"/apis/apps/v1/namespaces/{NS}/statefulsets": listed("StatefulSetList", []),
        proxy: listed("PodList", [step_pod(s) for s in steps]),
    }
    for s in steps:
        answers[f"{proxy}/demo-{s}-a:8080/proxy/runs/{run_id}/outputs"] = (
            "application/json",
            json.dumps(run_outputs(store, s, run_id)).encode(),
        )
    out = tmp_path / "from-cluster.ipynb"
    with CannedApiServer(answers) as server:
        config = kubeconfig(tmp_path, server)
        res = jup2kub(
            "results",
            nb,
            run_id,
            "--release",
            "demo",
            "--kubeconfig",
            config,
            "-o",
            out,
            cwd=tmp_path,
        )
    assert res.returncode == 0, res.stderr
    crate = tmp_path / "from-cluster-crate" / METADATA
    assert f"provenance (RO-Crate): {crate}" in res.stdout
    checked = validate(crate.parent)
    assert checked.passed, "\n".join(checked.issues)
    graph = _graph(crate)
    assert graph[f"#{run_id}"]["actionStatus"]["@id"] == SCHEMA + "CompletedActionStatus"
    for s in steps:
        action = graph[f"#{run_id}/{s}"]
        image = graph[action["containerImage"]["@id"]]
        assert image["sha256"] == digests[s].removeprefix("sha256:")
        assert image["tag"] == "c0ffee" and image["name"] == f"team/flow-{s}"
        assert action["startTime"] <= action["endTime"]
    assert graph["notebook.ipynb"]["sha256"] == _sha(nb)
    assert graph["result.ipynb"]["sha256"] == _sha(out)


def test_an_interrupted_run_s_crate_says_it_failed(make_notebook: MakeNb, tmp_path: Path) -> None:
    """SIGTERM while a step runs: the crate is written, failed, naming the signal; the step
    that completed is there, the one killed is not presented as done."""
    import signal
    import subprocess
    import sys

    from tests.support.processes import wait_for_file

    nb = make_notebook(
        [
            "#| step: first\nx = 1",
            "#| step: slow\nimport os, pathlib, time\n"
            "pathlib.Path('pid').write_text(str(os.getpid()))\n"
            "while True:\n    time.sleep(0.05)\ny = x + 1",
        ]
    )
    work = tmp_path / "wd"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jup2kub.cli", "run", str(nb), "--workdir", str(work)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    wait_for_file(tmp_path / "pid", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    (run_dir,) = (work / "runs").iterdir()
    checked = validate(run_dir)
    assert checked.passed, "\n".join(checked.issues)
    graph = _graph(run_dir / METADATA)
    run = graph[f"#{run_dir.name}"]
    assert run["actionStatus"]["@id"] == SCHEMA + "FailedActionStatus"
    assert run["error"] == "interrupted by SIGTERM"
    assert graph[f"#{run_dir.name}/first"]["actionStatus"]["@id"] == SCHEMA + (
        "CompletedActionStatus"
    )
    assert graph[f"#{run_dir.name}/slow"]["actionStatus"]["@id"] != SCHEMA + (
        "CompletedActionStatus"
    )

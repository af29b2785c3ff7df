"""The JupyterLab extension (issue 20, item 1b), for real: a JupyterLab server with the
extension as ``pip install`` puts it (prebuilt, no Node), driven by Debian's Chromium through
Playwright. The side panel shows the open notebook's steps and DAG, badges name each cell's
step, Run runs the pipeline and links the results, Build writes the chart; ``%jup2kub
inspect`` in the notebook finds its notebook through the server's session; the panel's search
box finds a step of the step catalog (the server's ``$JUP2KUB_CATALOG``); its Runs view lists
the recent runs of a pipeline deployed on a real broker (runtimes on this machine, as the chart
starts them), each step's state, and opens a run's results notebook; the same endpoints read a
release through the real Kubernetes client from a stand-in API server (no cluster here).
Screenshots are kept in tests/artifacts/labextension/ (J2K_TEST_ARTIFACTS).

Lab loads this checkout's prebuilt assets (``extra_labextensions_path``), not the copy an
earlier ``pip install`` left in the environment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tests.support.jupyterlab import TOKEN, chromium, jupyterlab, widen_the_panel

MakeNb = Callable[..., Path]
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = (
    Path(os.environ.get("J2K_TEST_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))
    / "labextension"
)

playwright = pytest.importorskip("playwright.sync_api")


def _chromium() -> str:
    return chromium()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The JupyterLab server of tests/support/jupyterlab.py, over ``tmp_path/root``."""
    with jupyterlab(tmp_path) as served:
        yield served


def _notebook(root: Path) -> Path:
    from tests.support.notebooks import build_notebook

    nb = build_notebook(
        [
            ("code", "n = 4", ["parameters"]),
            "#| step: make\nvalues = list(range(n))",
            "#| step: double\ndoubled = [2 * v for v in values]",
            "#| step: total\nprint('total', sum(values) + sum(doubled))",
            "%load_ext jup2kub\n%jup2kub inspect",
        ],
        "python",
    )
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path = root / "flow.ipynb"
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


def test_side_panel_badges_run_and_build_in_a_real_browser(lab: tuple[str, Path]) -> None:
    url, root = lab
    path = _notebook(root)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.goto(f"{url}lab/tree/{path.name}?token={TOKEN}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.click(".lm-TabBar-tab[data-id='jup2kub-panel']")
            status = page.locator(".jp-Jup2Kub-status")
            status.filter(has_text="3 steps").wait_for(timeout=60_000)
            assert "make → double → total" in status.inner_text()
            assert page.locator(".jp-Jup2Kub-dag svg").count() == 1
            badges = page.locator(".jp-Jup2Kub-badge").all_inner_texts()
            assert badges == ["make", "double", "total"]
            # the notebook's own %jup2kub inspect: the kernel knows its notebook (the server
            # tells it), and the DAG shows inline
            # (only once the kernel is connected and idle: Shift+Enter while it still starts
            # is dropped, the cell left unexecuted, as the failure screenshot showed)
            page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=120_000)
            page.locator(".jp-Cell").nth(4).click()
            page.keyboard.press("Shift+Enter")
            inline = page.locator(".jp-Cell").nth(4).locator(".jp-OutputArea")
            inline.locator(".jp-RenderedSVG, svg").first.wait_for(timeout=120_000)  # the DAG
            assert "values ← make" in inline.locator(".jp-RenderedHTMLCommon").first.inner_text()
            page.screenshot(path=str(ARTIFACTS / "panel-and-inline-dag.png"))

            page.click(".jp-Jup2Kub-buttons button[data-action='run']")
            status.filter(has_text="Run succeeded.").wait_for(timeout=180_000)
            states = page.locator(".jp-Jup2Kub-run td").all_inner_texts()
            assert states == ["make", "succeeded", "double", "succeeded", "total", "succeeded"]
            page.screenshot(path=str(ARTIFACTS / "panel-after-run.png"))
            page.click(".jp-Jup2Kub-results")
            page.locator(".lm-TabBar-tab", has_text="flow-results.ipynb").wait_for()
            # the panel follows the notebook in front: back to the one to build
            page.locator(".lm-TabBar-tab", has_text="flow.ipynb").click()
            status.filter(has_text="flow: 3 steps").wait_for(timeout=60_000)

            page.click(".jp-Jup2Kub-buttons button[data-action='build']")
            status.filter(has_text="Chart written to flow-chart").wait_for(timeout=120_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"))
            raise
        finally:
            browser.close()
    result = nbformat.read(root / "flow-results.ipynb", as_version=4)
    printed = [o["text"] for c in result.cells for o in c.get("outputs", []) if "text" in o]
    assert printed == ["total 18\n"]
    assert (root / "flow-chart" / "Chart.yaml").is_file()


def _get(url: str) -> tuple[int, dict[str, Any]]:
    """The server's status and JSON answer (errors included)."""
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        assert exc.headers["Content-Type"].startswith("application/json")
        return exc.code, json.loads(exc.read())


def test_catalog_endpoint_answers_json_for_missing_empty_found_and_broken(
    lab: tuple[str, Path],
) -> None:
    from jup2kub import api

    url, root = lab
    catalog = root.parent / "catalog.db"
    search = f"{url}jup2kub/catalog?q="
    status, answer = _get(search + "values")
    assert status == 200 and answer["results"] == []
    assert "no step catalog at" in answer["note"]
    assert not catalog.exists()  # searching creates no catalog

    with api.open_catalog(str(catalog)) as store:
        status, answer = _get(search + "values")
        assert status == 200 and answer["results"] == []
        assert "is empty" in answer["note"]
        api.catalog_add(store, _notebook(root), workdir=root / ".jup2kub")

    status, answer = _get(search + "doubled")
    assert status == 200 and answer["note"] is None
    # the step that writes it, and the one that reads it
    steps = {f"{h['pipeline']}/{h['step']}": h for h in answer["results"]}
    assert sorted(steps) == ["flow/double", "flow/total"]
    hit = steps["flow/double"]
    assert hit["inputs"] == {"values": {"from": "make", "type": "unknown"}}
    assert list(hit["outputs"]) == ["doubled"] and "writes:doubled" in hit["matched"]
    assert hit["lab_path"] == "flow.ipynb"  # its notebook under the server's root
    status, answer = _get(search + "nothing_like_it")
    assert status == 200 and answer["results"] == []
    assert answer["note"] == "no catalogued step matches 'nothing_like_it'"

    status, answer = _get(f"{url}jup2kub/catalog")  # no q
    assert status == 400 and "q (the words to search for) is required" in answer["message"]
    status, answer = _get(search + "x&limit=many")
    assert status == 400 and "limit" in answer["message"]

    for leftover in root.parent.glob("catalog.db-*"):  # WAL files
        leftover.unlink()
    catalog.write_text("not a database")
    status, answer = _get(search + "values")
    assert status == 500
    assert "cannot open the catalog: file is not a database" in answer["message"]
    assert "Traceback" not in answer["message"]


def test_catalog_search_box_shows_a_catalogued_step_in_a_real_browser(
    lab: tuple[str, Path],
) -> None:
    url, root = lab
    path = _notebook(root)
    added = subprocess.run(
        [sys.executable, "-m", "jup2kub.cli", "catalog", "add", path.name],
        cwd=root,
        env={**os.environ, "JUP2KUB_CATALOG": str(root.parent / "catalog.db")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.goto(f"{url}lab?token={TOKEN}")
            page.click(".lm-TabBar-tab[data-id='jup2kub-panel']", timeout=120_000)
            box = page.locator(".jp-Jup2Kub-search")
            box.fill("doubled")
            hits = page.locator(".jp-Jup2Kub-hit")
            hits.first.wait_for(timeout=60_000)
            # the step that writes it, and the one that reads it
            steps = sorted(h.get_attribute("data-step") or "" for h in hits.all())
            assert steps == ["flow/double", "flow/total"]
            text = page.locator(".jp-Jup2Kub-hit[data-step='flow/double']").inner_text()
            assert "flow/double" in text
            assert "notebook flow.ipynb (cells 2)" in text
            assert "reads values ← make" in text and "writes doubled" in text
            assert page.locator(".jp-Jup2Kub-catalog-note").inner_text().startswith("2 steps in")
            page.screenshot(path=str(ARTIFACTS / "panel-catalog-search.png"))
            # its notebook opens from the hit
            page.locator(".jp-Jup2Kub-hit[data-step='flow/double'] .jp-Jup2Kub-open").click()
            page.locator(".lm-TabBar-tab", has_text="flow.ipynb").wait_for(timeout=60_000)

            box.fill("nothing_like_it")
            note = page.locator(".jp-Jup2Kub-catalog-note")
            note.filter(has_text="no catalogued step matches").wait_for(timeout=60_000)
            assert hits.count() == 0
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure-catalog.png"))
            raise
        finally:
            browser.close()


# ---- the Runs view: a deployed pipeline's recent runs ---------------------------------------

SQUARES = [
    ("code", "n = 3", ["parameters"]),
    "#| step: make\nvalues = [i * i for i in range(n)]",
    "#| step: total\nprint('total', sum(values))",
    "#| step: check\nif n > 5:\n    raise RuntimeError(f'n too large: {n}')\nprint('checked', n)",
]


def _squares(root: Path) -> Path:
    from tests.support.notebooks import build_notebook

    nb = build_notebook(SQUARES, "python")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path = root / "squares.ipynb"
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST JSON to the server: its status and JSON answer (errors included)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        assert exc.headers["Content-Type"].startswith("application/json")
        return exc.code, json.loads(exc.read())


def _printed(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [o["text"] for c in nb.cells for o in c.get("outputs", []) if "text" in o]


def test_runs_view_follows_a_pipeline_on_kafka_and_opens_a_runs_results_in_a_real_browser(
    lab: tuple[str, Path], kafka: str
) -> None:
    """Two runs submitted to a pipeline deployed on a real broker, one failing at a step: the
    Runs view (auto-refreshing) shows them newest first with each step's state, and a run's
    "results" button writes its results notebook beside the notebook and opens it in Lab."""
    from jup2kub import api
    from jup2kub.plan import plan_pipeline
    from tests.support.step_runtimes import start_runtimes, stop_runtimes

    url, root = lab
    nb = _squares(root)
    # the runtimes' state, bundles and logs: under the root (results are read from the state
    # directory there) but hidden in Lab's file browser
    procs = start_runtimes(plan_pipeline(api.inspect_notebook(nb)), kafka, root / ".pipeline")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            try:
                page.goto(f"{url}lab/tree/{nb.name}?token={TOKEN}")
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
                page.click(".lm-TabBar-tab[data-id='jup2kub-panel']")
                page.locator(".jp-Jup2Kub-status").filter(has_text="3 steps").wait_for(
                    timeout=60_000
                )
                _widen_the_panel(page)
                form = page.locator(".jp-Jup2Kub-runs-form")
                note = page.locator(".jp-Jup2Kub-runs-note")
                # a release by a name helm would refuse: the server's message, no table
                form.locator("input[name='release']").fill("Bad_Name")
                form.locator("button[data-action='runs']").click()
                note.filter(has_text="invalid release name 'Bad_Name'").wait_for(timeout=60_000)
                assert note.inner_text().startswith("Runs could not be read: 400: ")
                form.locator("input[name='source'][value='kafka']").check()
                # the notebook in front is the one whose results are assembled
                assert form.locator("input[name='path']").input_value() == nb.name
                form.locator("input[name='kafka']").fill(kafka)
                form.locator("input[name='state']").fill(".pipeline/state")
                form.locator("input[name='auto']").check()
                note.filter(has_text="0 recent runs of pipeline squares on Kafka").wait_for(
                    timeout=60_000
                )
                ok = api.submit(nb, kafka, {"n": 3})
                bad = api.submit(nb, kafka, {"n": 9})  # its check step raises
                # the view refreshes itself until both are over
                rows = page.locator("tr.jp-Jup2Kub-run-row")
                for run, state in ((ok, "succeeded"), (bad, "failed")):
                    page.locator(
                        f"tr.jp-Jup2Kub-run-row[data-run='{run}'][data-state='{state}']"
                    ).wait_for(timeout=240_000)
                assert [r.get_attribute("data-run") for r in rows.all()] == [bad, ok]

                def states(run: str) -> dict[str, str | None]:
                    badges = page.locator(f"tr[data-run='{run}'] .jp-Jup2Kub-run-steps span")
                    return {
                        b.get_attribute("data-step") or "": b.get_attribute("data-state")
                        for b in badges.all()
                    }

                assert states(ok) == {
                    "make": "succeeded",
                    "total": "succeeded",
                    "check": "succeeded",
                }
                assert states(bad) == {"make": "succeeded", "total": "succeeded", "check": "failed"}
                failed = page.locator(f"tr[data-run='{bad}'] span[data-step='check']")
                assert "RuntimeError: n too large: 9" in (failed.get_attribute("title") or "")
                assert note.inner_text().startswith("2 recent runs of pipeline squares on Kafka")
                page.locator(".jp-Jup2Kub-runs").scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS / "panel-runs.png"))

                page.locator(f"tr[data-run='{ok}'] button").click()
                results = f"squares-{ok}.ipynb"
                page.locator(".lm-TabBar-tab", has_text=results).wait_for(timeout=120_000)
                opened = page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output")
                opened.filter(has_text="total 5").wait_for(timeout=60_000)
                assert note.inner_text() == f"Run {ok} (succeeded): {results}"
                page.screenshot(path=str(ARTIFACTS / "panel-runs-results.png"))
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "failure-runs.png"))
                raise
            finally:
                browser.close()
    finally:
        stop_runtimes(procs)
    assert _printed(root / f"squares-{ok}.ipynb") == ["total 5\n", "checked 3\n"]
    # again: another name, the first one left as it was
    first = (root / f"squares-{ok}.ipynb").read_bytes()
    body = {"path": nb.name, "run_id": ok, "state": ".pipeline/state"}
    status, answer = _post(f"{url}jup2kub/deployed/results", body)
    assert status == 200 and answer["path"] == f"squares-{ok}-2.ipynb", answer
    assert (root / f"squares-{ok}.ipynb").read_bytes() == first
    # the failed run's: what ran, and the error where it happened
    status, answer = _post(f"{url}jup2kub/deployed/results", {**body, "run_id": bad})
    assert status == 200 and answer["status"] == "incomplete", answer
    assert _printed(root / answer["path"])[0] == "total 204\n"
    assert not list(root.glob(".*.part"))  # no scratch file left


def _widen_the_panel(page: Any) -> None:
    widen_the_panel(page)


def test_runs_endpoints_read_a_release_through_the_kubernetes_api(
    lab: tuple[str, Path],
) -> None:
    """A release's recent runs and a run's results, as the Runs view asks for them: through
    the real Kubernetes client from an API server standing in for a cluster, whose step pods
    answer ``/runs`` and ``/runs/ID/outputs`` with the runtime's own functions over the state
    of a real run; and every kind of bad input, a 400 saying what to fix."""
    from jup2kub_runtime.serving.history import recent_runs, run_outputs
    from jup2kub_runtime.storage.state_store import StateStore
    from tests.support.canned_kube import NS, CannedApiServer, deployment, kubeconfig, pod

    url, root = lab
    nb = _notebook(root)  # steps make, double, total
    ran = subprocess.run(
        [sys.executable, "-m", "jup2kub.cli", "run", nb.name, "ran.ipynb"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    store = StateStore(root / ".jup2kub" / "flow")
    (run_id,) = [d.name for d in (store.root / "runs").iterdir() if not d.name.startswith(".")]
    steps = ("make", "double", "total")

    def listed(kind: str, items: list[dict[str, Any]]) -> tuple[str, bytes]:
        return "application/json", json.dumps(
            {"kind": kind, "metadata": {}, "items": items}
        ).encode()

    def answer(doc: Any) -> tuple[str, bytes]:
        return "application/json", json.dumps(doc).encode()

    proxy = f"/api/v1/namespaces/{NS}/pods"
    answers = {
        f"/apis/apps/v1/namespaces/{NS}/deployments": listed(
            "DeploymentList", [deployment(s, 1, 1) for s in steps]
        ),
        f"/apis/apps/v1/namespaces/{NS}/statefulsets": listed("StatefulSetList", []),
        f"/api/v1/namespaces/{NS}/pods": listed(
            "PodList", [pod(s, f"demo-{s}-a", True) for s in steps]
        ),
    }
    for s in steps:
        answers[f"{proxy}/demo-{s}-a:8080/proxy/runs/20"] = answer(
            {"runs": recent_runs(store, s, 20)}
        )
        answers[f"{proxy}/demo-{s}-a:8080/proxy/runs/{run_id}/outputs"] = answer(
            run_outputs(store, s, run_id)
        )
    runs_url = f"{url}jup2kub/deployed/runs"
    results_url = f"{url}jup2kub/deployed/results"
    with CannedApiServer(answers) as server:
        kubeconfig(root.parent, server)  # the server's $KUBECONFIG
        status, doc = _get(f"{runs_url}?release=demo&namespace={NS}")
        assert status == 200, doc
        assert doc["source"] == f"release demo (namespace {NS})"
        assert doc["steps"] == ["double", "make", "total"] and doc["problems"] == []
        (row,) = doc["runs"]
        assert row["run_id"] == run_id and row["state"] == "succeeded"
        assert {s: v["state"] for s, v in row["steps"].items()} == dict.fromkeys(steps, "succeeded")
        status, doc = _get(f"{runs_url}?release=demo")  # the kubeconfig context's namespace
        assert status == 200 and [r["run_id"] for r in doc["runs"]] == [run_id], doc

        body = {"path": nb.name, "run_id": run_id, "release": "demo", "namespace": NS}
        status, doc = _post(results_url, body)
        assert status == 200, doc
        assert doc == {"run_id": run_id, "status": "succeeded", "path": f"flow-{run_id}.ipynb"}
        assert _printed(root / doc["path"]) == ["total 18\n"]
        status, doc = _post(results_url, {**body, "run_id": "r-unknown"})
        assert status == 400 and "there is no run 'r-unknown'" in doc["message"], doc

    bad_gets = [
        ("", "say which pipeline"),
        ("?release=%20%20", "say which pipeline"),  # blank is not given
        ("?release=Bad_Name", "invalid release name 'Bad_Name'"),
        ("?release=demo&namespace=Team%20A", "invalid namespace 'Team A'"),
        ("?release=demo&path=flow.ipynb&kafka=h:9092", "not both"),
        ("?path=flow.ipynb", "say which pipeline"),
        ("?release=demo&limit=0", "limit must be between 1 and 200"),
        ("?release=demo&limit=many", "limit must be a whole number"),
        ("?path=flow.ipynb&kafka=h:9092&name=Not%20A%20Name", "pipeline name"),
    ]
    for query, message in bad_gets:
        status, doc = _get(runs_url + query)
        assert status == 400 and message in doc["message"], (query, doc)
    status, doc = _get(f"{runs_url}?path=nothing.ipynb&kafka=h:9092")
    assert status == 404 and "no notebook nothing.ipynb" in doc["message"]
    status, doc = _get(f"{runs_url}?path=flow.ipynb&kafka=127.0.0.1:1")  # nothing listens
    assert status == 502 and "Kafka" in doc["message"], doc
    assert "Traceback" not in doc["message"]

    base = {"path": nb.name, "run_id": run_id}
    bad_posts = [
        ({"path": nb.name}, 400, "run_id is required"),
        ({**base, "run_id": "bad id!"}, 400, "run id 'bad id!' is invalid"),
        (base, 400, "say where the run is"),
        ({**base, "release": "demo", "state": "."}, 400, "say where the run is"),
        ({**base, "release": "Bad_Name"}, 400, "invalid release name"),
        ({**base, "state": "no-such-dir"}, 400, "no directory no-such-dir"),
        ({**base, "state": ".."}, 403, "outside the server's root directory"),
        ({**base, "path": 7}, 400, "path must be a string"),
    ]
    for body, code, message in bad_posts:
        status, doc = _post(results_url, body)
        assert status == code and message in doc["message"], (body, doc)
    assert sorted(p.name for p in root.glob("flow-*.ipynb")) == [f"flow-{run_id}.ipynb"]

"""Recovering from the analysis' blind spot (issue 28, item 2): a step changes a value in place
through code the analysis does not follow, the runtime's guard sees it, and ``jup2kub run``
re-plans with the value an output of that step, goes on from the last safe point and comes
back equal to nbclient; it says so in one warning line and in summary.json, and records it in
``.jup2kub/learned.json``, so that ``inspect``, ``build``'s chart and the next run plan the same.
Going on is refused, naming why, where it would repeat an effect outside the pipeline."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jup2kub.errors import InputError
from jup2kub.model.learned import InPlaceChange, Learned, read_learned, record_learned
from jup2kub.model.load import load
from tests.support import hidden_change
from tests.support.cli_runner import jup2kub
from tests.support.equivalence import reference_run
from tests.support.nb_outputs import text_outputs

MakeNb = Any
NO_TIMING = re.compile(r"(?!x)x")

HIDDEN = hidden_change.CELLS


def _run_id(stdout: str, status: str = "succeeded") -> str:
    return re.search(rf"run (\S+): {status}", stdout).group(1)  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_a_hidden_change_in_place_is_recovered_from(
    mode: str, tmp_path: Path, make_notebook: MakeNb, request: pytest.FixtureRequest
) -> None:
    nb_path = make_notebook(HIDDEN)
    extra = ["--kafka", request.getfixturevalue("kafka")] if mode == "kafka" else []
    proc = jup2kub("run", nb_path, "--workdir", tmp_path / "w", *extra, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    learned_file = tmp_path / ".jup2kub" / "learned.json"
    how = "resumed the run from there" if mode == "embedded" else "ran the pipeline again (run "
    assert (
        "warning: step 'clean' changed 'df' in place in cell 2, which the analysis did not see "
        "(the guard did): re-planned with 'df' made an output of step 'clean', read from there "
        f"by steps 'stats', 'report', and {how}"
    ) in proc.stderr
    assert f"recorded in {learned_file} for inspect, build and later runs" in proc.stderr
    assert "Traceback" not in proc.stderr
    # the results are the notebook's: stats and report see the changed frame, peek does not
    run_dir = tmp_path / "w" / "runs" / _run_id(proc.stdout)
    result = nbformat.read(run_dir / "result.ipynb", as_version=4)
    reference, _ = reference_run(nb_path, [], tmp_path)
    assert text_outputs(result, NO_TIMING) == text_outputs(reference, NO_TIMING)
    assert text_outputs(result, NO_TIMING)[3] == [("stdout", "width 2")]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "succeeded"
    [record] = summary["recovered"]
    assert record["step"] == "clean" and record["variable"] == "df" and record["cell"] == 2
    assert record["now_read_by"] == ["stats", "report"]
    assert record["learned"] == str(learned_file)
    if mode == "embedded":  # resumed in place: what completed before the change is kept
        assert record["failed_run"] == summary["run_id"]
        assert "load" in summary["reused"]
        assert {"clean", "stats", "report"} <= set(summary["executed"])
    else:  # a new run: the failed one stays as it was
        failed = json.loads(
            (tmp_path / "w" / "runs" / record["failed_run"] / "summary.json").read_text()
        )
        assert failed["status"] == "failed"
        assert failed["steps"]["clean"]["error"]["ename"] == "InputChangedError"
    [fact] = read_learned(learned_file).changes
    assert (fact.variable, fact.step, fact.cell) == ("df", "clean", 2)
    # the next run plans for it: no guard failure, nothing to recover
    again = jup2kub("run", nb_path, "--workdir", tmp_path / "w", *extra, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "re-planned" not in again.stderr
    summary = json.loads(
        (tmp_path / "w" / "runs" / _run_id(again.stdout) / "summary.json").read_text()
    )
    assert "recovered" not in summary


def test_inspect_and_build_learn_what_the_run_saw(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb_path = make_notebook(HIDDEN)
    before = jup2kub("inspect", nb_path, "--json", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    clean = next(s for s in json.loads(before.stdout)["steps"] if s["name"] == "clean")
    assert "df" not in clean["outputs"]
    proc = jup2kub("run", nb_path, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    graph = json.loads(jup2kub("inspect", nb_path, "--json", cwd=tmp_path).stdout)
    steps = {s["name"]: s for s in graph["steps"]}
    assert "df" in steps["clean"]["outputs"]
    assert "clean" in steps["report"]["after"] and "clean" in steps["stats"]["after"]
    assert "clean" not in steps["peek"]["after"]
    assert [(c["variable"], c["cell"]) for c in graph["learned"]] == [("df", 2)]
    shown = jup2kub("inspect", nb_path, cwd=tmp_path).stdout
    assert "learned:    cell 2 of nb0.ipynb changes 'df' in place (seen by the guard" in shown
    # the chart agrees with what ran: clean hands df on, and no longer guards it as read-only
    out = tmp_path / "chart"
    built = jup2kub("build", nb_path, "-o", out, "--no-images", cwd=tmp_path)
    assert built.returncode == 0, built.stdout + built.stderr
    spec = json.loads((out / "files" / "steps" / "clean" / "step.json").read_text())
    assert "df" in spec["outputs"] and "df" not in spec["readonly_inputs"]
    report = json.loads((out / "files" / "steps" / "report" / "step.json").read_text())
    assert report["inputs"]["df"] == "clean"
    # from another directory, nothing was learned: the plan is the analysis' own
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    graph = json.loads(jup2kub("inspect", nb_path, "--json", cwd=elsewhere).stdout)
    assert "learned" not in graph


def test_going_on_is_refused_where_it_would_repeat_an_effect(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    cells = [*HIDDEN]
    cells[2] = (
        "#| step: clean\nwith open('cleaning.log', 'a') as log:\n    log.write('cleaned\\n')\n"
        "fixes = [add_total]\nfor f in fixes:\n    f(df)"
    )
    nb_path = make_notebook(cells)
    proc = jup2kub("run", nb_path, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "InputChangedError: step 'clean' changed 'df' in place (cell 2)" in proc.stderr
    assert (
        "error: the run could not go on from this: going on would repeat what already happened "
        "outside the pipeline (step 'clean': cell 2 writes cleaning.log), so the result could "
        f"differ from the notebook's; the change is recorded in "
        f"{tmp_path / '.jup2kub' / 'learned.json'}: the next run plans for it from the start"
    ) in proc.stderr
    assert "re-planned" not in proc.stderr
    assert (tmp_path / "cleaning.log").read_text() == "cleaned\n"  # written once
    # the cluster's way out, in the guard's own message
    assert "run the notebook once with `jup2kub run`" in proc.stderr
    # recorded all the same: the next run plans for it from the start
    again = jup2kub("run", nb_path, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    run_dir = tmp_path / "w" / "runs" / _run_id(again.stdout)
    result = nbformat.read(run_dir / "result.ipynb", as_version=4)
    assert text_outputs(result, NO_TIMING)[4] == [("stdout", hidden_change.REPORT)]


def test_an_earlier_failure_is_the_notebooks_own(tmp_path: Path, make_notebook: MakeNb) -> None:
    """nbclient stops at the first failing cell: a guard failure after it is not recovered."""
    cells = [*HIDDEN]
    cells[1] = "#| step: peek\nprint('before', list(df.columns))\nraise ValueError('stop here')"
    nb_path = make_notebook(cells)
    proc = jup2kub("run", nb_path, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ValueError: stop here" in proc.stderr
    assert "re-planned" not in proc.stderr and "could not go on" not in proc.stderr
    assert not (tmp_path / ".jup2kub" / "learned.json").exists()


# ---- the learned facts (pure) ----------------------------------------------------------------


def _change(source: str, variable: str = "df", cell: int = 2) -> InPlaceChange:
    from jup2kub.model.learned import cell_sha256

    return InPlaceChange(cell_sha256(source), variable, cell, "nb.ipynb", "clean", "run-1", "now")


def test_learned_facts_round_trip_and_merge(tmp_path: Path) -> None:
    path = tmp_path / ".jup2kub" / "learned.json"
    assert read_learned(path) == Learned()
    first = record_learned([_change("a")], path)
    record_learned([_change("a"), _change("b", "x")], path)  # the same fact once
    assert read_learned(path).changes == (first.changes[0], _change("b", "x"))
    assert read_learned(path).variables("b") == ["x"]
    assert read_learned(path).variables("c") == []


@pytest.mark.parametrize(
    "text", ["{", '{"version": 9}', '{"version": 1, "in_place_changes": [{"cell": "x"}]}']
)
def test_a_damaged_learned_file_is_an_input_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "learned.json"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_learned(path)
    assert info.value.exit_code == 2
    assert info.value.where == str(path)


def test_a_fact_follows_its_cell_and_is_forgotten_when_it_changes(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    learned = Learned((_change(HIDDEN[2]),))
    moved = make_notebook([HIDDEN[0], "#| step: extra\nprint(1)", *HIDDEN[1:]])
    pipeline = load(moved, learned=learned)[1]
    assert "df" in pipeline.step("clean").outputs
    assert [c.cell for c in pipeline.learned] == [3]  # where the cell is now
    edited = make_notebook([*HIDDEN[:2], HIDDEN[2] + "\nprint('done')", *HIDDEN[3:]])
    pipeline = load(edited, learned=learned)[1]
    assert "df" not in pipeline.step("clean").outputs and pipeline.learned == []

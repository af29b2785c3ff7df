"""``jup2kub run`` as papermill users expect it (issue 20, item 3): the results notebook where
asked, per-cell timings as papermill records them, ``-y`` inline YAML, parameters type-checked
against the parameters cell, and non-literal defaults shown as written."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from tests.support.cli_runner import jup2kub

MakeNb = Callable[..., Path]

PARAMS = (
    "import datetime\nn = 2\nlabel = 'x'\nrate = 0.5\n"
    "day = datetime.date(2026, 1, 1).isoformat()\nitems = [1, 2]"
)


@pytest.fixture
def nb(make_notebook: MakeNb) -> Path:
    return make_notebook(
        [
            ("code", PARAMS, ["parameters"]),
            "#| step: a\nvalues = [v * rate for v in range(n)] + items",
            "#| step: b\nprint(label, sum(values), day)",
        ]
    )


def _run_id(stdout: str) -> str:
    return re.search(r"run (\S+): (succeeded|failed)", stdout).group(1)  # type: ignore[union-attr]


@pytest.mark.parametrize("form", ["argument", "option"])
def test_results_notebook_where_asked_with_papermill_timings(
    form: str, nb: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sub" / "out.ipynb"
    where = [out] if form == "argument" else ["-o", out]
    proc = jup2kub("run", nb, *where, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"results notebook: {out} (and " in proc.stdout
    run_dir = tmp_path / "w" / "runs" / _run_id(proc.stdout)
    assert out.read_bytes() == (run_dir / "result.ipynb").read_bytes()
    result = nbformat.read(out, as_version=4)
    nbformat.validate(result)
    assert result.cells[2].outputs[0]["text"] == "x 3.5 2026-01-01\n"
    for index in (1, 2):  # the two step cells: papermill's keys, and nbclient's
        timing = result.cells[index].metadata["papermill"]
        assert timing["status"] == "completed" and timing["exception"] is False
        start = datetime.fromisoformat(timing["start_time"])
        end = datetime.fromisoformat(timing["end_time"])
        assert timing["duration"] == pytest.approx((end - start).total_seconds(), abs=1e-5)
        execution = result.cells[index].metadata["execution"]
        assert execution["iopub.execute_input"] == timing["start_time"] + "Z"
        assert execution["shell.execute_reply"] == timing["end_time"] + "Z"
    assert "papermill" not in result.cells[0].metadata  # the parameters cell is no step cell
    # step b starts after step a ends
    assert (
        result.cells[2].metadata["papermill"]["start_time"]
        >= (result.cells[1].metadata["papermill"]["end_time"])
    )
    run_meta = result.metadata["papermill"]
    assert run_meta["exception"] is None and run_meta["duration"] >= 0


def test_failed_cell_and_pending_cells_are_marked(make_notebook: MakeNb, tmp_path: Path) -> None:
    nb = make_notebook(
        ["#| step: a\nx = 1", "#| step: b\ny = x\nraise ValueError('no')", "#| step: c\ny"]
    )
    out = tmp_path / "out.ipynb"
    proc = jup2kub("run", nb, out, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 1
    result = nbformat.read(out, as_version=4)  # a failed run's notebook is written too
    states = [c.metadata["papermill"]["status"] for c in result.cells]
    assert states == ["completed", "failed", "pending"]
    assert result.cells[1].metadata["papermill"]["exception"] is True
    assert result.metadata["papermill"]["exception"] is True


def test_output_over_the_notebook_is_refused(nb: Path, tmp_path: Path) -> None:
    proc = jup2kub("run", nb, nb, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 2
    assert "would replace the notebook being run" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_inline_yaml_parameters_apply_between_files_and_p(nb: Path, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("label: file\nn: 9\n")
    out = tmp_path / "out.ipynb"
    proc = jup2kub(
        "run",
        nb,
        out,
        "-f",
        tmp_path / "p.yaml",
        "-y",
        "{label: inline, n: 3}",
        "-y",
        "items: [10]",
        "-p",
        "n",
        "1",
        "--workdir",
        tmp_path / "w",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = nbformat.read(out, as_version=4)
    assert result.cells[3].outputs[0]["text"] == "inline 10.0 2026-01-01\n"
    assert result.metadata["papermill"]["parameters"] == {"label": "inline", "n": 1, "items": [10]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "n", "abc"], "parameter 'n' must be int, like the notebook's value 2; got str"),
        (["-y", "label: 7"], "parameter 'label' must be str"),
        (["-y", "items: 3"], "parameter 'items' must be list"),
        (["-p", "rate", "True"], "parameter 'rate' must be float"),
        (["-y", "n: [1"], "not valid YAML"),
        (["-y", "[1, 2]"], "parameters must be a mapping"),
    ],
)
def test_parameter_types_are_checked_before_anything_runs(
    args: list[str], message: str, nb: Path, tmp_path: Path
) -> None:
    proc = jup2kub("run", nb, *args, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "w").exists()


def test_p_keeps_strings_for_string_parameters_and_accepts_any_for_expressions(
    nb: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.ipynb"
    proc = jup2kub(
        "run",
        nb,
        out,
        "-p",
        "label",
        "007",
        "-p",
        "rate",
        "2",
        "-p",
        "day",
        "5",
        "--workdir",
        tmp_path / "w",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = nbformat.read(out, as_version=4)
    assert result.cells[3].outputs[0]["text"] == "007 5 5\n"


def test_inspect_shows_non_literal_defaults_as_written(nb: Path) -> None:
    proc = jup2kub("inspect", nb)
    assert proc.returncode == 0, proc.stderr
    assert "day=datetime.date(2026, 1, 1).isoformat()" in proc.stdout
    assert "n=2, label='x'" in proc.stdout
    doc = json.loads(jup2kub("inspect", nb, "--json").stdout)
    assert doc["parameters"]["day"] is None
    assert doc["parameter_expressions"] == {"day": "datetime.date(2026, 1, 1).isoformat()"}

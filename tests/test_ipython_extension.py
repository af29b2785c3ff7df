"""The IPython extension (issue 20, item 1a), through a real kernel (nbclient): ``%%step`` read
by the analysis as a ``#| step:`` marker and stripped before the kernel runs the cell,
``%jup2kub inspect`` (steps and the DAG as SVG) for the notebook the kernel runs, ``%jup2kub
run`` (live progress, a link to the results notebook) and ``%jup2kub build``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from jup2kub.api import inspect_notebook
from jup2kub.errors import SplitError
from tests.support.cli_runner import jup2kub
from tests.support.equivalence import shown

MakeNb = Callable[..., Path]

CELLS = [
    "%load_ext jup2kub",
    ("code", "n = 3", ["parameters"]),
    "%%step make\nvalues = list(range(n))\nlen(values)",
    "%%step total\n#| prev: make\nprint('sum', sum(values))\nsum(values)",
    "%jup2kub inspect",
    "%jup2kub run -o out.ipynb -p n 5",
    "%jup2kub build -o chart --no-images",
]


def _execute(path: Path, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif "data" in o:
            parts.append(o.data.get("text/html") or o.data.get("text/plain") or "")
    return "".join(parts)


def test_step_magic_is_a_marker_and_jup2kub_magics_are_left_out(make_notebook: MakeNb) -> None:
    pipeline = inspect_notebook(make_notebook(CELLS))
    assert pipeline.split == "markers"
    assert [(s.name, s.cells) for s in pipeline.steps] == [("make", [2]), ("total", [3])]
    assert pipeline.step("total").after == ["make"]
    assert pipeline.skipped == [0, 4, 5, 6]  # the editor's tool, not the computation
    with pytest.raises(SplitError, match="'%%step' needs a step name"):
        inspect_notebook(make_notebook(["%%step\nx = 1", "%%step b\ny = x"]))


def test_magics_through_a_real_kernel(
    make_notebook: MakeNb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_notebook(CELLS, name="flow.ipynb")
    # what jupyter_server tells a kernel: the notebook it runs
    monkeypatch.setenv("JPY_SESSION_NAME", str(path))
    nb = _execute(path, tmp_path)

    # %%step is stripped before the kernel runs the cell: plain Python, last value shown
    assert nb.cells[2].outputs[0]["data"]["text/plain"] == "3"
    assert nb.cells[3].outputs[0]["text"] == "sum 3\n"

    inspect = nb.cells[4].outputs
    html = inspect[0]["data"]["text/html"]
    assert "<td>make</td>" in html and "<td>total</td>" in html and "values &larr; make" in html
    svg = inspect[1]["data"]["image/svg+xml"]
    assert "<svg" in svg and "make" in svg and "total" in svg

    run = nb.cells[5]
    assert not [o for o in run.outputs if o.get("name") == "stderr"], _text(run)
    text = _text(run)
    assert text.count("succeeded") >= 3  # both steps in the table, and the run
    assert "href='out.ipynb'" in text or 'href="out.ipynb"' in text
    result = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert result.cells[4].outputs[0]["text"] == "sum 10\n"  # n = 5, injected cell at 2
    assert result.cells[4].outputs[1]["data"]["text/plain"] == "10"

    assert "chart for 2 steps written to chart" in _text(nb.cells[6])
    assert (tmp_path / "chart" / "Chart.yaml").is_file()


def test_pipeline_equals_the_notebook_with_the_extension(
    make_notebook: MakeNb, tmp_path: Path
) -> None:
    path = make_notebook(CELLS[:4], name="flow.ipynb")
    reference = _execute(path, tmp_path)
    proc = jup2kub("run", path, tmp_path / "out.ipynb", "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert shown(result, [0]) == shown(reference, [0])


def test_inspect_without_a_known_notebook_says_how(tmp_path: Path, make_notebook: MakeNb) -> None:
    path = make_notebook(["%load_ext jup2kub", "%jup2kub inspect"], name="lost.ipynb")
    nb = _execute(path, tmp_path)
    err = _text(nb.cells[1])
    assert "this kernel was not told the notebook it runs" in err
    assert "%jup2kub inspect NOTEBOOK.ipynb" in err

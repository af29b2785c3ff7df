"""The ``jup2kub`` command as users run it: a real subprocess, exit codes, and messages."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.cli_runner import CORPUS, jup2kub

MakeNb = Callable[..., Path]


def test_inspect_json_has_exactly_the_documented_shape() -> None:
    nb = CORPUS / "sales_markers.ipynb"
    proc = jup2kub("inspect", nb, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"name", "notebook", "split", "parameters", "steps"}
    assert doc["name"] == "sales-markers"
    assert doc["notebook"] == str(nb)
    assert doc["split"] == "markers"
    assert doc["parameters"] == {
        "n_rows": 500,
        "seed": 7,
        "regions": ["north", "south", "east", "west"],
    }
    shape = {"name", "cells", "inputs", "parameters", "outputs", "after", "cache"}
    for step in doc["steps"]:
        assert set(step) in (shape, shape | {"effects"})  # effects: only a step that has some
        assert set(step["cache"]) <= {"cacheable", "reasons", "decided_by"}
        assert all(isinstance(e, str) and e for e in step.get("effects", ["-"]))
        assert all(isinstance(c, int) for c in step["cells"])
    names = [s["name"] for s in doc["steps"]]
    assert names == ["load", "clean", "summarize", "model", "report"]
    # cells index nb.cells: the markers sit on exactly those cells
    raw = json.loads(nb.read_text())
    for step in doc["steps"]:
        first = "".join(raw["cells"][step["cells"][0]]["source"])
        assert first.startswith(f"#| step: {step['name']}")


def test_inspect_text_view() -> None:
    proc = jup2kub("inspect", CORPUS / "sales_markers.ipynb")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "split:      markers (5 steps)" in out
    assert "step model  (cells 6)" in out
    assert "inputs:     sales <- clean" in out
    assert "outputs:    sales -> summarize, model" in out
    assert "3. summarize, model" in out  # the two branches run in parallel


def test_split_option(make_notebook: MakeNb) -> None:
    nb = make_notebook(["#| step: a\nx = 1", "y = x"])
    doc = json.loads(jup2kub("inspect", nb, "--split", "cells", "--json").stdout)
    assert [s["name"] for s in doc["steps"]] == ["cell-0", "cell-1"]
    proc = jup2kub("inspect", nb, "--split", "bogus")
    assert proc.returncode == 2
    assert "bogus" in proc.stderr


@pytest.mark.parametrize("suffix", ["mmd", "dot", "svg", "png"])
def test_graph_files(tmp_path: Path, suffix: str) -> None:
    if suffix in ("svg", "png") and shutil.which("dot") is None:
        pytest.skip("Graphviz 'dot' is not installed (tests/run.sh installs it)")
    target = tmp_path / f"g.{suffix}"
    proc = jup2kub("inspect", CORPUS / "sales_markers.ipynb", "--graph", target)
    assert proc.returncode == 0, proc.stderr
    data = target.read_bytes()
    if suffix == "mmd":
        text = data.decode()
        assert text.startswith("flowchart LR")
        assert '-->|"by_region"|' in text
    elif suffix == "dot":
        assert b'"summarize" -> "report" [label="by_region"]' in data
    elif suffix == "svg":
        assert b"<svg" in data and b"summarize" in data
    else:
        assert data.startswith(b"\x89PNG")
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temp files left


def test_graph_unknown_format(tmp_path: Path) -> None:
    proc = jup2kub("inspect", CORPUS / "plain_cells.ipynb", "--graph", tmp_path / "g.jpg")
    assert proc.returncode == 2
    assert ".mmd" in proc.stderr


BAD = [
    ("missing", None, "file not found"),
    ("not-json", b"this is not json", "not JSON"),
    (
        "wrong-structure",
        b'{"cells": 5, "nbformat": 4, "nbformat_minor": 5, "metadata": {}}',
        "invalid nbformat",
    ),
]


@pytest.mark.parametrize(("case", "content", "message"), BAD)
def test_unreadable_notebooks(
    tmp_path: Path, case: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / f"{case}.ipynb"
    if content is not None:
        path.write_bytes(content)
    proc = jup2kub("inspect", path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert str(path) in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("cells", "kwargs", "expected"),
    [
        (["x = 1"], {"language": "R"}, ["kernel language is 'r'", "Python 3 kernel"]),
        (["x = 1", "def f(:\n    pass"], {}, ["cell 1, line 1", "syntax error", "def f(:"]),
        (
            [("code", "x = 1", ["step:a", "prev:ghost"])],
            {},
            ["cell 0", "prev:ghost", "known steps: a"],
        ),
        (
            [("code", "x = 1", ["step:a", "prev:b"]), ("code", "y = 1", ["step:b", "prev:a"])],
            {},
            ["cycle", "a -> b"],
        ),
        (
            ["#| step: a\nx = 1", "#| step: b\ny = 1", "#| step: a\nz = 1"],
            {},
            ["'a'", "cells 0, 2", "unique name"],
        ),
        (
            [("code", "x = 1", ["step:a"]), ("code", "y = 1", ["limit:nvidia.com/gpu:1"])],
            {},
            ["cell 1", "limit:nvidia.com/gpu:1", "without a step tag", "step:NAME"],
        ),
        (
            [("code", "x = 1", ["step:a", "limit:nvidia.com/gpu:lots"])],
            {},
            ["cell 0", "'lots' is not a Kubernetes quantity", "limit:RESOURCE:AMOUNT"],
        ),
        ([("md", "# just text")], {}, ["no code cells"]),
        ([("code", "p = 1", ["parameters"])], {}, ["no code outside"]),
    ],
)
def test_bad_notebooks_get_clear_errors(
    make_notebook: MakeNb, cells: list, kwargs: dict, expected: list[str]
) -> None:
    path = make_notebook(cells, **kwargs)
    proc = jup2kub("inspect", path)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.startswith(f"error: {path}")
    for text in expected:
        assert text in proc.stderr
    assert "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_warnings_go_to_stderr(make_notebook: MakeNb) -> None:
    proc = jup2kub("inspect", make_notebook(["y = missing + 1"]), "--json")
    assert proc.returncode == 0
    json.loads(proc.stdout)
    assert "warning: step 'cell-0', cell 0, line 1: reads 'missing'" in proc.stderr


def test_version_and_help() -> None:
    assert jup2kub("--version").stdout.startswith("jup2kub, version ")
    proc = jup2kub("inspect", "--help")
    assert proc.returncode == 0 and "--split" in proc.stdout


def test_run_and_build_refuse_unpicklable_values(make_notebook: MakeNb, tmp_path: Path) -> None:
    nb = make_notebook(["#| step: a\nhandle = open('x.txt', 'w')", "#| step: b\nhandle.write('1')"])
    for args in (
        ["run", nb, "--workdir", tmp_path / "w"],
        ["build", nb, "-o", tmp_path / "c", "--no-images"],
    ):
        proc = jup2kub(*args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "'handle' is an open file (cell 0, line 2), defined in step 'a'" in proc.stderr
        assert "used in step 'b'" in proc.stderr and "move the code" in proc.stderr
    assert not (tmp_path / "w" / "runs").exists() and not (tmp_path / "c").exists()
    assert not (tmp_path / "x.txt").exists()  # nothing ran
    shown = jup2kub("inspect", nb)
    assert shown.returncode == 0 and "run and build will refuse this" in shown.stderr


def test_unwritable_graph_and_bad_resume_id_are_clear_errors(tmp_path: Path) -> None:
    nb = CORPUS / "plain_cells.ipynb"
    proc = jup2kub("inspect", nb, "--graph", "/proc/graph.dot")
    assert proc.returncode == 2
    assert "cannot write the graph" in proc.stderr and "Traceback" not in proc.stderr
    proc = jup2kub("run", nb, "--workdir", tmp_path / "w", "--resume", "../../etc")
    assert proc.returncode == 2
    assert "--resume: run id '../../etc' is invalid" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()

"""Notebooks that Jupyter opens open here: small nbformat deviations are repaired as Jupyter does
and reported once; only what Jupyter cannot open is refused, naming the file and the cell."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jup2kub.errors import NotebookReadError, NotebookRepairedWarning
from jup2kub.model.notebook import Notebook, load_notebook
from tests.support.cli_runner import jup2kub

KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


def code(source: Any, **fields: Any) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "source": source, "outputs": [], **fields} | (
        {} if "execution_count" in fields else {"execution_count": None}
    )


def write(tmp_path: Path, cells: list[Any], minor: int = 5, **top: Any) -> Path:
    doc = {"nbformat": 4, "nbformat_minor": minor, "metadata": dict(KERNEL), "cells": cells}
    doc.update(top)
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def load(path: Path) -> tuple[Notebook, list[str]]:
    """The notebook and the repair warnings it raised (the node must validate)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nb = load_notebook(path)
    nbformat.validate(nb.node)
    return nb, [str(w.message) for w in caught if issubclass(w.category, NotebookRepairedWarning)]


def test_missing_cell_ids_in_45_are_added(tmp_path: Path) -> None:
    nb, notes = load(write(tmp_path, [code("x = 1"), code("y = 2")]))
    ids = [c["id"] for c in nb.node.cells]
    assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == 2
    again, _ = load(tmp_path / "nb.ipynb")
    assert [c["id"] for c in again.node.cells] == ids  # the same on every read
    assert notes == [
        f"{tmp_path / 'nb.ipynb'}: added missing cell ids (nbformat 4.5), as Jupyter does"
    ]


def test_duplicate_cell_ids_are_replaced_and_the_first_kept(tmp_path: Path) -> None:
    nb, notes = load(write(tmp_path, [code("x = 1", id="a"), code("y = 2", id="a")]))
    assert nb.node.cells[0]["id"] == "a" and nb.node.cells[1]["id"] not in ("a", "")
    assert len(notes) == 1 and "replaced 1 duplicate cell id" in notes[0]


def test_minor_4_with_ids_is_read_as_45_keeping_them(tmp_path: Path) -> None:
    nb, notes = load(write(tmp_path, [code("x = 1", id="a"), code("y = 2", id="b")], minor=4))
    assert nb.node.nbformat_minor == 5
    assert [c["id"] for c in nb.node.cells] == ["a", "b"]
    assert len(notes) == 1 and "nbformat 4.4 with cell ids" in notes[0]


def test_valid_notebooks_raise_no_warning(tmp_path: Path) -> None:
    attachment = {"x.png": {"image/png": "iVBORw0KGgo="}}
    cells = [
        code(["a = 1\n", "b = 2"], id="c0"),
        {
            "cell_type": "markdown",
            "id": "m",
            "metadata": {"anything": {"nested": True}},
            "source": "![x](attachment:x.png)",
            "attachments": attachment,
        },
    ]
    nb, notes = load(write(tmp_path, cells))
    assert notes == []
    assert nb.cells[0].source == "a = 1\nb = 2"  # list sources are joined, as nbformat reads them
    assert nb.node.cells[1]["attachments"] == attachment
    old, notes = load(write(tmp_path, [code("x = 1")], minor=4))  # 4.4 has no cell ids
    assert notes == [] and "id" not in old.node.cells[0]


def test_missing_outputs_and_execution_count_are_added(tmp_path: Path) -> None:
    cell = {"cell_type": "code", "id": "a", "metadata": {}, "source": "x = 1"}
    nb, notes = load(write(tmp_path, [cell]))
    assert nb.node.cells[0]["outputs"] == [] and nb.node.cells[0]["execution_count"] is None
    assert len(notes) == 1
    assert "added missing or replaced unreadable 'outputs' in cell 0" in notes[0]
    assert "added missing or replaced unreadable 'execution_count' in cell 0" in notes[0]


def test_unknown_fields_invalid_metadata_and_outputs_are_dropped(tmp_path: Path) -> None:
    bad_result = {"output_type": "execute_result", "data": {"text/plain": "1"}, "metadata": {}}
    stream = {"output_type": "stream", "name": "stdout", "text": "hi\n", "extra": 1}
    good = {"output_type": "display_data", "data": {"text/plain": "x"}, "metadata": {"k": 1}}
    cells = [
        code("x = 1", id="a", collapsed_by_tool=True, metadata={"collapsed": "yes", "mine": 1}),
        {"cell_type": "markdown", "id": "b", "metadata": {}, "source": "m", "outputs": []},
        code("y = 2", id="c", outputs=[bad_result, stream, good]),
    ]
    nb, notes = load(write(tmp_path, cells))
    assert "collapsed_by_tool" not in nb.node.cells[0] and "outputs" not in nb.node.cells[1]
    assert nb.node.cells[0]["metadata"] == {"mine": 1}  # unknown metadata keys are fine
    assert nb.node.cells[2]["outputs"] == [good]
    assert len(notes) == 1
    for part in (
        "removed the unknown field 'collapsed_by_tool' from cell 0",
        "removed the unknown field 'outputs' from cell 1",
        "dropped stored outputs or execution counts nbformat cannot read from cell 2",
        "removed metadata that does not match nbformat's schema",
    ):
        assert part in notes[0]


def test_nbformat_3_is_converted(tmp_path: Path) -> None:
    doc = {
        "nbformat": 3,
        "nbformat_minor": 0,
        "metadata": {"name": "old"},
        "worksheets": [
            {
                "cells": [
                    {"cell_type": "heading", "level": 1, "source": "Title", "metadata": {}},
                    {
                        "cell_type": "code",
                        "input": "x = 1\nprint(x)",
                        "language": "python",
                        "outputs": [],
                        "metadata": {},
                    },
                ]
            }
        ],
    }
    path = tmp_path / "v3.ipynb"
    path.write_text(json.dumps(doc), encoding="utf-8")
    nb, notes = load(path)
    assert (nb.node.nbformat, nb.node.nbformat_minor) == (4, 5)
    assert [(c.cell_type, c.source) for c in nb.cells] == [
        ("markdown", "# Title"),
        ("code", "x = 1\nprint(x)"),
    ]
    assert notes == [f"{path}: converted from nbformat 3 to nbformat 4, as Jupyter does"]


@pytest.mark.parametrize(
    ("doc", "where", "message"),
    [
        ({"nbformat": 5, "nbformat_minor": 0, "cells": []}, "", "nbformat 5 is not a notebook"),
        (
            {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"source": "x"}]},
            "cell 0",
            "the cell has no 'cell_type'",
        ),
        (
            {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [code("x"), code(5)]},
            "cell 1",
            "'source' must be text",
        ),
        (
            {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [code("x", id="")]},
            "cell 0",
            "(in the cell's id)",
        ),
        ({"nbformat": 4, "metadata": {}, "cells": []}, "", "'nbformat_minor'"),
        (
            {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
                "cells": [{"cell_type": "markdown", "source": "", "attachments": {"a.png": "x"}}],
            },
            "cell 0",
            "'attachments' must map file names",
        ),
    ],
)
def test_refusals_name_the_file_the_cell_and_the_fix(
    tmp_path: Path, doc: dict[str, Any], where: str, message: str
) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(NotebookReadError) as info:
        load_notebook(path)
    text = str(info.value)
    assert text.startswith(f"{path}: {where}".rstrip(" ") + (":" if where else ""))
    assert message in text and "hint: " in text
    assert "Failed validating" not in text and "On instance" not in text  # no raw jsonschema
    proc = jup2kub("inspect", path)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_warns_once_and_the_results_keep_the_normalised_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [code("n = 1", metadata={"tags": ["parameters"]}), code(["print(n)"], id="keep")],
    )
    proc = jup2kub("run", path, "-p", "n", "3", "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = f"warning: {path}: added missing cell ids (nbformat 4.5), as Jupyter does\n"
    assert proc.stderr.count("warning:") == 1 and expected in proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(tmp_path / "w" / "runs" / run_id / "result.ipynb", as_version=4)
    nbformat.validate(result)
    ids = [c["id"] for c in result.cells]
    assert len(set(ids)) == len(ids) == 3 and ids[2] == "keep"
    assert result.cells[2].outputs[0]["text"] == "3\n"


def test_results_of_a_44_notebook_validate(tmp_path: Path) -> None:
    path = write(tmp_path, [code("n = 1", metadata={"tags": ["parameters"]}), code("n")], minor=4)
    proc = jup2kub("run", path, "-p", "n", "3", "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" not in proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(tmp_path / "w" / "runs" / run_id / "result.ipynb", as_version=4)
    nbformat.validate(result)
    assert result.nbformat_minor == 4 and all("id" not in c for c in result.cells)


def test_unknown_top_level_fields_and_unreadable_outputs_lists_are_dropped(
    tmp_path: Path,
) -> None:
    broken = [{"output_type": "display_data", "data": ["not", "a", "bundle"], "metadata": {}}]
    cells = [code("x = 1", id="a", outputs=None), code("y = 2", id="b", outputs=broken)]
    nb, notes = load(write(tmp_path, cells, saved_by="tool"))
    assert "saved_by" not in nb.node
    assert nb.node.cells[0]["outputs"] == nb.node.cells[1]["outputs"] == []
    assert len(notes) == 1
    assert "removed the unknown top-level field 'saved_by'" in notes[0]
    assert "added missing or replaced unreadable 'outputs' in cells 0, 1" in notes[0]

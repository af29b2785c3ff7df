"""What a pipeline shows is what a Jupyter kernel shows: the same text/plain (and HTML, PNG) of
wide frames, long series, arrays, figures and estimators, in the same order, compared output by
output with a real nbclient run of the same notebook."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.cli_runner import jup2kub

MakeNb = Callable[..., Path]
ADDRESS = re.compile(r" at 0x[0-9a-f]+")

DISPLAYS = [
    "import numpy as np\nimport pandas as pd\n"
    "wide = pd.DataFrame(np.arange(40 * 30).reshape(40, 30),\n"
    "                    columns=[f'column_{i}' for i in range(30)])\nwide",
    "print(wide.head(2))\nwide.describe()",
    "long = pd.Series(np.arange(200) * 1.5, name='values')\nlong",
    "np.arange(3 * 30).reshape(3, 30) / 7",
    "np.arange(100) * 1.25",
    "pd.Series(pd.Categorical([f'category_number_{i}' for i in range(30)]))",
    "import matplotlib.pyplot as plt\nplt.plot([1, 3])\nplt.show()\nprint('between')\n"
    "plt.plot([2, 1])\nprint('end')",
    "fig, ax = plt.subplots()\nax.plot([1, 2])\ndisplay(fig)\nfig.patch.set_alpha(0)\nfig",
    "plt.figure()",
    "from sklearn.linear_model import LogisticRegression\nLogisticRegression(C=0.5)",
]
FAILING = ["import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nraise ValueError('boom')"]


def shown(cell: Any) -> list[tuple[Any, ...]]:
    """Each output as users see it: its type, then its text, HTML, PNG and metadata."""
    items: list[tuple[Any, ...]] = []
    for o in cell.outputs:
        kind = o["output_type"]
        if kind == "stream":
            items.append((kind, o["name"], o["text"]))
        elif kind == "error":
            items.append((kind, o["ename"], o["evalue"]))
        else:
            data = {m: ADDRESS.sub("", v) if m == "text/plain" else v for m, v in o.data.items()}
            items.append((kind, data, dict(o.get("metadata", {}))))
    return items


def kernel_run(path: Path, cwd: Path) -> Any:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    ).execute()
    return nb


def pipeline_run(path: Path, cwd: Path, *extra: str) -> tuple[Any, str]:
    """``jup2kub run`` with one step per cell: every shown value comes through storage."""
    proc = jup2kub("run", path, "--split", "cells", "--workdir", cwd / "w", *extra, cwd=cwd)
    found = re.search(r"run (\S+): (succeeded|failed)", proc.stdout)
    assert found is not None, proc.stdout + proc.stderr
    result = nbformat.read(cwd / "w" / "runs" / found.group(1) / "result.ipynb", as_version=4)
    nbformat.validate(result)
    return result, found.group(2)


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_displays_equal_the_kernel(
    mode: str, tmp_path: Path, make_notebook: MakeNb, request: pytest.FixtureRequest
) -> None:
    path = make_notebook(DISPLAYS)
    reference = kernel_run(path, tmp_path)
    extra = ["--kafka", request.getfixturevalue("kafka")] if mode == "kafka" else []
    result, status = pipeline_run(path, tmp_path, *extra)
    assert status == "succeeded"
    for index, (ref_cell, run_cell) in enumerate(zip(reference.cells, result.cells, strict=True)):
        assert shown(run_cell) == shown(ref_cell), f"cell {index}: {DISPLAYS[index]}"
    # what the comparison pins down: the kernel's truncation, not a terminal's
    frame = reference.cells[0].outputs[0].data["text/plain"]
    assert "column_9  ...  column_20" in frame and "[40 rows x 30 columns]" in frame
    kinds = [o["output_type"] for o in reference.cells[6].outputs]
    assert kinds == ["display_data", "stream", "display_data"]  # plt.show() shows in place
    assert {"text/plain", "text/html"} <= set(reference.cells[-1].outputs[0].data)  # sklearn


def test_failing_cell_shows_its_error_before_its_figure(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    path = make_notebook(["x = 1", *FAILING])
    reference = kernel_run(path, tmp_path)
    result, status = pipeline_run(path, tmp_path)
    assert status == "failed"
    assert shown(result.cells[1]) == shown(reference.cells[1])
    assert [o["output_type"] for o in result.cells[1].outputs] == ["error", "display_data"]

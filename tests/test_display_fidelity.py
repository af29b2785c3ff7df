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
CLEARED_BY_ERROR = (
    "from IPython.display import clear_output\nprint('progress')\nclear_output(wait=True)\n"
    "raise ValueError('boom')"
)


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


def test_error_is_the_output_a_waiting_clear_output_clears_for(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    path = make_notebook(["x = 1", CLEARED_BY_ERROR])
    reference = kernel_run(path, tmp_path)
    result, status = pipeline_run(path, tmp_path)
    assert status == "failed"
    assert shown(result.cells[1]) == shown(reference.cells[1])
    assert [o["output_type"] for o in reference.cells[1].outputs] == ["error"]


#: the display protocol beyond plain display(): every cell is its own step, so display ids
#: are updated across steps too
PROTOCOL = [
    "from IPython.display import (HTML, JSON, Latex, Markdown, clear_output,\n"
    "                             publish_display_data, update_display)\nimport sys",
    "for i in range(3):\n    clear_output()\n    print(i)",
    "print('gone', end='')\nclear_output(wait=True)\nprint('kept', end='')",
    "print('stays')\nclear_output(wait=True)",
    "first = display('one', display_id='first')",
    "first.update('two')",
    "second = display('a', display_id='second')\nclear_output(wait=True)\nprint('b')",
    "second.update('c')\nupdate_display('three', display_id='first')",
    "fresh = display('x', display_id=True)\nfresh.update('y')\ndisplay(display_id='empty')",
    "display({'text/plain': 'raw', 'text/html': '<b>raw</b>'}, raw=True,\n"
    "        metadata={'text/html': {'isolated': True}})",
    "display(HTML('<i>h</i>'), Markdown('*m*'), Latex('$x$'), JSON({'a': 1}))",
    "display(HTML('<i>only plain</i>'), exclude=['text/html'])\n"
    "display(Markdown('*only md*'), include=['text/markdown'])",
    "publish_display_data({'text/plain': 'published'}, metadata={'k': 1})",
    "print('Bar!', file=sys.stderr)\nprint('Combo', file=sys.stdout)\n"
    "print('Foo!', file=sys.stderr)",
    "print('Bar!', file=sys.stderr, flush=True)\nprint('Combo')\nsys.stdout.flush()\n"
    "print('Foo!', file=sys.stderr)\n'value'",
    "get_ipython().run_line_magic('config', \"InlineBackend.figure_formats = ['svg']\")\n"
    "import matplotlib.pyplot as plt\nplt.plot([1, 2]);",
    "get_ipython().run_line_magic('config', \"InlineBackend.figure_format = 'retina'\")\n"
    "plt.plot([2, 1]);",
    "from matplotlib_inline.backend_inline import set_matplotlib_formats\n"
    "set_matplotlib_formats('jpeg')\nplt.plot([1, 1]);",
    "from IPython.display import Image\nfrom IPython.utils.capture import capture_output\n"
    "with capture_output() as captured:\n    print('inside')\n    display('shown later')\n"
    "print('outside')\ncaptured.show()",
    "plt.figure(figsize=(1, 1)).savefig('tiny.png')\nplt.close('all')\n"
    "display(Image(filename='tiny.png', width=20),\n"
    "        metadata={'note': 1, 'image/png': {'height': 10}})",
]


def visible(cell: Any) -> list[tuple[Any, ...]]:
    """``shown``, with SVG and JPEG reduced to their MIME type: matplotlib writes a date and
    random ids into SVG, and JPEG bytes are encoder-specific."""
    items = []
    for item in shown(cell):
        if item[0] in ("display_data", "execute_result"):
            data = {m: m if m in ("image/svg+xml", "image/jpeg") else v for m, v in item[1].items()}
            item = (item[0], data, item[2])
        items.append(item)
    return items


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_display_protocol_equals_the_kernel(
    mode: str, tmp_path: Path, make_notebook: MakeNb, request: pytest.FixtureRequest
) -> None:
    path = make_notebook(PROTOCOL)
    reference = kernel_run(path, tmp_path)
    extra = ["--kafka", request.getfixturevalue("kafka")] if mode == "kafka" else []
    result, status = pipeline_run(path, tmp_path, *extra)
    assert status == "succeeded"
    for index, (ref_cell, run_cell) in enumerate(zip(reference.cells, result.cells, strict=True)):
        assert visible(run_cell) == visible(ref_cell), f"cell {index}: {PROTOCOL[index]}"
    # what the comparison pins down
    texts = [
        [o.get("text") or o.get("data", {}).get("text/plain") for o in c.outputs]
        for c in reference.cells
    ]
    assert texts[1] == ["2\n"] and texts[2] == ["kept"] and texts[3] == ["stays\n"]
    assert texts[4] == ["'three'"] and texts[5] == [] and texts[6] == ["b\n"]
    assert texts[13] == ["Combo\n", "Bar!\nFoo!\n"]
    assert "image/svg+xml" in reference.cells[15].outputs[0].data
    assert reference.cells[16].outputs[0].metadata["image/png"]["width"] > 0
    assert texts[18] == ["outside\ninside\n", "'shown later'"]


def test_pylab_and_capture_in_one_step(tmp_path: Path, make_notebook: MakeNb) -> None:
    cells = [
        "#| step: one\n%pylab inline",
        "counts, edges, bars = hist([1, 2, 2, 3])\nprint(counts)\nlinspace(0, 1, 3)",
        "%%capture captured\nprint('hidden')\nprint('err', file=sys.stderr)\ndisplay('d')\n1 + 1",
        "%%capture\nprint('gone')",
        "captured.show()\nprint(repr(captured.stdout))",
    ]
    path = make_notebook(cells)
    reference = kernel_run(path, tmp_path)
    proc = jup2kub("run", path, "--workdir", tmp_path / "w", cwd=tmp_path)
    found = re.search(r"run (\S+): succeeded", proc.stdout)
    assert found is not None, proc.stdout + proc.stderr
    result = nbformat.read(tmp_path / "w" / "runs" / found.group(1) / "result.ipynb", 4)
    for ref_cell, run_cell in zip(reference.cells, result.cells, strict=True):
        assert shown(run_cell) == shown(ref_cell)
    assert "Populating the interactive namespace" in reference.cells[0].outputs[0]["text"]
    kinds = [o["output_type"] for o in reference.cells[1].outputs]
    assert kinds == ["stream", "execute_result", "display_data"]
    assert reference.cells[2].outputs == [] and reference.cells[3].outputs == []
    kinds = [o["output_type"] for o in reference.cells[4].outputs]
    assert kinds == ["stream", "stream", "display_data", "display_data", "stream"]


def test_figure_formats_do_not_leak_into_the_next_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step process runs many runs: each starts with a fresh kernel's PNG figures."""
    # importing the runtime sets MPLBACKEND; kernels started later in this session must not
    # inherit it (they would not use the inline backend)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    from jup2kub_runtime.contract.spec import Cell, StepSpec
    from jup2kub_runtime.execution.cell_runner import execute_step

    svg = (
        "get_ipython().run_line_magic('config', \"InlineBackend.figure_formats = ['svg']\")\n"
        "import matplotlib.pyplot as plt\nplt.plot([1, 2]);"
    )
    shown_mimes = []
    for source in (svg, svg, "import matplotlib.pyplot as plt\nplt.plot([1]);"):
        spec = StepSpec(pipeline="p", step="s", cells=[Cell(0, source)])
        result = execute_step(spec, {})
        assert result.ok, result.error
        shown_mimes.append(sorted(result.cells[0].outputs[0]["data"]))
    assert shown_mimes == [["image/svg+xml", "text/plain"]] * 2 + [["image/png", "text/plain"]]

"""The examples in examples/ (issue 20, item 6): one notebook per way of marking steps, each run
as a pipeline giving what the notebook gives top to bottom under nbclient; the quick start's
example needs nothing beyond ``pip install .``."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import pytest

from jup2kub.api import inspect_notebook
from jup2kub_runtime.storage.state_store import StateStore
from tests.support.cli_runner import jup2kub
from tests.support.equivalence import reference_run, same, shown

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize(
    ("name", "split", "parallel"),
    [
        ("weather_markers", "markers", ["daily", "extremes"]),
        ("churn_kale", "tags", ["features", "by-contract"]),
        ("energy_headings", "headings", ["plot", "summary"]),
    ],
)
def test_example_runs_and_equals_the_notebook(
    name: str, split: str, parallel: list[str], tmp_path: Path
) -> None:
    path = EXAMPLES / f"{name}.ipynb"
    pipeline = inspect_notebook(path)
    assert pipeline.split == split
    assert sorted(parallel) in [sorted(level) for level in pipeline.levels()]
    last_writer = {v: s.name for s in pipeline.steps for v in s.outputs}
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "pipeline"
    ref_dir.mkdir()
    run_dir.mkdir()
    ref_nb, ref_values = reference_run(path, sorted(last_writer), ref_dir)

    out = run_dir / "results.ipynb"
    proc = jup2kub("run", path, out, "--workdir", run_dir / "work", cwd=run_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"results notebook: {out} (and " in proc.stdout
    result = nbformat.read(out, as_version=4)
    assert shown(result) == shown(ref_nb)
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    store = StateStore(run_dir / "work")
    for var, step in last_writer.items():
        assert same(ref_values[var], store.load_value(run_id, step, var)), var


def test_quick_start_example_needs_only_the_standard_library() -> None:
    nb = nbformat.read(EXAMPLES / "weather_markers.ipynb", as_version=4)
    imported = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert imported and imported <= set(sys.stdlib_module_names), imported
    quick_start = README.read_text().split("## Quick start", 1)[1].split("```sh", 1)[1]
    first = quick_start.strip().splitlines()[0]
    assert first.startswith("pip install . && jup2kub run examples/weather_markers.ipynb")

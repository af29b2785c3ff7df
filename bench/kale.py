"""Generation time: ``jup2kub build --no-images`` vs Kale's compiler (``kale --nb NB
--output_path DIR``) on the same Kale-tagged notebooks, each tool as a fresh CLI process
(imports included), medians of several runs.

Kale (``kubeflow-kale`` from PyPI) lives in its own virtualenv under
``$JUP2KUB_CACHE/bench/kale2-venv`` (created on first use). Kale 2.x names steps ``step:NAME``
(``block:NAME`` was Kale 0.x's tag and 2.x rejects it) and cannot parse IPython magics, so the
notebooks given to both tools use ``step:`` tags and no magic lines: tests/corpus/digits_kale
converted that way, plus generated Kale-tagged notebooks of 50 and 200 steps (imports,
pipeline-parameters, then one ``step:sN`` / ``prev:sN-1`` cell per step).

    python -m bench.kale [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbformat import v4

from bench.generation import make_notebook
from bench.stats import summary

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("JUP2KUB_CACHE", Path.home() / ".cache" / "jup2kub"))
KALE_VENV = CACHE / "bench" / "kale2-venv"
KALE_PACKAGE = "kubeflow-kale==2.3.0"  # the newest release; installs on Python 3.11


def kale_venv() -> Path:
    """The ``kale`` executable, installing Kale into its own virtualenv when missing."""
    kale = KALE_VENV / "bin" / "kale"
    if not (KALE_VENV / ".complete").exists():
        KALE_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(KALE_VENV)], check=True, timeout=300)
        subprocess.run(
            [str(KALE_VENV / "bin" / "python"), "-m", "pip", "install", "-q", KALE_PACKAGE],
            check=True,
            timeout=1800,
            capture_output=True,
        )
        (KALE_VENV / ".complete").write_text("")
    return kale


def kale_version() -> str:
    out = subprocess.run(
        [
            str(KALE_VENV / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('kubeflow-kale'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip() or "?"


def for_kale(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``block:`` tags -> ``step:``, magic and shell lines dropped (Kale 2.x needs both)."""
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags")
        if tags:
            cell.metadata["tags"] = [
                ("step:" + t[6:]) if t.startswith("block:") else t for t in tags
            ]
        if cell.cell_type == "code":
            cell.source = "\n".join(
                ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))
            )
    return nb


def generated(steps: int) -> nbformat.NotebookNode:
    """bench.generation's notebook of ``steps`` + 1 code cells, tagged in Kale's language."""
    base = make_notebook(steps + 1)
    nb = v4.new_notebook()
    nb.metadata = base.metadata
    nb.cells.append(
        v4.new_code_cell("import numpy as np\nimport pandas as pd", metadata={"tags": ["imports"]})
    )
    nb.cells.append(v4.new_code_cell("scale = 2.0", metadata={"tags": ["pipeline-parameters"]}))
    for i, cell in enumerate(base.cells[1:], start=1):
        tags = [f"step:s{i}"] + ([f"prev:s{i - 1}"] if i > 1 else [])
        nb.cells.append(v4.new_code_cell(cell.source, metadata={"tags": tags}))
    return nb


def _time(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(
            f"{' '.join(cmd[:2])} failed (exit {proc.returncode}):\n"
            f"{(proc.stdout + proc.stderr)[-2500:]}"
        )
    return seconds


def run(root: Path, quick: bool = False, repeat: int | None = None) -> dict[str, Any]:
    """Per notebook: wall seconds of both tools, ratio of medians jup2kub / kale."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        kale = kale_venv()
    except (subprocess.SubprocessError, OSError) as exc:
        return {"error": f"{KALE_PACKAGE} could not be installed: {exc}"}
    repeat = repeat or (1 if quick else 5)
    notebooks = {
        "digits_kale": for_kale(
            nbformat.read(REPO / "tests" / "corpus" / "digits_kale.ipynb", as_version=4)
        )
    }
    for steps in () if quick else (50, 200):
        notebooks[f"generated_{steps}_steps"] = generated(steps)
    res: dict[str, Any] = {
        "kale": f"kubeflow-kale {kale_version()}",
        "repeat": repeat,
        "notebooks": [],
    }
    # The corpus notebook as it is (block: tags, %%time): what Kale says about it.
    orig = root / "digits_kale_original.ipynb"
    shutil.copy(REPO / "tests" / "corpus" / "digits_kale.ipynb", orig)
    try:
        _time([str(kale), "--nb", orig.name, "--output_path", "kale-orig"], root)
        res["kale_on_original"] = "ok"
    except RuntimeError as exc:
        res["kale_on_original"] = str(exc).strip().splitlines()[-1]
    for name, nb in notebooks.items():
        path = root / f"{name}.ipynb"
        path.write_text(nbformat.writes(nb))
        j2k, kl = [], []
        for i in range(repeat):  # interleaved, so load drifts hit both tools alike
            j2k.append(
                _time(
                    [
                        sys.executable,
                        "-m",
                        "jup2kub.cli",
                        "build",
                        path.name,
                        "-o",
                        f"j2k-{name}-{i}",
                        "--no-images",
                        "--split",
                        "tags",
                    ],
                    root,
                )
            )
            kl.append(
                _time([str(kale), "--nb", path.name, "--output_path", f"kale-{name}-{i}"], root)
            )
        code_cells = sum(c.cell_type == "code" for c in nb.cells)
        res["notebooks"].append(
            {
                "name": name,
                "code_cells": code_cells,
                "jup2kub_s": summary(j2k, 3),
                "kale_s": summary(kl, 3),
                "ratio": round(summary(j2k)["median"] / summary(kl)["median"], 3),
            }
        )
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="j2k-bench-kale-") as tmp:
        print(json.dumps(run(Path(tmp), args.quick, args.repeat), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

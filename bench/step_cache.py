"""Issue 17's benchmark: re-running a notebook after an edit, with the step cache.

A 6-step notebook (load -> left, right -> join -> summary -> final; ``left`` reads the
parameter ``k``; every step computes for about ``work`` seconds):

- last step edited: the final step's code changes between runs; each re-run (a fresh
  ``jup2kub run`` command, reusing the other five steps) against the changed step's own time
  (its scheduled -> done seconds in that run's summary.json): target re-run <= 1.2 x step + 0.3 s;
- parameter of one branch: ``-p k`` changes between runs: which steps execute (only ``left``
  and what is downstream of it: join, summary, final) and the re-run's wall time;
- references: nothing changed (every step reused: the command's fixed cost, Python's start,
  the imports, reading and analysing the notebook, writing the results), and the same
  notebook with ``--no-cache`` (every step executes).

    python -m bench.step_cache [--repeat N] [--work SECONDS] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbformat import v4

from bench.stats import summary
from bench.vs_notebook import jup2kub_cmd, measure

STEPS = ("load", "left", "right", "join", "summary", "final")


def busy(seconds: float) -> str:
    """Code that computes (no sleep: a cacheable step that costs CPU) for about ``seconds``."""
    return f"_t = 0\nfor _i in range(int({seconds} * 4_000_000)):\n    _t += _i % 7\n"


def notebook(work: float, version: int) -> nbformat.NotebookNode:
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    params = v4.new_code_cell("k = 1")
    params.metadata["tags"] = ["parameters"]
    cells = [
        f"#| step: load\n{busy(work)}data = list(range(1000))",
        f"#| step: left\n{busy(work)}left = sum(data) * k",
        f"#| step: right\n{busy(work)}right = max(data)",
        f"#| step: join\n{busy(work)}total = left + right",
        f"#| step: summary\n{busy(work)}print('total', total)",
        f"#| step: final\n{busy(work)}print('version', {version}, total)",
    ]
    nb.cells = [params, *(v4.new_code_cell(c) for c in cells)]
    return nb


def _run(path: Path, workdir: Path, *args: str) -> tuple[float, dict[str, Any]]:
    sample = measure([*jup2kub_cmd(path, workdir), *args], path.parent)
    if sample.returncode != 0:
        raise RuntimeError(f"jup2kub run failed: {sample.stderr}")
    runs = sorted((workdir / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    doc = json.loads((runs[-1] / "summary.json").read_text())
    return sample.seconds, doc


def run(repeat: int, work: float, base: Path) -> dict[str, Any]:
    base.mkdir(parents=True, exist_ok=True)
    path = base / "six.ipynb"
    workdir = base / "w"
    nbformat.write(notebook(work, 0), path)
    _run(path, workdir)  # fills the cache
    edit_wall, edit_step, edit_executed = [], [], []
    for i in range(1, repeat + 1):
        nbformat.write(notebook(work, i), path)
        wall, doc = _run(path, workdir)
        edit_wall.append(wall)
        edit_step.append(doc["steps"]["final"]["seconds"])
        edit_executed.append(sorted(doc["executed"]))
    param_wall, param_executed = [], []
    for i in range(repeat):
        wall, doc = _run(path, workdir, "-p", "k", str(i + 2))
        param_wall.append(wall)
        param_executed.append(sorted(doc["executed"]))
    floor_wall = []  # nothing changed: every step reused (the command's fixed cost)
    for _ in range(repeat):
        wall, doc = _run(path, workdir, "-p", "k", str(repeat + 1))
        assert not doc["executed"], doc["executed"]
        floor_wall.append(wall)
    full_wall = []
    for _ in range(max(1, repeat // 2)):
        wall, _doc = _run(path, workdir, "--no-cache")
        full_wall.append(wall)
    step_median = summary(edit_step)["median"]
    rerun_median = summary(edit_wall)["median"]
    return {
        "work_s": work,
        "edit": {
            "rerun_s": summary(edit_wall),
            "step_s": summary(edit_step),
            "executed": edit_executed,
            "budget_s": round(1.2 * step_median + 0.3, 4),
            "met": rerun_median <= 1.2 * step_median + 0.3,
            "samples_s": edit_wall,
        },
        "parameter": {
            "rerun_s": summary(param_wall),
            "executed": param_executed,
            "expected": ["final", "join", "left", "summary"],
            "met": all(e == ["final", "join", "left", "summary"] for e in param_executed),
            "samples_s": param_wall,
        },
        "all_reused_s": summary(floor_wall),
        "no_cache_s": summary(full_wall),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.step_cache", description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--work", type=float, default=1.0, help="seconds each step computes")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="j2k-bench-cache-") as tmp:
        t = time.monotonic()
        res = run(args.repeat, args.work, Path(tmp))
        res["bench_s"] = round(time.monotonic() - t, 1)
    text = json.dumps(res, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

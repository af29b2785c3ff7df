"""Warm step workers (issue 14): per-step overhead of ``jup2kub run`` with step processes
forked from a warm fork server vs spawned fresh (``J2K_LOCAL_WORKERS``).

A chain of ``--steps`` trivial steps, each importing pandas and handing one integer on: the
wall time of ``jup2kub run`` and each step's time from start to finish as the runner sees it
(process start, imports, inputs loaded, cells, results stored, process end), p50 over the
steps after the first (the first also waits for the server's start). Medians of ``--repeat``.

    python -m bench.warm_workers [--repeat 3] [--steps 10] [--baseline CHECKOUT]

``--baseline`` adds a row for another checkout's code (e.g. ``git archive main`` unpacked):
the runner before warm workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat import v4


def notebook(steps: int) -> nbformat.NotebookNode:
    cells = ["#| step: s0\nimport pandas as pd\nx0 = 0"]
    cells += [f"#| step: s{i}\nimport pandas as pd\nx{i} = x{i - 1} + 1" for i in range(1, steps)]
    cells += [f"#| step: last\nprint(x{steps - 1})"]
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    nb.cells = [v4.new_code_cell(c) for c in cells]
    return nb


def one_run(path: Path, workers: str, work: Path, code: Path | None) -> tuple[float, float]:
    """(wall seconds, p50 seconds of a step after the first); ``code``: another checkout."""
    env = {**os.environ, "J2K_LOCAL_WORKERS": workers}
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code / "generator"), str(code / "runtime")])
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "jup2kub.cli", "run", str(path), "--workdir", str(work)],
        capture_output=True,
        text=True,
        env=env,
        cwd=path.parent,
        check=False,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    (run_dir,) = (work / "runs").iterdir()
    steps = json.loads((run_dir / "summary.json").read_text())["steps"]
    seconds = [s["seconds"] for name, s in steps.items() if name != "s0"]
    return wall, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="a checkout to measure as 'baseline'")
    args = parser.parse_args()
    kinds: dict[str, tuple[str, Path | None]] = {"spawn": ("spawn", None), "fork": ("fork", None)}
    if args.baseline:
        kinds = {"baseline": ("spawn", args.baseline.absolute()), **kinds}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chain.ipynb"
        nbformat.write(notebook(args.steps), path)
        rows: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        for i in range(args.repeat):
            for kind, (workers, code) in kinds.items():
                rows[kind].append(one_run(path, workers, Path(tmp) / f"{kind}{i}", code))
    print(f"{args.steps}-step chain importing pandas, medians of {args.repeat}")
    print("workers   wall s  per-step p50 ms")
    for kind, runs in rows.items():
        wall = statistics.median(r[0] for r in runs)
        step = statistics.median(r[1] for r in runs)
        print(f"{kind:8}  {wall:6.2f}  {step * 1000:8.1f}")


if __name__ == "__main__":
    main()

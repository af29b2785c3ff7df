"""Pipeline vs notebook (issue 5's benchmark): wall time of ``jup2kub run`` (embedded, and
``--kafka`` on a local real broker) against executing the same notebook top to bottom with
nbclient, for a compute-heavy sequential notebook and one with two equal independent heavy
branches. Reports medians and the ratio pipeline / notebook.

    python -m bench.pipeline_vs_notebook [--repeat 3] [--work 2.0] [--no-kafka]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbformat import v4

HEAVY = (
    "import numpy as np\n"
    "def burn(seconds, seed):\n"
    "    rng = np.random.default_rng(seed)\n"
    "    m = rng.random((300, 300))\n"
    "    t, acc = __import__('time').perf_counter(), 0.0\n"
    "    while __import__('time').perf_counter() - t < seconds:\n"
    "        acc += float((m @ m).trace())\n"
    "    return acc\n"
)


def notebook(kind: str, work: float) -> nbformat.NotebookNode:
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    cells = [("#| step: setup\n" + HEAVY + f"base = burn({work / 4}, 0)")]
    if kind == "sequential":
        cells += [f"#| step: stage1\nvalue1 = burn({work}, 1) + base"]
        cells += [f"#| step: stage2\nvalue2 = burn({work}, 2) + value1"]
        cells += ["#| step: report\nprint(round(value1 + value2) > 0)"]
    else:
        cells += [f"#| step: branch{i}\nvalue{i} = burn({work}, {i}) + base" for i in (1, 2)]
        cells += ["#| step: report\nprint(round(value1 + value2) > 0)"]
    nb.cells = [v4.new_code_cell(c) for c in cells]
    return nb


def time_nbclient(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    t = time.perf_counter()
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    return time.perf_counter() - t


def time_run(path: Path, workdir: Path, kafka: str | None) -> float:
    cmd = [sys.executable, "-m", "jup2kub.cli", "run", str(path), "--workdir", str(workdir)]
    cmd += ["--no-cache"]  # each repeat executes (the same workdir would reuse every step)
    if kafka:
        cmd += ["--kafka", kafka]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=path.parent)
    return time.perf_counter() - t


def run(
    repeat: int = 3,
    work: float = 2.0,
    kafka: str | None = None,
    kinds: tuple[str, ...] = ("sequential", "branches"),
    log: bool = True,
) -> list[dict[str, Any]]:
    """Per notebook kind: nbclient wall times and ``jup2kub run`` wall times (embedded, and on
    the broker ``kafka`` when given) with medians and ratios pipeline / notebook."""
    modes = {"embedded": None, **({"kafka": kafka} if kafka else {})}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            path = Path(tmp) / f"{kind}.ipynb"
            path.write_text(nbformat.writes(notebook(kind, work)))
            base = [time_nbclient(path) for _ in range(repeat)]
            row: dict[str, Any] = {
                "notebook": kind,
                "work_s": work,
                "nbclient_median_s": round(statistics.median(base), 2),
                "nbclient_samples_s": [round(x, 3) for x in base],
            }
            for mode, bootstrap in modes.items():
                runs = [time_run(path, Path(tmp) / f"w-{mode}", bootstrap) for _ in range(repeat)]
                row[f"{mode}_median_s"] = round(statistics.median(runs), 2)
                row[f"{mode}_samples_s"] = [round(x, 3) for x in runs]
                row[f"{mode}_ratio"] = round(statistics.median(runs) / statistics.median(base), 3)
                row[f"{mode}_ratio_range"] = [
                    round(min(runs) / max(base), 3),
                    round(max(runs) / min(base), 3),
                ]
            rows.append(row)
            if log:
                print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=float, default=2.0, help="seconds per heavy step")
    parser.add_argument("--no-kafka", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    broker = None
    if not args.no_kafka:
        from tests.support.kafka_broker import KafkaBroker

        broker = KafkaBroker(Path(tempfile.mkdtemp(prefix="bench-kafka-")))
        broker.start()
    try:
        rows = run(args.repeat, args.work, broker.bootstrap if broker else None)
    finally:
        if broker is not None:
            broker.stop()
    if args.json:
        args.json.write_text(json.dumps({"pipeline_vs_notebook": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

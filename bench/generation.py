"""Generation scaling: ``jup2kub inspect`` on generated notebooks of 50, 200 and 1000 code
cells (one step per cell, values flowing along a chain with side branches). Reports the median
wall time and peak memory of each size, in a fresh process per measurement.

    python -m bench.generation [--repeat 5] [--json bench/generation.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbformat import v4

SIZES = (50, 200, 1000)


def make_notebook(cells: int) -> nbformat.NotebookNode:
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    }
    nb.cells.append(v4.new_code_cell("import numpy as np\nimport pandas as pd\nscale = 2.0"))
    for i in range(1, cells):
        prev = f"v{i - 1}" if i > 1 else "scale"
        body = [
            f"def f{i}(x):\n    return x * scale + {i}",
            f"v{i} = f{i}({prev})",
            f"table{i} = pd.DataFrame({{'a': [v{i}]}})" if i % 10 == 0 else f"items{i} = [v{i}]",
            f"print(v{i}, len(items{i - 1}) if {i} % 10 != 1 else 0)" if i > 1 else "print(v1)",
        ]
        if i % 25 == 0:
            body.append(f"table{i}.to_csv('out{i}.csv')")
        nb.cells.append(v4.new_code_cell("\n".join(body)))
    return nb


#: times one command and reports its peak RSS: run in a fresh wrapper process, whose only child
#: is the command, so that ``RUSAGE_CHILDREN`` is that command's alone
_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, "
    "check=True)\n"
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def measure(path: Path) -> tuple[float, float]:
    """(seconds, peak MiB) of one ``jup2kub inspect --json`` as users run it: the command line
    in a fresh interpreter (its start-up included; the command line, unlike a library import,
    leaves out jsonschema's format checkers, ``jup2kub.startup``)."""
    cmd = [sys.executable, "-m", "jup2kub.cli", "inspect", str(path), "--split", "cells", "--json"]
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True, check=True
    )
    seconds, rss_kib = out.stdout.split()
    return float(seconds), int(rss_kib) / 1024


def run(
    sizes: list[int] | tuple[int, ...] = SIZES, repeat: int = 5, log: bool = True
) -> list[dict[str, float]]:
    """Per size: median/min/max wall seconds and median peak MiB of ``repeat`` fresh runs."""
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"gen{n}.ipynb"
            path.write_text(nbformat.writes(make_notebook(n)))
            runs = [measure(path) for _ in range(repeat)]
            secs = [r[0] for r in runs]
            rows.append(
                {
                    "cells": n,
                    "median_s": round(statistics.median(secs), 3),
                    "min_s": round(min(secs), 3),
                    "max_s": round(max(secs), 3),
                    "peak_mib": round(statistics.median(r[1] for r in runs), 1),
                    "samples_s": [round(x, 3) for x in secs],
                }
            )
            if log:
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = run(args.sizes, args.repeat)
    if args.json:
        args.json.write_text(json.dumps({"generation_scaling": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Map steps (issue 18): a map over 64 CPU-bound elements of ~0.25 s each, side by side in one
run: the notebook top to bottom under nbclient, ``jup2kub run --jobs 2`` (elements in forked
processes) and ``jup2kub run --kafka`` (chunks over the elements topic, 2 replicas); and the
per-element overhead (the map cell's own seconds with no-op elements, minus the same loop
without ``#| map: true``, per element).

    python -m bench.map_steps [--repeat 3] [--kafka HOST:PORT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.stats import summary
from bench.vs_notebook import _new_notebook, measure, nbclient_cmd, write
from jup2kub_runtime.storage.state_store import StateStore

ELEMENTS = 64
ELEMENT_SECONDS = 0.25
OVERHEAD_ELEMENTS = 64

WORK = (
    "def work(x, n):\n"
    "    acc = 0\n"
    "    for i in range(n):\n"
    "        acc = (acc + i * x) % 1000003\n"
    "    return acc\n"
)


def calibrate(seconds: float = ELEMENT_SECONDS) -> int:
    """Loop iterations of ``work`` that take about ``seconds`` here, at the machine's best
    speed (the fastest of several timings: other work on a shared machine only slows it)."""
    ns: dict[str, Any] = {}
    exec(WORK, ns)
    n = 200_000
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        ns["work"](3, n)
        best = min(best, time.perf_counter() - t)
    return max(1, int(seconds / (best / n)))


def map_notebook(n: int) -> Any:
    return _new_notebook(
        [
            WORK + f"N = {n}\nxs = list(range({ELEMENTS}))",
            "#| map: true\nys = [work(x, N) for x in xs]",
            "print(sum(ys))",
        ]
    )


def overhead_notebook(mapped: bool) -> Any:
    return _new_notebook(
        [
            f"#| step: data\nxs = list(range({OVERHEAD_ELEMENTS}))",
            "#| step: loop\n" + ("#| map: true\n" if mapped else "") + "ys = [x + 1 for x in xs]",
        ]
    )


def _jup2kub(notebook: Path, workdir: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "jup2kub.cli", "run", str(notebook), "--workdir", str(workdir)]
    return cmd + list(extra)


def side_by_side(
    notebook: Path, repeat: int, work: Path, bootstrap: str | None, log: Callable[[str], None]
) -> dict[str, list[float]]:
    """nbclient, ``--jobs 2`` and (with a broker) ``--kafka``, interleaved, fresh directories."""
    sides: dict[str, Callable[[Path], list[str]]] = {
        "nbclient": lambda base: nbclient_cmd(notebook, base / "executed.ipynb"),
        "jobs2": lambda base: _jup2kub(notebook, base / "work", "--jobs", "2"),
    }
    if bootstrap:
        sides["kafka"] = lambda base: _jup2kub(notebook, base / "work", "--kafka", bootstrap)
    times: dict[str, list[float]] = {s: [] for s in sides}
    k = 0
    for rep in range(repeat):
        order = list(sides)
        order = order[rep % len(order) :] + order[: rep % len(order)]
        for side in order:
            k += 1
            base = work / f"run-{k}"
            (base / "cwd").mkdir(parents=True)
            sample = measure(sides[side](base), base / "cwd")
            if sample.returncode != 0:
                raise RuntimeError(f"{side} failed: {sample.stderr}")
            times[side].append(sample.seconds)
            log(f"map {side}: {sample.seconds:.2f} s")
            shutil.rmtree(base, ignore_errors=True)
    return times


def _cell_seconds(workdir: Path, step: str) -> float:
    [step_dir] = workdir.glob(f"runs/*/{step}")
    outputs = StateStore(workdir).outputs(step_dir.parent.name, step)
    return float(outputs["cells"][-1]["seconds"])


def per_element_overhead(repeat: int, work: Path, log: Callable[[str], None]) -> list[float]:
    """Seconds per element a map adds: (map cell - plain loop cell) / elements, per pair."""
    mapped = write(overhead_notebook(True), work / "overhead_map.ipynb")
    plain = write(overhead_notebook(False), work / "overhead_plain.ipynb")
    samples: list[float] = []
    for k in range(repeat):
        seconds = {}
        for name, nb in (("map", mapped), ("plain", plain)):
            wd = work / f"overhead-{name}-{k}"
            (wd / "cwd").mkdir(parents=True)
            sample = measure(_jup2kub(nb, wd / "work", "--jobs", "2"), wd / "cwd")
            if sample.returncode != 0:
                raise RuntimeError(f"overhead {name} failed: {sample.stderr}")
            seconds[name] = _cell_seconds(wd / "work", "loop")
            shutil.rmtree(wd, ignore_errors=True)
        samples.append(max(0.0, seconds["map"] - seconds["plain"]) / OVERHEAD_ELEMENTS)
        log(f"map overhead: {samples[-1] * 1e3:.2f} ms per element")
    return samples


def run(
    repeat: int, work: Path, bootstrap: str | None, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    say = log or (lambda text: None)
    work.mkdir(parents=True, exist_ok=True)
    n = calibrate()
    notebook = write(map_notebook(n), work / "map64.ipynb")
    times = side_by_side(notebook, repeat, work, bootstrap, say)
    base = statistics.median(times["nbclient"])
    out: dict[str, Any] = {
        "elements": ELEMENTS,
        "element_seconds": ELEMENT_SECONDS,
        "iterations": n,
        "cpus": os.cpu_count(),
        "samples_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        "summary_s": {k: summary(vs) for k, vs in times.items()},
    }
    for side in ("jobs2", "kafka"):
        if side in times:
            pipe = times[side]
            out[f"{side}_ratio"] = round(statistics.median(pipe) / base, 3)
            out[f"{side}_ratio_range"] = [
                round(min(pipe) / max(times["nbclient"]), 3),
                round(max(pipe) / min(times["nbclient"]), 3),
            ]
            # each round's runs follow one another: their ratio sees the same load
            paired = [p / b for p, b in zip(pipe, times["nbclient"], strict=True)]
            out[f"{side}_paired_ratios"] = [round(r, 3) for r in paired]
            out[f"{side}_paired_median"] = round(statistics.median(paired), 3)
    overhead = per_element_overhead(max(repeat, 5), work, say)
    out["overhead_s"] = summary(overhead, digits=6)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.map_steps", description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kafka", default=None, help="a broker's bootstrap (HOST:PORT)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="j2k-map-bench-"))
    try:
        res = run(args.repeat, work, args.kafka, log=lambda t: print(t, file=sys.stderr))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

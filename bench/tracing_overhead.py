"""Benchmark (not a test): what OpenTelemetry traces cost per step, off and on (issue 30).

Embedded ``jup2kub run`` of a chain of empty steps (``vs_notebook.chain_notebook``: each step
only reads the previous step's small value), and of a 2-step chain, as fresh commands, side by
side in each round: traces off (no OTEL_* variable), then on (``OTEL_TRACES_EXPORTER=otlp`` to
the tests' OTLP/HTTP receiver on 127.0.0.1, ``tests/support/otlp.py``; the order alternates by
round). Per-step overhead = (long chain's wall - 2-step chain's wall) / the steps it has more;
the tracing cost per step is its on - off difference, per round, and the fixed cost of turning
traces on (the SDK's import and the exporter) is the 2-step chain's on - off difference.

    python -m bench.tracing_overhead [--repeat 5] [--steps 12] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from bench.stats import spread, summary
from bench.vs_notebook import chain_notebook, write
from tests.support.otlp import OtlpReceiver

MODES = ("off", "on")


def _run(notebook: Path, workdir: Path, env: dict[str, str]) -> float:
    """One embedded run as a fresh command: its wall seconds."""
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "jup2kub.cli", "run", str(notebook), "--workdir", str(workdir)],
        cwd=workdir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"jup2kub run of {notebook.name} failed: {proc.stderr[-2000:]}")
    return seconds


def run(repeat: int, steps: int, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    long = write(chain_notebook(steps), work / "chain.ipynb")
    short = write(chain_notebook(2), work / "chain2.ipynb")
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    base.pop("MPLBACKEND", None)
    walls: dict[str, dict[str, list[float]]] = {m: {"long": [], "short": []} for m in MODES}
    with OtlpReceiver() as rx:
        envs = {"off": base, "on": {**base, **rx.env()}}
        for k in range(repeat):
            for mode in MODES if k % 2 == 0 else reversed(MODES):
                for size, nb in (("long", long), ("short", short)):
                    walls[mode][size].append(_run(nb, work / f"{mode}-{size}-{k}", envs[mode]))
        spans = rx.spans()  # the runs' (before span_cost's own)
        cost = span_cost(rx)
    extra = steps - 2

    def per_step(mode: str, k: int) -> float:
        return (walls[mode]["long"][k] - walls[mode]["short"][k]) / extra

    per = {m: [per_step(m, k) for k in range(repeat)] for m in MODES}
    paired = [per["on"][k] - per["off"][k] for k in range(repeat)]
    fixed = [walls["on"]["short"][k] - walls["off"]["short"][k] for k in range(repeat)]
    step_spans = sum(s.name.startswith("step ") for s in spans)
    return {
        "steps": steps,
        "repeat": repeat,
        "walls_s": {
            m: {s: [round(x, 4) for x in v] for s, v in w.items()} for m, w in walls.items()
        },
        "per_step_s": {m: summary(v) for m, v in per.items()},
        "tracing_per_step_s": summary(paired),
        "tracing_fixed_s": summary(fixed),
        # every "on" run's steps exported a span (the figures are of traced runs)
        "step_spans_received": step_spans,
        "step_spans_expected": repeat * (steps + 2),
        "span_cost_per_step_us": cost,
    }


def span_cost(rx: OtlpReceiver, n: int = 400, cells: int = 3) -> dict[str, float]:
    """The runtime's own work per step execution, in process (no noise of whole runs): the
    step span from a message's headers, ``cells`` cell spans, the headers for downstream and
    the end, with traces off (the no-op) and on (the SDK, exporting to ``rx``); microseconds."""
    from jup2kub_runtime.contract.tracing import PIPELINE, RUN_ID, STEP
    from jup2kub_runtime.execution.tracing import NO_TRACER, Deferred, Tracer, tracer

    parent = [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    attributes = {PIPELINE: "p", STEP: "s", RUN_ID: "r"}
    on = tracer(rx.env("bench"))
    out = {}
    for mode, t in (("off", NO_TRACER), ("on", on)):
        t0 = time.perf_counter()
        for _ in range(n):
            pending = Deferred(cast(Tracer, t), "step s", attributes, parent)
            span = pending.span()
            now = time.time()
            span.cells([(i, now, 0.001) for i in range(cells)])
            span.end("succeeded", attempt=1)
            span.headers()
        out[f"{mode}_us"] = round((time.perf_counter() - t0) / n * 1e6, 1)
    on.flush()
    return out


def report(res: dict[str, Any]) -> str:
    p, t, f = res["per_step_s"], res["tracing_per_step_s"], res["tracing_fixed_s"]
    return (
        f"per step off {spread(p['off'], ' ms', 1e3, 1)}, on {spread(p['on'], ' ms', 1e3, 1)}; "
        f"tracing per step (paired) {spread(t, ' ms', 1e3, 1)}; fixed cost of turning it on "
        f"{spread(f, ' ms', 1e3, 0)}; {res['step_spans_received']}/"
        f"{res['step_spans_expected']} step spans received; in process, a step's spans (3 "
        f"cells) cost {res['span_cost_per_step_us']['off_us']:.1f} us off, "
        f"{res['span_cost_per_step_us']['on_us']:.0f} us on"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None, help="write results.json here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="j2k-bench-tracing-") as tmp:
        res = run(args.repeat, args.steps, Path(tmp))
    print(report(res))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()

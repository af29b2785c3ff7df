"""Benchmark (not a test): handoff latency and throughput of the step runtime on real Kafka.

Starts a local single-node broker (jars from tests/setup.d/30-kafka.sh) and a trivial 3-step
linear pipeline (one ``python -m jup2kub_runtime`` process per step), then:

1. latency: runs submitted one at a time; per-step handoff = downstream "started" status time
   minus upstream "succeeded" status time (p50/p99), and end-to-end submit-to-done time;
2. throughput: a burst of runs submitted at once; runs/s from the first submit to the last
   run done.

    python bench/runtime_handoff.py [--sequential 50] [--burst 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "runtime"), str(REPO / "tests" / "runtime")]

from harness import Pipeline  # noqa: E402
from kafka_broker import KafkaBroker  # noqa: E402

from jup2kub_runtime.messages import parse_time  # noqa: E402
from jup2kub_runtime.spec import Cell, StepSpec  # noqa: E402


def specs() -> list[StepSpec]:
    return [
        StepSpec(pipeline="bench", step="a", parameters_source="seed = 0\n",
                 cells=[Cell(1, "x = seed + 1")], outputs=["x"], downstream=["b"]),
        StepSpec(pipeline="bench", step="b", cells=[Cell(2, "y = x * 2")],
                 inputs={"x": "a"}, outputs=["y"], upstream=["a"], downstream=["c"]),
        StepSpec(pipeline="bench", step="c", cells=[Cell(3, "z = y - 1")],
                 inputs={"y": "b"}, outputs=["z"], upstream=["b"]),
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sequential", type=int, default=50)
    ap.add_argument("--burst", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="j2k-bench-") as tmp:
        broker = KafkaBroker(Path(tmp) / "kafka")
        broker.start()
        p = Pipeline(Path(tmp), broker.bootstrap, specs(),
                     extra_env={"J2K_TOPIC_PARTITIONS": "1"})
        try:
            p.start()
            p.wait_ready()
            p.submit("warmup", seed=0)
            p.wait_complete(["warmup"])
            seq = [f"s{i}" for i in range(args.sequential)]
            for i, run in enumerate(seq):
                p.submit(run, seed=i)
                p.wait_complete([run], steps=["c"])
            burst = [f"b{i}" for i in range(args.burst)]
            t0 = time.time()
            for i, run in enumerate(burst):
                p.submit(run, seed=i)
            p.wait_complete(burst, steps=["c"], timeout=600)
            expected = 3 * (1 + len(seq) + len(burst))
            status = p.statuses(
                lambda ms: sum(m["state"] == "succeeded" for m in ms) >= expected, 120)
        finally:
            p.stop()
            broker.stop()
    at = {(m["run_id"], m["step"], m["state"]): parse_time(m["at"]) for m in status}
    handoffs = [at[(r, down, "started")] - at[(r, up, "succeeded")]
                for r in seq for up, down in (("a", "b"), ("b", "c"))]
    execs = [at[(r, s, "succeeded")] - at[(r, s, "started")] for r in seq for s in "abc"]
    first_start = [at[(r, "a", "started")] for r in burst]
    done = [at[(r, "c", "succeeded")] for r in burst]
    span = max(done) - t0
    ms = 1000.0
    print(f"sequential runs: {len(seq)}  (3 trivial steps, fsync on, 1 partition per topic)")
    print(f"  handoff latency   p50 {pct(handoffs, .5) * ms:7.1f} ms   "
          f"p99 {pct(handoffs, .99) * ms:7.1f} ms   (upstream succeeded -> downstream started)")
    print(f"  step execution    p50 {pct(execs, .5) * ms:7.1f} ms   "
          f"p99 {pct(execs, .99) * ms:7.1f} ms   (started -> succeeded, incl. state store)")
    print(f"burst runs: {len(burst)}")
    print(f"  throughput        {len(burst) / span:7.1f} runs/s   ({span:.1f} s from first "
          f"submit to last done; first start after {min(first_start) - t0:.2f} s)")
    print(f"  mean per run      {statistics.mean(done) - t0:7.2f} s after burst start")
    return 0


if __name__ == "__main__":
    sys.exit(main())

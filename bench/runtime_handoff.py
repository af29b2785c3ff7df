"""Benchmark (not a test): the step runtime on real Kafka — handoff, throughput, recovery.

Each function starts its own pipeline of ``python -m jup2kub_runtime`` processes (one per step
replica, tests/support/runtime_harness.py) against a broker it is given, so ``python -m bench`` runs
them all on one broker; this module's CLI starts its own broker (jars from
tests/setup.d/30-kafka.sh).

- ``handoff``: a 3-step linear pipeline whose first step produces ``size`` bytes of state; runs
  submitted one at a time. Per run: upstream cell done -> downstream cell started with its
  inputs loaded (covers serialising and storing the value, the completion marker, the Kafka
  message, the downstream poll and loading the value back), and the messaging part alone
  (upstream "succeeded" status -> downstream "started" status). The 100 MB case is compared
  with a plain copy of a 100 MB file on the same disk.
- ``throughput``: a burst of runs submitted at once; runs/s from the first submit to the last
  run done. With ``replicas=3`` and sleep-bound steps, the ratio to 1 replica shows scaling.
- ``recovery``: 2 replicas of a sleeping middle step; kill -9 the replica executing a run's
  step; time from the kill to the run's completion minus the step's own duration.

    python -m bench.runtime_handoff [--sequential 50] [--burst 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.stats import pct, summary
from jup2kub_runtime.contract.messages import parse_time
from jup2kub_runtime.contract.spec import Cell, ReplayCell, StepSpec
from tests.support.kafka_broker import KafkaBroker
from tests.support.runtime_harness import Pipeline

# The runtime's own default (config.py), which the chart does not override: the harness's
# 3 s would flatter recovery.
SESSION_TIMEOUT_MS = "10000"


@contextmanager
def broker(workdir: Path | None = None) -> Iterator[KafkaBroker]:
    """A local single-node broker on 127.0.0.1, stopped (by pid) afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="j2k-bench-kafka-")) if workdir is None else workdir
    b = KafkaBroker(tmp)
    b.start()
    try:
        yield b
    finally:
        b.stop()
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def _log_line(log: Path, tag: str) -> str:
    return (
        f"with open({str(log)!r}, 'a') as _f: "
        f"_f.write(RUN_ID + ' {tag} ' + repr(__import__('time').time()) + ' ' "
        f"+ str(__import__('os').getpid()) + '\\n')"
    )


def _events(log: Path) -> dict[tuple[str, str], list[tuple[float, int]]]:
    out: dict[tuple[str, str], list[tuple[float, int]]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            run, tag, t, pid = line.split()
            out.setdefault((run, tag), []).append((float(t), int(pid)))
    return out


def linear(name: str, log: Path, a_body: str, b_body: str, c_body: str) -> list[StepSpec]:
    """a -> b -> c; each cell logs its start and end (time, pid) to ``log``."""
    params = "seed = 0\nRUN_ID = 'none'\nSIZE = 1024\nSLEEP = 0.0\n"
    replay = [ReplayCell(cell=0, source="import time, os")]

    def cell(i: int, step: str, body: str) -> Cell:
        return Cell(
            i, f"{_log_line(log, step + '_start')}\n{body}\n{_log_line(log, step + '_end')}"
        )

    return [
        StepSpec(
            pipeline=name,
            step="a",
            parameters_source=params,
            parameters=["seed"],
            replay=replay,
            cells=[cell(1, "a", a_body)],
            outputs=["x"],
            downstream=["b"],
        ),
        StepSpec(
            pipeline=name,
            step="b",
            parameters_source=params,
            replay=replay,
            cells=[cell(2, "b", b_body)],
            inputs={"x": "a"},
            outputs=["y"],
            upstream=["a"],
            downstream=["c"],
        ),
        StepSpec(
            pipeline=name,
            step="c",
            parameters_source=params,
            replay=replay,
            cells=[cell(3, "c", c_body)],
            inputs={"y": "b"},
            outputs=["z"],
            upstream=["b"],
        ),
    ]


def _status_times(p: Pipeline, expected: int) -> dict[tuple[str, str, str], float]:
    status = p.statuses(lambda ms: sum(m["state"] == "succeeded" for m in ms) >= expected, 120)
    return {(m["run_id"], m["step"], m["state"]): parse_time(m["at"]) for m in status}


def file_copy_seconds(size: int, root: Path, repeat: int = 5, keep: bool = False) -> list[float]:
    """Plain ``shutil.copyfile`` of a ``size``-byte file (written and fsynced first). Each copy
    is deleted before the next one, so later copies reuse the page cache the earlier ones
    freed; ``keep``: every copy goes to a new file kept until the end, as the state store keeps
    each run's value (on a VM whose memory is backed on first touch, that costs more)."""
    src = root / "copy-src.bin"
    with src.open("wb") as f:
        f.write(b"\x01" * size)
        f.flush()
        os.fsync(f.fileno())
    out = []
    kept: list[Path] = []
    for i in range(repeat):
        dst = root / f"copy-dst-{i}.bin"
        t = time.perf_counter()
        shutil.copyfile(src, dst)
        with dst.open("rb+") as f:
            os.fsync(f.fileno())
        out.append(time.perf_counter() - t)
        if keep:
            kept.append(dst)
        else:
            dst.unlink()
    for path in kept:
        path.unlink()
    src.unlink()
    return out


def handoff(
    bootstrap: str, sizes: dict[str, int], runs: dict[str, int], root: Path
) -> dict[str, Any]:
    """Per size label: handoff times (seconds) of the a -> b boundary over ``runs[label]``
    sequential runs, plus the status-only part; with a plain file copy of the largest size."""
    name = _name("hand")
    log = root / f"{name}.log"
    specs = linear(name, log, "x = b'\\x01' * SIZE", "y = len(x)", "z = y + 1")
    p = Pipeline(root / name, bootstrap, specs, extra_env={"J2K_TOPIC_PARTITIONS": "1"})
    result: dict[str, Any] = {}
    ids: dict[str, list[str]] = {}
    try:
        p.start()
        p.wait_ready()
        p.submit("warmup", seed=0, RUN_ID="warmup", SIZE=16)
        p.wait_complete(["warmup"], timeout=120)
        for label, size in sizes.items():
            ids[label] = []
            for i in range(runs[label]):
                run = f"{label}-{i}"
                p.submit(run, seed=i, RUN_ID=run, SIZE=size)
                p.wait_complete([run], steps=["c"], timeout=300)
                ids[label].append(run)
        total = 1 + sum(len(v) for v in ids.values())
        at = _status_times(p, 3 * total)
    finally:
        p.stop()
    ev = _events(log)
    for label, rs in ids.items():
        full = [ev[(r, "b_start")][0][0] - ev[(r, "a_end")][0][0] for r in rs]
        msg = [at[(r, "b", "started")] - at[(r, "a", "succeeded")] for r in rs]
        result[label] = {
            "bytes": sizes[label],
            "handoff_s": summary(full, 5),
            "handoff_p99_s": round(pct(full, 0.99), 5),
            "messaging_s": summary(msg, 5),
            "messaging_p99_s": round(pct(msg, 0.99), 5),
            "samples_s": [round(x, 5) for x in full],
        }
    big = max(sizes, key=lambda k: sizes[k])
    copies = file_copy_seconds(sizes[big], root)
    result["file_copy"] = {"bytes": sizes[big], "seconds": summary(copies, 5)}
    result["ratio_largest_to_copy"] = round(
        result[big]["handoff_s"]["median"] / statistics.median(copies), 2
    )
    kept = file_copy_seconds(sizes[big], root, keep=True)
    result["file_copy_kept"] = {"bytes": sizes[big], "seconds": summary(kept, 5)}
    result["ratio_largest_to_copy_kept"] = round(
        result[big]["handoff_s"]["median"] / statistics.median(kept), 2
    )
    shutil.rmtree(root / name, ignore_errors=True)
    return result


def throughput(
    bootstrap: str,
    burst: int,
    root: Path,
    replicas: int = 1,
    sleep: float = 0.0,
    partitions: int = 1,
) -> dict[str, Any]:
    """Runs/s of ``burst`` runs submitted at once through a -> b -> c (``replicas`` processes
    per step, each step sleeping ``sleep`` seconds)."""
    name = _name(f"thr{replicas}r")
    log = root / f"{name}.log"
    s = f"time.sleep({sleep})\n" if sleep else ""
    specs = linear(name, log, s + "x = seed + 1", s + "y = x * 2", s + "z = y - 1")
    p = Pipeline(root / name, bootstrap, specs, extra_env={"J2K_TOPIC_PARTITIONS": str(partitions)})
    try:
        p.start(replicas=dict.fromkeys("abc", replicas))
        p.wait_ready(timeout=120)
        warm = [f"w{i}" for i in range(2 * replicas)]
        for r in warm:
            p.submit(r, seed=0, RUN_ID=r)
        p.wait_complete(warm, timeout=180)
        runs = [f"r{i}" for i in range(burst)]
        t0 = time.time()
        for i, r in enumerate(runs):
            p.submit(r, seed=i, RUN_ID=r)
        p.wait_complete(runs, steps=["c"], timeout=900)
        at = _status_times(p, 3 * (len(warm) + burst))
    finally:
        p.stop()
    done = [at[(r, "c", "succeeded")] for r in runs]
    span = max(done) - t0
    ev = _events(log)
    per_proc: dict[int, int] = {}
    for r in runs:
        pid = ev[(r, "b_end")][0][1]
        per_proc[pid] = per_proc.get(pid, 0) + 1
    shutil.rmtree(root / name, ignore_errors=True)
    return {
        "runs": burst,
        "replicas": replicas,
        "partitions": partitions,
        "sleep_s": sleep,
        "span_s": round(span, 3),
        "runs_per_s": round(burst / span, 2),
        "mean_latency_s": round(statistics.mean(d - t0 for d in done), 3),
        "runs_per_b_replica": sorted(per_proc.values(), reverse=True),
    }


def recovery(bootstrap: str, trials: int, root: Path, step_seconds: float = 2.0) -> dict[str, Any]:
    """kill -9 of the replica executing step b (2 replicas) -> the run's completion, minus the
    step's own duration; one killed run per trial."""
    name = _name("rec")
    log = root / f"{name}.log"
    specs = linear(name, log, "x = seed + 1", f"time.sleep({step_seconds})\ny = x * 2", "z = y - 1")
    p = Pipeline(
        root / name,
        bootstrap,
        specs,
        extra_env={
            "J2K_TOPIC_PARTITIONS": "2",
            "J2K_MAX_RETRIES": "10",
            "J2K_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
        },
    )
    samples: list[dict[str, float]] = []
    try:
        p.start(replicas={"a": 1, "b": 2, "c": 1})
        p.wait_ready(timeout=120)
        p.submit("warmup", seed=0, RUN_ID="warmup")
        p.wait_complete(["warmup"], timeout=120)
        for i in range(trials):
            run = f"k{i}"
            p.submit(run, seed=i, RUN_ID=run)
            deadline = time.monotonic() + 120
            while (run, "b_start") not in _events(log):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{run}: step b never started")
                time.sleep(0.01)
            pid = _events(log)[(run, "b_start")][0][1]
            idx = next(
                n for n, sp in enumerate(p.procs["b"]) if sp.proc is not None and sp.proc.pid == pid
            )
            time.sleep(0.3)  # well inside the cell
            t_kill = time.time()
            p.proc("b", idx).kill9()
            p.restart("b", idx)  # what Kubernetes does for the pod; the survivor takes over
            while not p.store.is_complete(run, "c"):
                if time.monotonic() > deadline + 300:
                    raise RuntimeError(f"{run}: not complete after the kill")
                time.sleep(0.02)
            t_done = time.time()
            ev = _events(log)
            restart = ev[(run, "b_start")][-1][0]
            samples.append(
                {
                    "kill_to_done_s": t_done - t_kill,
                    "kill_to_restart_s": restart - t_kill,
                    "recovery_s": t_done - t_kill - step_seconds,
                }
            )
            p.wait_ready(timeout=120)
    finally:
        p.stop()
    shutil.rmtree(root / name, ignore_errors=True)
    return {
        "step_seconds": step_seconds,
        "session_timeout_ms": int(SESSION_TIMEOUT_MS),
        "recovery_s": summary([s["recovery_s"] for s in samples], 3),
        "kill_to_restart_s": summary([s["kill_to_restart_s"] for s in samples], 3),
        "samples": [{k: round(v, 3) for k, v in s.items()} for s in samples],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sequential", type=int, default=50)
    ap.add_argument("--burst", type=int, default=300)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="j2k-bench-") as tmp, broker() as b:
        h = handoff(b.bootstrap, {"trivial": 16}, {"trivial": args.sequential}, Path(tmp))
        t = throughput(b.bootstrap, args.burst, Path(tmp))
    ms = 1000.0
    s = h["trivial"]
    print(f"sequential runs: {args.sequential}  (3 trivial steps, fsync on, 1 partition per topic)")
    print(
        f"  handoff           p50 {s['handoff_s']['median'] * ms:7.1f} ms   "
        f"p99 {s['handoff_p99_s'] * ms:7.1f} ms   (upstream cell done -> downstream cell "
        "started, inputs loaded)"
    )
    print(
        f"  messaging only    p50 {s['messaging_s']['median'] * ms:7.1f} ms   "
        f"p99 {s['messaging_p99_s'] * ms:7.1f} ms   (upstream succeeded -> downstream started)"
    )
    print(f"burst runs: {args.burst}")
    print(
        f"  throughput        {t['runs_per_s']:7.1f} runs/s   ({t['span_s']:.1f} s from first "
        "submit to last done)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

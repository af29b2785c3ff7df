"""Soak (not a test): many runs through a diamond pipeline on a real broker while step
processes are killed and the broker itself is killed and restarted.

a -> (b, c) -> d, ``replicas`` runtime processes per step (``python -m jup2kub_runtime``,
tests/support/runtime_harness.py), runs submitted at a steady rate. Meanwhile a random step
process is killed with SIGKILL every ``kill_every`` s (and started again, as the kubelet does),
and the broker is killed with SIGKILL ``broker_kills`` times during the submissions and started
again ``broker_down`` s later on the same data. One extra run is poison (step b raises for it).

Counted at the end, from the state store and the topics:
- lost: runs that never completed (every step's COMPLETE marker) within the deadline;
- wrong: runs whose final value differs from the one computed here;
- doubled: a (run, step) whose cell finished in two processes that both survived (two
  executions both committed would show here); a cell that finished in a process killed right
  after, then again elsewhere, is a re-execution by design (the kill came before the commit)
  and is counted apart;
- dead-lettered: runs on the dead-letter topic other than the poison one;
- silent: completed steps with no "succeeded" on the status topic (``jup2kub status`` would
  show them waiting).

    python -m bench.soak [--runs 1000] [--replicas 2] [--kill-every 2] [--broker-kills 2]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka.errors import KafkaError

from jup2kub_runtime.contract.messages import run_message
from jup2kub_runtime.contract.spec import Cell, StepSpec
from jup2kub_runtime.contract.topics import dead_letter_topic, status_topic
from tests.support.kafka_broker import KafkaBroker
from tests.support.runtime_harness import Pipeline

POISON = "poison"
STEPS = ("a", "b", "c", "d")


def expected_total(seed: int) -> int:
    """What d computes for ``seed`` (the cells below, by hand)."""
    return (2 * seed + 1) * 1000 + 3 * (seed + 1)


def _cell(index: int, step: str, effects: Path, body: str) -> Cell:
    """``body`` followed by a line 'RUN_ID pid' in the step's effects log (cells finished)."""
    log = effects / f"{step}.log"
    pid = "str(__import__('os').getpid())"
    end = f"with open({str(log)!r}, 'a') as _f: _f.write(RUN_ID + ' ' + {pid} + '\\n')"
    return Cell(index=index, source=f"{body}\n{end}\n")


def diamond(name: str, effects: Path) -> list[StepSpec]:
    params = "seed = 0\nRUN_ID = 'none'\n"
    poison = f"if RUN_ID == {POISON!r}:\n    raise ValueError('poison run')\n"
    spec = dict(pipeline=name, parameters_source=params)
    return [
        StepSpec(
            step="a",
            parameters=["seed"],
            cells=[_cell(1, "a", effects, "base = [seed, seed + 1]")],
            outputs=["base"],
            downstream=["b", "c"],
            **spec,  # type: ignore[arg-type]
        ),
        StepSpec(
            step="b",
            cells=[_cell(2, "b", effects, poison + "left = sum(base)")],
            inputs={"base": "a"},
            outputs=["left"],
            upstream=["a"],
            downstream=["d"],
            **spec,  # type: ignore[arg-type]
        ),
        StepSpec(
            step="c",
            cells=[_cell(3, "c", effects, "right = 3 * base[1]")],
            inputs={"base": "a"},
            outputs=["right"],
            upstream=["a"],
            downstream=["d"],
            **spec,  # type: ignore[arg-type]
        ),
        StepSpec(
            step="d",
            cells=[_cell(4, "d", effects, "total = left * 1000 + right")],
            inputs={"left": "b", "right": "c"},
            outputs=["total"],
            upstream=["b", "c"],
            **spec,  # type: ignore[arg-type]
        ),
    ]


@dataclass
class Faults:
    """What was done to the pipeline, with when (seconds from the start)."""

    kills: list[tuple[float, str, int]] = field(default_factory=list)  # (t, step, pid)
    broker: list[tuple[float, str]] = field(default_factory=list)  # (t, "killed"|"started")


def _submit(p: Pipeline, run_id: str, seed: int, stop: threading.Event) -> None:
    """Submit one run, retrying while the broker is away (a repeated run is harmless)."""
    value = json.dumps(run_message(run_id, {"seed": seed, "RUN_ID": run_id})).encode()
    while not stop.is_set():
        try:
            p.send_raw(value, key=run_id)
            return
        except KafkaError:
            time.sleep(0.5)


def _killer(
    p: Pipeline, every: float, stop: threading.Event, faults: Faults, t0: float, seed: int
) -> None:
    rnd = random.Random(seed)
    while not stop.wait(every * rnd.uniform(0.5, 1.5)):
        step = rnd.choice(STEPS)
        n = rnd.randrange(len(p.procs[step]))
        proc = p.proc(step, n)
        if proc.proc is None or proc.proc.poll() is not None:
            continue
        faults.kills.append((round(time.monotonic() - t0, 2), step, proc.proc.pid))
        proc.kill9()
        time.sleep(0.5)  # the kubelet's restart is not instant either
        p.restart(step, n)


def _broker_faults(
    broker: KafkaBroker, at: list[float], down: float, faults: Faults, t0: float
) -> None:
    for t in at:
        time.sleep(max(0.0, t0 + t - time.monotonic()))
        assert broker.proc is not None
        broker.proc.kill()  # SIGKILL: no clean shutdown
        broker.proc.wait(30)
        broker.proc = None
        faults.broker.append((round(time.monotonic() - t0, 2), "killed"))
        time.sleep(down)
        broker.start(timeout=120)
        faults.broker.append((round(time.monotonic() - t0, 2), "started"))


def _finished_cells(effects: Path) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = defaultdict(list)
    for step in STEPS:
        log = effects / f"{step}.log"
        if log.exists():
            for line in log.read_text().splitlines():
                run, _, pid = line.partition(" ")
                out[(run, step)].append(int(pid))
    return out


def _read_all(p: Pipeline, topic: str) -> list[dict[str, Any]]:
    """Every message of ``topic`` (read until two quiet polls)."""
    got: list[dict[str, Any]] = []
    quiet = 0

    def enough(ms: list[dict[str, Any]]) -> bool:
        nonlocal quiet
        quiet = quiet + 1 if len(ms) == len(got) else 0
        got[:] = ms
        return quiet >= 20  # ~10 s without a new message

    try:
        return p.read_topic(topic, enough, timeout=300)
    except AssertionError:
        return got


def soak(
    root: Path,
    runs: int = 1000,
    replicas: int = 2,
    kill_every: float = 2.0,
    broker_kills: int = 2,
    broker_down: float = 5.0,
    rate: float = 8.0,
    seed: int = 1,
) -> dict[str, Any]:
    """Run the soak in ``root``; returns the counts and what was done."""
    effects = root / "effects"
    effects.mkdir(parents=True)
    broker = KafkaBroker(root / "kafka")
    broker.start()
    name = f"soak{uuid.uuid4().hex[:6]}"
    p = Pipeline(
        root / "pipeline",
        broker.bootstrap,
        diamond(name, effects),
        extra_env={
            "J2K_TOPIC_PARTITIONS": str(max(2, replicas)),
            "J2K_MAX_RETRIES": "8",
            "J2K_RETRY_BACKOFF_SECONDS": "0.2",
            "J2K_SESSION_TIMEOUT_MS": "6000",
        },
    )
    faults = Faults()
    stop = threading.Event()
    seeds = {f"r{i:04d}": i for i in range(runs)}
    threads: list[threading.Thread] = []
    try:
        p.start(replicas=dict.fromkeys(STEPS, replicas))
        p.wait_ready(timeout=180)
        t0 = time.monotonic()
        span = runs / rate
        at = [span * (k + 1) / (broker_kills + 1) for k in range(broker_kills)]
        threads = [
            threading.Thread(target=_killer, args=(p, kill_every, stop, faults, t0, seed)),
            threading.Thread(target=_broker_faults, args=(broker, at, broker_down, faults, t0)),
        ]
        for t in threads:
            t.start()
        _submit(p, POISON, 0, stop)
        for i, (run_id, s) in enumerate(seeds.items()):
            time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            _submit(p, run_id, s, stop)
        submitted = time.monotonic() - t0
        threads[1].join()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            missing = [r for r in seeds if not p.store.all_complete(r, list(STEPS))]
            if not missing:
                break
            time.sleep(1)
        stop.set()
        for t in threads:
            t.join()
        done = time.monotonic() - t0
        return _count(p, effects, seeds, faults) | {
            "runs": runs,
            "replicas": replicas,
            "submit_s": round(submitted, 1),
            "complete_s": round(done, 1),
            "kill_every_s": kill_every,
            "broker_down_s": broker_down,
        }
    finally:
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join()
        p.stop()
        broker.stop()


def _count(p: Pipeline, effects: Path, seeds: dict[str, int], faults: Faults) -> dict[str, Any]:
    killed = {pid for _, _, pid in faults.kills}
    complete = {r for r in seeds if p.store.all_complete(r, list(STEPS))}
    wrong = [r for r in complete if p.store.load_value(r, "d", "total") != expected_total(seeds[r])]
    doubled, re_executed = [], 0
    for (run, step), pids in _finished_cells(effects).items():
        survivors = [pid for pid in pids if pid not in killed]
        if len(survivors) > 1:
            doubled.append((run, step))
        re_executed += max(0, len(pids) - 1) if len(survivors) <= 1 else 0
    statuses = _read_all(p, status_topic(p.name))
    said = {(m["run_id"], m["step"]) for m in statuses if m.get("state") == "succeeded"}
    silent = [(r, s) for r in complete for s in STEPS if (r, s) not in said]
    dead = _read_all(p, dead_letter_topic(p.name))
    dead_runs = sorted({str(m.get("run_id")) for m in dead})
    poison = [m for m in dead if m.get("run_id") == POISON]
    return {
        "lost": len(seeds) - len(complete),
        "wrong": len(wrong),
        "doubled": len(doubled),
        "re_executed_after_kill": re_executed,
        "dead_lettered": len([r for r in dead_runs if r != POISON]),
        "silent_steps": len(silent),
        "poison_dead_lettered": bool(poison),
        "poison_reason": poison[0].get("reason") if poison else None,
        "poison_error": (poison[0].get("error") or {}).get("ename") if poison else None,
        "step_kills": len(faults.kills),
        "broker_kills": sum(1 for _, what in faults.broker if what == "killed"),
        "faults": {"kills": faults.kills, "broker": faults.broker},
        "examples": {
            "lost": sorted(set(seeds) - complete)[:5],
            "doubled": doubled[:5],
            "silent": silent[:5],
            "wrong": wrong[:5],
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--kill-every", type=float, default=2.0)
    ap.add_argument("--broker-kills", type=int, default=2)
    ap.add_argument("--rate", type=float, default=8.0, help="runs submitted per second")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="j2k-soak-"))
    try:
        res = soak(
            root, args.runs, args.replicas, args.kill_every, args.broker_kills, rate=args.rate
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    brief = {k: v for k, v in res.items() if k not in ("faults", "examples")}
    print(json.dumps(brief, indent=1))
    ok = not any(res[k] for k in ("lost", "wrong", "doubled", "dead_lettered", "silent_steps"))
    return 0 if ok and res["poison_dead_lettered"] else 1


if __name__ == "__main__":
    sys.exit(main())

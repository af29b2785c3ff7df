"""Where a step process spends its wall time: py-spy (``--idle``, so waits on fsync and on
broker acks show) on every step process of the 3-step pipeline while it handles a burst of
trivial runs, or runs handing over large state. Prints, per step, the share of samples whose
stack passes through each function (inclusive), restricted to stacks that handle a message.

    python -m bench.profile_runtime [--scenario burst|large] [--runs 200] [--py-spy PATH] [--cpu]

``--cpu`` samples only the thread holding the GIL (``--gil``): where the Python CPU time goes, which
bounds the throughput on a small machine.

py-spy is not a test dependency: pass its path (e.g. from a throwaway virtualenv).
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench import runtime_handoff as rh

# Stacks that handle a message: the worker thread's _handle, the main thread's commits.
WORK = ("StepLoop._handle ", "StepLoop._settle ", "StepLoop._commit_sync ")


def summarize(raw: Path, top: int = 22, every: bool = False) -> tuple[int, list[tuple[str, float]]]:
    """(samples handling messages, or all with ``every``, [(function, inclusive % of them)])."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not every and not any(w in stack for w in WORK):
            continue
        total += int(n)
        frames = stack.split(";")
        for f in dict.fromkeys(re.sub(r":\d+\)", ")", f) for f in frames):
            counts[f] += int(n)
    return total, [(f, 100.0 * c / max(total, 1)) for f, c in counts.most_common(top)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scenario", choices=("burst", "large"), default="burst")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    ap.add_argument("--out", type=Path, default=None, help="keep the raw profiles here")
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="on-CPU samples of every thread instead of wall time of message handling",
    )
    args = ap.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="j2k-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="j2k-prof-") as tmp, rh.broker() as b:
        root = Path(tmp)
        log = root / "events.log"
        a_body = "x = b'\\x01' * SIZE" if args.scenario == "large" else "x = seed + 1"
        specs = rh.linear(
            rh._name("prof"),
            log,
            a_body,
            "y = len(x)" if args.scenario == "large" else "y = x * 2",
            "z = y + 1",
        )
        p = rh.Pipeline(root / "p", b.bootstrap, specs, extra_env={"J2K_TOPIC_PARTITIONS": "1"})
        spies: list[subprocess.Popen[bytes]] = []
        try:
            p.start()
            p.wait_ready()
            p.submit("warmup", seed=0, RUN_ID="warmup", SIZE=16)
            p.wait_complete(["warmup"], timeout=120)
            for step, procs in p.procs.items():
                assert procs[0].proc is not None
                spies.append(
                    subprocess.Popen(
                        [
                            args.py_spy,
                            "record",
                            "--gil" if args.cpu else "--idle",
                            "--nonblocking",
                            "-r",
                            "250",
                            "-f",
                            "raw",
                            "-o",
                            str(out / f"{step}.txt"),
                            "-p",
                            str(procs[0].proc.pid),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(1.0)
            runs = [f"r{i}" for i in range(args.runs)]
            t0 = time.time()
            for i, r in enumerate(runs):
                p.submit(r, seed=i, RUN_ID=r, SIZE=100 << 20)
                if args.scenario == "large":
                    p.wait_complete([r], steps=["c"], timeout=300)
            p.wait_complete(runs, steps=["c"], timeout=900)
            span = time.time() - t0
        finally:
            for s in spies:
                s.send_signal(signal.SIGINT)
            for s in spies:
                try:
                    s.wait(60)
                except subprocess.TimeoutExpired:
                    s.kill()
            p.stop()
    print(
        f"{args.scenario}: {args.runs} runs in {span:.1f} s ({args.runs / span:.1f} runs/s); "
        f"raw profiles in {out}"
    )
    for step in ("a", "b", "c"):
        raw = out / f"{step}.txt"
        if not raw.exists():
            print(f"step {step}: no profile")
            continue
        total, shares = summarize(raw, 40 if args.cpu else 22, every=args.cpu)
        what = "samples holding the GIL" if args.cpu else "samples handling messages"
        print(f"--- step {step}: {total} {what} (250/s); share through")
        for frame, share in shares:
            print(f"  {share:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

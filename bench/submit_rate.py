"""Benchmark (not a test): how fast runs are submitted to a pipeline's Kafka (issue 32).

- ``library``: 8 threads each calling ``jup2kub.api.submit`` ``per_thread`` times (every call
  waits for its run message's acknowledgement, acks=all); runs/s over all of them, median of
  ``rounds`` rounds. Side by side with the way it was before (``--old``): a new producer per
  run, closed after it, and the notebook read and analysed on every call.
- ``params_file``: ``jup2kub submit --params-file`` with ``lines`` lines (one process, one
  producer; runs/s from the command's start to its end, Python's start included).

Starts its own broker (jars from tests/setup.d/30-kafka.sh) on 127.0.0.1.

    python -m bench.submit_rate [--per-thread 100] [--rounds 3] [--lines 2000] [--old]
        [--linger-ms 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

from bench.runtime_handoff import broker
from jup2kub import api
from jup2kub.run import remote
from jup2kub_runtime.contract import messages, topics

THREADS = 8
CELLS = [
    ("n = 3\nlabel = 'a'", ["parameters"]),
    ("#| step: make\nvalues = [i * i for i in range(n)]", []),
    ("#| step: total\nprint(label, sum(values))", []),
]


def _notebook(directory: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in CELLS]
    path = directory / "submit-bench.ipynb"
    nbformat.write(nb, path)
    return path


def _create_topic(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        admin.close()


def _old_submit(path: Path, bootstrap: str, n: int) -> str:
    """What ``api.submit`` did before issue 32: read the notebook, open a producer, send, wait,
    flush, close."""
    from kafka import KafkaProducer

    pipeline = api.inspect_notebook(path)
    run_id = api.new_run_id()
    producer = KafkaProducer(
        bootstrap_servers=[bootstrap], acks="all", retries=5, request_timeout_ms=30000
    )
    try:
        value = messages.encode(messages.run_message(run_id, {"n": n}))
        topic = topics.runs_topic(pipeline.name)
        producer.send(topic, key=run_id.encode(), value=value).get(timeout=30)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    return run_id


def _new_submit(path: Path, bootstrap: str, n: int) -> str:
    return api.submit(path, bootstrap, {"n": n})


def library_rate(
    path: Path, bootstrap: str, per_thread: int, submit: Callable[..., str]
) -> tuple[float, float]:
    """Runs/s of ``THREADS`` threads each submitting ``per_thread`` runs, every one acked, and
    this process' CPU time per run (ms, all its threads: kafka-python's sender's included),
    the figure a loaded machine distorts least: one free core would sustain 1000/that runs/s."""
    done: list[str] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(per_thread):
            run_id = submit(path, bootstrap, t * per_thread + i)
            with lock:
                done.append(run_id)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    start, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(set(done)) == THREADS * per_thread
    return len(done) / elapsed, cpu / len(done) * 1000


def single_latency(path: Path, bootstrap: str, count: int = 50) -> float:
    """The median time of one submit alone (ms): what the producer's linger adds is in it."""
    times = []
    for i in range(count):
        start = time.perf_counter()
        api.submit(path, bootstrap, {"n": i})
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def params_file_rate(path: Path, bootstrap: str, lines: int, directory: Path) -> float:
    """Runs/s of one ``jup2kub submit --params-file`` of ``lines`` runs (the whole command)."""
    runs = directory / "runs.jsonl"
    runs.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(lines)))
    extra = ["--params-file", str(runs)]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "jup2kub.cli", "submit", str(path), "--kafka", bootstrap, *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == lines
    return lines / elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-thread", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--old", action="store_true", help="also measure the old submit")
    parser.add_argument("--old-per-thread", type=int, default=10)
    parser.add_argument("--linger-ms", type=int, default=remote.LINGER_MS)
    args = parser.parse_args(argv)
    remote.LINGER_MS = args.linger_ms  # before the first producer is made
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="j2k-bench-submit-") as tmp, broker() as b:
        path = _notebook(Path(tmp))
        _create_topic(b.bootstrap, topics.runs_topic(api.inspect_notebook(path).name))
        api.submit(path, b.bootstrap, {"n": 0})  # the topic's metadata known, as in a service
        new = [
            library_rate(path, b.bootstrap, args.per_thread, _new_submit)
            for _ in range(args.rounds)
        ]
        results["library_runs_per_s"] = statistics.median(r for r, _ in new)
        results["library_cpu_ms_per_run"] = statistics.median(c for _, c in new)
        results["single_submit_ms"] = single_latency(path, b.bootstrap)
        if args.old:
            old = [
                library_rate(path, b.bootstrap, args.old_per_thread, _old_submit)
                for _ in range(args.rounds)
            ]
            results["old_library_runs_per_s"] = statistics.median(r for r, _ in old)
            results["old_library_cpu_ms_per_run"] = statistics.median(c for _, c in old)
        results["params_file_runs_per_s"] = params_file_rate(
            path, b.bootstrap, args.lines, Path(tmp)
        )
        results["producers_made"] = remote.PRODUCERS.made
    for key, value in results.items():
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    return results


if __name__ == "__main__":
    main()

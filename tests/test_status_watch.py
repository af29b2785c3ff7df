"""``jup2kub status --watch``: the live per-step table of a pipeline running on a real broker
(runtimes on this machine, as the chart starts them), plain and on a terminal; and of a release,
read through the real Kubernetes client from an API server that answers canned objects."""

from __future__ import annotations

import itertools
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jup2kub.api import inspect_notebook
from jup2kub.plan import plan_pipeline
from jup2kub_runtime.contract import messages
from jup2kub_runtime.contract.metrics import ExecutionOutcome
from jup2kub_runtime.contract.topics import runs_topic
from tests.support.canned_kube import NS, CannedApiServer, deployment, kubeconfig, pod
from tests.support.cli_runner import CORPUS, jup2kub
from tests.support.step_runtimes import start_runtimes, stop_runtimes

MakeNb = Callable[..., Path]

CELLS = [
    ("code", "n = 3", ["parameters"]),
    "#| step: make\nimport time\ntime.sleep(0.2)\nvalues = [i * i for i in range(n)]",
    "#| step: total\nprint('total', sum(values))",
    "#| step: boom\nif n > 5:\n    raise RuntimeError(f'n too large: {n}')\nprint('ok')",
]
STEPS = ("make", "total", "boom")
ANSI = re.compile(r"\x1b\[")
CURSOR_UP = re.compile(r"\x1b\[\d*A")


@pytest.fixture
def pipeline(kafka: str, tmp_path: Path, make_notebook: MakeNb) -> Iterator[tuple[Path, str]]:
    """The notebook and the name of its pipeline, deployed on ``kafka`` (a name of its own
    per test: the tests share the broker)."""
    nb = make_notebook(CELLS, name="watched.ipynb")
    name = f"w{uuid.uuid4().hex[:8]}"
    procs = start_runtimes(plan_pipeline(inspect_notebook(nb, name=name)), kafka, tmp_path)
    try:
        yield nb, name
    finally:
        stop_runtimes(procs)


def _watch_command(nb: Path, kafka: str, name: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jup2kub.cli",
        "status",
        str(nb),
        "--kafka",
        kafka,
        "--name",
        name,
        "--watch",
        "--interval",
        "0.3",
        *extra,
    ]


def _submit(nb: Path, kafka: str, name: str, n: int, cwd: Path) -> None:
    r = jup2kub("submit", nb, "--kafka", kafka, "--name", name, "-p", "n", str(n), cwd=cwd)
    assert r.returncode == 0, r.stderr


def _submit_at_once(kafka: str, name: str, ns: list[int]) -> None:
    """Runs submitted together, as `submit` sends them, through one producer: a watch with
    --until-done ends once all it knows of are done, and one `submit` after another takes
    long enough for the first run to be done before the next is sent."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    try:
        for n in ns:
            run = f"run-{n}-{uuid.uuid4().hex[:6]}"
            message = messages.encode(messages.run_message(run, {"n": n}))
            producer.send(runs_topic(name), key=run.encode(), value=message)
        producer.flush(timeout=30)
    finally:
        producer.close()


class Watcher:
    """A `status --watch` writing to a pipe (not a terminal), its lines collected as they come."""

    def __init__(self, cmd: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.first_block = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.strip() == "":
                self.first_block.set()

    def finish(self, timeout: float) -> tuple[int, str, str]:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)
        assert self.proc.stderr is not None
        return rc, "".join(self.lines), self.proc.stderr.read()


def _blocks(out: str) -> list[list[str]]:
    """The printed blocks: a time, the headline, the table's header and rows."""
    return [b.splitlines() for b in out.split("\n\n") if b.strip()]


def _rows(block: list[str]) -> dict[str, dict[str, str]]:
    """step -> column -> value, from one block's table."""
    columns = ("replicas", "in flight", "done", "failed", "lag", "p50", "p95")
    rows = {}
    for line in block:
        parts = line.split()
        if len(parts) == 8 and parts[0] in STEPS:
            rows[parts[0]] = dict(zip(columns, parts[1:], strict=True))
    return rows


def test_watch_follows_runs_until_done(
    kafka: str, pipeline: tuple[Path, str], tmp_path: Path
) -> None:
    """Runs submitted while a watch runs (not on a terminal): a plain block each time the table
    changes, done counts rising to the runs submitted, lag back to 0, exit 0 once all are done."""
    nb, name = pipeline
    watcher = Watcher(_watch_command(nb, kafka, name, "--until-done"), tmp_path)
    assert watcher.first_block.wait(120), watcher.finish(1)
    _submit_at_once(kafka, name, [1, 2, 3])
    rc, out, err = watcher.finish(timeout=300)
    assert rc == 0, out + err
    assert not ANSI.search(out), out
    assert "Traceback" not in err
    blocks = _blocks(out)
    tables = [_rows(b) for b in blocks]
    assert all(set(t) == set(STEPS) for t in tables), out
    assert {t["done"] for t in tables[0].values()} == {"0"}  # before the first run
    for step in STEPS:
        done = [int(t[step]["done"]) for t in tables]
        assert done == sorted(done), (step, done)  # rising, never back
    last = tables[-1]
    for step in STEPS:
        assert last[step]["done"] == "3" and last[step]["failed"] == "0", last
        assert last[step]["in flight"] == "0" and last[step]["lag"] == "0", last
        assert last[step]["replicas"] == "1", last  # one live consumer in the step's group
        assert last[step]["p50"].endswith("s") and last[step]["p95"].endswith("s"), last
    assert "3 runs submitted, 3 done, 0 failed" in blocks[-1][1]
    # a block is printed only when something changed (its time aside)
    bodies = [b[1:] for b in blocks]
    assert all(a != b for a, b in itertools.pairwise(bodies)), out


def test_watch_until_done_exits_1_when_a_step_failed(
    kafka: str, pipeline: tuple[Path, str], tmp_path: Path
) -> None:
    nb, name = pipeline
    _submit(nb, kafka, name, 2, tmp_path)
    _submit(nb, kafka, name, 9, tmp_path)  # boom raises
    r = subprocess.run(
        _watch_command(nb, kafka, name, "--until-done"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    blocks = _blocks(r.stdout)
    last = _rows(blocks[-1])
    assert last["boom"]["failed"] == "1" and last["boom"]["done"] == "1", r.stdout
    assert last["make"]["done"] == "2" and last["total"]["done"] == "2", r.stdout
    assert all(row["lag"] == "0" for row in last.values()), r.stdout
    assert "2 runs submitted, 1 done, 1 failed" in blocks[-1][1]


def test_recent_runs_on_kafka_newest_first_with_each_steps_state(
    kafka: str, pipeline: tuple[Path, str]
) -> None:
    """The library's ``watch_status(...).recent_runs``, which the Lab panel's Runs view shows:
    every submitted run, newest first, each step's latest state (a failed one with its error);
    a run is failed once a step failed and nothing else can change. The same watch, asked
    again, reads on from where it was."""
    from jup2kub import api

    nb, name = pipeline
    watch = api.watch_status(nb, kafka, name=name)
    try:
        assert watch.recent_runs(10).runs == ()
        _submit_at_once(kafka, name, [2, 9])  # boom raises for 9
        deadline = time.monotonic() + 240
        while True:
            recent = watch.recent_runs(10)
            if [r.state for r in recent.runs] == ["failed", "succeeded"]:
                break
            assert time.monotonic() < deadline, recent
            time.sleep(0.5)
        assert recent.source == f"pipeline {name} on Kafka {kafka}"
        assert recent.steps == STEPS and recent.problems == ()
        bad, ok = recent.runs
        assert bad.run_id.startswith("run-9-") and ok.run_id.startswith("run-2-")
        assert bad.submitted_at is not None and ok.submitted_at is not None
        assert {s: v["state"] for s, v in ok.steps.items()} == dict.fromkeys(STEPS, "succeeded")
        assert {s: v["state"] for s, v in bad.steps.items()} == {
            "make": "succeeded",
            "total": "succeeded",
            "boom": "failed",
        }
        assert bad.steps["boom"]["error"]["ename"] == "RuntimeError"
        assert bad.steps["boom"]["error"]["evalue"] == "n too large: 9"
        assert bad.steps["boom"]["attempt"] == 1
        assert [r.run_id for r in watch.recent_runs(1).runs] == [bad.run_id]
        assert json.loads(json.dumps(recent.to_json()))["runs"][0]["run_id"] == bad.run_id
    finally:
        watch.close()


def test_watch_on_a_terminal_redraws_in_place_and_ctrl_c_ends_it_cleanly(
    kafka: str, tmp_path: Path
) -> None:
    """On a terminal the table is redrawn over itself (the cursor moves up); Ctrl-C ends the
    watch with exit 0 and no traceback. (No runtime needed: the table of a pipeline without
    topics yet is one of zeros and dashes.)"""
    nb = CORPUS / "plain_cells.ipynb"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jup2kub.cli",
            "status",
            str(nb),
            "--kafka",
            kafka,
            "--watch",
            "--interval",
            "0.2",
        ],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"},
        cwd=tmp_path,
    )
    os.close(slave)
    seen = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the other side is closed
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not CURSOR_UP.search(seen.decode(errors="replace")):
            assert proc.poll() is None, (seen, proc.stderr.read() if proc.stderr else "")
            assert time.monotonic() < deadline, bytes(seen)
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    os.close(master)
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert rc == 0, err
    assert "Traceback" not in err and "interrupted" not in err, err
    text = seen.decode(errors="replace")
    assert "replicas" in text and "in flight" in text and "p95" in text


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "inf"])
def test_watch_refuses_an_interval_that_is_not_a_positive_number(interval: str) -> None:
    nb = CORPUS / "plain_cells.ipynb"
    r = jup2kub("status", nb, "--kafka", "127.0.0.1:1", "--watch", "--interval", interval)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--interval must be a positive number of seconds" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["{nb}", "--kafka", "127.0.0.1:1", "--until-done"], "--until-done goes with --watch"),
        (["{nb}", "--kafka", "127.0.0.1:1", "--interval", "1"], "--interval goes with --watch"),
        (["{nb}", "run-1", "--kafka", "127.0.0.1:1", "--watch"], "it takes no RUN_ID"),
        (["{nb}", "--watch"], "--watch needs NOTEBOOK --kafka BOOTSTRAP, or --release NAME"),
        (["--release", "demo", "--watch", "--until-done", "--runs", "0"], "--runs 0 leaves none"),
    ],
)
def test_watch_usage_errors(args: list[str], message: str) -> None:
    nb = str(CORPUS / "plain_cells.ipynb")
    r = jup2kub("status", *[a.format(nb=nb) for a in args])
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr


# ---- a release: the real Kubernetes client against an API server answering canned objects ----
# No cluster can run here (the e2e cluster is not ours to use), so the API server is a stand-in
# serving what a real one answers for a release of two steps; the step pods' /metrics are the
# runtime's own exposition (its StepMetrics). The same watch against a real cluster is in
# e2e/tests/test_pipeline.py.


def _exposition(
    step: str, succeeded: list[float], failed: list[float], busy: bool, lag: int
) -> bytes:
    """What the runtime of ``step`` serves at /metrics after these executions."""
    from jup2kub_runtime.serving.metrics import StepMetrics

    metrics = StepMetrics("demo", step)
    for outcome, times in (
        (ExecutionOutcome.SUCCEEDED, succeeded),
        (ExecutionOutcome.FAILED, failed),
    ):
        for seconds in times:
            metrics.count(outcome)
            metrics.observe_execution(seconds)
    metrics.lag(lag, 0.0)
    metrics.watch(lambda: busy, lambda: True)
    return metrics.exposition()[0]


def _release_answers(make_busy: bool) -> dict[str, tuple[str, bytes]]:
    def listed(kind: str, items: list[dict[str, Any]]) -> tuple[str, bytes]:
        return "application/json", json.dumps(
            {"kind": kind, "metadata": {}, "items": items}
        ).encode()

    def runs(*pairs: tuple[str, str]) -> tuple[str, bytes]:
        body = {"runs": [{"run_id": r, "state": s, "submitted_at": 1.0} for r, s in pairs]}
        return "application/json", json.dumps(body).encode()

    text = "text/plain; version=0.0.4"
    proxy = f"/api/v1/namespaces/{NS}/pods"
    return {
        f"/apis/apps/v1/namespaces/{NS}/deployments": listed(
            "DeploymentList", [deployment("make", 3, 2), deployment("total", 1, 1)]
        ),
        f"/apis/apps/v1/namespaces/{NS}/statefulsets": listed("StatefulSetList", []),
        f"/api/v1/namespaces/{NS}/pods": listed(
            "PodList",
            [
                pod("make", "demo-make-a", True),
                pod("make", "demo-make-b", True),
                pod("total", "demo-total-a", True),
            ],
        ),
        f"{proxy}/demo-make-a:8080/proxy/metrics": (
            text,
            _exposition("make", [0.2, 0.4], [], busy=False, lag=0),
        ),
        f"{proxy}/demo-make-b:8080/proxy/metrics": (
            text,
            _exposition("make", [3.0], [0.1], busy=make_busy, lag=2 if make_busy else 0),
        ),
        f"{proxy}/demo-total-a:8080/proxy/metrics": (
            text,
            _exposition("total", [0.05, 0.05], [], busy=False, lag=0),
        ),
        f"{proxy}/demo-make-a:8080/proxy/runs/10": runs(("r1", "succeeded"), ("r2", "failed")),
        f"{proxy}/demo-make-b:8080/proxy/runs/10": runs(("r3", "succeeded")),
        f"{proxy}/demo-total-a:8080/proxy/runs/10": runs(("r1", "succeeded"), ("r3", "succeeded")),
    }


def test_watch_a_release_reads_replicas_from_deployments_and_the_rest_from_step_metrics(
    tmp_path: Path,
) -> None:
    """Replicas ready/desired from each step's Deployment; in flight, done, failed, lag and
    p50/p95 from the step pods' /metrics (through the pod proxy) summed over replicas; with
    --until-done the watch ends once the recent runs are all finished, 1 since one failed."""
    with CannedApiServer(_release_answers(make_busy=False)) as server:
        config = kubeconfig(tmp_path, server)
        watch = ["status", "--release", "demo", "--kubeconfig", config, "--watch", "--until-done"]
        r = jup2kub(*watch, "--json", "--interval", "0.2", timeout=60)
        assert r.returncode == 1, r.stdout + r.stderr
        snapshot = json.loads(r.stdout.splitlines()[-1])
        steps = {s["step"]: s for s in snapshot["steps"]}
        make, total = steps["make"], steps["total"]
        assert (make["ready"], make["desired"], total["ready"], total["desired"]) == (2, 3, 1, 1)
        assert (make["done"], make["failed"], make["in_flight"], make["lag"]) == (3, 1, 0, 0)
        assert (total["done"], total["failed"], total["lag"]) == (2, 0, 0)
        # 4 executions of make (0.1, 0.2, 0.4, 3.0 s): the median in the (0.1, 0.25] bucket, the
        # 95th percentile in (2.5, 5]; both interpolated within them, as Prometheus does
        assert 0.1 < make["p50"] <= 0.25 and 2.5 < make["p95"] <= 5.0, make
        assert snapshot["runs"] == {"submitted": 3, "done": 2, "failed": 1}
        plain = jup2kub(*watch, "--interval", "0.2", timeout=60)
        assert plain.returncode == 1, plain.stdout + plain.stderr
        assert re.search(r"^make\s+2/3\s+0\s+3\s+1\s+0\s", plain.stdout, re.M), plain.stdout
        assert re.search(r"^total\s+1/1\s+0\s+2\s+0\s+0\s", plain.stdout, re.M), plain.stdout


def test_watch_a_release_waits_while_a_step_is_busy(tmp_path: Path) -> None:
    """A replica executing a run (j2k_busy 1, lag 2): in flight 1 and the watch goes on."""
    with CannedApiServer(_release_answers(make_busy=True)) as server:
        config = kubeconfig(tmp_path, server)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jup2kub.cli",
                "status",
                "--release",
                "demo",
                "--kubeconfig",
                str(config),
                "--watch",
                "--until-done",
                "--json",
                "--interval",
                "0.2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            first = json.loads(proc.stdout.readline())
            make = next(s for s in first["steps"] if s["step"] == "make")
            assert (make["in_flight"], make["lag"]) == (1, 2), make
            assert first["settled"] is False
            assert proc.poll() is None  # still watching
        finally:
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=60)
        assert rc == 0, proc.stderr.read() if proc.stderr else ""


def test_quantiles_as_numpy_and_prometheus_compute_them() -> None:
    from jup2kub.activity import histogram_quantile, quantile

    assert quantile([], 0.5) is None
    assert quantile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5
    assert quantile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    inf = float("inf")
    buckets = [(0.1, 1.0), (0.25, 2.0), (0.5, 3.0), (2.5, 3.0), (5.0, 4.0), (inf, 4.0)]
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.25)
    assert histogram_quantile(buckets, 0.95) == pytest.approx(4.5)
    assert histogram_quantile(buckets, 0.25) == pytest.approx(0.1)
    # beyond the highest finite bound: that bound, as histogram_quantile says
    assert histogram_quantile([(1.0, 1.0), (inf, 4.0)], 0.9) == 1.0
    assert histogram_quantile([(1.0, 0.0), (inf, 0.0)], 0.5) is None

"""``jup2kub status --watch``: the live per-step table of a pipeline running on a real broker
(runtimes on this machine, as the chart starts them), plain and on a terminal; and of a release,
read through the real Kubernetes client from an API server that answers canned objects."""

from __future__ import annotations

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

import pytest

from jup2kub.api import inspect_notebook
from jup2kub.plan import plan_pipeline
from jup2kub_runtime.contract import messages
from jup2kub_runtime.contract.topics import runs_topic
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
    assert all(a != b for a, b in zip(bodies, bodies[1:], strict=False)), out


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
        (["--kafka", "127.0.0.1:1", "--until-done"], "--until-done goes with --watch"),
        (["--kafka", "127.0.0.1:1", "--interval", "1"], "--interval goes with --watch"),
        (["run-1", "--kafka", "127.0.0.1:1", "--watch"], "it takes no RUN_ID"),
        (["--watch"], "--watch needs NOTEBOOK --kafka BOOTSTRAP, or --release NAME"),
    ],
)
def test_watch_usage_errors(args: list[str], message: str) -> None:
    r = jup2kub("status", CORPUS / "plain_cells.ipynb", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr

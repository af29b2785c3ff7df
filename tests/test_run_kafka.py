"""``jup2kub run --kafka`` start-up: the run is followed while the runtimes start, a runtime
that exits early is reported at once, and every runtime process ends with the command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jup2kub.api import inspect_notebook
from jup2kub.errors import Jup2KubError, KafkaUnavailableError
from jup2kub.model.notebook import load_notebook
from jup2kub.run.executor import RunResult, run_pipeline
from jup2kub.run.kafka import KafkaExecutor, _Runtime, _Watch, free_port

MakeNb = Callable[..., Path]

CELLS = [
    "#| step: first\nx = 20",
    "#| step: second\ny = x + 1",
    "#| step: third\nprint('total', x + y)",
]


def _launcher(tmp_path: Path, body: str) -> Path:
    """A stand-in for the python executable: runs ``body`` (sh) for the step in $J2K_STEP,
    records its pid, then execs the real python (same pid: the runtime itself)."""
    script = tmp_path / "python-launcher"
    script.write_text(
        f'#!/bin/sh\necho $$ > "{tmp_path}/pid-$J2K_STEP"\n{body}\nexec "{sys.executable}" "$@"\n'
    )
    script.chmod(0o755)
    return script


def _pids(tmp_path: Path) -> dict[str, int]:
    return {p.name[4:]: int(p.read_text()) for p in tmp_path.glob("pid-*")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _run(nb: Path, workdir: Path, executor: KafkaExecutor) -> RunResult:
    return run_pipeline(load_notebook(nb), inspect_notebook(nb), workdir, {}, executor)


def test_a_runtime_ready_late_is_awaited_and_every_runtime_ends(
    kafka: str, tmp_path: Path, make_notebook: MakeNb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last step's runtime starts seconds after the others: the run, submitted and
    followed at once, still completes, and no runtime outlives it."""
    nb = make_notebook(CELLS)
    monkeypatch.chdir(tmp_path)
    python = _launcher(tmp_path, '[ "$J2K_STEP" = third ] && sleep 4')
    result = _run(nb, tmp_path / "work", KafkaExecutor(kafka, python=str(python)))
    assert result.ok, result.steps
    pids = _pids(tmp_path)
    assert set(pids) == {"first", "second", "third"}
    assert not [step for step, pid in pids.items() if _alive(pid)]
    assert "total 41" in result.notebook.read_text()


def test_a_runtime_that_exits_is_reported_and_the_others_end(
    kafka: str, tmp_path: Path, make_notebook: MakeNb, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = make_notebook(CELLS)
    monkeypatch.chdir(tmp_path)
    python = _launcher(tmp_path, '[ "$J2K_STEP" = second ] && exit 3')
    with pytest.raises(Jup2KubError) as info:
        _run(nb, tmp_path / "work", KafkaExecutor(kafka, python=str(python)))
    assert "'second' exited (exit code 3)" in str(info.value)
    assert info.value.where is not None and info.value.where.endswith("second.log")
    assert not [step for step, pid in _pids(tmp_path).items() if _alive(pid)]


@pytest.fixture
def sleepers(tmp_path: Path) -> Iterator[dict[str, _Runtime]]:
    """Two real processes standing in for runtimes (they only wait for a signal)."""
    runtimes = {}
    for name in ("a", "b"):
        log = (tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        runtimes[name] = _Runtime(proc, log, free_port(), {})
    yield runtimes
    for r in runtimes.values():
        r.proc.kill()
        r.proc.wait()
        r.log.close()


def test_watch_stops_a_finished_step_and_reports_an_exit(
    sleepers: dict[str, _Runtime], tmp_path: Path
) -> None:
    watch = _Watch(sleepers, tmp_path, "127.0.0.1:9", time.monotonic())
    watch.check({"a": {"state": "succeeded"}, "b": {"state": "started"}})
    assert sleepers["a"].proc.wait(timeout=30) == -signal.SIGTERM
    assert sleepers["b"].proc.poll() is None  # still at work: left alone
    watch.check({"a": {"state": "succeeded"}, "b": {"state": "started"}})  # a's exit is fine
    sleepers["b"].proc.kill()
    sleepers["b"].proc.wait()
    with pytest.raises(Jup2KubError, match="'b' exited"):
        watch.check({"a": {"state": "succeeded"}, "b": {"state": "started"}})


def test_watch_gives_up_on_a_runtime_never_ready(
    sleepers: dict[str, _Runtime], tmp_path: Path
) -> None:
    """Nothing answers on the sleepers' ports: not ready. A step that reported is ready."""
    watch = _Watch(sleepers, tmp_path, "127.0.0.1:9", time.monotonic(), timeout=0, grace=0)
    with pytest.raises(KafkaUnavailableError, match="steps b did not become ready"):
        watch.check({"a": {"state": "started"}})


def test_a_runtime_on_port_0_binds_one_and_says_which(tmp_path: Path) -> None:
    """``run --kafka`` lets each runtime bind a port the system chooses (a port picked ahead
    could be taken before the runtime binds it, as a flaky CI run showed) and reads it from
    the runtime's log."""
    import socket
    import urllib.request

    from jup2kub_runtime.contract.config import Config as RuntimeConfig
    from jup2kub_runtime.contract.spec import Cell, StepSpec

    StepSpec(pipeline="p", step="s", cells=[Cell(1, "a = 1")], outputs=["a"]).dump(
        tmp_path / "code"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    cfg = RuntimeConfig.for_step(
        "p",
        "s",
        [],
        [],
        f"127.0.0.1:{dead}",
        tmp_path / "state",
        tmp_path / "code",
        port=0,
        health_host="127.0.0.1",
    )
    log_path = tmp_path / "s.log"
    log = log_path.open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("J2K_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jup2kub_runtime"],
        env={**env, **cfg.to_env()},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    runtime = _Runtime(proc, log, 0, {}, log_path)
    try:
        deadline = time.monotonic() + 60
        while not runtime.health_port() and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.05)
        port = runtime.health_port()
        assert port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()

"""``jup2kub run``'s progress and logs (issue 20, item 2): one line per step start and end where
stderr is no terminal, a running step's elapsed time and cell, ``--log-output`` streaming the
cells' output live, step logs that are never empty, and ``--timeout`` bounding a run."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from tests.support.cli_runner import jup2kub

MakeNb = Callable[..., Path]


def _env(workers: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "J2K_LOCAL_WORKERS": workers, **extra}


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_one_line_per_step_start_and_end_and_a_running_step_shows_its_cell(
    mode: str, make_notebook: MakeNb, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    nb = make_notebook(
        [
            "#| step: first\nx = 1",
            "#| step: slow\nimport time\ny = x",
            "time.sleep(2.5)",  # cell 2: where the slow step is seen running
            "#| step: last\nz = y",
        ]
    )
    env = _env("fork", J2K_PROGRESS_INTERVAL="0")
    extra = ["--kafka", request.getfixturevalue("kafka")] if mode == "kafka" else []
    proc = jup2kub("run", nb, "--workdir", tmp_path / "w", *extra, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in proc.stderr.splitlines()]
    events = [line for line in lines if "still running" not in line]
    assert [re.sub(r" in \d+\.\ds$", "", e) for e in events] == [
        "step first: started",
        "step first: succeeded",
        "step slow: started",
        "step slow: succeeded",
        "step last: started",
        "step last: succeeded",
    ]
    assert any(re.fullmatch(r"step slow: still running \(\d+\.\ds, cell 2\)", x) for x in lines)


@pytest.mark.parametrize("workers", ["fork", "spawn", "kafka"])
def test_log_output_streams_the_cells_output_while_they_run(
    workers: str, make_notebook: MakeNb, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # the cell waits for a file the test writes only once it has seen the cell's first line:
    # without live streaming the step would wait in vain and fail after a minute
    nb = make_notebook(
        [
            "#| step: a\nimport os, sys, time\nprint('hello'); print('oops', file=sys.stderr)",
            "#| step: b\nprint('waiting', flush=True)\n"
            "for _ in range(1200):\n    if os.path.exists('go'):\n        break\n"
            "    time.sleep(0.05)\nelse:\n    raise TimeoutError('no go')\nprint('went')",
        ]
    )
    extra = ["--kafka", request.getfixturevalue("kafka")] if workers == "kafka" else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "jup2kub.cli", "run", str(nb), "--log-output", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_env(workers),
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line.rstrip("\n"))
        if line.startswith("[b] waiting"):
            (tmp_path / "go").write_text("")
    assert proc.wait(timeout=120) == 0, "\n".join(seen)
    assert "[a] hello" in seen and "[a] oops" in seen
    assert seen.index("[b] waiting") < seen.index("[b] went")
    ends_b = next(i for i, x in enumerate(seen) if "step b: succeeded" in x)
    assert seen.index("[b] went") < ends_b
    assert not any(x.startswith(("[a] {", "[b] {")) for x in seen)  # no runner protocol


def test_step_logs_are_never_empty(make_notebook: MakeNb, tmp_path: Path) -> None:
    nb = make_notebook(
        ["#| step: quiet\nx = 1", "#| step: loud\nimport sys\nsys.stderr.write('w')\ny = x"]
    )
    proc = jup2kub("run", nb, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (logs,) = (tmp_path / "w" / "runs").glob("*/logs")
    quiet = (logs / "quiet.log").read_text()
    assert re.match(r"\[jup2kub\] run \S+, step quiet: exit code 0 after \d", quiet)
    assert quiet.endswith("[jup2kub] the process' stderr:\n[jup2kub] (nothing)\n")
    loud = (logs / "loud.log").read_text()
    assert "\n[jup2kub] cell 1:\nw\n" in loud  # what the cell wrote, also in the log


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
def test_timeout_ends_every_step_process_and_says_how_to_resume(
    mode: str, make_notebook: MakeNb, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    nb = make_notebook(
        [
            "#| step: a\nx = 1\nprint('a ran')",
            "#| step: b\nimport os, time\nopen('b.pid', 'w').write(str(os.getpid()))\ny = x",
            "time.sleep(600)",
            "#| step: c\nz = y",
        ]
    )
    work = tmp_path / "w"
    # with --kafka the limit also covers the runtimes' start (seconds on two shared cores)
    limit, seconds = ("3s", 3) if mode == "embedded" else ("30s", 30)
    extra = ["--kafka", request.getfixturevalue("kafka")] if mode == "kafka" else []
    proc = jup2kub(
        "run", nb, "out.ipynb", "--workdir", work, "--timeout", limit, *extra, cwd=tmp_path
    )
    assert proc.returncode == 124, proc.stdout + proc.stderr
    run_id = re.search(r"run (\S+): failed", proc.stdout).group(1)  # type: ignore[union-attr]
    assert f"run {run_id} exceeded its --timeout of {limit}" in proc.stderr
    assert f"--workdir {work} --resume {run_id}" in proc.stderr
    assert "not run (the run timed out): c" in proc.stderr
    pid = int((tmp_path / "b.pid").read_text())
    with pytest.raises(ProcessLookupError):  # the step's process has ended with the command
        os.kill(pid, 0)
    result = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert result.cells[0].outputs[0]["text"] == "a ran\n"
    error = result.cells[2].outputs[-1]
    assert error["output_type"] == "error" and f"--timeout of {seconds}s" in error["evalue"]
    summary = json.loads((work / "runs" / run_id / "summary.json").read_text())
    assert summary["timed_out_after"] == seconds
    assert summary["steps"]["b"]["status"] == "failed"
    assert summary["steps"]["c"]["status"] == "blocked"
    if mode == "embedded":  # with --kafka, the runtime's own log
        log = (work / "runs" / run_id / "logs" / "b.log").read_text()
        assert "killed after" in log and "--timeout of 3s" in log


def test_a_kafka_run_ended_by_its_timeout_is_continued_by_the_resume_command(
    make_notebook: MakeNb, tmp_path: Path, kafka: str
) -> None:
    nb = make_notebook(
        [
            "#| step: a\nx = 1\nprint('a ran')",
            "#| step: b\nimport os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.1)\n"
            "y = x + 1",
            "#| step: c\nprint(y)",
        ]
    )
    work = tmp_path / "w"
    proc = jup2kub("run", nb, "--workdir", work, "--timeout", "30s", "--kafka", kafka, cwd=tmp_path)
    assert proc.returncode == 124, proc.stdout + proc.stderr
    hint = re.search(r"hint: `(jup2kub run [^`]+)`", proc.stderr)
    assert hint is not None, proc.stderr
    (tmp_path / "go").write_text("")
    again = jup2kub(*shlex.split(hint.group(1))[1:], cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    run_id = re.search(r"run (\S+): succeeded", again.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(work / "runs" / run_id / "result.ipynb", as_version=4)
    assert [c.outputs[0]["text"] for c in (result.cells[0], result.cells[2])] == [
        "a ran\n",
        "2\n",
    ]

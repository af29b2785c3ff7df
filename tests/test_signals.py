"""Ctrl-C and SIGTERM to ``jup2kub run``: every child ends with it, the message names the run
and how to resume it, the exit code is 130 / 143, and the resumed run completes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from tests.support.cli_runner import jup2kub
from tests.support.processes import alive, children, wait_for_file, wait_gone, workers_env

MakeNb = Callable[..., Path]


def _blocking(make_notebook: MakeNb) -> Path:
    """A second step that waits while the file ``block`` exists (so a resume completes)."""
    return make_notebook(
        [
            "#| step: first\nx = 1",
            "#| step: slow\nimport os, pathlib, time\n"
            "pathlib.Path('pid').write_text(str(os.getpid()))\n"
            "while pathlib.Path('block').exists():\n    time.sleep(0.05)\ny = x + 1\nprint(y)",
        ]
    )


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def _start(nb: Path, cwd: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jup2kub.cli", "run", str(nb), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )


@pytest.mark.parametrize(
    ("mode", "how", "code"),
    [
        ("spawn", signal.SIGTERM, 143),
        ("spawn", signal.SIGINT, 130),
        ("fork", signal.SIGTERM, 143),
    ],
)
def test_interrupted_run_ends_its_children_and_says_how_to_resume(
    mode: str, how: signal.Signals, code: int, tmp_path: Path, make_notebook: MakeNb
) -> None:
    nb = _blocking(make_notebook)
    (tmp_path / "block").touch()
    work = tmp_path / "work"
    proc = _start(nb, tmp_path, workers_env(mode), "--workdir", str(work))
    step = wait_for_file(tmp_path / "pid", proc)
    family = _descendants(proc.pid)
    assert step in family
    proc.send_signal(how)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    found = re.search(rf"run (\S+) was interrupted \({how.name}\)", err)
    assert found is not None, err
    run_id = found.group(1)
    assert f"jup2kub run {nb} --workdir {work} --resume {run_id}" in err
    assert wait_gone(family) == []
    assert not (work / "runs" / run_id / "summary.json").exists()  # nothing presented as done
    (tmp_path / "block").unlink()
    resumed = jup2kub("run", nb, "--workdir", work, "--resume", run_id, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"run {run_id}: succeeded" in resumed.stdout


def test_sigterm_to_run_over_kafka_ends_every_runtime(
    kafka: str, tmp_path: Path, make_notebook: MakeNb
) -> None:
    nb = _blocking(make_notebook)
    (tmp_path / "block").touch()
    proc = _start(
        nb, tmp_path, dict(os.environ), "--workdir", str(tmp_path / "w"), "--kafka", kafka
    )
    wait_for_file(tmp_path / "pid", proc)
    family = _descendants(proc.pid)
    # the slow step's runtime at least (a runtime stops once its step is final)
    assert [p for p in family if alive(p)] != []
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err
    assert "was interrupted (SIGTERM)" in err and "start the run again" in err
    assert "Traceback" not in err
    assert wait_gone(family) == []


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_a_killed_step_names_the_cell_it_was_running_and_keeps_earlier_output(
    mode: str, tmp_path: Path, make_notebook: MakeNb
) -> None:
    nb = make_notebook(
        [
            "#| step: only\nprint('loaded')\nrows = 3",
            "print('cleaned', rows)",
            "import os, pathlib, time\npathlib.Path('pid').write_text(str(os.getpid()))\n"
            "time.sleep(600)",
        ]
    )
    proc = _start(nb, tmp_path, workers_env(mode), "--workdir", str(tmp_path / "w"))
    os.kill(wait_for_file(tmp_path / "pid", proc), signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    assert (
        "step 'only' failed in cell 2: StepKilled: the step's process was killed by SIGKILL" in err
    )
    run_id = re.search(r"run (\S+): failed", out).group(1)  # type: ignore[union-attr]
    result = nbformat.read(tmp_path / "w" / "runs" / run_id / "result.ipynb", as_version=4)
    assert [o.get("text") for o in result.cells[0].outputs] == ["loaded\n"]
    assert [o.get("text") for o in result.cells[1].outputs] == ["cleaned 3\n"]
    assert result.cells[2].outputs[-1]["ename"] == "StepKilled"

"""``jup2kub run``'s step processes forked from a warm fork server (default on Linux) or spawned
(``J2K_LOCAL_WORKERS=spawn``): the same failures, resumes and results either way, and nothing
outlives the command."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from jup2kub_runtime.storage.state_store import StateStore
from tests.support.cli_runner import jup2kub
from tests.support.equivalence import reference_run, shown
from tests.support.processes import children, wait_for_file, wait_gone, workers_env

MakeNb = Callable[..., Path]
MODES = ["fork", "spawn"]


def _start(
    nb: Path, work: Path, cwd: Path, env: dict[str, str], *args: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jup2kub.cli", "run", str(nb), "--workdir", str(work), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.parametrize("mode", MODES)
def test_killed_worker_fails_the_step_and_resume_completes_it(
    mode: str, tmp_path: Path, make_notebook: MakeNb
) -> None:
    nb = make_notebook(
        [
            "#| step: first\nx = 1",
            "#| step: slow\nimport os, pathlib, time\n"
            "if not pathlib.Path('fixed').exists():\n"
            "    pathlib.Path('pid').write_text(str(os.getpid()))\n"
            "    time.sleep(600)\n"
            "y = x + 1",
            "#| step: last\nprint(y)",
        ]
    )
    work = tmp_path / "w"
    proc = _start(nb, work, tmp_path, workers_env(mode))
    pid = wait_for_file(tmp_path / "pid", proc)
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    assert "step 'slow' failed" in err
    assert "not run (upstream failed): last" in err
    run_id = re.search(r"run (\S+): failed", out).group(1)  # type: ignore[union-attr]
    summary = json.loads((work / "runs" / run_id / "summary.json").read_text())
    assert summary["steps"]["slow"]["status"] == "failed"

    (tmp_path / "fixed").touch()
    again = jup2kub(
        "run", nb, "--workdir", work, "--resume", run_id, cwd=tmp_path, env=workers_env(mode)
    )
    assert again.returncode == 0, again.stderr
    result = nbformat.read(work / "runs" / run_id / "result.ipynb", as_version=4)
    assert result.cells[2].outputs[0]["text"] == "2\n"


@pytest.mark.parametrize("crash", ["os._exit(7)", "os.kill(os.getpid(), signal.SIGSEGV)"])
def test_a_crashing_step_does_not_take_the_parallel_ones_down(
    crash: str, tmp_path: Path, make_notebook: MakeNb
) -> None:
    nb = make_notebook(
        [
            "#| step: root\nx = 1",
            "#| step: left\nimport time\ntime.sleep(1)\na = x + 1\nprint('left', a)",
            f"#| step: crash\nimport os, signal, time\ntime.sleep(0.3)\n{crash}\nc = x",
            "#| step: right\nimport time\ntime.sleep(1)\nb = x + 2\nprint('right', b)",
            "#| step: join\nprint(a + b)",
        ]
    )
    work = tmp_path / "w"
    proc = jup2kub(
        "run", nb, "--workdir", work, "--jobs", "3", cwd=tmp_path, env=workers_env("fork")
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "step 'crash' failed" in proc.stderr
    (run_dir,) = (work / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    statuses = {k: v["status"] for k, v in summary["steps"].items()}
    assert statuses == {
        "root": "succeeded",
        "left": "succeeded",
        "crash": "failed",
        "right": "succeeded",
        "join": "blocked",  # it would start past the failed cell: nbclient stops there
    }
    store = StateStore(work)
    assert store.load_value(run_dir.name, "left", "a") == 2
    assert store.load_value(run_dir.name, "right", "b") == 3


def test_a_dead_fork_server_fails_its_steps_and_nothing_past_them_starts(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    """The steps after the killed one would start past a failed cell: nbclient stops there,
    so none starts (issue 28); before that rule, they were spawned instead."""
    nb = make_notebook(
        [
            "#| step: first\nx = 1",
            "#| step: slow\nimport os, pathlib, time\n"
            "pathlib.Path('pid').write_text(str(os.getpid()))\ntime.sleep(600)\ny = x",
            "#| step: later\nimport os\nz = (x, os.getppid())",
            "#| step: last\nprint(y)",
            "#| step: show\nprint(z)",
        ]
    )
    work = tmp_path / "w"
    proc = _start(nb, work, tmp_path, workers_env("fork"), "--jobs", "1")
    step = wait_for_file(tmp_path / "pid", proc)
    (server,) = [
        c for c in children(proc.pid) if "jup2kub_runtime.execution.forkserver" in _cmdline(c)
    ]
    os.kill(server, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    assert "step 'slow' failed" in err and "the fork server ended" in err
    (run_dir,) = (work / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    statuses = {k: v["status"] for k, v in summary["steps"].items()}
    assert statuses == {
        "first": "succeeded",
        "slow": "failed",
        "later": "blocked",
        "last": "blocked",
        "show": "blocked",
    }
    assert wait_gone([server, step]) == []


def _sleeper(make_notebook: MakeNb) -> Path:
    return make_notebook(
        [
            "#| step: first\nx = 1",
            "#| step: slow\nimport os, pathlib, time\n"
            "pathlib.Path('pid').write_text(str(os.getpid()))\ntime.sleep(600)\ny = x",
        ]
    )


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_nothing_outlives_the_command(
    how: signal.Signals, tmp_path: Path, make_notebook: MakeNb
) -> None:
    proc = _start(_sleeper(make_notebook), tmp_path / "w", tmp_path, workers_env("fork"))
    step = wait_for_file(tmp_path / "pid", proc)
    servers = [
        c for c in children(proc.pid) if "jup2kub_runtime.execution.forkserver" in _cmdline(c)
    ]
    assert len(servers) == 1
    assert step in children(servers[0])  # the step's process is the server's child
    os.kill(proc.pid, how)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert wait_gone([servers[0], step]) == []


def test_nothing_outlives_a_finished_run(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(
        [
            "#| step: a\nx = 1",
            "#| step: b\nimport os, pathlib\npathlib.Path('pid').write_text(str(os.getpid()))",
        ]
    )
    proc = _start(nb, tmp_path / "w", tmp_path, workers_env("fork"))
    servers: list[int] = []
    while proc.poll() is None:  # catch the server while the run goes on
        servers += [c for c in children(proc.pid) if c not in servers]
        time.sleep(0.01)
    assert proc.returncode == 0, proc.communicate()
    step = int((tmp_path / "pid").read_text())
    assert step != proc.pid and servers
    assert wait_gone([*servers, step]) == []


NOISY = """\
import sys
import warnings
print("noisy: imported")
print("noisy: on stderr", file=sys.stderr)
warnings.warn("noisy: a warning at import", UserWarning)
VALUE = 41
"""

QUIET = "VALUE = 1\n"


def test_a_noisy_import_still_shows_in_its_cell(tmp_path: Path, make_notebook: MakeNb) -> None:
    site = tmp_path / "site"  # on PYTHONPATH, not in the notebook's directory
    for name, code in [("noisypkg", NOISY), ("quietpkg", QUIET)]:
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(code)
    nbdir = tmp_path / "nb"
    nbdir.mkdir()
    nb = make_notebook(
        [
            "#| step: first\nimport quietpkg\nx = quietpkg.VALUE",
            "#| step: second\nprint('before')\nimport noisypkg\ny = x + noisypkg.VALUE\ny",
            "#| step: third\nimport noisypkg\nprint(y)",
        ]
    )
    env = workers_env(
        "fork", PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    )
    (nbdir / nb.name).write_bytes(nb.read_bytes())
    nb = nbdir / nb.name
    proc = jup2kub("run", nb, "--workdir", tmp_path / "w", cwd=nbdir, env=env)
    assert proc.returncode == 0, proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(tmp_path / "w" / "runs" / run_id / "result.ipynb", as_version=4)

    ref_dir = tmp_path / "reference"
    ref_dir.mkdir()
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env["PYTHONPATH"]  # the kernel inherits it
    try:
        ref_nb, _ = reference_run(nb, ["y"], ref_dir)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    assert shown(result) == shown(ref_nb)
    texts = "".join(o.get("text", "") for o in result.cells[1].outputs)
    assert "noisy: imported" in texts and "noisy: a warning at import" in texts


def test_unseeded_steps_draw_different_numbers(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(
        [
            "#| step: root\nimport numpy as np\nimport random\nx = 1",
            "#| step: one\nimport numpy as np\nimport random\n"
            "a = np.random.rand(4).tolist()\nra = random.random()\nxa = x",
            "#| step: two\nimport numpy as np\nimport random\n"
            "b = np.random.rand(4).tolist()\nrb = random.random()\nxb = x",
            "#| step: last\nprint(a, b, ra, rb)",
        ]
    )
    work = tmp_path / "w"
    proc = jup2kub("run", nb, "--workdir", work, cwd=tmp_path, env=workers_env("fork"))
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (work / "runs").iterdir()
    store = StateStore(work)
    a, b = store.load_value(run_dir.name, "one", "a"), store.load_value(run_dir.name, "two", "b")
    assert a != b
    ra = store.load_value(run_dir.name, "one", "ra")
    assert ra != store.load_value(run_dir.name, "two", "rb")


def test_a_step_sees_the_same_process_either_way(tmp_path: Path, make_notebook: MakeNb) -> None:
    site = tmp_path / "site"
    (site / "noisypkg").mkdir(parents=True)
    (site / "noisypkg" / "__init__.py").write_text(NOISY)
    nb = make_notebook(
        [
            "#| step: first\nimport time\ntime.sleep(0.5)\nx = 1",
            # spawned, it starts ahead (--wait) while 'first' runs: it imports ahead too
            "#| step: a\nimport noisypkg, os, sys\ny = x\n"
            "print(os.path.basename(sys.argv[0]), sys.argv[1:9:2])\n"
            "print(sorted(k for k in os.environ if k.startswith('J2K_')))",
        ]
    )
    shown_by: dict[str, object] = {}
    (tmp_path / "run").mkdir()  # noisypkg lies outside: imported ahead, found noisy, skipped
    nb = nb.rename(tmp_path / "run" / nb.name)
    for mode in MODES:
        env = workers_env(
            mode, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
        )
        proc = jup2kub("run", nb, "--workdir", tmp_path / mode, cwd=tmp_path / "run", env=env)
        assert proc.returncode == 0, proc.stderr
        (run_dir,) = (tmp_path / mode / "runs").iterdir()
        result = nbformat.read(run_dir / "result.ipynb", as_version=4)
        shown_by[mode] = shown(result)
    assert shown_by["fork"] == shown_by["spawn"]
    assert "step_run.py" in str(shown_by["fork"])

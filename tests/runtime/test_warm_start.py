"""Imports done ahead (``preimport``) and the fork server (``forkserver``): only quiet imports of
installed modules are done ahead, a noisy one restarts the server without it, and each child
is a step process with step_run's exit codes."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jup2kub_runtime import FORK_SERVER_MODULE
from jup2kub_runtime.contract.spec import Cell, ReplayCell, StepSpec
from jup2kub_runtime.execution import local_modules, preimport
from jup2kub_runtime.storage.state_store import StateStore
from tests.support.runtime_harness import RUNTIME_DIR


def test_imports_in_finds_top_level_absolute_imports() -> None:
    source = (
        "import os, numpy.linalg as la\nfrom pandas.io import json\nfrom . import local\n"
        "try:\n    import scipy\nexcept ImportError:\n    pass\n"
        "def f():\n    import never\nclass K:\n    import nor\n%matplotlib inline\n"
    )
    assert preimport.imports_in(source) == []  # the magic: not Python, the cell reports it
    assert preimport.imports_in(source.replace("%matplotlib inline\n", "")) == [
        "os",
        "numpy.linalg",
        "pandas.io",
        "scipy",
    ]


def test_modules_needed_reads_parameters_replay_and_cells() -> None:
    spec = StepSpec(
        pipeline="p",
        step="s",
        cells=[Cell(3, "import json\nimport csv")],
        parameters_source="import math\nn = 1",
        replay=[ReplayCell(1, "import json\ndef f(): pass")],
    )
    assert preimport.modules_needed([spec]) == ["math", "json", "csv"]


def test_a_submodule_taken_by_a_from_import_is_imported_ahead() -> None:
    """``from scipy import stats`` costs the import of ``scipy.stats``, not of ``scipy``: the
    submodule is a module to import ahead, a function or class taken from a module is not."""
    source = (
        "from email import mime, message_from_string\nfrom json import decoder\n"
        "from collections import OrderedDict\nfrom os import path\nfrom json import *\n"
    )
    spec = StepSpec(pipeline="p", step="s", cells=[Cell(0, source)])
    assert preimport.modules_needed([spec]) == [
        "email",
        "json",
        "collections",
        "os",
        "email.mime",
        "json.decoder",
    ]
    assert preimport.is_submodule("json.decoder") and not preimport.is_submodule("json")
    assert not preimport.is_submodule("j2k_no_such_package.sub")


def test_only_modules_outside_the_notebooks_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "j2k_local_mod.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not preimport.outside("j2k_local_mod", [tmp_path])
    assert preimport.outside("j2k_local_mod", [tmp_path / "elsewhere"])
    assert preimport.outside("json", [tmp_path])
    assert preimport.outside("cloudpickle.cloudpickle", [Path(sys.prefix)])  # installed
    assert not preimport.outside("j2k_no_such_module", [])


def test_a_local_module_off_sys_path_or_shadowing_an_installed_one_is_not_imported_ahead(
    tmp_path: Path,
) -> None:
    """A cell's import finds the working directory's modules first, whatever ``sys.path``
    holds in the warm process (issue 28, item 3)."""
    assert str(tmp_path) not in sys.path
    (tmp_path / "j2k_off_path_mod.py").write_text("x = 1\n")
    (tmp_path / "json.py").write_text("shadow = True\n")  # a notebook's own json.py
    (tmp_path / "cloudpickle").mkdir()
    (tmp_path / "cloudpickle" / "__init__.py").write_text("")
    for name in ("j2k_off_path_mod", "json", "cloudpickle.cloudpickle"):
        assert not preimport.outside(name, [tmp_path]), name
    spec = StepSpec(pipeline="p", step="s", cells=[Cell(0, "import json, csv, j2k_off_path_mod")])
    assert preimport.candidates([spec], [tmp_path]) == ["csv"]


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for probe modules; what they change is put back afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    root = logging.getLogger()
    handlers, level, filters = list(root.handlers), root.level, list(warnings.filters)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("j2k_probe_"):
            del sys.modules[name]
    root.handlers[:], warnings.filters[:] = handlers, filters  # type: ignore[index]
    root.setLevel(level)


@pytest.mark.parametrize(
    ("code", "quiet"),
    [
        ("x = 1\n", True),
        ("print('hello')\n", False),
        ("import sys\nsys.stderr.write('psst')\n", False),
        ("import warnings\nwarnings.warn('w', UserWarning)\n", False),
        # ignored by the default filters, but a cell may have changed them: not quiet
        ("import warnings\nwarnings.warn('d', DeprecationWarning)\n", False),
        ("raise ImportError('broken')\n", False),
        ("import random\nrandom.random()\n", False),
        ("import threading, time\nthreading.Thread(target=time.sleep, args=(1,)).start()\n", False),
        # settings the cells before the import would see changed
        ("import logging\nlogging.getLogger().addHandler(logging.NullHandler())\n", False),
        ("import logging\nlogging.getLogger().setLevel(logging.DEBUG)\n", False),
        ("import sys\nsys.path.append('/j2k-nowhere')\n", False),
        ("import warnings\nwarnings.showwarning = print\n", False),
    ],
)
def test_import_quietly(code: str, quiet: bool, modules: Path) -> None:
    name = f"j2k_probe_{abs(hash(code))}"
    (modules / f"{name}.py").write_text(code)
    assert preimport.import_quietly(name) is quiet


@pytest.mark.parametrize("draws_matter", [True, False])
def test_a_draw_at_import_matters_only_when_the_notebook_seeds(
    draws_matter: bool, modules: Path
) -> None:
    """scikit-learn's ``sklearn.tree`` draws from ``random`` at import: in a notebook that never
    seeds a global generator that draw is unobservable, so the module is imported ahead."""
    name = f"j2k_probe_draws_{draws_matter}"
    (modules / f"{name}.py").write_text("import random\nrandom.random()\n")
    assert preimport.import_quietly(name, draws_matter=draws_matter) is not draws_matter


def test_a_change_to_matplotlibs_settings_is_not_quiet(modules: Path) -> None:
    import matplotlib

    (modules / "j2k_probe_style.py").write_text(
        "import matplotlib\nmatplotlib.rcParams['lines.linewidth'] = 7\n"
    )
    saved = dict(matplotlib.rcParams)
    try:
        assert not preimport.import_quietly("j2k_probe_style")
    finally:
        matplotlib.rcParams.update(saved)
    spec = StepSpec(pipeline="p", step="s", cells=[Cell(1, "import json, matplotlib.pyplot")])
    assert preimport.candidates([spec], [])[0] == "matplotlib.pyplot"  # first: changes show


def test_the_warning_filters_a_module_installs_stay(modules: Path) -> None:
    (modules / "j2k_probe_filters.py").write_text(
        "import warnings\nwarnings.filterwarnings('ignore', message='j2k-probe')\n"
    )
    assert preimport.import_quietly("j2k_probe_filters")
    assert any(f[1] is not None and f[1].pattern == "j2k-probe" for f in warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("j2k-probe", UserWarning, stacklevel=1)
    assert caught == []  # as after a cell's import: ignored


def test_first_noisy_stops_at_the_first_noisy_module(modules: Path) -> None:
    (modules / "j2k_probe_a.py").write_text("a = 1\n")
    (modules / "j2k_probe_b.py").write_text("print('b')\n")
    (modules / "j2k_probe_c.py").write_text("c = 1\n")
    assert preimport.first_noisy(["j2k_probe_a", "j2k_probe_b", "j2k_probe_c"]) == "j2k_probe_b"
    assert "j2k_probe_a" in sys.modules and "j2k_probe_c" not in sys.modules


class _Server:
    """A fork server process and its JSON-lines protocol."""

    def __init__(self, spec: Path, cwd: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                FORK_SERVER_MODULE,
                "--parent",
                str(os.getpid()),
                "--spec",
                str(spec),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=cwd,
            env=env,
        )
        self.buffer = b""

    def send(self, **request: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()

    def event(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.proc.stdout], [], [], 120)
            assert ready, "no event from the fork server"
            data = os.read(self.proc.stdout.fileno(), 4096)
            assert data, "the fork server ended"
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        return event

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.stdin = None
        return self.proc.wait(timeout=60)


def test_fork_server_runs_steps_with_step_runs_exit_codes(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "j2k_noisy.py").write_text("print('noisy at import')\nVALUE = 2\n")
    (site / "j2k_quiet.py").write_text("VALUE = 3\n")
    source = "import j2k_quiet\nimport j2k_noisy\nimport os, pathlib, sys, time\n"
    spec = StepSpec(
        pipeline="p",
        step="s",
        cells=[
            Cell(
                1,
                source + "pathlib.Path(f'pid-{os.getpid()}').touch()\nif mode == 'sleep':\n"
                "    time.sleep(600)\nif mode == 'fail':\n    raise ValueError('no')\n"
                "print('shown', j2k_noisy.VALUE + j2k_quiet.VALUE)",
            ),
        ],
        parameters_source="mode = 'ok'\n",
        parameters=["mode"],
    )
    spec.dump(tmp_path / "bundle")
    state = tmp_path / "state"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(RUNTIME_DIR), str(site)])}
    cwd = tmp_path / "work"  # the modules on PYTHONPATH lie outside it
    cwd.mkdir()
    server = _Server(tmp_path / "bundle", cwd, env)
    try:
        common = {"spec": str(tmp_path / "bundle"), "state": str(state)}
        server.send(id="ok", run_id="r1", params='{"mode": "ok"}', **common)
        started = server.event()
        assert started["event"] == "started" and started["id"] == "ok"
        assert server.event() == {"event": "exited", "id": "ok", "pid": started["pid"], "code": 0}
        outputs = StateStore(state).outputs("r1", "s")
        text = "".join(o.get("text", "") for o in outputs["cells"][0]["outputs"])
        assert text == "noisy at import\nshown 5\n"  # the import's output: in its cell
        environ = Path(f"/proc/{server.proc.pid}/environ").read_bytes().split(b"\0")
        assert b"J2K_PREIMPORT_SKIP=j2k_noisy" in environ  # restarted without it

        err = tmp_path / "fail.err"
        server.send(id="fail", run_id="r2", params='{"mode": "fail"}', stderr=str(err), **common)
        assert server.event()["event"] == "started"
        assert server.event()["code"] == 1
        assert json.loads(err.read_text().splitlines()[-1])["error"]["ename"] == "ValueError"

        server.send(id="bad", run_id="../x", **common)
        server.event()
        assert server.event()["code"] == 2

        server.send(id="killed", run_id="r3", params='{"mode": "sleep"}', **common)
        pid = server.event()["pid"]
        while not (cwd / f"pid-{pid}").exists():
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        assert server.event() == {"event": "exited", "id": "killed", "pid": pid, "code": -9}

        server.send(id="left", run_id="r4", params='{"mode": "sleep"}', **common)
        pid = server.event()["pid"]
        while not (cwd / f"pid-{pid}").exists():
            time.sleep(0.05)
        assert server.close() == 0  # end of input: the running child is killed and reported
        assert server.event() == {"event": "exited", "id": "left", "pid": pid, "code": -9}
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.proc.communicate()


def test_a_step_process_is_ready_only_once_warmed_up(
    tmp_path: Path, modules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jup2kub_runtime.contract.config import Config
    from jup2kub_runtime.serving.health import Health
    from jup2kub_runtime.serving.loop import StepLoop
    from tests.runtime.test_loop_commits import ENV, FakeTransport

    (modules / "j2k_probe_warm.py").write_text("VALUE = 1\n")
    work = tmp_path / "work"  # the module lies outside the working directory
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = Config.from_env({**ENV, "J2K_STATE_PATH": str(tmp_path / "state")})
    spec = StepSpec(pipeline="p", step="s", cells=[Cell(1, "import j2k_probe_warm\nx = 1")])
    health = Health("p", "s", 60.0, lambda: True)
    loop = StepLoop(cfg, spec, StateStore(tmp_path / "state"), FakeTransport(), health)  # type: ignore[arg-type]
    assert health.readiness()["warmed_up"] is False
    loop._warm_up()
    assert health.readiness()["warmed_up"] is True
    assert "j2k_probe_warm" in sys.modules  # imported ahead: the first run does not pay it


def test_a_kafka_step_process_restarts_without_a_noisy_import(tmp_path: Path, broker: Any) -> None:
    from tests.support.runtime_harness import Pipeline, unique

    site = tmp_path / "site"
    site.mkdir()
    (site / "j2k_noisy_k.py").write_text("print('noisy at import')\nVALUE = 2\n")
    (site / "j2k_quiet_k.py").write_text("VALUE = 3\n")
    spec = StepSpec(
        pipeline=unique("warm"),
        step="only",
        cells=[Cell(1, "import j2k_quiet_k\nimport j2k_noisy_k\nprint(j2k_noisy_k.VALUE)")],
    )
    path = os.pathsep.join([str(RUNTIME_DIR), str(site)])
    p = Pipeline(tmp_path, broker.bootstrap, [spec], step_env={"only": {"PYTHONPATH": path}})
    p.start()
    try:
        p.wait_ready()
        status, body = p.proc("only").get("/readiness")
        assert status == 200 and isinstance(body, dict) and body["warmed_up"] is True
        p.submit("r1")
        p.wait_complete(["r1"])
        outputs = p.store.outputs("r1", "only")
        text = "".join(o.get("text", "") for o in outputs["cells"][0]["outputs"])
        assert text == "noisy at import\n2\n"  # the import's output: in its cell
        assert "restarting without importing j2k_noisy_k ahead" in p.proc("only").log_text()
    finally:
        p.stop()


def test_unpickled_transforms_know_their_parents_by_this_process_ids() -> None:
    """Steps forked from one server allocate alike, so a handed-on figure's stale parent ids
    (matplotlib keeps the pickling process') collided with new transforms: text drawn off by
    savefig's DPI change (corpus visits_seaborn_markers, now and then)."""
    import gc
    import pickle

    import matplotlib.pyplot as plt
    from matplotlib.transforms import TransformNode

    import jup2kub_runtime.execution.cell_runner  # noqa: F401 - rekeys matplotlib's transforms

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    copy = pickle.loads(pickle.dumps(fig))  # the original stays alive: its ids stay taken
    nodes = [o for o in gc.get_objects() if isinstance(o, TransformNode)]
    checked = 0
    for node in nodes:
        for key, ref in node._parents.items():
            parent = ref()
            if parent is not None:
                assert key == id(parent)
                checked += 1
    assert checked > 0
    plt.close(fig)
    plt.close(copy)


def test_each_execution_imports_the_working_directory_s_modules_afresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-lived step process serves many runs: a module the notebook wrote (and may write
    again differently) is found in the working directory, as ``""`` on a kernel's sys.path
    finds it, and is not kept for the next execution (issue 28, item 3)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    seen = []
    for value in (1, 2):
        (tmp_path / "j2k_written_mod.py").write_text(f"VALUE = {value}\n")
        with local_modules.importable_here():
            import j2k_written_mod  # type: ignore[import-not-found]

            seen.append(j2k_written_mod.VALUE)
            import csv  # noqa: F401  (installed: kept)
        assert "j2k_written_mod" not in sys.modules and "" not in sys.path
    assert seen == [1, 2]
    assert "csv" in sys.modules

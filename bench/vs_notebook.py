"""Issue 14's benchmarks: ``jup2kub run`` against the notebook it replaces, as a user pays it.

- corpus: each notebook of the real-notebook corpus (tests/corpus/pypi, tests/corpus/realworld;
  those tests/corpus/expectations.yaml expects refused are skipped) run by ``jup2kub run``
  (embedded, default split) and top to bottom by nbclient, both as a fresh command (Python's
  start, the imports and the kernel's start included), from the same kind of fresh working
  directory (the corpus data files beside it, as tests/test_corpus.py runs them), interleaved;
- memory: the same commands, sampling the summed PSS of the command's whole process tree
  (``/proc/PID/smaps_rollup``, every ~50 ms; PSS because RSS would count the pages forked
  workers share once per worker), in runs of their own so the sampling costs no timed run;
- linear150: a generated chain of 150 code cells, no explicit steps (automatic split);
- overhead: a chain of explicit steps that each only read the previous step's small value;
  each step's seconds from scheduled to done as the executor records them (summary.json).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import yaml
from nbformat import v4

from bench.stats import pct, summary

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus"
FOLDERS = ("pypi", "realworld")
#: ``--quick``: a few corpus notebooks of different kinds (markers, tags, headings, cells)
QUICK = (
    "pypi/nbclient_factorials.ipynb",
    "realworld/models_step_tags.ipynb",
    "realworld/survey_random_cells.ipynb",
)
SAMPLE_EVERY = 0.05  # seconds between memory samples

#: the nbclient side: what tests/support/equivalence.py's reference does, as its own command
#: (a fresh kernel, the working directory as the notebook's path), writing the executed notebook
#: like ``jup2kub run`` writes its results notebook
NBCLIENT = (
    "import os, sys, nbformat\n"
    "from nbclient import NotebookClient\n"
    "nb = nbformat.read(sys.argv[1], as_version=4)\n"
    "NotebookClient(nb, timeout=600, kernel_name='python3',\n"
    "               resources={'metadata': {'path': os.getcwd()}}).execute()\n"
    "nbformat.write(nb, sys.argv[2])\n"
)


# ------------------------------------------------------------------------ process memory


def parse_pss(text: str) -> int | None:
    """The ``Pss:`` figure (kB) of a ``/proc/PID/smaps_rollup`` text, None if absent."""
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def parse_stat(text: str) -> tuple[int, int]:
    """(parent pid, session id) from a ``/proc/PID/stat`` text. The command name, in
    parentheses, may hold spaces and parentheses itself: the fields follow its last ')'."""
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[3])


def tree(root: int, procs: Mapping[int, tuple[int, int]]) -> set[int]:
    """``root`` and its descendants (by parent pid), plus every process of the session ``root``
    leads (``measure`` starts each command in its own session) and their descendants: a process
    re-parented after its parent ended still belongs to the command if it stayed in the
    session, and a kernel that starts a session of its own is still a descendant."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found = {root} | {pid for pid, (_, sid) in procs.items() if sid == root}
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def zombie(text: str) -> bool:
    """Whether a ``/proc/PID/stat`` text is a zombie's (ended, not yet reaped: no memory)."""
    return text[text.rindex(")") + 2 :].startswith("Z")


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, session id) of the live processes (zombies left out)."""
    procs: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = Path(entry.path, "stat").read_text()
                if not zombie(text):
                    procs[int(entry.name)] = parse_stat(text)
    return procs


def pss_kib(pids: Iterable[int]) -> int:
    """The summed PSS (KiB) of ``pids`` now (a process that ends while being read counts 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += parse_pss(Path(f"/proc/{pid}/smaps_rollup").read_text()) or 0
    return total


def tree_pss_kib(root: int) -> int:
    """The summed PSS (KiB) of ``root``'s process tree now."""
    return pss_kib(tree(root, _processes()))


def leftovers(root: int, seen: Iterable[int] = (), grace: float = 1.0) -> list[int]:
    """The processes of an ended command still alive after ``grace`` seconds: in its session,
    or ever seen in its tree. A command whose processes outlive it would not be measured
    fairly (their start or memory would escape the figures)."""
    known = set(seen) - {root}
    deadline = time.monotonic() + grace
    while True:
        left = sorted(p for p, (_, sid) in _processes().items() if sid == root or p in known)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


class PeakSampler(threading.Thread):
    """Samples a process tree's PSS every ``SAMPLE_EVERY`` s until stopped; keeps the peak."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak_kib = 0
        self.samples = 0
        self.seen: set[int] = set()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            pids = tree(self.root, _processes())
            self.seen |= pids
            self.peak_kib = max(self.peak_kib, pss_kib(pids))
            self.samples += 1
            self.halt.wait(SAMPLE_EVERY)

    def stop(self) -> None:
        self.halt.set()
        self.join()


# ------------------------------------------------------------------------------ commands


@dataclass
class Sample:
    """One command: its wall seconds, its tree's peak PSS (memory runs) and how it ended."""

    seconds: float
    returncode: int
    peak_kib: int | None = None
    samples: int = 0
    stderr: str = ""
    leftover: int = 0  # processes of the command alive after it ended


def user_env() -> dict[str, str]:
    """The environment a user's shell gives both commands: importing the runtime in this
    process sets MPLBACKEND, which would turn the nbclient kernel's inline figures off."""
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    return env


def measure(cmd: Sequence[str], cwd: Path, *, memory: bool = False) -> Sample:
    """Run ``cmd`` in ``cwd`` as a fresh command in its own session; its wall seconds (and,
    with ``memory``, its process tree's peak PSS), and how many of its processes outlived it
    (left running: only counted)."""
    with tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=user_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        sampler = PeakSampler(proc.pid) if memory else None
        if sampler is not None:
            sampler.start()
        try:
            code = proc.wait(timeout=900)
            seconds = time.perf_counter() - t
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if sampler is not None:
                sampler.stop()
        left = leftovers(proc.pid, sampler.seen if sampler else ())
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return Sample(
        seconds,
        code,
        sampler.peak_kib if sampler else None,
        sampler.samples if sampler else 0,
        stderr[-2000:] if code else "",
        len(left),
    )


def nbclient_cmd(notebook: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", NBCLIENT, str(notebook), str(out)]


def jup2kub_cmd(notebook: Path, workdir: Path) -> list[str]:
    return [sys.executable, "-m", "jup2kub.cli", "run", str(notebook), "--workdir", str(workdir)]


def fresh_dir(path: Path, data: bool) -> Path:
    """A working directory as a user has it: the corpus data files beside the notebook."""
    path.mkdir(parents=True)
    if data:
        shutil.copytree(CORPUS / "data", path / "data")
    return path


def side_by_side(
    notebooks: Mapping[str, Path],
    repeat: int,
    work: Path,
    *,
    memory: bool = False,
    data: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, list[Sample]]]:
    """Each notebook by nbclient and by ``jup2kub run``, ``repeat`` times, interleaved (which
    goes first alternates), each run in a fresh working directory."""
    res: dict[str, dict[str, list[Sample]]] = {
        n: {"nbclient": [], "jup2kub": []} for n in notebooks
    }
    k = 0
    for rep in range(repeat):
        for i, (name, path) in enumerate(notebooks.items()):
            sides = ["nbclient", "jup2kub"]
            if (rep + i) % 2:
                sides.reverse()
            for side in sides:
                k += 1
                base = work / f"{k}"
                cwd = fresh_dir(base / "cwd", data)
                cmd = (
                    nbclient_cmd(path, base / "executed.ipynb")
                    if side == "nbclient"
                    else jup2kub_cmd(path, base / "work")
                )
                s = measure(cmd, cwd, memory=memory)
                res[name][side].append(s)
                if log:
                    log(f"{name} {side}: {s.seconds:.2f} s" + (f", {s.peak_kib} KiB" * memory))
                shutil.rmtree(base, ignore_errors=True)
    return res


# ---------------------------------------------------------------------------- the tables


def ratio_row(name: str, base: Sequence[float], pipe: Sequence[float]) -> dict[str, Any]:
    """One notebook: medians of both sides, ratio pipeline / notebook and its range (fastest
    pipeline over slowest notebook .. slowest pipeline over fastest notebook)."""
    mb, mp = statistics.median(base), statistics.median(pipe)
    return {
        "notebook": name,
        "nbclient": summary(base),
        "jup2kub": summary(pipe),
        "nbclient_samples": [round(x, 4) for x in base],
        "jup2kub_samples": [round(x, 4) for x in pipe],
        "ratio": round(mp / mb, 3),
        "ratio_range": [round(min(pipe) / max(base), 3), round(max(pipe) / min(base), 3)],
    }


def ratio_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Across notebooks: median ratio, quartiles, and the largest one (which notebook)."""
    ratios = [r["ratio"] for r in rows]
    top = max(rows, key=lambda r: r["ratio"])
    return {
        "n": len(ratios),
        "median": round(statistics.median(ratios), 3),
        "p25": pct(ratios, 0.25),
        "p75": pct(ratios, 0.75),
        "max": top["ratio"],
        "max_notebook": top["notebook"],
        "max_range": top["ratio_range"],
    }


def table(
    res: Mapping[str, Mapping[str, Sequence[Sample]]],
    value: Callable[[Sample], float | None],
    fails: Iterable[str] = (),
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Ratio rows of the notebooks where every run of both sides ended as expected (exit 0;
    exit 1 for those in ``fails``), and the others (notebook -> the last lines of the
    unexpected command's stderr)."""
    rows, failed = [], {}
    failing = set(fails)
    for name, sides in res.items():
        want = 1 if name in failing else 0
        bad = [s for side in sides.values() for s in side if s.returncode != want]
        left = max((s.leftover for side in sides.values() for s in side), default=0)
        if left:
            failed[name] = f"{left} process(es) outlived the command"
            continue
        if bad:
            lines = bad[0].stderr.strip().splitlines()
            failed[name] = f"exit code {bad[0].returncode}" + (f": {lines[-1]}" if lines else "")
            continue
        base = [value(s) for s in sides["nbclient"]]
        pipe = [value(s) for s in sides["jup2kub"]]
        if None in base or None in pipe or not all(base):
            failed[name] = "not measured"
            continue
        rows.append(ratio_row(name, base, pipe))  # type: ignore[arg-type]
    return rows, failed


# ----------------------------------------------------------------------------- notebooks


def corpus_notebooks(quick: bool = False) -> dict[str, Path]:
    """The corpus notebooks that run: expected "equal", or to fail as nbclient fails (both
    sides stop at the failing cell); name -> path (quick: ``QUICK``). Refused ones never
    start."""
    expected = yaml.safe_load((CORPUS / "expectations.yaml").read_text())
    names = sorted(
        str(p.relative_to(CORPUS)) for f in FOLDERS for p in (CORPUS / f).glob("*.ipynb")
    )
    names = [n for n in names if n in expected and "refused" not in expected[n]]
    return {n: CORPUS / n for n in names if not quick or n in QUICK}


def failing_notebooks() -> set[str]:
    """The corpus notebooks expected to fail (exit 1 on both sides, as nbclient fails)."""
    expected = yaml.safe_load((CORPUS / "expectations.yaml").read_text())
    return {n for n, e in expected.items() if isinstance(e, dict) and "fails" in e}


def _new_notebook(sources: Iterable[str]) -> nbformat.NotebookNode:
    nb = v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    for i, src in enumerate(sources):
        cell = v4.new_code_cell(src)
        cell["id"] = f"cell-{i}"
        nb.cells.append(cell)
    return nb


def linear_notebook(cells: int = 150) -> nbformat.NotebookNode:
    """``cells`` code cells, each using the previous cell's value (light work), no tags,
    markers or headings: the automatic split decides the steps."""
    sources = ["values0 = list(range(1000))"]
    for i in range(1, cells - 1):
        sources.append(f"values{i} = [(v * 3 + {i}) % 1009 for v in values{i - 1}]")
    sources.append(f"print(sum(values{cells - 2}))")
    return _new_notebook(sources)


def chain_notebook(steps: int) -> nbformat.NotebookNode:
    """``steps`` explicit steps (``#| step:`` markers) that each only read the previous step's
    small value and store their own: steps that cost nothing but being steps."""
    sources = ["#| step: s0\nv0 = 0"]
    sources += [f"#| step: s{i}\nv{i} = v{i - 1} + 1" for i in range(1, steps - 1)]
    sources.append(f"#| step: s{steps - 1}\nprint(v{steps - 2})")
    return _new_notebook(sources)


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    path.write_text(nbformat.writes(nb))
    return path


# ---------------------------------------------------------------------------- step timing


def step_seconds(summary_doc: Mapping[str, Any], skip: Iterable[str] = ()) -> list[float]:
    """Each step's seconds (scheduled -> done, as the executor saw it) from a summary.json."""
    left_out = set(skip)
    return [
        float(s["seconds"])
        for name, s in summary_doc["steps"].items()
        if name not in left_out and s.get("seconds") is not None and not s.get("reused")
    ]


def _chain_run(path: Path, base: Path) -> tuple[float, dict[str, Any]]:
    """One embedded run of a chain notebook: its wall seconds and its summary.json."""
    cwd = fresh_dir(base / "cwd", data=False)
    s = measure(jup2kub_cmd(path, base / "work"), cwd)
    if s.returncode or s.leftover:
        raise RuntimeError(
            f"jup2kub run of {path.name} failed (exit code {s.returncode}, {s.leftover} "
            f"process(es) left): {s.stderr}"
        )
    (doc_path,) = (base / "work" / "runs").glob("*/summary.json")
    doc = json.loads(doc_path.read_text())
    shutil.rmtree(base, ignore_errors=True)
    return s.seconds, doc


def marginal(long_walls: Sequence[float], short_walls: Sequence[float], extra: int) -> float:
    """Wall seconds per added step: the median run of the long chain minus the short one's,
    over the ``extra`` steps it has more."""
    return (statistics.median(long_walls) - statistics.median(short_walls)) / extra


def overhead(steps: int, repeat: int, work: Path) -> dict[str, Any]:
    """``repeat`` embedded runs of a ``steps``-step chain: every step's seconds but the first
    (it has no input to load) as the executor recorded them, and each whole run's wall; runs
    of a 2-step chain, interleaved, give the wall each added step costs, by timestamps only."""
    work.mkdir(parents=True, exist_ok=True)
    long = write(chain_notebook(steps), work / "chain.ipynb")
    short = write(chain_notebook(2), work / "chain2.ipynb")
    seconds: list[float] = []
    walls: list[float] = []
    short_walls: list[float] = []
    for k in range(repeat):
        wall, doc = _chain_run(long, work / f"long-{k}")
        seconds += step_seconds(doc, skip=["s0"])
        walls.append(wall)
        short_walls.append(_chain_run(short, work / f"short-{k}")[0])
    return {
        "steps": steps,
        "step_s": summary(seconds),
        "p90_s": round(pct(seconds, 0.9), 4),
        "samples_s": [round(x, 4) for x in seconds],
        "run_wall_s": summary(walls),
        "run_wall_2_steps_s": summary(short_walls),
        "marginal_step_s": round(marginal(walls, short_walls, steps - 2), 4),
    }

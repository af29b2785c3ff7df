"""The step cache in ``jup2kub run``: each invalidation reason re-executes exactly the affected
steps, reused results equal executed ones (values, outputs, files), a damaged entry is
detected and recomputed, concurrent runs sharing a cache leave it whole, and ``--resume``
honours edits and new parameters."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

from jup2kub.api import inspect_notebook
from jup2kub_runtime.storage.state_store import StateStore
from jup2kub_runtime.storage.stepcache import CacheStore
from tests.support.cli_runner import CORPUS, jup2kub
from tests.support.equivalence import same, shown
from tests.support.notebooks import build_notebook

MakeNb = Callable[..., Path]
CLI = [sys.executable, "-m", "jup2kub.cli"]

PARAMS = ("code", "scale = 2\nlabel = 'x'", ["parameters"])
#: six steps: load -> (left, right) -> join -> (write, show); left reads scale, show label
CELLS: list[Any] = [
    PARAMS,
    "#| step: load\nrows = [line.split(',') for line in open('data.csv').read().split()]",
    "#| step: left\nleft = sum(int(r[0]) for r in rows) * scale",
    "#| step: right\nright = max(int(r[1]) for r in rows)\nprint('right', right)",
    "#| step: join\ntotal = left + right\nprint('total', total)",
    "#| step: write\nwith open('out.txt', 'w') as fh:\n    fh.write(str(total))",
    "#| step: show\nprint(label, total)",
]
STEPS = {"load", "left", "right", "join", "write", "show"}


class Runs:
    """Runs of one notebook in one workdir, read back through their summaries."""

    def __init__(self, home: Path, nb: Path, *extra: str | Path) -> None:
        self.home, self.nb, self.extra = home, nb, extra

    def run(self, *args: str | Path, env: dict[str, str] | None = None) -> dict[str, Any]:
        proc = jup2kub(
            "run", self.nb, "--workdir", self.home / "w", *self.extra, *args, cwd=self.home, env=env
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
        summary = json.loads((self.home / "w" / "runs" / run_id / "summary.json").read_text())
        summary["stdout"] = proc.stdout
        return dict(summary)

    def edit(self, cells: list[Any]) -> None:
        self.nb.write_text(nbformat.writes(build_notebook(cells)))


def executed(summary: dict[str, Any]) -> set[str]:
    return set(summary["executed"])


def reason(summary: dict[str, Any], step: str) -> str:
    return str(summary["steps"][step]["cache"]["reason"])


def outputs(summary: dict[str, Any]) -> dict[int, list[tuple[str, str]]]:
    return shown(nbformat.read(summary["result_notebook"], as_version=4))


def _six(tmp_path: Path) -> Runs:
    (tmp_path / "data.csv").write_text("1,5\n2,7\n")
    nb = tmp_path / "six.ipynb"
    runs = Runs(tmp_path, nb)
    runs.edit(CELLS)
    return runs


def test_every_invalidation_reason_reexecutes_exactly_the_affected_steps(tmp_path: Path) -> None:
    runs = _six(tmp_path)
    first = runs.run()
    assert executed(first) == STEPS and first["reused"] == []
    assert Path(first["notebook"]).is_absolute() and Path(first["result_notebook"]).is_absolute()
    assert all(Path(s["outputs"]).is_absolute() for s in first["steps"].values())
    assert {reason(first, s) for s in STEPS} == {"not in the cache"}

    again = runs.run()
    assert executed(again) == set() and set(again["reused"]) == STEPS
    assert outputs(again) == outputs(first)  # reused outputs are what executing printed
    assert "reused   join: unchanged" in again["stdout"]
    result = nbformat.read(again["result_notebook"], as_version=4)
    assert result.cells[4].metadata["jup2kub"]["step"] == "join"
    assert set(result.metadata["jup2kub"]["reused"]) == STEPS

    cells = list(CELLS)
    cells[4] = "#| step: join\n# a comment and blank lines do not count\n\ntotal = left+right\n"
    cells[4] += "print('total',  total)"
    runs.edit(cells)
    assert executed(runs.run()) == set()

    cells[6] = "#| step: show\nprint(label, total, 'now')"
    runs.edit(cells)
    changed = runs.run()
    assert executed(changed) == {"show"} and reason(changed, "show") == "code changed"

    scaled = runs.run("-p", "scale", "3")
    assert executed(scaled) == {"left", "join", "write", "show"}
    assert reason(scaled, "left") == "parameter changed: scale"
    assert reason(scaled, "join") == "input changed: left"
    assert (tmp_path / "out.txt").read_text() == str(3 * 3 + 7)

    labelled = runs.run("-p", "scale", "3", "-p", "label", "y")
    assert executed(labelled) == {"show"}
    assert reason(labelled, "show") == "parameter changed: label"

    (tmp_path / "data.csv").write_text("1,5\n2,9\n")
    data = runs.run("-p", "scale", "3", "-p", "label", "y")
    assert executed(data) == STEPS - {"show"} | {"show"}
    assert reason(data, "load") == "file changed: data.csv"

    other_env = runs.run("-p", "scale", "3", "-p", "label", "y", env=_env(J2K_IMAGE_DIGEST="x"))
    assert executed(other_env) == STEPS
    assert {reason(other_env, s).split(";")[0] for s in STEPS} == {"environment changed"}

    forced = runs.run("--no-cache")
    assert executed(forced) == STEPS
    assert reason(forced, "load") == "cache off (--no-cache)"


def test_a_reused_step_restores_the_files_it_wrote(tmp_path: Path) -> None:
    runs = _six(tmp_path)
    runs.run()
    (tmp_path / "out.txt").unlink()
    again = runs.run()
    assert "write" in again["reused"]
    assert (tmp_path / "out.txt").read_text() == "13"


def test_a_step_that_is_not_cacheable_executes_every_time(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    nb = make_notebook(
        [
            "#| step: clock\nimport time\nstarted = time.time() > 0",
            "#| step: after\nprint('after', started)",
        ]
    )
    runs = Runs(tmp_path, nb)
    runs.run()
    again = runs.run()
    assert executed(again) == {"clock"}
    assert reason(again, "clock") == "not cacheable: reads the clock (time.time)"
    # its stored outputs are the same: the step after it is keyed on them and reused
    assert again["reused"] == ["after"]
    out = inspect_json(nb, tmp_path)
    assert out["clock"]["cacheable"] is False and out["after"]["cacheable"] is True
    text = jup2kub("inspect", nb, cwd=tmp_path).stdout
    assert "  cache:      not cacheable: reads the clock (time.time)" in text
    assert "  cache:      cacheable" in text


def inspect_json(nb: Path, cwd: Path) -> dict[str, Any]:
    proc = jup2kub("inspect", nb, "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return {s["name"]: s["cache"] for s in json.loads(proc.stdout)["steps"]}


def test_a_damaged_entry_is_detected_and_recomputed(tmp_path: Path) -> None:
    runs = _six(tmp_path)
    first = runs.run()
    store = CacheStore(tmp_path / "w" / "cache")
    key = first["steps"]["right"]["cache"]["key"]
    value = store.entry_dir(key) / "step" / "values" / "right.pkl"
    value.unlink()  # a hard link to the run's file: replaced, not written through
    value.write_bytes(b"not a pickle")
    key_load = first["steps"]["load"]["cache"]["key"]
    entry = store.entry_dir(key_load) / "entry.json"
    entry.write_text(entry.read_text().replace('"step": "load"', '"step": "lost"'))

    again = runs.run()
    assert executed(again) == {"right", "load"}
    assert reason(again, "right").startswith("cache entry damaged (step/values/right.pkl")
    assert reason(again, "load") == "not in the cache"  # a damaged entry.json is no entry
    state = StateStore(tmp_path / "w")
    assert state.load_value(again["run_id"], "right", "right") == 7
    assert outputs(again) == outputs(first)
    third = runs.run()
    assert executed(third) == set()  # recomputed entries were stored again


def test_concurrent_runs_sharing_a_cache_leave_it_whole(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("1,5\n2,7\n")
    nb = tmp_path / "six.ipynb"
    nb.write_text(nbformat.writes(build_notebook(CELLS)))
    shared = tmp_path / "shared-cache"
    procs = [
        subprocess.Popen(
            [*CLI, "run", str(nb), "--workdir", f"w{i}", "--cache-dir", str(shared), "-j", "2"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, out + err
    store = CacheStore(shared)
    entries = list(store.entries())
    assert len(entries) == len(STEPS)
    for i, path in enumerate(entries):
        entry = store.lookup(path.name)
        assert entry is not None
        store.load(entry, tmp_path / "check" / str(i), tmp_path / "restore")
    assert not list((shared / "tmp").iterdir())  # every loser's copy is gone
    last = Runs(tmp_path, nb, "--cache-dir", shared).run()
    assert executed(last) == set()


def test_resume_honours_edits_and_new_parameters(tmp_path: Path) -> None:
    runs = _six(tmp_path)
    cells = list(CELLS)
    cells[4] = "#| step: join\ntotal = left + right\nraise ValueError('broken')"
    runs.edit(cells)
    proc = jup2kub("run", runs.nb, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 1
    assert "re-runs what failed or changed" in proc.stderr
    run_id = re.search(r"run (\S+): failed", proc.stdout).group(1)  # type: ignore[union-attr]

    runs.edit(CELLS)
    resumed = runs.run("--resume", run_id, "-p", "label", "z", "--no-cache")
    assert resumed["run_id"] == run_id
    kept = {s for s in STEPS if resumed["steps"][s]["cache"].get("outcome") == "kept"}
    assert kept == {"load", "left", "right"}
    assert executed(resumed) == {"join", "write", "show"}
    assert resumed["parameters"] == {"label": "z"}
    assert outputs(resumed)[7] == [("stdout", "z 13")]

    again = runs.run("--resume", run_id, "-p", "scale", "1", "--no-cache")
    assert executed(again) == {"left", "join", "write", "show"}
    assert reason(again, "left") == "parameter changed: scale; cache off (--no-cache)"


def test_corpus_notebook_reuses_all_but_what_it_cannot_see(tmp_path: Path) -> None:
    nb = tmp_path / "sales_markers.ipynb"
    nb.write_bytes((CORPUS / "sales_markers.ipynb").read_bytes())
    runs = Runs(tmp_path, nb)
    first = runs.run()
    again = runs.run()
    # the model's fit draws from the unseeded global generator: it executes again
    assert executed(again) == {"model"}
    assert "not cacheable" in reason(again, "model")
    assert outputs(again) == outputs(first)
    state = StateStore(tmp_path / "w")
    for step in inspect_notebook(nb).steps:  # every reused value is the executed one
        for var in step.outputs:
            before = state.load_value(first["run_id"], step.name, var)
            assert same(before, state.load_value(again["run_id"], step.name, var)), var
    files = {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")}
    for name in files:
        (tmp_path / name).unlink()
    restored = runs.run()
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")} == files
    assert outputs(restored) == outputs(first)


def _env(**extra: str) -> dict[str, str]:
    import os

    return {**os.environ, **extra}


def test_runtimes_on_kafka_reuse_unchanged_steps_from_the_state_volume(
    kafka: str, tmp_path: Path, make_notebook: MakeNb
) -> None:
    """The cluster's data path: each runtime checks its step's key in the state volume's
    cache before executing, and loads the stored result (marker last) instead."""
    nb = make_notebook(
        [
            "#| step: first\nx = 20\nprint('first', x)",
            "#| step: second\ny = x + 1",
            "#| step: third\nprint('total', x + y)",
        ]
    )
    runs = Runs(tmp_path, nb, "--kafka", kafka)
    first = runs.run()
    again = runs.run()
    state = StateStore(tmp_path / "w")
    for step in ("first", "second", "third"):
        assert (state.completion(first["run_id"], step) or {}).get("reused") is None
        marker = state.completion(again["run_id"], step) or {}
        assert marker.get("reused") and marker.get("from_run") == first["run_id"], step
    assert outputs(again) == outputs(first)
    assert state.load_value(again["run_id"], "second", "y") == 21
    assert set(again["reused"]) == {"first", "second", "third"}
    assert "reused   first: unchanged (its runtime reused" in again["stdout"]

    off = runs.run("--no-cache")  # the chart's steps.<name>.cache: false sets J2K_CACHE=off
    assert all(
        (state.completion(off["run_id"], s) or {}).get("reused") is None
        for s in ("first", "second", "third")
    )


def test_corpus_edits_and_parameters_reexecute_exactly_the_affected_steps(tmp_path: Path) -> None:
    """Real notebooks: a parameter change re-executes the step reading it and its downstream
    (digits_kale); an edited cell re-executes its step and what follows it, a comment does
    not count (growth_headings)."""
    digits = tmp_path / "digits_kale.ipynb"
    digits.write_bytes((CORPUS / "digits_kale.ipynb").read_bytes())
    runs = Runs(tmp_path, digits)
    runs.run()
    changed = runs.run("-p", "test_size", "0.3")
    assert executed(changed) == {"split", "train", "evaluate", "pipeline-metrics"}
    assert reason(changed, "split") == "parameter changed: test_size"
    assert changed["reused"] == ["load-data"]

    growth = tmp_path / "growth_headings.ipynb"
    growth.write_bytes((CORPUS / "growth_headings.ipynb").read_bytes())
    runs = Runs(tmp_path / "g", growth)
    (tmp_path / "g").mkdir()
    first = runs.run()
    nb = nbformat.read(growth, as_version=4)
    fit = inspect_notebook(growth).step("fit").cells[-1]
    nb.cells[fit].source += "\n# only a comment"
    nbformat.write(nb, growth)
    assert executed(runs.run()) == set()
    nb.cells[fit].source += "\npass"
    nbformat.write(nb, growth)
    edited = runs.run()
    assert executed(edited) == {"fit", "residuals"}
    assert reason(edited, "fit") == "code changed"
    assert reason(edited, "residuals") == "input changed: fit"
    assert outputs(edited) == outputs(first)


def test_a_file_the_step_checks_before_writing_counts_as_it_was(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    """``if not exists(f): write f`` then read it: what ``f`` holds when the step starts is in
    its key, so an edit of ``f`` is seen (reusing would restore the old content instead)."""
    nb = make_notebook(
        [
            "#| step: a\nimport os\nif not os.path.exists('m.txt'):\n"
            "    open('m.txt', 'w').write('1')\nm = open('m.txt').read()",
            "#| step: b\nprint('m is', m)",
        ]
    )
    runs = Runs(tmp_path, nb)
    runs.run()
    second = runs.run()  # m.txt exists now: a executes once more (it writes nothing)
    assert reason(second, "a") == "file changed: m.txt"
    assert reason(second, "b") == "input changed: a"  # chain keys
    assert executed(runs.run()) == set()
    (tmp_path / "m.txt").write_text("2")
    edited = runs.run()
    assert executed(edited) == {"a", "b"}
    assert outputs(edited)[1] == [("stdout", "m is 2")]
    assert (tmp_path / "m.txt").read_text() == "2"


def test_a_step_naming_a_directory_too_large_to_hash_executes(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    from jup2kub_runtime.storage.cachekey import MAX_DIR_FILES

    big = tmp_path / "frames"
    big.mkdir()
    for i in range(MAX_DIR_FILES + 1):
        (big / f"{i}.txt").write_text("x")
    nb = make_notebook(["#| step: a\nn = len(open('frames/0.txt').read()) + len('frames')"])
    runs = Runs(tmp_path, nb)
    runs.run()
    again = runs.run()
    assert executed(again) == {"a"}
    assert reason(again, "a") == "not cacheable: a file it names cannot be hashed"


def test_resume_keeps_a_step_only_while_the_files_it_wrote_are_as_it_left_them(
    tmp_path: Path,
) -> None:
    runs = _six(tmp_path)
    cells = list(CELLS)
    cells[6] = "#| step: show\nraise ValueError('later')"
    runs.edit(cells)
    proc = jup2kub("run", runs.nb, "--workdir", tmp_path / "w", "--no-cache", cwd=tmp_path)
    assert proc.returncode == 1
    run_id = re.search(r"run (\S+): failed", proc.stdout).group(1)  # type: ignore[union-attr]
    (tmp_path / "out.txt").unlink()
    runs.edit(CELLS)
    resumed = runs.run("--resume", run_id, "--no-cache")
    assert executed(resumed) == {"write", "show"}  # write made out.txt again
    assert reason(resumed, "write").startswith("file changed: out.txt (since it wrote it)")
    assert (tmp_path / "out.txt").read_text() == "13"


def test_cache_dir_is_for_the_embedded_mode(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(["#| step: a\nx = 1"])
    proc = jup2kub("run", nb, "--kafka", "127.0.0.1:9", "--cache-dir", tmp_path / "c", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--cache-dir works with the embedded mode only" in proc.stderr


def test_editing_a_local_module_reexecutes_the_steps_importing_it(tmp_path: Path) -> None:
    """A module beside the notebook is read by the steps importing it (issue 28)."""
    (tmp_path / "mathmod_j2k.py").write_text("def f(x):\n    return x + 1\n")
    nb = tmp_path / "local.ipynb"
    runs = Runs(tmp_path, nb)
    runs.edit(["#| step: use\nimport mathmod_j2k\nv = mathmod_j2k.f(2)", "#| step: show\nprint(v)"])
    assert executed(runs.run()) == {"use", "show"}
    assert executed(runs.run()) == set()
    (tmp_path / "mathmod_j2k.py").write_text("def f(x):\n    return x + 2\n")
    edited = runs.run()
    assert executed(edited) == {"use", "show"}
    assert reason(edited, "use") == "file changed: mathmod_j2k.py"
    assert "4" in str(outputs(edited))

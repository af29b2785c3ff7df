"""``jup2kub run`` (embedded): the split pipeline gives what the notebook gives top to bottom.

Equivalence is the acceptance test: for every corpus notebook the printed text, displayed
results, final values of every value that crosses a step boundary, and files written must
equal those of running the notebook with nbclient.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest

from jup2kub.api import inspect_notebook
from jup2kub_runtime.storage.state_store import StateStore
from tests.support.cli_runner import CORPUS, jup2kub
from tests.support.equivalence import files_in, reference_run, same, shown

MakeNb = Callable[..., Path]


@pytest.mark.parametrize("mode", ["embedded", "kafka"])
@pytest.mark.parametrize("name", ["plain_cells", "growth_headings", "digits_kale", "sales_markers"])
def test_run_equals_top_to_bottom_execution(
    name: str, mode: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    path = CORPUS / f"{name}.ipynb"
    pipeline = inspect_notebook(path)
    last_writer = {v: s.name for s in pipeline.steps for v in s.outputs}
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "pipeline"
    ref_dir.mkdir()
    run_dir.mkdir()
    ref_nb, ref_values = reference_run(path, sorted(last_writer), ref_dir)

    extra = ["--kafka", request.getfixturevalue("kafka")] if mode == "kafka" else []
    proc = jup2kub("run", path, "--workdir", run_dir / "work", *extra, cwd=run_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result_path = run_dir / "work" / "runs" / run_id / "result.ipynb"
    result = nbformat.read(result_path, as_version=4)
    nbformat.validate(result)

    # cells tagged "skip" (Kale) are not part of the pipeline by design
    assert shown(result, pipeline.skipped) == shown(ref_nb, pipeline.skipped)
    store = StateStore(run_dir / "work")
    assert set(ref_values) == set(last_writer)
    for var, step in last_writer.items():
        value = store.load_value(run_id, step, var)
        assert same(ref_values[var], value), var
    assert files_in(run_dir) == files_in(ref_dir)
    summary = json.loads((result_path.parent / "summary.json").read_text())
    assert summary["status"] == "succeeded"
    assert summary["mode"] == mode
    assert set(summary["steps"]) == {s.name for s in pipeline.steps}


def test_parameters_are_injected_and_validated(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(
        [
            ("code", "n = 2\nlabel = 'x'", ["parameters"]),
            "#| step: a\nvalues = list(range(n))",
            "#| step: b\nprint(label, sum(values))",
        ]
    )
    (tmp_path / "p.yaml").write_text("label: from-file\nn: 3\n")
    proc = jup2kub(
        "run",
        nb,
        "-f",
        tmp_path / "p.yaml",
        "-p",
        "n",
        "5",
        "--workdir",
        tmp_path / "w",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    run_id = re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]
    result = nbformat.read(tmp_path / "w" / "runs" / run_id / "result.ipynb", as_version=4)
    injected = result.cells[1]
    assert injected.metadata["tags"] == ["injected-parameters"]
    assert "n = 5" in injected.source and "label = 'from-file'" in injected.source
    assert result.cells[3].outputs[0]["text"] == "from-file 10\n"

    bad = jup2kub("run", nb, "-p", "m", "1", "--workdir", tmp_path / "w", cwd=tmp_path)
    assert bad.returncode == 2
    assert "unknown parameter: m" in bad.stderr and "label, n" in bad.stderr


def test_failure_names_step_and_cell_then_resume(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(
        [
            "#| step: first\nimport pathlib\n"
            "pathlib.Path('first.log').open('a').write('ran\\n')\nx = 1",
            "#| step: second\nimport pathlib\nif not pathlib.Path('fixed').exists():\n"
            "    raise ValueError('not yet')\ny = x + 1",
            "#| step: third\nprint(y)",
            "#| step: side\nprint('independent', x)",
        ]
    )
    work = tmp_path / "w"
    proc = jup2kub("run", nb, "--workdir", work, "--jobs", "1", cwd=tmp_path)
    assert proc.returncode == 1
    assert "step 'second' failed in cell 1: ValueError: not yet" in proc.stderr
    assert "raise ValueError('not yet')" in proc.stderr  # the traceback shows the line
    assert "not run (upstream failed): third" in proc.stderr
    run_id = re.search(r"run (\S+): failed", proc.stdout).group(1)  # type: ignore[union-attr]
    summary = json.loads((work / "runs" / run_id / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert {k: v["status"] for k, v in summary["steps"].items()} == {
        "first": "succeeded",
        "second": "failed",
        "third": "blocked",
        "side": "blocked",  # past the failing cell: nbclient never runs it (issue 28)
    }
    assert summary["steps"]["second"]["error"]["ename"] == "ValueError"

    (tmp_path / "fixed").touch()
    again = jup2kub("run", nb, "--workdir", work, "--resume", run_id, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "first.log").read_text() == "ran\n"  # first was not executed again
    summary = json.loads((work / "runs" / run_id / "summary.json").read_text())
    assert summary["steps"]["first"]["reused"] is True
    assert summary["steps"]["third"]["status"] == "succeeded"
    result = nbformat.read(work / "runs" / run_id / "result.ipynb", as_version=4)
    assert result.cells[2].outputs[0]["text"] == "2\n"


def test_resume_unknown_run(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(["x = 1"])
    proc = jup2kub("run", nb, "--workdir", tmp_path / "w", "--resume", "nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no run 'nope'" in proc.stderr


def test_unwritable_workdir(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(["x = 1"])
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = jup2kub("run", nb, "--workdir", blocker / "sub", cwd=tmp_path)
    assert proc.returncode == 2
    assert "not writable" in proc.stderr


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs: a real full disk (needs root, as on the CI machines)."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_out_of_disk_is_a_clear_failure(
    small_disk: Path, tmp_path: Path, make_notebook: MakeNb
) -> None:
    nb = make_notebook(
        [
            "#| step: a\nimport os\nblob = os.urandom(8_000_000)",
            "#| step: b\nprint(len(blob))",
        ]
    )
    work = small_disk / "w"
    proc = jup2kub("run", nb, "--workdir", work, cwd=tmp_path)
    assert proc.returncode == 1
    assert "step 'a' failed outside its cells" in proc.stderr
    assert "No space left on device" in proc.stderr
    assert "not run (upstream failed): b" in proc.stderr
    (run_dir,) = (work / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["steps"]["b"]["status"] == "blocked"
    assert not (run_dir / "a" / "COMPLETE").exists()
    leftovers = [p.name for p in run_dir.rglob("*") if ".tmp" in p.name]
    assert leftovers == []  # no partial value left behind to fill the disk


def test_unstorable_value_found_at_run_time_names_both_steps(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    # not visible statically: the generator comes from a function call
    nb = make_notebook(
        [
            "#| step: make\ndef numbers():\n    yield from range(3)\nstream = numbers()",
            "#| step: use\nprint(sum(stream))",
        ]
    )
    proc = jup2kub("run", nb, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert proc.returncode == 1
    assert "variable 'stream' of step 'make'" in proc.stderr
    assert "(needed by step 'use')" in proc.stderr


def test_live_progress_on_a_terminal_and_quiet_otherwise(
    tmp_path: Path, make_notebook: MakeNb
) -> None:
    import os
    import pty

    nb = make_notebook(
        ["#| step: first\nx = 1", "#| step: second\nimport time\ntime.sleep(1)\ny = x"]
    )
    quiet = jup2kub("run", nb, "--workdir", tmp_path / "q", cwd=tmp_path)
    assert quiet.returncode == 0  # not a TTY: no live display, one line per step start/end
    assert "\x1b" not in quiet.stderr
    assert re.search(r"step second: succeeded in \d", quiet.stderr)

    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jup2kub.cli", "run", str(nb), "--workdir", str(tmp_path / "t")],
        stdin=secondary,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(secondary)
    screen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert proc.wait(timeout=120) == 0
    os.close(main)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.decode(errors="replace"))
    assert "running" in text  # seen while 'second' sleeps
    assert re.search(r"first\s+succeeded", text) and re.search(r"second\s+succeeded\s+\d", text)


def test_a_run_sweeps_temp_files_killed_writers_left(tmp_path: Path) -> None:
    work = tmp_path / "work"
    leftover = work / "runs" / "old-run" / "step" / ".values.json.tmp-4242-1"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a value")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    proc = jup2kub("run", CORPUS / "plain_cells.ipynb", "--workdir", work, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not leftover.exists() and leftover.parent.is_dir()

"""``jup2kub runs``: list the local runs and the cache, remove runs, collect old or excess runs
and cache entries (only what jup2kub wrote)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jup2kub.errors import UsageError
from jup2kub.run.housekeeping import collect, list_runs, parse_age, parse_size
from tests.support.cli_runner import jup2kub

MakeNb = Callable[..., Path]


def _run(nb: Path, home: Path, *args: str) -> str:
    proc = jup2kub("run", nb, "--workdir", home / "w", *args, cwd=home)
    assert proc.returncode == 0, proc.stderr
    return re.search(r"run (\S+): succeeded", proc.stdout).group(1)  # type: ignore[union-attr]


def test_runs_lists_removes_and_collects(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(["#| step: a\nx = list(range(1000))", "#| step: b\nprint(len(x))"])
    first, second = _run(nb, tmp_path), _run(nb, tmp_path)
    (tmp_path / "w" / "notes.txt").write_text("mine")  # not jup2kub's: never removed

    listed = jup2kub("runs", "--workdir", tmp_path / "w", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"{first} .* succeeded .* 2 executed, 0 reused", listed.stdout)
    assert re.search(rf"{second} .* succeeded .* 0 executed, 2 reused", listed.stdout)
    assert "step cache: 2 entries" in listed.stdout

    removed = jup2kub("runs", "rm", second, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert not (tmp_path / "w" / "runs" / second).exists()
    assert (tmp_path / "w" / "runs" / first / "summary.json").is_file()
    missing = jup2kub("runs", "rm", second, "--workdir", tmp_path / "w", cwd=tmp_path)
    assert missing.returncode == 2 and f"there is no run {second!r}" in missing.stderr

    # the entries were last used now: one hour ahead, they are older than 30 minutes
    done = collect(tmp_path / "w", older_than=1800, now=time.time() + 3600)
    assert done.runs == [first] and done.entries == 2
    assert not list((tmp_path / "w" / "runs").iterdir())
    assert not list((tmp_path / "w" / "bundles").iterdir())  # no run was made from them
    assert (tmp_path / "w" / "notes.txt").read_text() == "mine"
    third = _run(nb, tmp_path)  # the cache is empty: everything executes again
    listed = jup2kub("runs", "--workdir", tmp_path / "w", cwd=tmp_path)
    assert re.search(rf"{third} .* 2 executed, 0 reused", listed.stdout)


def test_gc_by_size_removes_the_oldest_first(tmp_path: Path, make_notebook: MakeNb) -> None:
    nb = make_notebook(["#| step: a\nx = 1"])
    new, old = _run(nb, tmp_path, "--no-cache"), _run(nb, tmp_path, "--no-cache")
    past = time.time() - 7200
    os.utime(tmp_path / "w" / "runs" / old / "run.json", (past, past))
    sizes = {r.run_id: r.size for r in list_runs(tmp_path / "w")}
    done = collect(tmp_path / "w", max_size=sizes[new])
    assert done.runs == [old] and done.freed == sizes[old]
    gc = jup2kub("runs", "gc", "--older-than", "1h", "--workdir", tmp_path / "w", cwd=tmp_path)
    assert gc.returncode == 0, gc.stderr
    assert "removed 0 runs" in gc.stdout and (tmp_path / "w" / "runs" / new).is_dir()
    nothing = jup2kub("runs", "gc", "--workdir", tmp_path / "w", cwd=tmp_path)
    assert nothing.returncode == 2 and "--older-than" in nothing.stderr


def test_durations_and_sizes() -> None:
    assert parse_age("7d") == 7 * 86400 and parse_age("1w2d") == 9 * 86400
    assert parse_age("90m") == 5400 and parse_age("30") == 30
    assert parse_size("500M") == 500 << 20 and parse_size("1.5GiB") == int(1.5 * (1 << 30))
    with pytest.raises(UsageError):
        parse_age("soon")
    with pytest.raises(UsageError):
        parse_size("big")

"""The code base stays lint-clean, strictly typed, and layered as designed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.imports import import_cycles

REPO = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed in the test environment (pip install -e .[test])")
    return found


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False, timeout=600)


def test_ruff() -> None:
    proc = run(tool("ruff"), "check", "generator", "runtime", "tests", "bench", "e2e")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format() -> None:
    """One formatting, kept by the formatter (``ruff format``), never by hand."""
    proc = run(tool("ruff"), "format", "--check", "generator", "runtime", "tests", "bench", "e2e")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict() -> None:
    proc = run(tool("mypy"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_layers() -> None:
    """The runtime never imports the generator; the generator's layers point one way."""
    proc = run(tool("lint-imports"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_no_import_cycles() -> None:
    """No two of our modules import each other, directly or not, imports inside functions
    counted: a cycle hidden behind a function-level import is still a cycle."""
    assert import_cycles() == []


def test_no_import_cycles_in_the_e2e_harness() -> None:
    """The e2e harness (the package e2e/) too, for the same reason: its modules are layered
    from the command down to the host, none importing one above it."""
    assert import_cycles("e2e") == []


def test_import_cycles_sees_imports_inside_functions(tmp_path: Path, monkeypatch: Any) -> None:
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclic import b\n")
    (package / "b.py").write_text("def late():\n    from cyclic import c\n")
    (package / "c.py").write_text("import cyclic.a\n")
    (package / "d.py").write_text("import cyclic.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclic") == [["cyclic.a", "cyclic.b", "cyclic.c"]]


def test_no_product_module_over_800_lines() -> None:
    """A module past 800 lines has seams to split along (issue 27): the product's and the
    e2e harness's modules stay under it."""
    roots = [REPO / "generator" / "jup2kub", REPO / "runtime" / "jup2kub_runtime", REPO / "e2e"]
    long = {
        str(p.relative_to(REPO)): n
        for root in roots
        for p in root.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 800
    }
    assert long == {}

"""The code base stays lint-clean, strictly typed, and layered as designed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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

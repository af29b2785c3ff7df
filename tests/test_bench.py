"""A tiny run of each benchmark harness, so the benchmarks cannot rot (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_generation_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "gen.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.generation",
            "--repeat",
            "1",
            "--sizes",
            "5",
            "12",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["generation_scaling"]
    assert [r["cells"] for r in rows] == [5, 12]
    assert all(r["median_s"] > 0 and r["peak_mib"] > 0 for r in rows)


def test_bench_driver_quick_one_row(tmp_path: Path) -> None:
    """``python -m bench --quick`` on its cheapest row writes results.json, results.md and a
    plot; targets are reported, never asserted."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "scaling", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["order"] == ["scaling"] and doc["quick"] is True
    row = doc["rows"]["scaling"]
    assert row["error"] is None
    assert [r["cells"] for r in row["details"]["sizes"]] == [50, 200, 1000]
    assert all(line["met"] in (True, False) for line in row["lines"])
    table = (tmp_path / "results.md").read_text()
    assert "| figure | measured | target | met |" in table and "1000 code cells" in table
    assert (tmp_path / "plots" / "scaling.png").stat().st_size > 1000

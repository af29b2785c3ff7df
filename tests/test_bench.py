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
        [sys.executable, "-m", "bench.generation", "--repeat", "1", "--sizes", "5", "12",
         "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["generation_scaling"]
    assert [r["cells"] for r in rows] == [5, 12]
    assert all(r["median_s"] > 0 and r["peak_mib"] > 0 for r in rows)

"""What recording in the step catalog adds to ``jup2kub build --no-images``: the same build,
each a fresh process, interleaved: ``--no-catalog``; the catalog as ``build`` opens it now
(a current SQLite catalog through ``sqlite3``, ``catalog.lite``); and as it did before
(``store.Catalog``, SQLAlchemy), by making ``open_build_catalog`` the full opener.

    python -m bench.build_record [--repeat 9] [--notebook tests/corpus/sales_markers.ipynb]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.stats import summary

REPO = Path(__file__).resolve().parents[1]
_CLI = (
    "import sys\n"
    "import jup2kub.startup  # first, as the jup2kub command does\n"
    "from jup2kub import api\n"
    "if sys.argv[1] == 'sqlalchemy':\n"
    "    api.open_build_catalog = api.open_catalog\n"
    "from jup2kub.cli import main\n"
    "sys.argv = ['jup2kub', *sys.argv[2:]]\n"
    "main()\n"
)


def _time(mode: str, nb: Path, out: Path, db: Path) -> float:
    args = ["build", str(nb), "-o", str(out), "--no-images"]
    args += ["--no-catalog"] if mode == "none" else ["--catalog", str(db)]
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", _CLI, mode, *args], check=True, capture_output=True, timeout=300
    )
    return time.perf_counter() - t


def run(notebook: Path, repeat: int) -> dict[str, object]:
    modes = ("none", "sqlite3", "sqlalchemy")
    samples: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="j2k-bench-record-") as tmp:
        db = Path(tmp) / "catalog.db"
        _time("sqlalchemy", notebook, Path(tmp) / "warm", db)  # creates the schema; warms caches
        for i in range(repeat):
            for mode in modes:  # interleaved: load drifts hit every mode alike
                samples[mode].append(_time(mode, notebook, Path(tmp) / f"{mode}-{i}", db))
    res: dict[str, object] = {m: summary(s, 3) for m, s in samples.items()}
    base = summary(samples["none"])["median"]
    res["added_s"] = {
        m: round(summary(samples[m])["median"] - base, 3) for m in ("sqlite3", "sqlalchemy")
    }
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--notebook", type=Path, default=REPO / "tests/corpus/sales_markers.ipynb")
    args = ap.parse_args(argv)
    print(json.dumps(run(args.notebook.resolve(), args.repeat), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

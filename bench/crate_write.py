"""What a run's RO-Crate adds to ``jup2kub run``: one run of the notebook (steps executed,
once), then its crate written again and again, as the run writes it (``write_local_crate``:
the notebook's copy, the environment's lock, the hashes of every file, the JSON-LD), and, in
fresh processes, what importing ro-crate-py costs (it is imported only when a crate is written).

    python -m bench.crate_write [--repeat 15] [--notebook examples/weather_markers.ipynb]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.stats import summary

REPO = Path(__file__).resolve().parents[1]


def _write_times(notebook: Path, repeat: int) -> list[float]:
    from jup2kub import api
    from jup2kub.provenance.local import LocalRun, write_local_crate
    from jup2kub_runtime.storage.state_store import StateStore

    with tempfile.TemporaryDirectory(prefix="j2k-bench-crate-") as tmp:
        result = api.run(notebook, workdir=Path(tmp) / "wd", cache=False)
        now = datetime.now(timezone.utc)
        run = LocalRun(
            result.run_id,
            "bench",
            notebook,
            notebook.read_bytes(),
            list(result.steps),
            result.parameters,
            {},
            frozenset(),
            now,
            now,
        )
        store = StateStore(result.workdir)
        samples = []
        for _ in range(repeat):
            t = time.perf_counter()
            write_local_crate(store, run)
            samples.append(time.perf_counter() - t)
    return samples


def _import_times(repeat: int) -> list[float]:
    code = (
        "import time; t = time.perf_counter(); import rocrate.rocrate; "
        "print(time.perf_counter() - t)"
    )
    out = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        )
        out.append(float(done.stdout))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--notebook", type=Path, default=REPO / "examples/weather_markers.ipynb")
    args = ap.parse_args(argv)
    os.environ.setdefault("J2K_PROGRESS_INTERVAL", "3600")
    res = {
        "write_crate_s": summary(_write_times(args.notebook.resolve(), args.repeat)),
        "import_rocrate_s": summary(_import_times(max(3, args.repeat // 3))),
    }
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

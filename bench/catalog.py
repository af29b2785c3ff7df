"""Catalog search speed (issue 19): a SQLite catalog of N synthetic steps (names, variables,
packages and markdown drawn like real notebooks'), then timed searches through the library API
(``Catalog.search``, warm process): one word, a package, a markdown word, two words.

    python -m bench.catalog [--steps 10000] [--queries 200] [--json OUT] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from jup2kub.catalog.records import StepRecord
from jup2kub.catalog.store import Catalog

PACKAGES = [
    "numpy",
    "pandas",
    "sklearn",
    "matplotlib",
    "seaborn",
    "scipy",
    "torch",
    "json",
    "os",
    "re",
    "requests",
    "xarray",
]
VERBS = [
    "load",
    "clean",
    "split",
    "train",
    "evaluate",
    "plot",
    "report",
    "merge",
    "fit",
    "predict",
    "filter",
    "export",
]
NOUNS = [
    "data",
    "model",
    "features",
    "labels",
    "sales",
    "region",
    "growth",
    "temperature",
    "station",
    "image",
]
WORDS = [
    "the",
    "of",
    "and",
    "a",
    "to",
    "in",
    "we",
    "step",
    "reads",
    "results",
    "measurements",
    "mean",
    "daily",
    "station",
]


def _record(rng: random.Random, i: int) -> StepRecord:
    name = f"{rng.choice(VERBS)}-{rng.choice(NOUNS)}"
    variables = {f"{rng.choice(NOUNS)}_{rng.choice(NOUNS)}{i % 97}" for _ in range(4)}
    outputs = sorted(variables)[:2]
    inputs = sorted(variables)[2:]
    return StepRecord(
        pipeline=f"pipeline{i // 8}",
        step=f"{name}-{i % 8}",
        notebook=f"/notebooks/nb{i // 8}.ipynb",
        notebook_sha256="0" * 64,
        cells=[i % 8],
        code_sha256=f"{i:064x}",
        code="# synthetic\n",
        markdown=" ".join(rng.choice(WORDS) for _ in range(40)) + f" unique{i}",
        inputs={v: {"from": "up", "type": "unknown"} for v in inputs},
        outputs={v: "pandas.DataFrame" for v in outputs},
        parameters={"n": {"default": 3, "secret": False}},
        imports=sorted(set(rng.sample(PACKAGES, 3))),
    )


def run(steps: int, queries: int, directory: Path, url: str | None = None) -> dict[str, Any]:
    """``url``: an (empty) database to fill instead of a SQLite file in ``directory``."""
    rng = random.Random(19)
    catalog = Catalog(url or str(directory / "catalog.db"))
    try:
        started = time.perf_counter()
        batch = 500
        for first in range(0, steps, batch):
            catalog.add(_record(rng, i) for i in range(first, min(first + batch, steps)))
        fill_s = time.perf_counter() - started
        kinds = {
            "variable": lambda: f"{rng.choice(NOUNS)}_{rng.choice(NOUNS)}{rng.randrange(97)}",
            "package": lambda: rng.choice(PACKAGES),
            "markdown": lambda: f"unique{rng.randrange(steps)}",
            "two words": lambda: f"{rng.choice(VERBS)} {rng.choice(PACKAGES)}",
        }
        times: dict[str, list[float]] = {k: [] for k in kinds}
        hits: dict[str, list[int]] = {k: [] for k in kinds}
        catalog.search("warm")  # first query: connection and statement caches
        for n in range(queries):
            kind = list(kinds)[n % len(kinds)]
            text = kinds[kind]()
            t0 = time.perf_counter()
            found = catalog.search(text)
            times[kind].append(time.perf_counter() - t0)
            hits[kind].append(len(found))
        everything = [t for ts in times.values() for t in ts]
        return {
            "steps": catalog.count(),
            "fill_s": fill_s,
            "queries": queries,
            "p50_s": statistics.median(everything),
            "p99_s": statistics.quantiles(everything, n=100)[98],
            "by_kind": {
                k: {"p50_s": statistics.median(v), "mean_hits": statistics.mean(hits[k])}
                for k, v in times.items()
            },
        }
    finally:
        catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--url", default=None, help="an empty catalog database (PostgreSQL)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.steps, args.queries, Path(tmp), args.url)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

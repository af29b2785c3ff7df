"""``jup2kub runs``: the local runs of a workdir and the step cache beside them, listed and
collected. Only what jup2kub wrote is removed: run directories (``runs/RUN_ID``, holding a
``run.json``), cache entries (``cache/entries/..``, holding an ``entry.json``) and the step
bundles no remaining run was made from (``bundles/..``).

Sizes count each file once within the runs and within the cache; a cache entry hard-links
the values of the run that stored it, so a file may count in both. A run without a summary
that changed within the last hour may still be running: it is never collected.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jup2kub.errors import InputError, UsageError
from jup2kub_runtime.contract.valid_names import check_run_id
from jup2kub_runtime.storage.stepcache import DEFAULT_DIRNAME, CacheStore

_DURATION = re.compile(
    r"^\s*(?:(\d+)w)?\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*$"
)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_age(text: str) -> float:
    """``7d``, ``12h``, ``1w2d``, ``90m``, ``30s`` or plain seconds -> seconds."""
    m = _DURATION.match(text)
    if not text.strip() or m is None or not any(m.groups()):
        raise UsageError(f"invalid duration {text!r}", hint="use e.g. 7d, 12h, 30m or 1w")
    w, d, h, mnt, s = (int(g or 0) for g in m.groups())
    return float((((w * 7 + d) * 24 + h) * 60 + mnt) * 60 + s)


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5GiB``, ``100k`` or plain bytes -> bytes (binary units)."""
    m = _SIZE.match(text)
    if m is None:
        raise UsageError(f"invalid size {text!r}", hint="use e.g. 500M, 2G or 100k")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


@dataclass
class RunInfo:
    """One local run, as ``jup2kub runs`` lists it."""

    run_id: str
    workdir: Path
    started: float
    status: str
    seconds: float | None
    size: int
    executed: int | None = None  # steps executed / reused (None: recorded before the cache)
    reused: int | None = None

    @property
    def path(self) -> Path:
        return self.workdir / "runs" / self.run_id


@dataclass
class CacheInfo:
    root: Path
    entries: int = 0
    size: int = 0
    paths: list[tuple[float, int, Path]] = field(default_factory=list)  # (last use, size, dir)


def workdirs(given: Path | None) -> list[Path]:
    """``given``, or every pipeline's default workdir under ``./.jup2kub``."""
    if given is not None:
        if not (given / "runs").is_dir():
            raise InputError("no runs here", where=str(given), hint="pass the run's --workdir")
        return [given]
    base = Path(".jup2kub")
    return sorted(p for p in base.iterdir() if (p / "runs").is_dir()) if base.is_dir() else []


def _size(paths: Iterable[Path], seen: set[tuple[int, int]]) -> int:
    total = 0
    for top in paths:
        for root, _, files in os.walk(top):
            for name in files:
                with contextlib.suppress(OSError):
                    st = os.lstat(os.path.join(root, name))
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        total += st.st_blocks * 512 if st.st_blocks else st.st_size
    return total


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def list_runs(workdir: Path) -> list[RunInfo]:
    """The runs of ``workdir``, oldest first."""
    found: list[RunInfo] = []
    seen: set[tuple[int, int]] = set()
    for path in sorted((workdir / "runs").iterdir()):
        info = path / "run.json"
        if not info.is_file():
            continue
        summary_path = path / "summary.json"
        summary = _json(summary_path)
        started = info.stat().st_mtime
        seconds = summary_path.stat().st_mtime - started if summary else None
        steps = summary.get("steps") or {}
        has_cache = "executed" in summary
        found.append(
            RunInfo(
                run_id=path.name,
                workdir=workdir,
                started=started,
                status=str(summary.get("status", "incomplete")),
                seconds=seconds,
                size=_size([path], seen),
                executed=len(summary["executed"]) if has_cache else None,
                reused=sum(1 for s in steps.values() if s.get("reused")) if has_cache else None,
            )
        )
    return found


def cache_info(root: Path) -> CacheInfo:
    info = CacheInfo(root)
    seen: set[tuple[int, int]] = set()
    for entry in CacheStore(root).entries():
        size = _size([entry], seen)
        with contextlib.suppress(OSError):
            info.paths.append((entry.stat().st_mtime, size, entry))
            info.entries += 1
            info.size += size
    return info


def remove_run(workdir: Path, run_id: str) -> Path:
    """Remove one run's directory (only a run directory: it holds ``run.json``)."""
    check_run_id(run_id)
    path = workdir / "runs" / run_id
    if not (path / "run.json").is_file():
        raise InputError(
            f"there is no run {run_id!r}",
            where=str(workdir),
            hint="list the runs with `jup2kub runs`",
        )
    _remove(path)
    return path


def _remove(path: Path) -> None:
    """Renamed away first: a reader never sees a half-removed run or entry."""
    gone = path.with_name(f".{path.name}.gone-{os.getpid()}")
    try:
        os.rename(path, gone)
    except OSError:
        gone = path
    shutil.rmtree(gone, ignore_errors=True)


@dataclass
class Collected:
    runs: list[str] = field(default_factory=list)
    entries: int = 0
    freed: int = 0


def collect(
    workdir: Path,
    cache_dir: Path | None = None,
    *,
    older_than: float | None = None,
    max_size: int | None = None,
    now: float | None = None,
) -> Collected:
    """Remove runs started, and cache entries last used, more than ``older_than`` seconds
    ago; then the oldest of both until the runs and the cache take at most ``max_size``."""
    now = time.time() if now is None else now
    root = cache_dir or workdir / DEFAULT_DIRNAME
    done = Collected()
    runs = [r for r in list_runs(workdir) if r.seconds is not None or _quiet(r.path, now)]
    items: list[tuple[float, int, Path, str | None]] = [
        (r.started, r.size, r.path, r.run_id) for r in runs
    ]
    items += [(used, size, path, None) for used, size, path in cache_info(root).paths]
    items.sort(key=lambda i: i[0])
    total = sum(i[1] for i in items)
    for stamp, size, path, run_id in items:
        too_old = older_than is not None and now - stamp > older_than
        too_big = max_size is not None and total > max_size
        if not (too_old or too_big):
            continue
        _remove(path)
        total -= size
        done.freed += size
        if run_id is not None:
            done.runs.append(run_id)
        else:
            done.entries += 1
    _sweep(root)
    done.freed += _unused_bundles(workdir)
    return done


def _unused_bundles(workdir: Path) -> int:
    """Remove the step bundles (``bundles/<notebook sha>``) no remaining run was made from;
    the bytes freed."""
    kept = {str(_json(p / "run.json").get("notebook_sha256", ""))[:16] for p in _runs(workdir)}
    freed = 0
    for path in _children(workdir / "bundles"):
        if path.is_dir() and path.name not in kept:
            freed += _size([path], set())
            _remove(path)
    return freed


def _runs(workdir: Path) -> Iterator[Path]:
    return (p for p in _children(workdir / "runs") if (p / "run.json").is_file())


def _quiet(path: Path, now: float) -> bool:
    """Nothing in the run changed for an hour: it is not running."""
    latest = 0.0
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            with contextlib.suppress(OSError):
                latest = max(latest, os.lstat(os.path.join(root, name)).st_mtime)
    return now - latest > 3600


def _sweep(root: Path) -> None:
    """Leftovers of cache writers that died (``tmp/``, over an hour old)."""
    for path in _children(root / "tmp"):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > 3600:
                shutil.rmtree(path, ignore_errors=True)


def _children(path: Path) -> Iterator[Path]:
    try:
        yield from path.iterdir()
    except OSError:
        return

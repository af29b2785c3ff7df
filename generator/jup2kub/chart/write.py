"""Writing a chart to OUT: atomically (a failed build leaves OUT as it was), replacing only
what an earlier build wrote.

The marker file of a chart (``MARKER``) lists every file the build wrote. A rebuild replaces
those and keeps every other file in OUT where it is (a values file of the user's, an extra
template): nothing a build did not write is ever deleted or overwritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from jup2kub.chart.options import ChartOptions
from jup2kub.chart.render import MARKER, render_chart
from jup2kub.errors import UsageError
from jup2kub.files import writable
from jup2kub.plan import PipelinePlan


def write_chart(
    plan: PipelinePlan,
    out: Path,
    options: ChartOptions | None = None,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write the pipeline's Helm chart to OUT (atomically, replacing an earlier build).

    ``extra_files`` (path relative to OUT -> bytes; e.g. the image build's locks) are written in
    the same atomic swap, so OUT never holds a chart from one build and audit files of another.
    Returns OUT.
    """
    files = render_chart(plan, options)
    for rel in extra_files or {}:
        if rel in files:
            raise ValueError(f"extra file {rel!r} would replace a chart file")
    _write_atomically(out, _with_manifest({**files, **(extra_files or {})}))
    return out


def check_output_outside(out: Path, inputs: Mapping[str, Path]) -> None:
    """Refuse an OUT that holds one of the build's inputs (``-o .`` beside the notebook): a
    rebuild would replace the directory the input lives in."""
    root = Path(os.path.abspath(out)).resolve()
    for what, path in inputs.items():
        resolved = Path(os.path.abspath(path)).resolve()
        if resolved == root or root in resolved.parents:
            raise UsageError(
                f"the output directory holds the {what} {path}",
                where=str(out),
                hint="choose an output directory that does not contain the build's inputs, "
                "e.g. -o chart",
            )


def _with_manifest(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """``files`` with the marker listing them all (itself included)."""
    marker = json.loads(files[MARKER])
    marker["files"] = sorted(files)
    return {**files, MARKER: (json.dumps(marker, indent=2) + "\n").encode()}


def _written_before(out: Path, files: Mapping[str, bytes]) -> set[str] | None:
    """The files an earlier build wrote to OUT, or None when OUT is not a Jup2Kub chart.

    A chart from a version that kept no list counts as having written the files the new build
    writes again (so nothing else in it is touched)."""
    if not (out / MARKER).is_file():
        return None
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        marker = None
    listed = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(listed, list):
        return set(files)
    return {f for f in listed if isinstance(f, str)}


def _foreign_files(out: Path, ours: set[str]) -> list[str]:
    """Files (and symbolic links) under OUT that no build wrote, relative to OUT."""
    found = []
    for dirpath, dirs, names in os.walk(out):
        here = Path(dirpath)
        for name in names + [d for d in dirs if (here / d).is_symlink()]:
            rel = (here / name).relative_to(out).as_posix()
            if rel not in ours:
                found.append(rel)
    return sorted(found)


def _clashes(rel: str, files: Mapping[str, bytes], taken: set[str]) -> bool:
    """The new chart writes ``rel``, or a file below it (``taken``: its files and their
    directories), or ``rel`` lies below one of its files."""
    return rel in taken or any(p.as_posix() in files for p in Path(rel).parents)


def _user_files(out: Path, files: Mapping[str, bytes]) -> list[str]:
    """The files in OUT that no build wrote (kept by the rebuild); refuses an OUT that is not
    a Jup2Kub chart, or a user's file where the new chart writes one."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(
            "the output path exists and is not a directory",
            where=str(out),
            hint="choose another -o/--output",
        )
    if not out.is_dir() or not any(out.iterdir()):
        return []
    ours = _written_before(out, files)
    if ours is None:
        raise UsageError(
            "refusing to overwrite a directory that is not a chart built by Jup2Kub",
            where=str(out),
            hint=f"choose an empty or new directory (Jup2Kub charts carry a {MARKER} file)",
        )
    foreign = _foreign_files(out, ours)
    taken = set(files) | {p.as_posix() for f in files for p in Path(f).parents}
    clash = [rel for rel in foreign if _clashes(rel, files, taken)]
    if clash:
        raise UsageError(
            f"{clash[0]} was not written by Jup2Kub, and the new chart writes a file there",
            where=str(out),
            hint="move or rename your file, then build again (nothing was changed)",
        )
    return foreign


def _write_atomically(out: Path, files: Mapping[str, bytes]) -> None:
    """Write into a temp dir beside OUT, move the files no build wrote into it, then swap it
    in, so OUT is never half written and keeps what the user added."""
    out = Path(os.path.abspath(out))
    foreign = _user_files(out, files)
    with writable("the chart", out, hint="choose a writable -o/--output"):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _fill(tmp, files)
        if out.exists():
            _swap(out, tmp, foreign)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fill(tmp: Path, files: Mapping[str, bytes]) -> None:
    for rel, data in files.items():
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o644)
    for dirpath, _dirs, _files in os.walk(tmp):
        Path(dirpath).chmod(0o755)


def _swap(out: Path, tmp: Path, foreign: list[str]) -> None:
    """Move the user's files from OUT into ``tmp``, then put ``tmp`` in OUT's place; on failure
    everything goes back. Only the old generated files are deleted."""
    moved: list[str] = []
    try:
        for rel in foreign:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            os.rename(out / rel, tmp / rel)
            moved.append(rel)
        old = tmp.with_name(tmp.name.replace(".tmp-", ".old-", 1))
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
    except BaseException:
        for rel in reversed(moved):
            os.rename(tmp / rel, out / rel)
        raise
    shutil.rmtree(old, ignore_errors=True)

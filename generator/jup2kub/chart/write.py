"""Writing a chart to OUT: atomically (a failed build leaves OUT as it was), replacing only a
chart an earlier build wrote (it carries the marker file)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from jup2kub.chart.options import ChartOptions
from jup2kub.chart.render import MARKER, render_chart
from jup2kub.errors import UsageError
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
    _write_atomically(out, {**files, **(extra_files or {})})
    return out


def _is_jup2kub_chart(path: Path) -> bool:
    return (path / MARKER).is_file()


def _write_atomically(out: Path, files: Mapping[str, bytes]) -> None:
    """Write into a temp dir beside OUT, then swap it in, so OUT is never half written."""
    out = Path(os.path.abspath(out))
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(
            "the output path exists and is not a directory",
            where=str(out),
            hint="choose another -o/--output",
        )
    if out.is_dir() and any(out.iterdir()) and not _is_jup2kub_chart(out):
        raise UsageError(
            "refusing to overwrite a directory that is not a chart built by Jup2Kub",
            where=str(out),
            hint=f"choose an empty or new directory (Jup2Kub charts carry a {MARKER} file)",
        )
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        for rel, data in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o644)
        for dirpath, _dirs, _files in os.walk(tmp):
            Path(dirpath).chmod(0o755)
        if out.exists():
            old = tmp.with_name(tmp.name.replace(".tmp-", ".old-", 1))
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except BaseException:
                os.rename(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

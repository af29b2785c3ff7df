"""Build stamps for the harness's cached builds: a file beside what was built, holding a text
naming what it was built from (versions, a content hash), so a later run skips the build while
that text is unchanged and the outputs are still there."""

from __future__ import annotations

from pathlib import Path


def current(stamp: Path, want: str, *outputs: Path) -> bool:
    """True when ``stamp`` records ``want`` and every output exists."""
    return (
        stamp.is_file() and stamp.read_text().strip() == want and all(o.exists() for o in outputs)
    )


def record(stamp: Path, want: str) -> None:
    """Note that the outputs were built from ``want`` (after they are complete)."""
    stamp.write_text(want + "\n")

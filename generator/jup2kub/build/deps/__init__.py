"""What each step needs installed, pinned: static import capture (``capture``), an optional
ReproZip trace (``trace``), and per-step ``requirements.lock`` files with sha256 hashes of the
target platform's wheels (``locks``), for the platform of the images (``target``). What they
find is in ``results``.

The lock keeps later builds from drifting: image builds need no network and install exactly the
locked files.
"""

from jup2kub.build.deps.capture import RUNTIME_DISTRIBUTIONS, capture, closure, imports_of
from jup2kub.build.deps.findings import DataFile, Dependencies, StepDeps, Wheel
from jup2kub.build.deps.locks import (
    Locks,
    cache_root,
    default_wheel_cache,
    lock,
    lock_text,
    resolve_wheels,
    write_trace_summary,
)
from jup2kub.build.deps.target import Target
from jup2kub.build.deps.trace import reprozip_command, trace

__all__ = [
    "RUNTIME_DISTRIBUTIONS",
    "DataFile",
    "Dependencies",
    "Locks",
    "StepDeps",
    "Target",
    "Wheel",
    "cache_root",
    "capture",
    "closure",
    "default_wheel_cache",
    "imports_of",
    "lock",
    "lock_text",
    "reprozip_command",
    "resolve_wheels",
    "trace",
    "write_trace_summary",
]

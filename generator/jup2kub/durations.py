"""Durations as the command line takes them (helm's style: ``15m``, ``1h30m``, ``90s``, ``90``).

Their own module: every command that has a ``--timeout`` parses one, and none should import the
cluster layer for it."""

from __future__ import annotations

import re

from jup2kub.errors import UsageError

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """'15m', '1h30m', '90s', '90' -> seconds."""
    m = _DURATION.match(text.strip())
    if not text.strip() or m is None or not any(m.groups()):
        raise UsageError(f"invalid duration {text!r}", hint="use e.g. 90s, 15m or 1h")
    h, mnt, s = m.groups()
    return int(h or 0) * 3600 + int(mnt or 0) * 60 + float(s or 0)

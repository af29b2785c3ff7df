"""Small helpers shared by the benchmarks: percentiles, medians with spreads, rounding."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank on the sorted values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """Median, quartiles, min, max and count of ``values`` (the spread quoted everywhere)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), digits),
        "p25": round(pct(values, 0.25), digits),
        "p75": round(pct(values, 0.75), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def spread(s: dict[str, Any], unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    """``median unit (IQR a-b, n=N)`` for a ``summary``."""
    if not s.get("n"):
        return "n/a"
    f = f"{{:.{digits}f}}"
    return (
        f"{f.format(s['median'] * scale)}{unit} (IQR {f.format(s['p25'] * scale)}-"
        f"{f.format(s['p75'] * scale)}, n={s['n']})"
    )

"""Durations in words, the same on every page."""

from __future__ import annotations

import math


def duration_text(seconds: float | None) -> str:
    """Seconds in words: "45 s", "12 min", "3.5 h", "2.0 d"; "n/a" when not a usable number."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "n/a"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"

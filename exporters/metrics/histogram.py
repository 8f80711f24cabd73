"""A Prometheus histogram as plain numbers: cheap to observe, rendered by ``render``."""

from __future__ import annotations

from bisect import bisect_left

# prometheus_client's defaults (the peers' defaults) plus minutes and the breaking points.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
)  # fmt: skip


def with_required(buckets: tuple[float, ...], required: tuple[float, ...]) -> tuple[float, ...]:
    """Sorted buckets that always include ``required`` (the breaking points), so that an
    alert on ``le="300"`` is exact whatever buckets a user chose."""
    merged = sorted({float(b) for b in (*buckets, *required)})
    if not merged or any(b <= 0 for b in merged):
        raise ValueError("histogram buckets must be positive numbers")
    return tuple(merged)


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        # One slot per bound plus the +Inf overflow; cumulated only when rendered.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

"""Exporter replicas: the one place that says how their copies of a series become one.

Several exporters may read the same fleet side by side. Each one's series carry the target
labels ``instance`` (always) and ``replica`` (the name the scrape configuration gives it), and
nothing else tells them apart. Every recording rule, alert and dashboard query that reads fleet
metrics therefore drops exactly these two labels before it sums anything; the exporter's own
health (``fleetops_exporter_*``, ``up``) stays per replica.
"""

from __future__ import annotations

# The target labels that tell replicas apart. `instance` alone suffices for a deployment that
# does not name its replicas; `replica` keeps the name stable across restarts and new addresses.
REPLICA_LABELS = ("instance", "replica")
_WITHOUT = f"without ({', '.join(REPLICA_LABELS)})"


def one(expr: str) -> str:
    """The largest of the replicas' copies of each series of ``expr``.

    For a counter, pass its ``rate()`` or ``increase()``, never the raw counter: each replica's
    rate handles its own reset at a restart, and the largest rate hides a replica that missed
    events while it was down. The largest raw counter would drop to the other replica's count
    when the higher one restarts, which ``rate()`` reads as a reset and a spike."""
    return f"max {_WITHOUT} ({expr})"


def freshest(expr: str) -> str:
    """The smallest copy: for ages, where the replica that saw the newest event is right."""
    return f"min {_WITHOUT} ({expr})"


# The same operators as text, for the alert specs' `{one}` and `{freshest}` placeholders.
ONE = f"max {_WITHOUT}"
FRESHEST = f"min {_WITHOUT}"

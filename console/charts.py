"""Charts against the breaking points: the data behind each chart and its drawing, kept apart.

The ``*_frame`` functions are pure: metrics results in, the exact DataFrame a chart draws out, so
a test can compare that data with what Prometheus returns. The ``*_chart`` functions only draw.
Every band edge comes from ``fleetops.breaking_points`` (or, for failures, from the objective and
the burn-rate factors of the alerts); none is written here.

Decisions (docs/console.md, "Charts"):
- One colour per level everywhere: the shaded bands, the bars and the trouble list's badges.
- Bars are horizontal and sorted worst first, one row per item with the chart's height growing
  with the rows, and at most ``MAX_ROWS`` rows: 50 queues stay readable, 500 show the worst 60.
- Queue depth spans 0 to beyond 10,000: a symlog axis keeps a queue of 4 visible next to the
  bands; the bands and the colours say how close to breaking it is, not the bar's length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import altair as alt
import pandas as pd

from alerts.rules import BURN_RATE_WINDOWS
from console import links
from console.metrics import FAILURE_WINDOW, QueueState, WorkerState, minutes_text
from fleetops.breaking_points import BreakingPoints, Level, Signal, level_between

# Colour-blind-safe enough (lightness rises with danger) and the same on every chart.
LEVEL_COLOURS: dict[Level, str] = {
    Level.SAFE: "#2e7d32",
    Level.WARNING: "#f9a825",
    Level.CRITICAL: "#ef6c00",
    Level.BREAKING: "#c62828",
}
# The nearest Streamlit Markdown colour, for badges in text (":red-badge[breaking]").
LEVEL_BADGE_COLOURS: dict[Level, str] = {
    Level.SAFE: "green",
    Level.WARNING: "yellow",
    Level.CRITICAL: "orange",
    Level.BREAKING: "red",
}
LEVEL_RANK: dict[Level, int] = {level: rank for rank, level in enumerate(Level)}
LEVELS = [level.value for level in Level]
# Lines of a history chart: no green, yellow, orange or red, which belong to the levels.
LINE_COLOURS = [
    "#1565c0", "#6a1b9a", "#00838f", "#5d4037", "#37474f",
    "#ad1457", "#283593", "#00695c", "#8d6e63", "#78909c",
]  # fmt: skip
# Room for long names (hostnames, dotted queue names) left of the bars.
LABEL_PIXELS = 300
MAX_ROWS = 60
ROW_PIXELS = 22
# Streamlit fits the whole chart (axes, titles) into its height: room for the axis below.
AXIS_PIXELS = 80
BAND_OPACITY = 0.18
# Room beyond the breaking point, so its band shows however small the values are.
HEADROOM = 1.25


def finite(value: object) -> float | None:
    """A number to draw, or None for anything that is not one (None, NaN, inf, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def measure(value: object) -> float | None:
    """A count or share that cannot be negative: anything else is not drawn."""
    number = finite(value)
    return number if number is not None and number >= 0 else None


# ---------------------------------------------------------------------------------------------
# Band edges


@dataclass(frozen=True)
class Bands:
    """Lower edges of the warning, critical and breaking bands, in the unit the chart draws."""

    title: str
    unit: str
    warning: float
    critical: float
    breaking: float

    def level_of(self, value: float) -> Level:
        return level_between(value, self.warning, self.critical, self.breaking)


def signal_bands(signal: Signal, *, scale: float = 1.0, unit: str | None = None) -> Bands:
    """A signal's bands, its values divided by ``scale`` (60: seconds drawn as minutes)."""
    return Bands(
        title=signal.title,
        unit=unit or signal.unit,
        warning=signal.warning / scale,
        critical=signal.critical / scale,
        breaking=signal.breaking / scale,
    )


def latency_bands(points: BreakingPoints) -> Bands:
    return signal_bands(points.task_latency, scale=60, unit="minutes")


def failure_bands(points: BreakingPoints) -> Bands:
    """Failure ratio (percent) against the objective's error budget and the alerts' burn rates:
    warning once the budget is spent faster than it lasts (1x, the slowest ticket), critical
    from the slowest page's factor, breaking from the fastest page's (14.4x: 2 % of a 30-day
    budget in one hour)."""
    budget = points.objectives.error_budget * 100
    pages = [w.factor for w in BURN_RATE_WINDOWS if w.severity == "critical"]
    return Bands(
        title="Failure ratio (1 h)",
        unit="percent",
        warning=min(w.factor for w in BURN_RATE_WINDOWS) * budget,
        critical=min(pages) * budget,
        breaking=max(pages) * budget,
    )


def bands_frame(bands: Bands, top: float) -> pd.DataFrame:
    """One row per level: its start and end on the value axis, up to ``top``."""
    edges = [0.0, bands.warning, bands.critical, bands.breaking, max(top, bands.breaking)]
    return pd.DataFrame(
        {
            "level": LEVELS,
            "start": edges[:-1],
            "end": edges[1:],
        }
    )


def rows_height(rows: int, per_row: float = 1.0) -> int:
    """Height of a bar chart: one row per item, so 50 queues get 50 readable rows."""
    return int(max(1, rows) * ROW_PIXELS * per_row) + AXIS_PIXELS


def log_ticks(bands: Bands, top: float) -> list[float]:
    """Ticks of a symlog axis: 0, the powers of ten below the warning edge, then the band
    edges themselves (Vega's own symlog ticks crowd into an unreadable comb)."""
    ticks = [0.0]
    power = 1.0
    while power < bands.warning:
        ticks.append(power)
        power *= 10
    return [*ticks, bands.warning, bands.critical, bands.breaking] + (
        [top] if top > bands.breaking * HEADROOM else []
    )


def axis_top(bands: Bands, values: Iterable[float]) -> float:
    return max([bands.breaking * HEADROOM, *(v * 1.05 for v in values)])


# ---------------------------------------------------------------------------------------------
# The data behind each chart (pure functions)

BAR_COLUMNS = ["name", "value", "level", "link"]


def shown_name(name: str, app: str | None) -> str:
    """A queue's or worker's name on a chart: with several apps shown at once, "name @ app"."""
    return name if app is None else f"{name} @ {app}"


def own_link(link: Callable[[str], str], name: str, app: str | None) -> str:
    """``link(name)`` opening the row's own app (None: the page's choice)."""
    with links.app_of(app):
        return link(name)


def _bars(
    rows: Iterable[tuple[str, object] | tuple[str, object, str | None]],
    bands: Bands,
    link: Callable[[str], str],
) -> pd.DataFrame:
    """Rows worst first (largest value), those that are not a number left out, at most
    MAX_ROWS. A row may name its app (several apps shown at once): its bar is then
    "name @ app" and its link opens that app."""
    kept = []
    for name, raw, *app in rows:
        if (value := measure(raw)) is None:
            continue
        own = app[0] if app else None
        kept.append((shown_name(str(name), own), value, own_link(link, str(name), own)))
    kept.sort(key=lambda row: (-row[1], row[0]))
    return pd.DataFrame(
        [
            {"name": name, "value": value, "level": bands.level_of(value).value, "link": url}
            for name, value, url in kept[:MAX_ROWS]
        ],
        columns=BAR_COLUMNS,
    )


def depth_frame(queues: Sequence[QueueState], points: BreakingPoints) -> pd.DataFrame:
    """Current depth of every queue (messages)."""
    bands = signal_bands(points.queue_depth)
    return _bars(((q.queue, q.depth, q.app) for q in queues), bands, links.queue)


def latency_frame(queues: Sequence[QueueState], points: BreakingPoints) -> pd.DataFrame:
    """p95 end-to-end latency per queue, in minutes (queues with no recent task left out)."""
    rows = (
        (q.queue, None if (v := finite(q.p95_latency)) is None else v / 60, q.app) for q in queues
    )
    return _bars(rows, latency_bands(points), links.queue)


def memory_frame(workers: Sequence[WorkerState], points: BreakingPoints) -> pd.DataFrame:
    """Memory of every worker, percent of its limit."""
    bands = signal_bands(points.worker_memory)
    return _bars(((w.hostname, w.memory_percent, w.app) for w in workers), bands, links.worker)


def failure_frame(
    ratios: Mapping[tuple[str | None, str], float], points: BreakingPoints
) -> pd.DataFrame:
    """Failed per completed task over the last hour, per (app, queue) as metrics.failure_ratios
    keys it, in percent."""
    rows = (
        (queue, None if (v := measure(r)) is None else v * 100, app)
        for (app, queue), r in ratios.items()
    )
    return _bars(
        rows, failure_bands(points), lambda q: links.failures(queue=q, since=FAILURE_WINDOW)
    )


WAIT_COLUMNS = ["name", "minutes", "drawn", "never", "text", "level", "link"]


def wait_frame(queues: Sequence[QueueState], points: BreakingPoints) -> pd.DataFrame:
    """How long a task enqueued now waits before it starts, per queue that has a backlog, in
    minutes against the latency bands (its wait is the least latency it will see). A queue that
    does not drain ("never at this rate") is drawn at the axis end and says so."""
    bands = latency_bands(points)
    rows = []
    for q in queues:
        depth = measure(q.depth)
        wait = q.wait_seconds
        if not depth or wait is None or (isinstance(wait, float) and math.isnan(wait)):
            continue
        never = math.isinf(wait) and wait > 0
        minutes = math.inf if never else measure(wait)
        if minutes is None:
            continue
        if not never:
            minutes /= 60
        rows.append(
            (shown_name(q.queue, q.app), minutes, never, minutes_text(wait),
             own_link(links.queue, q.queue, q.app))
        )  # fmt: skip
    rows.sort(key=lambda row: (-row[1], row[0]))
    top = axis_top(bands, [m for _, m, never, _, _ in rows if not never])
    return pd.DataFrame(
        [
            {
                "name": name,
                "minutes": None if never else minutes,
                "drawn": top if never else minutes,
                "never": never,
                "text": text,
                "level": bands.level_of(minutes).value,
                "link": url,
            }
            for name, minutes, never, text, url in rows[:MAX_ROWS]
        ],
        columns=WAIT_COLUMNS,
    )


FLOW_COLUMNS = ["name", "direction", "rate", "link"]
ARRIVAL, COMPLETION = "arrival", "completion"


def flow_frame(queues: Sequence[QueueState]) -> pd.DataFrame:
    """Arrival and completion rate (tasks/s) per queue with any traffic, the fastest-growing
    queue (arrival minus completion) first."""
    rows = []
    for q in queues:
        arrival, completion = measure(q.arrival_rate), measure(q.completion_rate)
        if not arrival and not completion:
            continue
        rows.append(
            (shown_name(q.queue, q.app), arrival or 0.0, completion or 0.0,
             own_link(links.queue, q.queue, q.app))
        )  # fmt: skip
    rows.sort(key=lambda row: (-(row[1] - row[2]), row[0]))
    return pd.DataFrame(
        [
            {"name": name, "direction": direction, "rate": rate, "link": url}
            for name, arrival, completion, url in rows[:MAX_ROWS]
            for direction, rate in ((ARRIVAL, arrival), (COMPLETION, completion))
        ],
        columns=FLOW_COLUMNS,
    )


HISTORY_COLUMNS = ["time", "name", "value"]


def history_frame(wide: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
    """A range query's frame (one column per series, indexed by time) in long form, only
    ``names`` when given, points that are not a number left out."""
    if wide is None or wide.empty:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    columns = [c for c in wide.columns if names is None or c in names]
    long = (
        wide[columns]
        .rename_axis("time")
        .reset_index()
        .melt(id_vars="time", var_name="name", value_name="value")
    )
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    valid = long["value"].map(lambda v: measure(v) is not None)
    return long[valid].reset_index(drop=True)[HISTORY_COLUMNS]


# ---------------------------------------------------------------------------------------------
# Drawing


def _level_colour() -> alt.Scale:
    return alt.Scale(domain=LEVELS, range=[LEVEL_COLOURS[Level(v)] for v in LEVELS])


def _meta(key: str) -> dict[str, str]:
    # What a test (or anyone reading the spec) finds the chart by.
    return {"chart": key}


def _band_layer(bands: Bands, top: float, *, horizontal: bool) -> alt.Chart:
    position = "x" if horizontal else "y"
    encoding = {
        position: alt.X("start:Q") if horizontal else alt.Y("start:Q"),
        f"{position}2": alt.X2("end:Q") if horizontal else alt.Y2("end:Q"),
        "color": alt.Color("level:N", scale=_level_colour(), title="level"),
        "tooltip": [
            alt.Tooltip("level:N"),
            alt.Tooltip("start:Q", title=f"from ({bands.unit})"),
            alt.Tooltip("end:Q", title=f"to ({bands.unit})"),
        ],
    }
    return alt.Chart(bands_frame(bands, top)).mark_rect(opacity=BAND_OPACITY).encode(**encoding)


def _value_axis(
    bands: Bands, values: list[float], *, log: bool
) -> tuple[float, alt.Scale, alt.Axis]:
    """The value axis every banded chart shares: from 0 to past the breaking edge or the
    largest value; on a log scale with ticks at the band edges."""
    top = axis_top(bands, values)
    scale = alt.Scale(domain=[0, top], type="symlog" if log else "linear", nice=False)
    axis = alt.Axis(values=log_ticks(bands, top), format=",.6~g") if log else alt.Axis()
    return top, scale, axis


def bars_chart(
    frame: pd.DataFrame, bands: Bands, *, key: str, value_title: str = "", log: bool = False
) -> alt.LayerChart:
    """Horizontal bars, worst on top, over the shaded bands; a bar opens its link."""
    top, scale, axis = _value_axis(bands, frame["value"].tolist(), log=log)
    order = frame["name"].tolist()
    bars = (
        alt.Chart(frame)
        .mark_bar(height={"band": 0.7})
        .encode(
            y=alt.Y("name:N", sort=order, title=None, axis=alt.Axis(labelLimit=LABEL_PIXELS)),
            x=alt.X("value:Q", scale=scale, axis=axis, title=value_title),
            color=alt.Color("level:N", scale=_level_colour(), title="level"),
            href="link:N",
            tooltip=["name:N", alt.Tooltip("value:Q", format=",.4~g"), "level:N"],
        )
    )
    return (
        alt.layer(_band_layer(bands, top, horizontal=True), bars)
        .properties(height=rows_height(len(frame)), usermeta=_meta(key))
        .resolve_scale(y="shared")
    )


def wait_chart(frame: pd.DataFrame, bands: Bands, *, key: str) -> alt.LayerChart:
    top = axis_top(bands, frame["drawn"].tolist())
    order = frame["name"].tolist()
    base = alt.Chart(frame).encode(
        y=alt.Y("name:N", sort=order, title=None, axis=alt.Axis(labelLimit=LABEL_PIXELS)),
        x=alt.X("drawn:Q", scale=alt.Scale(domain=[0, top], nice=False), title="minutes"),
    )
    bars = base.mark_bar(height={"band": 0.7}).encode(
        color=alt.Color("level:N", scale=_level_colour(), title="level"),
        href="link:N",
        tooltip=["name:N", alt.Tooltip("text:N", title="a task enqueued now waits"), "level:N"],
    )
    labels = base.mark_text(align="right", dx=-4, color="white").encode(text="text:N")
    return alt.layer(_band_layer(bands, top, horizontal=True), bars, labels).properties(
        height=rows_height(len(frame)), usermeta=_meta(key)
    )


FLOW_COLOURS = {ARRIVAL: "#6a1b9a", COMPLETION: "#0277bd"}


def flow_chart(frame: pd.DataFrame, *, key: str) -> alt.Chart:
    """Arrival next to completion per queue: a longer arrival bar is a queue that grows."""
    queues = list(dict.fromkeys(frame["name"]))
    return (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            y=alt.Y("name:N", sort=queues, title=None, axis=alt.Axis(labelLimit=LABEL_PIXELS)),
            yOffset=alt.YOffset("direction:N", sort=[ARRIVAL, COMPLETION]),
            x=alt.X("rate:Q", title="tasks / s"),
            color=alt.Color(
                "direction:N",
                scale=alt.Scale(domain=list(FLOW_COLOURS), range=list(FLOW_COLOURS.values())),
                title=None,
            ),
            href="link:N",
            tooltip=["name:N", "direction:N", alt.Tooltip("rate:Q", format=",.3~f")],
        )
        .properties(height=rows_height(len(queues), per_row=1.6), usermeta=_meta(key))
    )


def history_chart(
    frame: pd.DataFrame, bands: Bands, *, key: str, value_title: str = "", log: bool = False
) -> alt.LayerChart:
    """Lines over time (one per series) over the bands shaded across the whole time axis."""
    top, scale, axis = _value_axis(bands, frame["value"].tolist(), log=log)
    lines = (
        alt.Chart(frame)
        .mark_line(point=False)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("value:Q", scale=scale, axis=axis, title=value_title),
            color=alt.Color("name:N", title=None, scale=alt.Scale(range=LINE_COLOURS)),
            tooltip=["name:N", "time:T", alt.Tooltip("value:Q", format=",.4~g")],
        )
    )
    return (
        alt.layer(_band_layer(bands, top, horizontal=False), lines)
        .resolve_scale(color="independent")
        .properties(height=300, usermeta=_meta(key))
    )


def badge(level: Level) -> str:
    """The level as a coloured Markdown badge, the colour of its band on the charts."""
    return f":{LEVEL_BADGE_COLOURS[level]}-badge[{level.value}]"

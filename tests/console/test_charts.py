"""Charts against the breaking points: the data behind each chart is what Prometheus holds, the
bands are the breaking points file, and every queue and worker drawn or listed is a link."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import altair as alt
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from alerts import recording
from alerts.rules import BURN_RATE_WINDOWS
from console import charts, links
from console.metrics import FAILURE_WINDOW, QueueState, WorkerState
from console.sources.alertmanager import Alert
from console.trouble import troubles
from fleetops.breaking_points import Level, current
from tests.console.apptest import page, run, texts
from tests.console.conftest import Workload
from tests.console.fleet import Fleet
from tests.helpers import wait_for

# ---------------------------------------------------------------------------------------------
# Reading a chart back from AppTest: Streamlit sends the Vega-Lite spec and each layer's data as
# Arrow; the chart is found by the `usermeta.chart` name console/charts.py gives it.


def drawn_charts(app: AppTest) -> dict[str, bool]:
    found = (json.loads(e.proto.spec).get("usermeta", {}) for e in app.get("vega_lite_chart"))
    return {meta.get("chart", ""): True for meta in found}


def chart_layers(app: AppTest, name: str) -> list[pd.DataFrame]:
    """The data of each layer of the chart called ``name``, in layer order."""
    for element in app.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        if spec.get("usermeta", {}).get("chart") != name:
            continue
        datasets = {
            d.name: pa.ipc.open_stream(d.data.data).read_pandas() for d in element.proto.datasets
        }
        top = spec.get("data", {}).get("name")
        return [
            datasets[layer.get("data", {}).get("name", top)] for layer in spec.get("layer", [spec])
        ]
    raise AssertionError(f"no chart {name!r} on the page; charts: {list(drawn_charts(app))}")


def bars(app: AppTest, name: str) -> pd.DataFrame:
    return chart_layers(app, name)[1].set_index("name")


def edges(app: AppTest, name: str) -> list[float]:
    band = chart_layers(app, name)[0]
    assert band["level"].tolist() == [level.value for level in Level]
    return band["start"].tolist()[1:]


def prometheus_by(fleet: Fleet, expr: str, label: str) -> dict[str, float]:
    return {
        s["metric"].get(label, ""): float(s["value"][1])
        for s in fleet.prometheus.query(expr)
        if not math.isnan(float(s["value"][1]))
    }


def wait_same(
    fleet: Fleet,
    page_name: str,
    chart: str,
    expr: str,
    label: str,
    scale: float = 1,
    drawn_of: Callable[[AppTest], dict[str, float]] | None = None,
) -> AppTest:
    """Run the page until its chart and Prometheus, read right after, agree (values move while
    the fleet runs and the two are read a moment apart); the page that agreed. The chart's
    values are its bars' unless ``drawn_of`` reads them."""
    seen: dict[str, object] = {}

    def agree() -> bool:
        app = seen["app"] = run(page(page_name))
        if not drawn_charts(app).get(chart):
            return False  # not drawn yet: e.g. no rate over the window before two scrapes
        drawn = drawn_of(app) if drawn_of else bars(app, chart)["value"].to_dict()
        held = {k: v * scale for k, v in prometheus_by(fleet, expr, label).items()}
        seen["last"] = (drawn, held)
        return drawn.keys() == held.keys() and all(
            math.isclose(drawn[k], held[k], rel_tol=1e-9) for k in held
        )

    try:
        wait_for(agree, timeout=60, message=f"the {chart} chart equals Prometheus")
    except Exception as exc:
        raise AssertionError(f"{chart} (drawn, Prometheus): {seen.get('last')}") from exc
    return seen["app"]  # type: ignore[return-value]


def flow_of(direction: str) -> Callable[[AppTest], dict[str, float]]:
    def read(app: AppTest) -> dict[str, float]:
        [flow] = chart_layers(app, "flow")
        rows = flow[flow["direction"] == direction]
        # Queues without any traffic are left out of the chart: leave their zeros out too.
        return {n: r for n, r in zip(rows["name"], rows["rate"], strict=True) if r}

    return read


# ---------------------------------------------------------------------------------------------
# Against the real fleet


@pytest.mark.slow
def test_overview_charts_draw_what_prometheus_holds(console_env: Fleet, workload: Workload) -> None:
    points = current()
    app = wait_same(
        console_env,
        "overview",
        "depth",
        'sum by (queue_name) (celery_queue_length{queue_name!="dead_letter"})',
        "queue_name",
    )
    depth = bars(app, "depth")
    assert depth.loc["images", "value"] == workload.waiting_images
    assert depth.loc["images", "link"] == "/queues?queue=images"
    assert depth.loc["images", "level"] == points.queue_depth.level_of(workload.waiting_images)
    assert depth["value"].is_monotonic_decreasing  # worst first
    depth_file = points.queue_depth
    assert edges(app, "depth") == [depth_file.warning, depth_file.critical, depth_file.breaking]
    latency = points.task_latency
    assert edges(app, "wait") == [
        latency.warning / 60,
        latency.critical / 60,
        latency.breaking / 60,
    ]
    for direction, metric in [
        ("arrival", "fleetops_queue_arrival_rate"),
        ("completion", "fleetops_queue_completion_rate"),
    ]:
        wait_same(
            console_env,
            "overview",
            "flow",
            f'sum by (queue_name) ({metric}{{queue_name!="dead_letter"}}) > 0',
            "queue_name",
            drawn_of=flow_of(direction),
        )
    # Beat's reminders finish every 2 s: their p95 is recorded.
    wait_same(console_env, "overview", "latency", recording.LATENCY_P95, "queue_name", 1 / 60)
    # Nobody consumes images: drawn at the axis end, saying so.
    waits = chart_layers(app, "wait")[1].set_index("name")
    assert (
        bool(waits.loc["images", "never"]) and waits.loc["images", "text"] == "never at this rate"
    )

    app = wait_same(
        console_env,
        "overview",
        "memory",
        "max by (hostname) (fleetops_worker_memory_percent)",
        "hostname",
    )
    memory = bars(app, "memory")
    host = console_env.worker.hostname
    assert memory.loc[host, "link"] == links.worker(host)
    mem_file = points.worker_memory
    assert edges(app, "memory") == [mem_file.warning, mem_file.critical, mem_file.breaking]

    # The workload's tasks all finished before Prometheus first scraped their counters, so no
    # rate shows them: fail more now, twice, as a counter's first sample is not an increase.
    # KeyError, not the workload's ValueError: the other pages' counts stay as they were.
    client = console_env.client()
    failed = 'celery_task_failed_total{queue_name="maintenance", exception="KeyError"}'
    client.send_task("maintenance.probe", kwargs={"fail": "KeyError"})
    wait_for(lambda: console_env.prometheus_value(failed), timeout=60, message="a KeyError")
    client.send_task("maintenance.probe", kwargs={"fail": "KeyError"})
    client.close()
    ratio = f'{recording.failure_ratio("1h")}{{queue_name="maintenance"}} > 0'
    wait_for(lambda: console_env.prometheus_value(ratio), timeout=60, message="a failure rate")
    app = wait_same(
        console_env,
        "overview",
        "failures",
        recording.failure_ratio("1h"),
        "queue_name",
        scale=100,
    )
    failures = bars(app, "failures")
    assert failures.loc["maintenance", "value"] > 0
    assert failures.loc["maintenance", "level"] == "breaking"  # far above 14.4x the budget
    # A queue's bar opens its failures.
    assert failures["link"].to_dict() == {
        q: links.failures(queue=q, since=FAILURE_WINDOW) for q in failures.index
    }
    budget = points.objectives.error_budget * 100
    assert edges(app, "failures") == pytest.approx([1 * budget, 6 * budget, 14.4 * budget])


@pytest.mark.slow
def test_overview_lists_trouble_first_with_links(console_env: Fleet, workload: Workload) -> None:
    app = run(page("overview"))
    assert app.subheader[0].value == "In trouble, worst first"
    first = app.markdown[0].value
    # The workload's alert is on images: the line links the runbook, the queue and its tasks.
    assert f"/runbooks?runbook={workload.alert}" in first
    assert "(/queues?queue=images)" in first and "(/tasks?queue=images)" in first
    assert ":yellow-badge[warning]" in first  # the warning band's colour


@pytest.mark.slow
def test_queues_page_focuses_on_the_queue_in_the_url(
    console_env: Fleet, workload: Workload
) -> None:
    app = run(page("queues", queue="images"))
    assert "Queue images" in [s.value for s in app.subheader]
    shown = texts(app)
    assert "(/tasks?queue=images)" in shown
    assert "(/tasks?queue=images&state=FAILURE)" in shown
    assert "(/failures?queue=images)" in shown
    history = chart_layers(app, "focus_history")[1]
    assert set(history["name"]) == {"images"}
    assert history.sort_values("time")["value"].iloc[-1] == workload.waiting_images
    assert edges(app, "focus_history") == [
        current().queue_depth.warning,
        current().queue_depth.critical,
        current().queue_depth.breaking,
    ]
    assert "No worker took a task from images lately." in shown

    # Beat sends reminders every 2 s and the fleet's worker takes them.
    host = console_env.worker.hostname
    app = run(page("queues", queue="reminders"))
    shown = texts(app)
    # Expected links built by console/links.py: its quoting is not this test's concern.
    assert links.markdown(host, links.worker(host)) in shown
    assert f"({links.tasks(queue='reminders', worker=host)})" in shown


@pytest.mark.slow
@pytest.mark.parametrize(
    "hostile",
    ["no-such-queue", "images](javascript:alert(1))", "x" * 100_000, "\x00\u202e<script>\ufffd"],
)
def test_queues_page_survives_a_hostile_queue_in_the_url(
    console_env: Fleet, workload: Workload, hostile: str
) -> None:
    app = run(page("queues", queue=hostile))
    [warning] = [w.value for w in app.warning]
    # Unknown names are named (escaped); unusable ones say why, as on every page (links.py).
    assert warning.startswith(("No queue named ", "The 'queue' in the link"))
    assert "](javascript" not in warning
    assert chart_layers(app, "history")  # every queue's history still drawn


@pytest.mark.slow
def test_workers_page_focuses_on_the_worker_in_the_url(
    console_env: Fleet, workload: Workload
) -> None:
    host = console_env.worker.hostname
    app = wait_same(
        console_env,
        "workers",
        "memory",
        "max by (hostname) (fleetops_worker_memory_percent)",
        "hostname",
    )
    assert bars(app, "memory").loc[host, "link"] == links.worker(host)

    app = run(page("workers", worker=host))
    assert f"Worker {host}" in [s.value for s in app.subheader]
    shown = texts(app)
    assert f"({links.tasks(worker=host)})" in shown
    assert f"({links.tasks(worker=host, state='FAILURE')})" in shown
    assert "(/queues?queue=reminders)" in shown
    assert app.selectbox(key="pool_worker").value == host
    assert set(chart_layers(app, "worker_memory_history")[1]["name"]) == {host}

    app = run(page("workers", worker="nobody@nowhere"))
    assert [w.value for w in app.warning] == [
        "No worker named nobody@nowhere is known: showing every worker."
    ]


# ---------------------------------------------------------------------------------------------
# The data builders, without servers


def queue(name: str, depth: float = 0.0, **fields: object) -> QueueState:
    values: dict[str, object] = dict(
        queue=name,
        depth=depth,
        band=Level.SAFE,
        arrival_rate=0.0,
        completion_rate=0.0,
        drain_seconds=0.0,
        wait_seconds=0.0,
        p95_latency=None,
        latency_band=None,
        consumers=0.0,
    )
    values.update(fields)
    return QueueState(**values)  # type: ignore[arg-type]


def worker(name: str, memory: object = 10.0, up: bool = True) -> WorkerState:
    return WorkerState(name, up, memory, None, 1.0, 0.0, 0.0, 4.0)  # type: ignore[arg-type]


HOSTILE = [math.nan, math.inf, -math.inf, -1.0, None, "12", True]


def test_depth_bars_are_sorted_worst_first_and_skip_what_is_not_a_number() -> None:
    points = current()
    queues = [queue(f"q{i:02}", float(i * 300)) for i in range(50)]
    queues += [queue(f"bad{i}", v) for i, v in enumerate(HOSTILE)]  # type: ignore[arg-type]
    frame = charts.depth_frame(queues, points)
    assert len(frame) == 50
    assert frame["name"].tolist() == [f"q{i:02}" for i in reversed(range(50))]
    assert frame["level"].tolist() == [points.queue_depth.level_of(v) for v in frame["value"]]
    assert frame["link"].iloc[0] == links.queue("q49")
    # 50 queues: one row each, so the chart grows with them.
    small = charts.bars_chart(frame.head(5), charts.signal_bands(points.queue_depth), key="d")
    large = charts.bars_chart(frame, charts.signal_bands(points.queue_depth), key="d")
    assert large.to_dict()["height"] == charts.rows_height(50) > small.to_dict()["height"]


def test_more_queues_than_rows_keeps_the_worst() -> None:
    queues = [queue(f"q{i}", float(i)) for i in range(500)]
    frame = charts.depth_frame(queues, current())
    assert len(frame) == charts.MAX_ROWS
    assert frame["value"].min() == 500 - charts.MAX_ROWS


def test_band_edges_come_from_the_breaking_points_file() -> None:
    points = current()
    for signal, bands in [
        (points.queue_depth, charts.signal_bands(points.queue_depth)),
        (points.worker_memory, charts.signal_bands(points.worker_memory)),
    ]:
        frame = charts.bands_frame(bands, top=1.0)
        assert frame["start"].tolist()[1:] == [signal.warning, signal.critical, signal.breaking]
        assert frame["end"].tolist()[-1] == signal.breaking  # never a band ending below its start
    latency = charts.latency_bands(points)
    assert latency.critical == points.task_latency.critical / 60
    failures = charts.failure_bands(points)
    budget = points.objectives.error_budget * 100
    assert failures.warning == min(w.factor for w in BURN_RATE_WINDOWS) * budget
    assert failures.breaking == max(w.factor for w in BURN_RATE_WINDOWS) * budget


def test_every_level_has_one_colour_on_charts_and_badges() -> None:
    assert set(charts.LEVEL_COLOURS) == set(Level) == set(charts.LEVEL_BADGE_COLOURS)
    spec = charts.bars_chart(
        charts.memory_frame([worker("w", 95.0)], current()),
        charts.signal_bands(current().worker_memory),
        key="m",
    ).to_dict()
    scales = [layer["encoding"]["color"]["scale"] for layer in spec["layer"]]
    assert scales[0] == scales[1]
    assert scales[0]["range"] == [charts.LEVEL_COLOURS[level] for level in Level]


def test_wait_frame_draws_a_queue_that_never_drains_at_the_axis_end() -> None:
    points = current()
    queues = [
        queue("stuck", 10.0, wait_seconds=math.inf),
        queue("slow", 10.0, wait_seconds=600.0),
        queue("empty", 0.0, wait_seconds=0.0),
        queue("nan", 5.0, wait_seconds=math.nan),
        queue("negative", 5.0, wait_seconds=-3.0),
        queue("weird", math.nan, wait_seconds=10.0),
    ]
    frame = charts.wait_frame(queues, points).set_index("name")
    assert frame.index.tolist() == ["stuck", "slow"]
    assert bool(frame.loc["stuck", "never"]) and frame.loc["stuck", "text"] == "never at this rate"
    assert frame.loc["stuck", "drawn"] >= points.task_latency.breaking / 60
    assert frame.loc["stuck", "level"] == "breaking"
    assert frame.loc["slow", "minutes"] == 10 and frame.loc["slow", "level"] == "warning"


def test_flow_frame_puts_the_fastest_growing_queue_first() -> None:
    queues = [
        queue("steady", arrival_rate=2.0, completion_rate=2.0),
        queue("growing", arrival_rate=5.0, completion_rate=1.0),
        queue("idle"),
        queue("hostile", arrival_rate=math.nan, completion_rate=-4.0),
        queue("half", arrival_rate=math.inf, completion_rate=1.0),
    ]
    frame = charts.flow_frame(queues)
    assert list(dict.fromkeys(frame["name"])) == ["growing", "steady", "half"]
    half = frame[frame["name"] == "half"].set_index("direction")["rate"].to_dict()
    assert half == {"arrival": 0.0, "completion": 1.0}


def test_latency_memory_and_failure_frames_convert_and_skip_hostile_values() -> None:
    points = current()
    latency = charts.latency_frame(
        [queue("a", p95_latency=600.0), queue("b", p95_latency=math.inf), queue("c")], points
    )
    assert latency.to_dict("records") == [
        {"name": "a", "value": 10.0, "level": "warning", "link": "/queues?queue=a"}
    ]
    memory = charts.memory_frame([worker(f"w{i}", v) for i, v in enumerate(HOSTILE)], points)
    assert memory.empty and list(memory.columns) == charts.BAR_COLUMNS
    failures = charts.failure_frame(
        {(None, "a"): 0.5, (None, "b"): math.nan, (None, "c"): -1.0, (None, "d"): 0.0}, points
    )
    assert failures.set_index("name")["value"].to_dict() == {"a": 50.0, "d": 0.0}
    assert failures.set_index("name").loc["a", "level"] == "breaking"
    # Empty frames still draw (an empty chart), never raise.
    charts.bars_chart(memory, charts.signal_bands(points.worker_memory), key="m").to_dict()


def test_history_frame_keeps_the_named_series_and_drops_points_that_are_not_numbers() -> None:
    times = pd.date_range("2026-01-01", periods=3, freq="1min", tz="UTC")
    wide = pd.DataFrame(
        {"a": [1.0, math.nan, 3.0], "b": [math.inf, -1.0, 2.0], "c": [1.0, 1.0, 1.0]}, index=times
    )
    long = charts.history_frame(wide, ["a", "b"])
    assert long[["name", "value"]].values.tolist() == [["a", 1.0], ["a", 3.0], ["b", 2.0]]
    assert charts.history_frame(pd.DataFrame(), None).empty
    chart = charts.history_chart(long, charts.signal_bands(current().queue_depth), key="h")
    assert isinstance(chart, alt.LayerChart) and chart.to_dict()["usermeta"] == {"chart": "h"}


def test_trouble_is_sorted_worst_first_and_every_name_is_an_escaped_link() -> None:
    points = current()
    alerts = [
        Alert("CeleryWorkerDown", "active", "warning", {"hostname": "w1"}, "Down.", "", []),
        Alert("Info", "active", "info", {}, "Nothing to see.", "", []),
        Alert("Silenced", "suppressed", "critical", {}, "Quiet.", "", []),
    ]
    found = troubles(
        [
            queue("calm", 3.0),
            queue("deep", points.queue_depth.breaking + 1),
            queue("q](javascript:x)", points.queue_depth.warning),
            queue("nan", math.nan, p95_latency=math.nan),
        ],
        [worker("w1", 50.0, up=False), worker("hot", points.worker_memory.critical)],
        alerts,
        points,
    )
    assert [(t.level, t.kind, t.name) for t in found] == [
        (Level.BREAKING, "queue", "deep"),
        (Level.CRITICAL, "worker", "hot"),
        (Level.WARNING, "queue", "q](javascript:x)"),
        (Level.WARNING, "worker", "w1"),
        (Level.WARNING, "alert", "CeleryWorkerDown"),
    ]
    text = "\n".join(t.markdown() for t in found)
    assert "[deep](/queues?queue=deep)" in text and "[tasks](/tasks?queue=deep)" in text
    assert "[hot](/workers?worker=hot)" in text and "[tasks](/tasks?worker=hot)" in text
    assert "(javascript:x)" not in text  # the hostile name stays text inside the brackets
    assert text.startswith("- :red-badge[breaking]")

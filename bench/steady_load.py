"""Does the fleet page when nothing is wrong? Runs the whole local fleet with default settings
under its default steady load and records every notification the pager receives.

The fleet is ``fleetops up`` itself (every process of the data flow, the shipped Prometheus,
Alertmanager and pager configuration) with the load it runs by default: the ``steady``
scenario of workers/load.py, one upload a second (a few broken or duplicate ones among them)
and a reminder item every ten, far below every breaking point. Nothing is changed for the run.

A page other than the Watchdog is a false page: a product bug. Tickets (warnings) are listed
separately. The Watchdog must keep arriving, or the run proves nothing: a silent pipeline
pages for nothing too.

Usage::

    uv run --frozen python bench/steady_load.py              # the full 20 minutes
    uv run --frozen python bench/steady_load.py --minutes 3  # a quick look

Exit code: 0 no page but the Watchdog; 1 a false page; 2 no Watchdog arrived (the run cannot
tell); 3 the fleet died. Ctrl-C (or SIGTERM) stops the fleet and still prints the summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

# Run as a script (python bench/<name>.py) too, as the other benchmarks are.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts import recording
from alerts.config import duration_seconds
from alerts.generate import enabled_alerts, load_inputs
from alerts.rules import BURN_RATE_WINDOWS
from bench.fleet_run import (
    WATCHDOG_CHANNEL,
    LocalFleet,
    local_fleet,
    prometheus_query,
    scraping,
    stop_on_signals,
    utc,
)
from bench.harness import wait_for
from workers.fleet import DEFAULT_SCENARIO

WATCHDOG = "FleetopsWatchdog"
CHECK_EVERY = 5.0
PROGRESS_EVERY = 60.0


def describe(note: dict) -> str:
    labels = note["labels"]
    scope = " ".join(
        f"{k}={labels[k]}" for k in ("queue_name", "hostname", "instance", "part") if k in labels
    )
    return (
        f"{utc(note['received_at'])} {note['channel']:<8} {note['status']:<8}"
        f" {note['alertname']} [{note['severity']}] {scope} - {note['summary']}"
        f" {note['description']}"
    )


def load_evidence(fleet: LocalFleet, seconds: float) -> list[str]:
    """What the fleet did during the run, from its own Prometheus: tasks done and deepest
    queues, so that 'nothing paged' is known to mean 'the fleet worked and nothing paged'."""
    prometheus = fleet.base("prometheus")
    window = f"{max(60, int(seconds))}s"
    lines = []
    for what, promql in (
        ("tasks succeeded", f"sum(increase(celery_task_succeeded_total[{window}]))"),
        ("tasks failed", f"sum(increase(celery_task_failed_total[{window}]))"),
    ):
        result = prometheus_query(prometheus, promql)
        value = float(result[0]["value"][1]) if result else 0.0
        lines.append(f"{what}: {value:.0f}")
    deepest = prometheus_query(
        prometheus, f"max by (queue_name) (max_over_time(celery_queue_length[{window}]))"
    )
    depths = ", ".join(
        f"{r['metric'].get('queue_name', '?')} {float(r['value'][1]):.0f}" for r in deepest
    )
    lines.append(f"deepest queue depth: {depths or '(no queue series)'}")
    lines += error_budget_margin(prometheus, window)
    lines += alert_states(prometheus, window)
    return lines


def error_budget_margin(prometheus: str, window: str) -> list[str]:
    """How close each queue came to an error-budget page: the highest failure ratio of each
    window a paging burn-rate pair reads, against the ratio that pair pages above."""
    points, _config = load_inputs(None)
    budget = points.objectives.error_budget
    lines = []
    for pair in (w for w in BURN_RATE_WINDOWS if w.severity == "critical"):
        pages_above = pair.factor * budget
        for ratio_window in (pair.short, pair.long):
            result = prometheus_query(
                prometheus, f"max_over_time({recording.failure_ratio(ratio_window)}[{window}:15s])"
            )
            highest = ", ".join(
                f"{r['metric'].get('queue_name', '?')} {float(r['value'][1]):.2%}" for r in result
            )
            lines.append(
                f"failure ratio over {ratio_window}, highest during the run: {highest or '-'}"
                f" (the {pair.long}/{pair.short} pair pages above {pages_above:.2%})"
            )
    return lines


def alert_states(prometheus: str, window: str) -> list[str]:
    """Every alert that went pending or firing, whether or not it reached the pager, with the
    time it spent pending against its `for` (evaluations x the evaluation interval)."""
    points, config = load_inputs(None)
    holds = {
        (r.name, r.labels.get("long_window", "")): r.hold for r in enabled_alerts(points, config)
    }
    evaluation = duration_seconds(config.prometheus.evaluation_interval)
    by_alert = "sum by (alertname, alertstate, severity, long_window, queue_name, hostname, job)"
    states = prometheus_query(prometheus, f"{by_alert} (count_over_time(ALERTS[{window}]))")
    lines = ["alerts pending or firing at any time (evaluations x interval):"]
    for r in sorted(states, key=lambda r: sorted(r["metric"].items())):
        labels = r["metric"]
        name = labels["alertname"]
        hold = holds.get((name, labels.get("long_window", "")), "?")
        scope = " ".join(
            f"{k}={labels[k]}"
            for k in ("queue_name", "hostname", "job", "long_window")
            if k in labels
        )
        seconds = float(r["value"][1]) * evaluation
        lines.append(
            f"  {name} [{labels.get('severity', '?')}] {scope}: {labels['alertstate']}"
            f" ~{seconds:.0f}s (for {hold})"
        )
    return lines if len(lines) > 1 else ["alerts pending or firing at any time: none"]


def run(args: argparse.Namespace) -> int:
    seconds = args.minutes * 60
    notes: list[dict] = []
    evidence: list[str] = []
    restarts: dict[str, int] = {}
    fleet_died = ""
    started = launched = time.time()
    try:
        with local_fleet(args.load, "fleetops-steady-", keep=args.keep) as fleet:
            prometheus = fleet.base("prometheus")
            wait_for(
                lambda: scraping(prometheus, "fleetops-exporter"), 120, "the first exporter scrape"
            )
            started = time.time()
            print(
                f"{utc(started)} the fleet is up and scraped; running {args.minutes:g} min"
                f" (load: {args.load}); notifications are printed as they arrive",
                flush=True,
            )
            shown = 0
            next_progress = started + PROGRESS_EVERY
            try:
                while time.time() - started < seconds:
                    try:
                        fleet.alive()
                    except RuntimeError as exc:
                        fleet_died = str(exc)
                        break
                    notes = fleet.notifications()
                    for note in notes[shown:]:
                        if note["channel"] != WATCHDOG_CHANNEL:
                            print(describe(note), flush=True)
                    shown = len(notes)
                    if time.time() >= next_progress:
                        by_channel = Counter(n["channel"] for n in notes)
                        elapsed = (time.time() - started) / 60
                        print(
                            f"{utc(time.time())} {elapsed:4.1f} min: notifications by channel"
                            f" {dict(by_channel) or '{}'}",
                            flush=True,
                        )
                        next_progress += PROGRESS_EVERY
                    time.sleep(CHECK_EVERY)
            except KeyboardInterrupt:
                # Read what the fleet recorded before it is stopped and its directory removed.
                print("\ninterrupted: stopping the fleet; the summary covers the run so far")
            if not fleet_died:
                # From the launch: what went pending while the fleet came up counts too.
                evidence = load_evidence(fleet, time.time() - launched)
            notes = fleet.notifications()
            restarts = fleet.restarts()
    except KeyboardInterrupt:
        print("\ninterrupted: the fleet is stopped")
    return summarize(notes, evidence, restarts, fleet_died, time.time() - started, args)


def summarize(
    notes: list[dict],
    evidence: list[str],
    restarts: dict[str, int],
    fleet_died: str,
    seconds: float,
    args: argparse.Namespace,
) -> int:
    watchdog = [n for n in notes if n["channel"] == WATCHDOG_CHANNEL]
    pages = [n for n in notes if n["channel"] == "page" and n["alertname"] != WATCHDOG]
    tickets = [n for n in notes if n["channel"] not in ("page", WATCHDOG_CHANNEL)]
    print(f"\n== steady load, {seconds / 60:.1f} min of {args.minutes:g}, load {args.load} ==")
    for line in evidence:
        print(line)
    print(f"fleet processes restarted: {restarts or 'none'}")
    print(f"watchdog notifications: {len(watchdog)}")
    fired = Counter(n["alertname"] for n in pages if n["status"] == "firing")
    print(f"pages other than the Watchdog: {len(pages)} {dict(fired) if fired else ''}")
    for note in pages:
        print("  " + describe(note))
    print(f"tickets (warnings): {len(tickets)}")
    for note in tickets:
        print("  " + describe(note))
    if fleet_died:
        print(f"the fleet died during the run:\n{fleet_died}")
        return 3
    if pages:
        print("RESULT: FALSE PAGE(S) under steady load")
        return 1
    if not watchdog:
        print("RESULT: no Watchdog arrived: the alert pipeline is not proven to work")
        return 2
    print("RESULT: no page but the Watchdog")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the run")
    parser.add_argument(
        "--load", default=DEFAULT_SCENARIO, help="load scenario `fleetops up` runs (its default)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run directory and logs")
    args = parser.parse_args()
    stop_on_signals()
    sys.exit(run(args))


if __name__ == "__main__":
    main()

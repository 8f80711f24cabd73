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

from bench.fleet_run import (
    WATCHDOG_CHANNEL,
    LocalFleet,
    local_fleet,
    prometheus_query,
    scraping,
    stop_on_sigterm,
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
    # Alerts that went pending or firing at all, whether or not they reached the pager.
    by_alert = "count by (alertname, alertstate, severity)"
    states = prometheus_query(prometheus, f"{by_alert} (count_over_time(ALERTS[{window}]))")
    seen = sorted(
        f"{r['metric']['alertname']} ({r['metric'].get('severity', '?')},"
        f" {r['metric']['alertstate']})"
        for r in states
    )
    lines.append("alerts pending or firing at any time: " + (", ".join(seen) or "none"))
    return lines


def run(args: argparse.Namespace) -> int:
    seconds = args.minutes * 60
    notes: list[dict] = []
    evidence: list[str] = []
    restarts: dict[str, int] = {}
    fleet_died = ""
    started = time.time()
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
            if not fleet_died:
                evidence = load_evidence(fleet, time.time() - started)
            notes = fleet.notifications()
            restarts = fleet.restarts()
    except KeyboardInterrupt:
        print("\ninterrupted: the fleet is stopped; the summary covers the run so far")
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
    stop_on_sigterm()
    sys.exit(run(args))


if __name__ == "__main__":
    main()

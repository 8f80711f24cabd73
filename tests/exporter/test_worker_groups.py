"""Worker groups under autoscaling: a couple of hundred short-lived workers come and go, each
with a pod name of its own, and the task series stay one per group.

One real Redis and two real exporters read the same event stream, one with
FLEETOPS_EXPORTER_WORKER_GROUPS (and a short worker timeout) and one without, for the contrast.

The fleet that churns: ``REAL_WORKERS`` real Celery workers (Celery's WorkController, started
in turn in this process by ``celery.contrib.testing.worker.start_worker`` with its heartbeat on,
so they send their own worker-online, heartbeats, task events and worker-offline), then
``SIMULATED_WORKERS`` workers whose events Celery's own EventDispatcher sends through the
broker as a worker sends them (the same event types and fields: worker-online, task-received,
task-started, task-succeeded with its runtime, worker-heartbeat, worker-offline), for tasks a
real producer published (its task-sent events are real). Why not only real workers: one costs
~0.2 s wall in process (~2-3 s CPU as a process), and 200 of them would take the suite's time;
the exporter sees the same events either way. ``LIVE_WORKERS`` simulated workers stay up (they
heartbeat until the end).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.worker import state as worker_state
from kombu import Connection

from exporters.metrics import worker_groups
from exporters.metrics.settings import load
from exporters.metrics.state import (
    TASK_QUEUE_SERIES_WEIGHT,
    TASK_SERIES_WEIGHT,
    WORKER_SERIES_WEIGHT,
)
from fleetops.errors import ConfigError
from tests.exporter.process import ExporterProcess, Samples, run_exporter
from tests.helpers import wait_for
from tests.processes import processes_in
from tests.servers import RedisServer

TASK = "churn.work"
QUEUE = "churn"
GROUPS = ("images", "reminders")
# A Deployment's pods: <deployment>-<pod-template-hash>-<5 random characters>.
PATTERN = r"celery@(?P<group>[a-z]+)-[a-z0-9]{8,10}-[a-z0-9]{5}"
REAL_WORKERS = 6
SIMULATED_WORKERS = 200
LIVE_WORKERS = 4
TASKS_PER_WORKER = 3
# Seconds: the grouped exporter takes a silent worker for down this soon, and forgets one that
# stopped cleanly (worker-offline) when this has passed; crashed ones wait for the purge delay.
WORKER_TIMEOUT = 3
HEARTBEAT_EVERY = 0.5
STREAMS = 4  # threads sending the simulated workers' events


def pod_names() -> Iterator[tuple[str, str]]:
    """(group, hostname) of pods of the groups in turn, each with a name of its own."""
    for n in itertools.count():
        group = GROUPS[n % len(GROUPS)]
        yield group, f"celery@{group}-7d9f8b6c4-{n:05d}"


@dataclass
class Churn:
    grouped: ExporterProcess
    ungrouped: ExporterProcess
    tasks: dict[str, int] = field(default_factory=dict)  # group -> tasks run by its workers
    gone: list[str] = field(default_factory=list)  # hostnames of the workers that stopped
    live: dict[str, str] = field(default_factory=dict)  # hostname -> group, still up
    crashed: dict[str, str] = field(default_factory=dict)  # went silent, no worker-offline


def churn_app(broker_url: str) -> Celery:
    app = Celery("worker-groups-test", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_send_sent_event=True,
        worker_send_task_events=True,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        # The in-process worker notices its stop between two polls of the broker.
        broker_transport_options={"polling_interval": 0.05},
    )
    app.task(name=TASK)(work)
    return app


def work(i: int) -> int:
    return i


def run_real_workers(app: Celery, pods: Iterator[tuple[str, str]], churn: Churn) -> None:
    """Real workers, one after the other, each running its tasks and stopping cleanly."""
    for _ in range(REAL_WORKERS):
        group, hostname = next(pods)
        done = sum(worker_state.total_count.values())
        with start_worker(
            app,
            pool="solo",
            hostname=hostname,
            without_heartbeat=False,  # its worker-online, heartbeats and worker-offline
            perform_ping_check=False,
            loglevel="WARNING",
        ):
            for i in range(TASKS_PER_WORKER):
                app.send_task(TASK, args=(i,), queue=QUEUE)
            wait_for(
                lambda d=done: sum(worker_state.total_count.values()) >= d + TASKS_PER_WORKER,
                message=f"{hostname} to run its tasks",
            )
        churn.tasks[group] = churn.tasks.get(group, 0) + TASKS_PER_WORKER
        churn.gone.append(hostname)


class SimulatedWorker:
    """A worker's events, sent by Celery's EventDispatcher as the worker sends them."""

    def __init__(self, app: Celery, connection: Connection, hostname: str) -> None:
        # As a worker does, its task events are buffered and sent in batches (task.multi).
        self.dispatcher = app.events.Dispatcher(
            connection, hostname=hostname, buffer_group=["task"], buffer_limit=1000
        )
        self.processed = 0

    def send(self, kind: str, **fields: object) -> None:
        self.dispatcher.send(kind, **fields)

    def heartbeat(self, kind: str = "worker-heartbeat") -> None:
        self.send(
            kind,
            freq=2.0,
            sw_ident="py-celery",
            sw_ver="5",
            sw_sys="Linux",
            active=0,
            processed=self.processed,
            loadavg=[0.0, 0.0, 0.0],
        )

    def run(self, app: Celery) -> None:
        """A task a real producer publishes (and announces), received, run and succeeded."""
        result = app.send_task(TASK, args=(self.processed,), queue=QUEUE)
        self.send(
            "task-received",
            uuid=result.id,
            name=TASK,
            args="(0,)",
            kwargs="{}",
            root_id=result.id,
            parent_id=None,
            retries=0,
            eta=None,
            expires=None,
        )
        self.send("task-started", uuid=result.id)
        self.send("task-succeeded", uuid=result.id, result="0", runtime=0.01)
        self.processed += 1

    def flush(self) -> None:
        self.dispatcher.flush()


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Churn]:
    run_dir = tmp_path_factory.mktemp("worker-groups")
    started = time.monotonic()
    with processes_in(run_dir) as processes:
        redis = RedisServer(processes).start()
        grouped_env = {
            "FLEETOPS_EXPORTER_WORKER_GROUPS": json.dumps([PATTERN]),
            "FLEETOPS_EXPORTER_WORKER_TIMEOUT": str(WORKER_TIMEOUT),
        }
        # Side by side: each takes a second or two to start on a busy machine.
        grouped = run_exporter(processes, redis.url, env=grouped_env, wait=False)
        ungrouped = run_exporter(processes, redis.url, wait=False)
        for exporter in (grouped, ungrouped):
            exporter.child.wait_ready()
        churn = Churn(grouped, ungrouped)
        app = churn_app(redis.url)
        pods = pod_names()
        print(f"\nexporters up: {time.monotonic() - started:.1f} s")
        run_real_workers(app, pods, churn)
        print(f"real workers: {time.monotonic() - started:.1f} s")
        share = SIMULATED_WORKERS // STREAMS
        pods_of = [[next(pods) for _ in range(share)] for _ in range(STREAMS)]
        live = {hostname: group for group, hostname in pods_of[-1][-LIVE_WORKERS:]}
        crashed = dict([pods_of[-1][-LIVE_WORKERS - 1][::-1]])
        stop = threading.Event()
        # Side by side, each on a connection of its own: the broker's round trips overlap.
        streams = [Stream(app, some, live, crashed, stop) for some in pods_of]
        for stream in streams:
            stream.start()
        wait_for(lambda: all(stream.churned() for stream in streams), timeout=120)
        for group, hostname in itertools.chain(*pods_of):
            churn.tasks[group] = churn.tasks.get(group, 0) + TASKS_PER_WORKER
            if hostname not in live and hostname not in crashed:
                churn.gone.append(hostname)
        churn.live, churn.crashed = live, crashed
        print(f"churn of {len(churn.gone)} workers: {time.monotonic() - started:.1f} s")
        yield churn
        stop.set()
        app.close()


class Stream(threading.Thread):
    """Workers that come online, run their tasks and go, one after the other (the ``live``
    ones stay and beat until ``stop``; the ``crashed`` ones fall silent without a word)."""

    def __init__(
        self,
        app: Celery,
        pods: list[tuple[str, str]],
        live: dict[str, str],
        crashed: dict[str, str],
        stop: threading.Event,
    ) -> None:
        super().__init__(daemon=True)
        self.app, self.pods, self.live, self.crashed, self.stop = app, pods, live, crashed, stop
        self.done = threading.Event()
        self.error: BaseException | None = None

    def churned(self) -> bool:
        """Whether every worker has come and (but the live ones) gone; raises what broke."""
        if self.error is not None:
            raise self.error
        return self.done.is_set()

    def run(self) -> None:
        try:
            with self.app.connection_for_write() as connection:
                beating = []
                for _group, hostname in self.pods:
                    worker = SimulatedWorker(self.app, connection, hostname)
                    worker.heartbeat("worker-online")
                    for _ in range(TASKS_PER_WORKER):
                        worker.run(self.app)
                    worker.flush()
                    if hostname in self.live:
                        beating.append(worker)
                    elif hostname not in self.crashed:
                        worker.heartbeat("worker-offline")
                self.done.set()
                while beating and not self.stop.wait(HEARTBEAT_EVERY):
                    for worker in beating:
                        worker.heartbeat()
        except BaseException as exc:  # handed to the fixture, which fails with it
            self.error = exc


# Every series carries its app; this module's exporters follow the one default app.
ONE_APP = frozenset({("app", "default")})


def series(samples: Samples, metric: str) -> dict[frozenset, float]:
    return {labels: v for (name, labels), v in samples.items() if name == metric}


def by_host(samples: Samples, metric: str) -> dict[str, float]:
    """``metric`` summed per hostname label."""
    out: dict[str, float] = {}
    for labels, v in series(samples, metric).items():
        host = dict(labels)["hostname"]
        out[host] = out.get(host, 0.0) + v
    return out


def all_counted(exporter: ExporterProcess, churn: Churn) -> Samples:
    """The exporter's samples once every task of the churn is counted (fails on a timeout)."""
    total = sum(churn.tasks.values())

    def counted() -> Samples | None:
        assert exporter.alive(), exporter.log()
        samples = exporter.metrics()
        done = sum(by_host(samples, "celery_task_succeeded_total").values())
        return samples if done >= total else None

    return wait_for(counted, message=f"{total} tasks counted")


def test_with_groups_the_task_series_are_one_per_group_and_no_task_is_lost(churn: Churn) -> None:
    samples = all_counted(churn.grouped, churn)
    expected = {group: float(n) for group, n in churn.tasks.items()}
    # task-sent comes from the producer: counted under its hostname, every task once.
    assert sum(by_host(samples, "celery_task_sent_total").values()) == sum(expected.values())
    for metric in (
        "celery_task_received_total",
        "celery_task_started_total",
        "celery_task_succeeded_total",
        "celery_task_runtime_count",
    ):
        assert by_host(samples, metric) == expected, metric
        assert len(series(samples, metric)) == len(GROUPS), metric


def test_with_groups_live_workers_show_and_departed_ones_are_purged(churn: Churn) -> None:
    """Workers that stopped cleanly are forgotten once the worker timeout has passed; a crashed
    one stays, down, for CeleryWorkerDown."""
    shown = {**churn.live, **churn.crashed}

    def purged() -> Samples | None:
        assert churn.grouped.alive(), churn.grouped.log()
        samples = churn.grouped.metrics()
        up = by_host(samples, "celery_worker_up")
        if set(up) != set(shown) or any(up[host] for host in churn.crashed):
            return None
        return samples

    samples = wait_for(purged, timeout=WORKER_TIMEOUT + 30, message="departed workers purged")
    for labels, up in series(samples, "celery_worker_up").items():
        worker = dict(labels)
        assert up == (worker["hostname"] in churn.live), worker
        assert worker["worker_group"] == shown[worker["hostname"]], worker
    for labels, stopped in series(samples, "fleetops_worker_stopped_cleanly").items():
        assert stopped == 0, labels
    for metric in ("fleetops_worker_heartbeat_age_seconds", "fleetops_worker_processed_total"):
        hosts = {dict(labels)["hostname"] for labels in series(samples, metric)}
        assert hosts == set(shown), metric
    # Flat: what is held is the series of the groups (and of the producer, whose task-sent
    # counts under its own hostname) and the workers shown, whatever came and went.
    task_hosts = set(by_host(samples, "celery_task_sent_total")) | set(GROUPS)
    held = samples[("fleetops_exporter_series", ONE_APP)]
    assert held == (
        len(task_hosts) * TASK_SERIES_WEIGHT
        + TASK_QUEUE_SERIES_WEIGHT
        + len(shown) * WORKER_SERIES_WEIGHT
    )
    hostnames = frozenset({("label", "hostname")}) | ONE_APP
    held_names = samples[("fleetops_exporter_label_values", hostnames)]
    assert held_names == len(task_hosts) + len(shown)
    assert samples[("fleetops_exporter_label_overflow_total", hostnames)] == 0


def test_without_groups_every_worker_grows_the_task_series(churn: Churn) -> None:
    samples = all_counted(churn.ungrouped, churn)
    succeeded = by_host(samples, "celery_task_succeeded_total")
    assert set(succeeded) == set(churn.gone) | set(churn.live) | set(churn.crashed)
    assert set(succeeded.values()) == {TASKS_PER_WORKER}
    assert len(series(samples, "celery_task_runtime_count")) == REAL_WORKERS + SIMULATED_WORKERS
    # Kept for the purge delay (10 minutes by default), down: the series a dashboard shows.
    assert len(series(samples, "celery_worker_up")) == REAL_WORKERS + SIMULATED_WORKERS


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("celery@(", "is not a regular expression"),
        ("celery@images", "has no capture group"),
        ("(a+)+$", "repeats a repetition"),
        ("(x|xy)*(z)", "repeats an alternation"),
        (r"(a)\1", "backreference"),
        ("(?<=@)(.+)", "lookaround"),
        ("(.*)(.*)(.*)(.*)", "open-ended repetitions"),
        (json.dumps(["(.*)-(.*)-(.*)", "(.+)@(.+)@(.+)", "(.*)"]), "in all the patterns"),
        # Bounded repetitions multiply the ways too: 2**24 here, seconds per hostname.
        ("(a?)" + "a?" * 23 + "a" * 24, "ways to split a hostname"),
        ("(a{0,16})" * 6, "ways to split a hostname"),
        ("((a?){24})", "ways to split a hostname"),
        (json.dumps(["(a?)" + "a?" * 20] * 3), "ways to split a hostname in all"),
        ("(" + "a" * 600 + ")", "characters"),
        (json.dumps(["(a)", 3]), "is not a regular expression (a string)"),
        ({"images": "(a)"}, "JSON array"),
        (json.dumps(["(a)"] * 40), "at most"),
    ],
)
def test_a_hostile_pattern_is_a_clear_config_error(given: object, says: str) -> None:
    with pytest.raises(ConfigError, match="EXPORTER_WORKER_GROUPS") as error:
        load(exporter_worker_groups=given)
    assert says in str(error.value)


def test_patterns_are_given_as_a_json_array_or_one_per_line() -> None:
    lines = load(exporter_worker_groups=f"{PATTERN}\n  celery@([a-z]+)-[0-9]+  \n")
    assert lines.exporter_worker_groups == [PATTERN, "celery@([a-z]+)-[0-9]+"]
    # A pattern opening with a character class is one pattern, not a broken JSON array.
    assert load(exporter_worker_groups="[a-z]+@(.+)").exporter_worker_groups == ["[a-z]+@(.+)"]
    groups = worker_groups.WorkerGroups(load(exporter_worker_groups=PATTERN).exporter_worker_groups)
    assert groups.group_of("celery@images-7d9f8b6c4-x2kfz") == "images"
    assert groups.group_of("celery@laptop") == "celery@laptop"  # no match: its own name

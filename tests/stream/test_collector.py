"""The exporter and the recorder turn the automatic garbage collector off and collect on their
own schedule (exporters/stream/collector.py). That is only safe while the hot path makes no
reference cycles: what it allocates must be freed by reference counting alone."""

from __future__ import annotations

import gc
import time

import orjson

from exporters.metrics.app import Exporter
from exporters.metrics.settings import ExporterSettings
from exporters.stream.batches import RAW
from exporters.stream.collector import ScheduledCollector
from tests.history.events import task_lifecycle
from tests.stream.corpus import corpus, envelope


def test_decoding_checking_and_applying_events_make_no_reference_cycles() -> None:
    exporter = Exporter(ExporterSettings(broker_url="redis://127.0.0.1:1/0"))
    now = time.time()
    valid = [
        envelope(task_lifecycle(start=now + i, outcome="failed" if i % 3 else "succeeded"))
        for i in range(200)
    ]
    heartbeat = envelope({"type": "worker-heartbeat", "hostname": "w@h", "timestamp": now})
    payloads = [*valid, heartbeat, *(case.payload for case in corpus(now))]
    # The first pass makes what lives on (series, label caches, task records, log throttles).
    exporter.apply_batch(RAW, payloads, time.monotonic())
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(3):
            exporter.apply_batch(RAW, payloads, time.monotonic())
        exporter.tick(time.monotonic() + 10)
        found = gc.collect()
    finally:
        if enabled:
            gc.enable()
    assert exporter.stream.rejections.counts, "the corpus must have exercised the reject path"
    assert found == 0, f"{found} objects were only freed by the cyclic collector"


def test_a_collector_taken_over_collects_on_its_schedule() -> None:
    collector = ScheduledCollector(every=30.0)
    collector.tick(time.monotonic() + 3600)
    assert collector.collections == 0, "an inactive collector leaves the process's GC alone"
    enabled = gc.isenabled()
    try:
        collector.take_over()
        assert not gc.isenabled()
        cycle: list = []
        cycle.append(cycle)
        del cycle
        collector.tick(time.monotonic())
        assert collector.collections == 0, "not due yet"
        collector.tick(time.monotonic() + 31)
        assert collector.collections == 1
        assert collector.collected >= 1
        assert orjson.dumps(collector.last_pause)  # a finite number of seconds
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def test_every_apps_consumer_ticks_one_collector() -> None:
    """A process of several apps has one consumer per app: any of them keeps the collections
    going (the first app's may be frozen), and two due at once collect once."""
    from exporters.metrics.apps import Exporters
    from exporters.metrics.settings import load

    exporters = Exporters(load(apps="a=redis://127.0.0.1:1/0,b=redis://127.0.0.1:1/1"))
    enabled = gc.isenabled()
    try:
        exporters.take_over_collector()
        first, second = (p.stream.collector for p in exporters.pipelines)
        assert not gc.isenabled()
        due = time.monotonic() + 31
        second.tick(due)  # the first app's consumer never ticks
        first.tick(due)
        # One collector, shared: the two ticks due at once collected once, not once each.
        assert first is second and first.collections == 1
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()

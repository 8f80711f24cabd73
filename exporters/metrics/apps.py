"""One exporter process for several Celery apps: one pipeline per app, one /metrics, one /healthz.

Each app (FleetSettings.effective_apps: FLEETOPS_APPS, else the one app FLEETOPS_APP_NAME on the
broker URL) gets its own :class:`~exporters.metrics.app.Exporter`: event stream, state, poller,
worker queues and lock. Nothing is shared between them but the HTTP server, so an app whose
broker is down, slow or hostile only makes its own series stale and its own health fail.

Every series of a pipeline carries ``app="<name>"``. The text exposition format wants each
family's HELP and TYPE once, with all its samples together: :func:`merge_families` regroups
the pipelines' renders by family. One app is served exactly as rendered, without merging: the
common case keeps its hot path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from itertools import chain, pairwise

from exporters.metrics.app import RENDER_LOCK_TIMEOUT, STOP_TIMEOUT, Exporter
from exporters.metrics.settings import ExporterSettings
from exporters.stream.collector import take_over_for

log = logging.getLogger(__name__)


def merge_families(renders: Iterable[list[str]]) -> str:
    """Several renders (parts as Exporter.render_parts gives them: every family starts with a
    part holding its ``# HELP`` and ``# TYPE`` lines) as one valid exposition: each family's
    header once, followed by the samples of every render, in the order first seen."""
    families: dict[str, list[str]] = {}
    for parts in renders:
        # Family boundaries in one pass, samples moved by slices: a Python step per sample
        # made the merge cost a quarter of the three renders it merged (bench in the docs).
        starts = [i for i, part in enumerate(parts) if part.startswith("# HELP ")]
        if parts and (not starts or starts[0] != 0):
            raise ValueError(f"sample outside a family: {parts[0][:80]!r}")  # a renderer bug
        starts.append(len(parts))
        for begin, end in pairwise(starts):
            header = parts[begin]
            name = header.split(" ", 3)[2]
            family = families.get(name)
            if family is None:
                families[name] = family = [header]
            else:  # keep what follows the two header lines (samples in the same part)
                family.append(header.split("\n", 2)[2])
            family.extend(parts[begin + 1 : end])
    return "".join(chain.from_iterable(families.values()))


class Exporters:
    """The pipelines of every app, served as one."""

    def __init__(self, settings: ExporterSettings) -> None:
        self.settings = settings
        self.pipelines = [Exporter(settings, app) for app in settings.effective_apps]

    @property
    def app_names(self) -> list[str]:
        return [p.app.name for p in self.pipelines]

    def take_over_collector(self) -> None:
        """The process's garbage collector, on one schedule that every app's consumer thread
        ticks (collector.py): one frozen or dead consumer must not stop the collections."""
        take_over_for(p.stream for p in self.pipelines)

    def start(self) -> None:
        for pipeline in self.pipelines:
            pipeline.start()

    def stop(self) -> None:
        for pipeline in self.pipelines:  # all told first: their threads wind down together
            pipeline.stop_event.set()
        # One deadline for all: stuck apps in turn must not hold the process for minutes.
        deadline = time.monotonic() + STOP_TIMEOUT
        for pipeline in self.pipelines:
            try:
                pipeline.stop(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # one app's broker must not keep the others running
                log.warning("app %s did not stop cleanly: %s", pipeline.app.name, exc)

    def render(self, names: frozenset[str] | None = None) -> bytes:
        if len(self.pipelines) == 1:
            return self.pipelines[0].render(names)
        # One lock deadline for the whole scrape: several stuck appliers waited for in turn
        # would pass Prometheus' scrape timeout and blank every app, the healthy ones too.
        deadline = time.monotonic() + RENDER_LOCK_TIMEOUT
        return merge_families(p.render_parts(names, deadline) for p in self.pipelines).encode()

    def health(self) -> tuple[bool, str]:
        """Healthy while every app is; otherwise each unhealthy app, by name, with its reasons."""
        problems = []
        for pipeline in self.pipelines:
            try:
                healthy, text = pipeline.health()
            except Exception as exc:  # a failing check of one app is that app's problem
                healthy, text = False, f"unhealthy: health check failed: {exc!r}"
            if not healthy:
                problems.append(f"app {pipeline.app.name}: {text.removeprefix('unhealthy: ')}")
        if problems:
            return False, "unhealthy: " + "; ".join(problems)
        return True, "ok"

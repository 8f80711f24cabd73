"""Run a Python module as ``python -m`` would, telling which OS thread is which and,
optionally, profiling every thread with cProfile (one ``.prof`` file per thread).

    python bench/profile_threads.py --names threads.jsonl [--profile DIR] -m fleetops recorder ...

Python 3.11 neither names its threads for the OS nor profiles threads other than the one that
asks, so a whole-process benchmark cannot otherwise say whether the writer, the consumer or the
reader thread is the one that runs out of CPU. ``--names`` writes one JSON line per thread
(its Python name and native id) as it starts, which costs nothing measurable; bench/
recorder_throughput.py reads the per-thread CPU from /proc with it. ``--profile`` adds
cProfile, whose per-call overhead inflates call-heavy code: read its shares, not its times.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import re
import runpy
import sys
import threading
import time
from pathlib import Path
from typing import Any

# The HTTP server's per-request threads: one .prof file per scrape would bury the others.
UNPROFILED = "process_request_thread"


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "thread"


def add_clock_option(parser: argparse.ArgumentParser, flag: str) -> None:
    """The profile's clock; bench/recorder_throughput.py passes it on under its own flag."""
    parser.add_argument(
        flag,
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: each thread's CPU time (where it works); wall: also where it waits",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", type=Path, required=True, help="JSON lines: name, tid")
    parser.add_argument("--profile", type=Path, help="directory for one .prof per thread")
    add_clock_option(parser, "--clock")
    parser.add_argument("-m", dest="module", required=True, help="the module to run")
    args, rest = parser.parse_known_args()
    names = args.names.open("a", buffering=1)
    lock = threading.Lock()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)

    def record(name: str) -> None:
        with lock:
            names.write(json.dumps({"name": name, "tid": threading.get_native_id()}) + "\n")

    def profiler() -> cProfile.Profile:
        if args.clock == "wall":
            return cProfile.Profile()
        # Per-thread CPU time: a thread blocked on a socket or a lock costs nothing here.
        return cProfile.Profile(time.thread_time_ns, 1e-9)

    def dump(profiler: cProfile.Profile, name: str) -> None:
        assert args.profile is not None
        profiler.dump_stats(args.profile / f"{safe(name)}-{threading.get_native_id()}.prof")

    # _bootstrap_inner runs in the new thread for every Thread, whatever its run() is, and
    # before its target: the one place that sees each thread start and end.
    bootstrap = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def bootstrap_inner(self: threading.Thread) -> Any:
        record(self.name)
        if args.profile is None or UNPROFILED in self.name:
            return bootstrap(self)
        own = profiler()
        own.enable()
        try:
            return bootstrap(self)
        finally:
            own.disable()
            dump(own, self.name)

    threading.Thread._bootstrap_inner = bootstrap_inner  # type: ignore[attr-defined]
    # As ``python -m`` would have it: the working directory first, not this script's folder
    # (where bench/console.py would shadow the console package).
    sys.path[0] = os.getcwd()
    record("MainThread")
    sys.argv = [args.module, *rest]
    main_profiler = profiler() if args.profile is not None else None
    code: Any = 0
    try:
        if main_profiler is not None:
            main_profiler.enable()
        runpy.run_module(args.module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    finally:
        if main_profiler is not None:
            main_profiler.disable()
            dump(main_profiler, "MainThread")
        # Daemon threads dump their profile as they end: give them the time to.
        for thread in threading.enumerate():
            if thread is not threading.current_thread():
                thread.join(10)
    sys.exit(code)


if __name__ == "__main__":
    main()

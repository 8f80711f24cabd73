"""Coverage-guided fuzzing of the event pipeline with atheris: broker bytes -> envelope ->
checked events -> metrics state, history merge and /metrics text.

    uv run python -m tests.stream.fuzz_pipeline -max_total_time=600 [SEED_DIR]

tests/stream/test_fuzz.py runs it for a bounded time in the suite. An input fails when any
exception other than the pipeline's own DecodeError/Rejected escapes, or when a consumer
counts an internal error on an event that passed the checks.
"""

from __future__ import annotations

import base64
import contextlib
import sys
import time

import atheris
import orjson

with atheris.instrument_imports():
    from exporters.history.merge import BatchMerger
    from exporters.metrics.histogram import DEFAULT_BUCKETS
    from exporters.metrics.queues import QueueSnapshot
    from exporters.metrics.render import Extras, Renderer, Thresholds
    from exporters.metrics.state import FleetState, Limits
    from exporters.stream.envelope import DecodeError, decode
    from exporters.stream.events import Checker, Rejected
    from exporters.stream.status import StreamStatus

from prometheus_client.parser import text_string_to_metric_families

NOW = time.time()
checker = Checker()
state = FleetState(bounds=DEFAULT_BUCKETS, limits=Limits(max_series=5_000, max_tasks=5_000))
renderer = Renderer()
inputs = 0


def as_message(data: bytes) -> bytes:
    """Half the inputs are whole messages, half the body of a well-formed envelope, so the
    fuzzer spends its time inside the event as well as inside the envelope."""
    if data[:1] in (b"", b"{", b"["):
        return data
    if data[0] % 2:
        return data[1:]
    body = base64.b64encode(data[1:]).decode()
    return orjson.dumps({"body": body, "properties": {"body_encoding": "base64"}})


def test_one_input(data: bytes) -> None:
    global inputs, state
    inputs += 1
    try:
        bodies = decode(as_message(data))
    except DecodeError:
        return
    events = []
    for body in bodies:
        with contextlib.suppress(Rejected):
            events.append(checker.check(body, NOW))
    state.apply_all(events, now=float(inputs))
    state.housekeeping(float(inputs))
    if state.internal_errors:
        raise AssertionError(f"the state failed on checked events: {events!r:.2000}")
    merger = BatchMerger()
    merger.add_all(events)
    if merger.malformed:
        raise AssertionError(f"the merge failed on checked events: {events!r:.2000}")
    if inputs % 2_000 == 0:
        extras = Extras(StreamStatus(), QueueSnapshot(), {}, 0, 0.0, Thresholds())
        text = "".join(renderer.render(state, extras, float(inputs), time.time()))
        list(text_string_to_metric_families(text))  # raises on text Prometheus would refuse
    if inputs % 50_000 == 0:
        state = FleetState(bounds=DEFAULT_BUCKETS, limits=state.limits)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

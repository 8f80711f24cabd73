"""The spilling buffer on a real disk: memory first, then segment files, FIFO, bounded,
recovered by the next process."""

from __future__ import annotations

from pathlib import Path

from exporters.history.buffer import SpillingBuffer


def drain(buffer: SpillingBuffer) -> list[int]:
    seen: list[int] = []
    while (batch := buffer.take(3, timeout=0)) is not None:
        seen.extend(event["n"] for event in batch.events)
        buffer.commit(batch)
    return seen


def test_overflow_goes_to_disk_and_comes_back_in_order(tmp_path: Path) -> None:
    buffer = SpillingBuffer(4, tmp_path, 1 << 20, segment_bytes=64)
    for n in range(20):
        assert buffer.put({"n": n})
    stats = buffer.stats()
    assert (stats.in_memory, stats.on_disk) == (4, 16)
    assert len(list(tmp_path.glob("*.jsonl"))) > 1  # several small segments
    assert drain(buffer) == list(range(20))
    assert buffer.pending() == 0
    assert list(tmp_path.glob("*.jsonl")) == []
    buffer.put({"n": 99})  # disk empty again: back to memory
    assert buffer.stats().in_memory == 1


def test_a_segment_stays_until_its_last_batch_is_committed(tmp_path: Path) -> None:
    buffer = SpillingBuffer(1, tmp_path, 1 << 20)
    for n in range(5):
        buffer.put({"n": n})
    assert buffer.take(10, timeout=0).events == [{"n": 0}]  # type: ignore[union-attr]
    batch = buffer.take(10, timeout=0)
    assert batch is not None and batch.last_of_segment
    # Not committed (the write failed, the process died): a new process replays it all.
    again = SpillingBuffer(1, tmp_path, 1 << 20)
    assert again.pending() == 4
    assert drain(again) == [1, 2, 3, 4]


def test_the_bound_drops_and_counts(tmp_path: Path) -> None:
    dropped: list[int] = []
    buffer = SpillingBuffer(2, tmp_path, 100, on_drop=lambda count, _reason: dropped.append(count))
    results = [buffer.put({"n": n, "pad": "x" * 20}) for n in range(10)]
    assert results[:2] == [True, True] and results[-1] is False
    assert sum(dropped) == buffer.stats().dropped == results.count(False)
    assert buffer.stats().disk_bytes <= 100


def test_close_persists_memory_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    buffer = SpillingBuffer(100, tmp_path, 1 << 20)
    for n in range(3):
        buffer.put({"n": n})
    buffer.close()
    segment = next(tmp_path.glob("*.jsonl"))
    with segment.open("ab") as handle:
        handle.write(b'{"n": 3, "trunc')  # a crash in the middle of a write
    assert drain(SpillingBuffer(100, tmp_path, 1 << 20)) == [0, 1, 2]


def test_marks_are_handed_on_in_order_once_everything_before_is_committed(
    tmp_path: Path,
) -> None:
    # How the recorder acknowledges broker deliveries: a mark stands for the events queued
    # before it, and the last mark a commit passes stands for the ones before it.
    handed: list[str] = []
    buffer = SpillingBuffer(3, tmp_path, 200, on_committed=handed.append)
    buffer.when_committed("empty")
    assert handed == ["empty"]  # nothing before it to wait for
    buffer.put_many([{"n": 0}, {"n": 1}])
    buffer.when_committed("a")
    buffer.put_many([{"n": 2}, {"n": 3}])  # the second one spills to disk
    buffer.when_committed("b")
    buffer.put_many([{"n": n, "pad": "x" * 50} for n in range(4, 14)])
    assert buffer.stats().dropped > 0  # past the bound: dropped, counted, not waited for
    buffer.when_committed("c")

    def take_and_commit() -> list[str]:
        batch = buffer.take(2, timeout=0)
        assert batch is not None
        before = len(handed)
        buffer.commit(batch)
        return handed[before:]

    assert take_and_commit() == ["a"]  # events 0 and 1, from memory
    assert take_and_commit() == []  # event 2: "b" waits for 3, on disk
    assert take_and_commit() == []  # the segment is not done yet
    while buffer.pending():
        passed = take_and_commit()
    assert passed == ["c"] and handed == ["empty", "a", "c"]


def test_a_mark_waits_for_the_events_a_previous_run_left_on_disk(tmp_path: Path) -> None:
    previous = SpillingBuffer(100, tmp_path, 1 << 20)
    previous.put_many([{"n": -2}, {"n": -1}])
    previous.close()
    handed: list[str] = []
    buffer = SpillingBuffer(100, tmp_path, 1 << 20, on_committed=handed.append)
    buffer.put({"n": 0})  # behind the recovered events, on disk too
    buffer.when_committed("x")
    first = buffer.take(10, timeout=0)
    assert first is not None and [e["n"] for e in first.events] == [-2, -1]
    buffer.commit(first)
    assert handed == []
    assert drain(buffer) == [0] and handed == ["x"]

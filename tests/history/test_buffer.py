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

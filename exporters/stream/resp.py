"""Split the bytes of a Redis pub/sub connection into messages (RESP2).

Measured hot path: a pub/sub connection carries only arrays of bulk strings and integers, so a
parser that slices one buffer with ``bytes.find`` costs a fraction of a general client's
per-message overhead (see bench/exporter_throughput.py and docs/exporter.md).
"""

from __future__ import annotations

# How a message reply starts: an array of 4 (pmessage: pattern, channel, payload) or 3
# (message: channel, payload) bulk strings.
_PMESSAGE = b"*4\r\n$8\r\npmessage\r\n"
_MESSAGE = b"*3\r\n$7\r\nmessage\r\n"
_PMESSAGE_LEN = len(_PMESSAGE)
_MESSAGE_LEN = len(_MESSAGE)
_MESSAGE_SIZES = {4: b"pmessage", 3: b"message"}


class ProtocolError(ValueError):
    pass


class PubSubParser:
    """Feed raw bytes, get complete replies back; a partial reply waits for the next feed."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[list]:
        buffer = self._buffer + data if self._buffer else data
        replies: list[list] = []
        append = replies.append
        find = buffer.find
        end = len(buffer)
        pos = 0
        while pos < end:
            start = pos
            reply, pos = _parse(buffer, find, pos, end)
            if pos < 0:
                pos = start
                break
            append(reply)
        self._buffer = buffer[pos:]
        return replies

    def payloads(self, data: bytes) -> list[bytes]:
        """The payloads of the ``message`` and ``pmessage`` replies in ``data``; every other
        reply (``PONG``, confirmations) is parsed and skipped. The reader's hot path: one slice
        per message instead of a list of four (bench/exporter_stages.py, "split replies")."""
        buffer = self._buffer + data if self._buffer else data
        payloads: list[bytes] = []
        append = payloads.append
        find = buffer.find
        starts = buffer.startswith
        end = len(buffer)
        pos = 0
        while pos < end:
            if starts(_PMESSAGE, pos):
                bulks, at = 3, pos + _PMESSAGE_LEN
            elif starts(_MESSAGE, pos):
                bulks, at = 2, pos + _MESSAGE_LEN
            else:
                bulks = -1
            start = 0
            while bulks > 0:  # the bulk strings of a message; the payload is the last
                if at >= end or buffer[at] != 36:  # not "$" (or not here yet): generic parse
                    break
                line_end = find(b"\r\n", at)
                if line_end < 0:
                    break
                start = line_end + 2
                at = start + int(buffer[at + 1 : line_end]) + 2
                if at > end or start > at - 2:  # incomplete, or a negative size
                    break
                bulks -= 1
            if bulks == 0:
                append(buffer[start : at - 2])
                pos = at
                continue
            reply, after = _parse(buffer, find, pos, end)
            if after < 0:
                break  # incomplete: the rest waits for the next feed
            # A message whose payload is a null bulk string carries nothing: skipped too.
            if (
                type(reply) is list
                and _MESSAGE_SIZES.get(len(reply)) == reply[0]
                and type(reply[-1]) is bytes
            ):
                append(reply[-1])
            pos = after
        self._buffer = buffer[pos:]
        return payloads

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)


def _parse(buffer: bytes, find, pos: int, end: int):  # type: ignore[no-untyped-def]
    """One reply from ``pos``: (reply, next position), or (None, -1) when incomplete."""
    line_end = find(b"\r\n", pos)
    if line_end < 0:
        return None, -1
    marker = buffer[pos]
    if marker == 42:  # "*": an array
        count = int(buffer[pos + 1 : line_end])
        pos = line_end + 2
        items: list = []
        for _ in range(count):
            if pos >= end:
                return None, -1
            if buffer[pos] == 36:  # "$": the usual case, inlined
                line_end = find(b"\r\n", pos)
                if line_end < 0:
                    return None, -1
                size = int(buffer[pos + 1 : line_end])
                if size < 0:
                    items.append(None)
                    pos = line_end + 2
                    continue
                stop = line_end + 2 + size
                if stop + 2 > end:
                    return None, -1
                items.append(buffer[line_end + 2 : stop])
                pos = stop + 2
            else:
                item, pos = _parse(buffer, find, pos, end)
                if pos < 0:
                    return None, -1
                items.append(item)
        return items, pos
    if marker == 36:  # "$": bulk string
        size = int(buffer[pos + 1 : line_end])
        if size < 0:
            return None, line_end + 2
        stop = line_end + 2 + size
        if stop + 2 > end:
            return None, -1
        return buffer[line_end + 2 : stop], stop + 2
    if marker == 58:  # ":": integer
        return int(buffer[pos + 1 : line_end]), line_end + 2
    if marker == 43:  # "+": simple string
        return buffer[pos + 1 : line_end], line_end + 2
    if marker == 45:  # "-": error
        raise ProtocolError(buffer[pos + 1 : line_end].decode(errors="replace"))
    raise ProtocolError(f"unexpected reply type {chr(marker)!r}")


def command(*parts: str | bytes) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)

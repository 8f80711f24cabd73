"""Decode kombu event messages as they travel on the wire.

A Celery event is published as a kombu envelope (JSON) whose ``body`` is the event, JSON encoded
and, on Redis, base64 encoded (``properties.body_encoding``). Prefork workers buffer task events
and publish them as one ``task.multi`` message whose body is a list of events.
"""

from __future__ import annotations

import binascii
import json

import pybase64
from orjson import JSONDecodeError, loads

# A message larger than this is refused before it is parsed: a real event is a few KiB (a
# prefork worker's task.multi a few hundred), and one huge message must not stall the consumer.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class DecodeError(ValueError):
    """A message that is not a Celery event; ``reason`` is one of the rejection reasons of
    exporters/stream/events.py (not_json, bad_envelope, bad_body)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode(payload: bytes) -> list:
    """The event bodies carried by one kombu envelope from Redis pub/sub (one, or several for
    ``task.multi``). The bodies are not checked yet: that is events.Checker's job."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise DecodeError("bad_envelope", f"a message of {len(payload)} bytes")
    try:  # orjson inline: this runs for every message
        envelope = loads(payload)
    except JSONDecodeError as exc:
        envelope = _stdlib_loads(payload, "envelope", str(exc))
    if type(envelope) is not dict:
        raise DecodeError("bad_envelope", "not a JSON object")
    body = envelope.get("body")
    if body is None:
        raise DecodeError("bad_envelope", "no body")
    content_type = envelope.get("content-type")
    if content_type is not None and content_type != "application/json":
        raise DecodeError("bad_envelope", f"unsupported content type {str(content_type)[:60]!r}")
    properties = envelope.get("properties")
    encoding = properties.get("body_encoding") if type(properties) is dict else None
    if encoding == "base64":
        try:
            # pybase64 (SIMD) validates as strictly as binascii's strict mode and is 3-4x
            # faster on a ~1 KiB body: the stdlib decoder was a quarter of the decode stage
            # (bench/exporter_stages.py).
            body = pybase64.b64decode(body, validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise DecodeError("bad_body", f"bad base64: {exc}") from None
    elif encoding is not None:
        raise DecodeError("bad_body", f"unsupported body encoding {str(encoding)[:60]!r}")
    return decode_body(body)


def decode_delivered(content_type: str | None, body: object) -> list:
    """The event bodies of one message as a kombu transport delivered it (already out of its
    envelope): the same bounds and content-type rule as :func:`decode`."""
    if content_type is not None and content_type != "application/json":
        raise DecodeError("bad_envelope", f"unsupported content type {str(content_type)[:60]!r}")
    if isinstance(body, bytes | str) and len(body) > MAX_MESSAGE_BYTES:
        raise DecodeError("bad_envelope", f"a message of {len(body)} bytes")
    return decode_body(body)


def decode_body(body: object) -> list:
    """A message body (JSON text, or what a transport already parsed) as a list of bodies."""
    if type(body) is str or type(body) is bytes:
        try:
            body = loads(body)
        except JSONDecodeError as exc:
            body = _stdlib_loads(body, "body", str(exc))
    if type(body) is dict:
        return [body]
    if type(body) is list:
        return body
    raise DecodeError(
        "bad_body", f"an event must be an object or a list, not {type(body).__name__}"
    )


def _stdlib_loads(text: str | bytes, where: str, orjson_error: str) -> object:
    """The standard library, where orjson refused what a Python producer can send (``NaN``/
    ``Infinity`` from kombu's json, integers past 64 bits, lone surrogates): those events are
    then repaired or rejected field by field instead of losing the whole message. Callers pass
    orjson's error as text: an exception kept past its ``except`` block would hold the
    caller's frame in a reference cycle, and the consumers collect cycles only twice a minute
    (exporters/stream/collector.py)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError, TypeError):
        raise DecodeError("not_json", f"{where}: {orjson_error}") from None

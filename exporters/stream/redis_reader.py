"""Read Celery events straight from Redis pub/sub, without kombu in the way.

kombu's Redis transport publishes a fanout exchange as PUBLISH on ``/{db}.<exchange>/<routing
key>`` (``fanout_patterns``, Celery's default) or on ``/{db}.<exchange>`` without it; we listen
to both. The reader does nothing but move bytes: it drains the socket as fast as Redis sends,
splits replies and hands raw payloads on in batches; decoding happens in the consumer thread.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from exporters.stream.batches import RAW, Batch
from exporters.stream.reader import EventReader
from exporters.stream.resp import PubSubParser, command

log = logging.getLogger(__name__)

EXCHANGE = "celeryev"
RECV_BYTES = 1 << 20
# Ask for a big kernel buffer: it absorbs bursts while the consumer thread holds the GIL.
SOCKET_BUFFER = 8 << 20
PING_AFTER_IDLE = 5.0
DEAD_AFTER_IDLE = 15.0


class RedisAddress:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix", "redis+socket"):
            raise ValueError(f"not a Redis URL: {url!r}")
        self.tls = parts.scheme == "rediss"
        self.unix_path = parts.path if parts.scheme in ("unix", "redis+socket") else None
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        db_text = "" if self.unix_path else parts.path.strip("/")
        query_db = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("db")
        self.db = int(db_text or query_db or 0)

    def channels(self, exchange: str = EXCHANGE) -> tuple[str, str]:
        prefix = f"/{self.db}.{exchange}"
        return prefix, prefix + "/*"

    def __str__(self) -> str:
        where = self.unix_path or f"{self.host}:{self.port}"
        return f"redis {where} db {self.db}"


@dataclass(eq=False, repr=False)
class RedisEventReader(EventReader):
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.address = RedisAddress(self.url)

    def run(self, stop: threading.Event) -> None:
        """Read until ``stop`` is set, reconnecting with backoff whenever the link breaks."""
        while not stop.is_set():
            try:
                sock, parser, early = self._connect()
            except Exception as exc:  # OSError, ProtocolError, a garbled reply: never fatal
                self._down(f"cannot subscribe to {self.address}: {exc}")
                stop.wait(self.backoff.next_delay())
                continue
            try:
                self.status.on_connected()
                self.backoff.reset()
                log.info("reading events from %s", self.address)
                # After on_connected: the consumer opens the reconnect gap when it sees the new
                # connect count, and these are the first messages of the new connection.
                for batch in early:
                    self.status.messages += len(batch.items)
                    self.status.bytes += batch.size
                    self.queue.put(batch)
                self._read(sock, parser, stop)
            except Exception as exc:  # OSError, ProtocolError, a garbled reply: reconnect
                self._down(f"lost the event stream from {self.address}: {exc}")
                stop.wait(self.backoff.next_delay())
            finally:
                sock.close()

    def _down(self, reason: str) -> None:
        # Log the first failure loudly, the retries quietly: the metric carries the rest.
        (log.warning if self.status.connected or not self.status.last_error else log.debug)(
            "%s; retrying with backoff", reason
        )
        self.status.on_disconnected(reason)

    def _connect(self) -> tuple[socket.socket, PubSubParser, list[Batch]]:
        """Connect, authenticate and subscribe; return the socket, its parser and the batches of
        messages that arrived before or among the subscription confirmations.

        The parser goes on to ``_read``: the recv() that brings the confirmations may also bring
        messages and the start of a reply, and a fresh parser would start mid-reply.
        """
        a = self.address
        if a.unix_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.connect_timeout)
            sock.connect(a.unix_path)
        else:
            sock = socket.create_connection((a.host, a.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        if a.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=a.host)
        try:
            parser = PubSubParser()
            if a.password:
                auth = ("AUTH", a.username, a.password) if a.username else ("AUTH", a.password)
                sock.sendall(command(*auth))
                self._expect_reply(sock, parser)
            exact, pattern = a.channels()
            sock.sendall(command("SUBSCRIBE", exact) + command("PSUBSCRIBE", pattern))
            early: list[Batch] = []
            confirmations = 0
            # SUBSCRIBE is live before PSUBSCRIBE is confirmed, and messages published meanwhile
            # share a recv() with the confirmations: keep them, batched per recv() as in _read.
            while confirmations < 2:
                data = sock.recv(RECV_BYTES)
                if not data:
                    raise ConnectionError("connection closed by the server")
                payloads: list[bytes] = []
                for reply in parser.feed(data):
                    kind = reply[0] if type(reply) is list and reply else None
                    if kind == b"pmessage":
                        payloads.append(reply[3])
                    elif kind == b"message":
                        payloads.append(reply[2])
                    elif kind == b"subscribe" or kind == b"psubscribe":
                        confirmations += 1
                if payloads:
                    early.append(Batch(RAW, payloads, len(data), time.monotonic()))
        except BaseException:
            sock.close()
            raise
        return sock, parser, early

    @staticmethod
    def _expect_reply(sock: socket.socket, parser: PubSubParser) -> list:
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed by the server")
            replies = parser.feed(data)
            if replies:
                return replies

    def _read(self, sock: socket.socket, parser: PubSubParser, stop: threading.Event) -> None:
        sock.settimeout(1.0)
        put = self.queue.put
        status = self.status
        recv = sock.recv
        last_data = time.monotonic()
        pinged = False
        while not stop.is_set():
            status.last_beat = time.monotonic()
            try:
                data = recv(RECV_BYTES)
            except TimeoutError:
                idle = time.monotonic() - last_data
                if idle > DEAD_AFTER_IDLE:
                    raise ConnectionError(f"no answer to PING for {idle:.0f}s") from None
                if idle > PING_AFTER_IDLE and not pinged:
                    sock.sendall(command("PING"))
                    pinged = True
                continue
            if not data:
                raise ConnectionError("connection closed by the server")
            now = time.monotonic()
            last_data = now
            pinged = False
            payloads = parser.payloads(data)
            if payloads:
                status.messages += len(payloads)
                status.bytes += len(data)
                put(Batch(RAW, payloads, len(data), now))

"""Live BMP collection: routers connect over TCP, their streams become route batches for the engine.

One thread accepts connections; one thread per router session does nothing but
``recv`` into a buffer and hands it over every ``flush_s`` (or ``chunk_bytes``),
like the UDP collector.  Decoding happens in the engine's thread, in
:meth:`BmpCollector.batches`, so the per-session :class:`BmpStream` parsers and
``ctx`` (errors, counters) are only ever touched by one thread.

A session whose byte stream is damaged (an implausible BMP header: message
boundaries are lost) is counted and dropped; the router reconnects and
resends.  When a session ends for any reason, every peer it reported gets a
STATE Idle row, so the routing state forgets data that is no longer
maintained.  Counters per router address in ``ctx.counters``: ``bmp_messages``,
``route_monitoring``, ``peers_up``, ``peers_down``, ``decode_errors``,
``sessions``, ``sessions_dropped`` (and the other message types).
"""

from __future__ import annotations

import dataclasses
import queue
import socket
import threading
import time
from collections.abc import Iterator

import pyarrow as pa

from ..errors import DecodeError
from ..model import ROUTE_SCHEMA, empty
from ..sources import DecodeContext
from ..sources.bmp import BmpStream


@dataclasses.dataclass
class _Session:
    """One router connection, as both threads see it."""

    sid: int
    router: str
    conn: socket.socket
    dead: threading.Event = dataclasses.field(default_factory=threading.Event)


@dataclasses.dataclass
class _Chunk:
    """Bytes received on one session since its last hand-over; ``data`` None means the session ended."""

    session: _Session
    data: bytes | None
    arrival_us: int


class BmpCollector:
    """Listens for BMP sessions on one TCP port until stopped, and yields decoded route batches."""

    def __init__(
        self, port: int, ctx: DecodeContext, host: str = "0.0.0.0", flush_s: float = 0.1, chunk_bytes: int = 1 << 20
    ) -> None:
        self.ctx = ctx
        self.flush_s = flush_s
        self.chunk_bytes = chunk_bytes
        self.stop = threading.Event()
        self.chunks: queue.Queue[_Chunk] = queue.Queue(maxsize=4096)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]  # the bound port (port 0 = any free one)
        self.sessions: dict[int, _Session] = {}
        self._streams: dict[int, BmpStream] = {}
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name=f"bmp:{self.port}", daemon=True)
        self._next = 0

    def start(self) -> None:
        """Start accepting router sessions."""
        self._accepter.start()

    def close(self) -> None:
        """Stop: close the listening socket and every session."""
        self.stop.set()
        self._accepter.join(timeout=2)
        for thread in list(self._threads):
            thread.join(timeout=2)
        self.sock.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, addr = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.settimeout(0.05)
            self._next += 1
            router = addr[0].removeprefix("::ffff:")
            session = _Session(self._next, router, conn)
            self.sessions[session.sid] = session
            thread = threading.Thread(target=self._receive, args=(session,), name=f"bmp:{router}", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _receive(self, session: _Session) -> None:
        """Read the session into chunks until it ends, is found damaged, or the collector stops."""
        buf: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.flush_s
        try:
            while not (self.stop.is_set() or session.dead.is_set()):
                try:
                    data = session.conn.recv(1 << 16)
                except TimeoutError:
                    data = None
                except OSError:
                    break
                if data == b"":
                    break
                if data:
                    buf.append(data)
                    size += len(data)
                if buf and (size >= self.chunk_bytes or time.monotonic() >= deadline):
                    self._put(_Chunk(session, b"".join(buf), time.time_ns() // 1000))
                    buf, size = [], 0
                if time.monotonic() >= deadline:
                    deadline = time.monotonic() + self.flush_s
        finally:
            if buf:
                self._put(_Chunk(session, b"".join(buf), time.time_ns() // 1000))
            self._put(_Chunk(session, None, time.time_ns() // 1000))
            session.conn.close()

    def _put(self, chunk: _Chunk) -> None:
        """Queue a chunk, waiting while the engine is behind (TCP then slows the router down), not once stopped."""
        while True:
            try:
                self.chunks.put(chunk, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    return

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Decoded route batches; an empty batch whenever nothing came for flush_s (a heartbeat)."""
        while not (self.stop.is_set() and self.chunks.empty()):
            try:
                chunk = self.chunks.get(timeout=self.flush_s)
            except queue.Empty:
                yield empty(ROUTE_SCHEMA)
                continue
            yield from self.decode(chunk)

    def decode(self, chunk: _Chunk) -> Iterator[pa.RecordBatch]:
        """Feed one chunk to its session's parser; at the session's end, end its peers' routes."""
        session = chunk.session
        stream = self._streams.get(session.sid)
        if stream is None:
            stream = self._streams[session.sid] = BmpStream(f"bmp:{session.router}", self.ctx, source=session.router)
            self.ctx.counters[(session.router, "sessions")] += 1
        if chunk.data is not None:
            if stream.dead:
                return  # the rest of a dropped session
            try:
                yield from stream.feed(chunk.data, chunk.arrival_us)
            except DecodeError:
                session.dead.set()  # counted by the parser; the receiver thread closes the socket
                self.ctx.counters[(session.router, "sessions_dropped")] += 1
            return
        del self._streams[session.sid]
        self.sessions.pop(session.sid, None)
        if stream.pending and not stream.dead:
            self.ctx.errors.add(session.router, "session ended inside a BMP message", stream.offset)
            self.ctx.counters[(session.router, "decode_errors")] += 1
        yield stream.end_rows(chunk.arrival_us)

"""Live UDP collection: sockets → datagram chunks → the same decoders and engine as replay.

One receiver thread per socket does nothing but ``recvfrom`` into a list, so
the kernel buffer drains as fast as Python can; every ``flush_s`` (or
``chunk_datagrams``) it hands the chunk to a queue.  The engine's thread
decodes whole chunks at once with the registered datagram decoders (NetFlow
v5/v9/IPFIX and sFlow; one port may carry several — each datagram is sniffed),
so decoding is vectorised and shares templates across the chunk.

While no datagram arrives the source still yields empty batches with a wall
clock heartbeat, so the engine's watermark moves and attacks end on time.
"""

from __future__ import annotations

import dataclasses
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

from ..sources import DATAGRAM_DECODERS, DecodeContext

RCVBUF = 64 << 20
MAX_CHUNKS = 16  # chunks of up to chunk_datagrams waiting for the engine
SWITCH_S = 0.0005  # measured at 120k datagrams/s for 3 s: kernel drops 0, 59k, 20k vs 154k, 48k, 61k at 5 ms
# Python's socket module lacks SO_RCVBUFFORCE (Linux: 33), so without this the "force" path never ran and
# the buffer stayed capped at net.core.rmem_max (4 MB here: ~1,700 export datagrams, a 40 ms burst at 40k/s).
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None)


@dataclasses.dataclass
class Listener:
    """One UDP port and the export families it is expected to carry (for the report; decoding sniffs)."""

    port: int
    families: list[str]
    host: str = "0.0.0.0"


@dataclasses.dataclass
class Chunk:
    """Datagrams received by one socket since its last hand-over."""

    payloads: list[bytes]
    exporters: list[str]
    arrival_us: np.ndarray


def open_socket(host: str, port: int) -> socket.socket:
    """A UDP socket with SO_REUSEPORT and the largest receive buffer the kernel grants."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    grow_rcvbuf(sock, RCVBUF)
    sock.bind((host, port))
    sock.settimeout(0.1)
    return sock


def record_export(command: Callable[[int], list[str]], idle_s: float = 0.5) -> list[bytes]:
    """Run an exporter that sends to 127.0.0.1:PORT and exits (e.g. ``softflowd -r``), and return the
    datagrams it sent, in order: a real export to replay at chosen rates (bench, rate tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        grow_rcvbuf(sock, RCVBUF)
        sock.bind(("127.0.0.1", 0))
        subprocess.run(command(sock.getsockname()[1]), check=True, capture_output=True, timeout=120)
        sock.settimeout(idle_s)
        out = []
        try:
            while True:
                out.append(sock.recv(65535))
        except TimeoutError:
            return out


def grow_rcvbuf(sock: socket.socket, size: int) -> None:
    """Ask for a size-byte receive buffer: past net.core.rmem_max when allowed (SO_RCVBUFFORCE), else capped."""
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
            return
        except OSError:
            continue


class UdpCollector:
    """Receives on every listener until stopped, and yields decoded flow batches."""

    def __init__(
        self,
        listeners: list[Listener],
        ctx: DecodeContext,
        flush_s: float = 0.2,
        chunk_datagrams: int = 8192,
    ) -> None:
        self.listeners = listeners
        self.ctx = ctx
        self.flush_s = flush_s
        self.chunk_datagrams = chunk_datagrams
        self.stop = threading.Event()
        # At most max_chunks waiting for the engine: when it falls behind, the receiver blocks, the
        # kernel buffer fills and the kernel drops (counted in the report) — memory stays bounded
        # (1,024 chunks let a stalled engine queue gigabytes in the soak).
        self.chunks: queue.Queue[Chunk] = queue.Queue(maxsize=MAX_CHUNKS)
        self.sockets = [open_socket(lst.host, lst.port) for lst in listeners]
        self.ports = [s.getsockname()[1] for s in self.sockets]  # the bound ports (port 0 = any free one)
        self.threads = [
            threading.Thread(target=self._receive, args=(s,), name=f"udp:{lst.port}", daemon=True)
            for s, lst in zip(self.sockets, listeners, strict=True)
        ]
        self.unknown = 0  # datagrams no decoder recognised (also in ctx.errors per exporter)
        self.drops: dict[int, int] | None = None  # kernel drops read at close (the sockets then vanish)

    def start(self) -> None:
        """Start the receiver threads, and shorten the GIL switch interval: each recvfrom gives up the GIL,
        and while the engine decodes a receiver then waits a whole interval (5 ms by default) for it back,
        one datagram per wait, so the kernel buffer fills (the convoy effect)."""
        sys.setswitchinterval(SWITCH_S)
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        """Stop receiving and close the sockets."""
        self.stop.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(timeout=2)
        self.drops = kernel_drops(self.ports)
        for sock in self.sockets:
            sock.close()

    def _receive(self, sock: socket.socket) -> None:
        payloads: list[bytes] = []
        exporters: list[str] = []
        arrivals: list[int] = []
        deadline = time.monotonic() + self.flush_s
        while not self.stop.is_set():
            try:
                data, peer = sock.recvfrom(65535)
                payloads.append(data)
                exporters.append(peer[0])
                arrivals.append(time.time_ns() // 1000)
            except TimeoutError:
                pass
            except OSError:
                break
            if len(payloads) >= self.chunk_datagrams or (payloads and time.monotonic() >= deadline):
                self.chunks.put(Chunk(payloads, exporters, np.array(arrivals, dtype=np.int64)))
                payloads, exporters, arrivals = [], [], []
                deadline = time.monotonic() + self.flush_s
        self._drain(sock, payloads, exporters, arrivals)
        if payloads:
            self.chunks.put(Chunk(payloads, exporters, np.array(arrivals, dtype=np.int64)))

    def _drain(self, sock: socket.socket, payloads: list[bytes], exporters: list[str], arrivals: list[int]) -> None:
        """On stop, take what the kernel already queued (received, so acknowledged): a backlog
        behind a flood would otherwise vanish with the socket (tests/test_hostile.py)."""
        sock.setblocking(False)
        while True:
            try:
                data, peer = sock.recvfrom(65535)
            except OSError:  # BlockingIOError: empty; or closed
                return
            payloads.append(data)
            exporters.append(peer[0])
            arrivals.append(time.time_ns() // 1000)
            if len(payloads) >= self.chunk_datagrams:
                self.chunks.put(Chunk(payloads[:], exporters[:], np.array(arrivals, dtype=np.int64)))
                payloads.clear()
                exporters.clear()
                arrivals.clear()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Decoded flow batches; an empty batch whenever nothing came for flush_s (a heartbeat)."""
        while not (self.stop.is_set() and self.chunks.empty() and not any(t.is_alive() for t in self.threads)):
            try:
                chunk = self.chunks.get(timeout=self.flush_s)
            except queue.Empty:
                yield from self._empty()
                continue
            yield from self.decode(chunk)

    def decode(self, chunk: Chunk) -> Iterator[pa.RecordBatch]:
        """Group a chunk's datagrams by the decoder that recognises them, decode each group at once."""
        groups: dict[str, list[int]] = {}
        for i, payload in enumerate(chunk.payloads):
            for name, decoder in DATAGRAM_DECODERS.items():
                if decoder.sniff_datagram(payload):
                    groups.setdefault(name, []).append(i)
                    break
            else:
                self.unknown += 1
                self.ctx.counters[(chunk.exporters[i], "datagrams")] += 1
                self.ctx.counters[(chunk.exporters[i], "decode_errors")] += 1
                self.ctx.errors.add(chunk.exporters[i], "not a NetFlow/IPFIX/sFlow datagram")
        for name, idx in groups.items():
            batch = DATAGRAM_DECODERS[name].decode(
                [chunk.payloads[i] for i in idx], [chunk.exporters[i] for i in idx], chunk.arrival_us[idx], self.ctx
            )
            yield batch
        if not groups:
            yield from self._empty()

    def _empty(self) -> Iterator[pa.RecordBatch]:
        from ..model import FLOW_SCHEMA, empty

        yield empty(FLOW_SCHEMA)


def kernel_drops(ports: list[int]) -> dict[int, int]:
    """Datagrams the kernel dropped per bound port, from /proc/net/udp and udp6 (the `drops` column)."""
    wanted = set(ports)
    drops = dict.fromkeys(ports, 0)
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 13:
                continue
            port = int(cols[1].rsplit(":", 1)[1], 16)
            if port in wanted:
                drops[port] += int(cols[12])
    return drops

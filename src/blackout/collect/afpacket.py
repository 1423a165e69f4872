"""Live packet capture on network interfaces (AF_PACKET) → the same frame kernel and engine as pcap replay.

One receiver thread per interface copies whole blocks out of a TPACKET_V3
ring (:mod:`.tpacket`: no syscall and no Python object per frame, kernel
timestamps) into a chunk buffer and hands the chunk to a queue every
``flush_s`` or when it is full.  The engine's thread decodes whole chunks with
the pcap decoder's numba frame kernel into 1-packet flows, exactly as a
capture file of the same frames would decode (exporter ``afpacket:IFACE``).
The heartbeat is the last time the ring was seen empty, less the age a frame
may reach in a block not yet retired, once that chunk is queued; so a lateness
of 0 is safe, and it is this source's default (origin ``afpacket`` in
``engine.ORIGIN_LATENESS_S``; ``engine.lateness_by_origin`` overrides it): a
tick is released ~flush_s after it ends while flow exports keep ``engine.lateness_s``.

Why the ring, measured (``bench/bench_fastnetmon.py``, top-speed replay): a
``recv_into`` loop kept ~70k frames/s and the kernel dropped half of a 150k
frames/s replay; with the ring, 270k frames/s replays lose nothing.

The socket is opened with protocol 0 and bound to the interface with
ETH_P_ALL after the ring is set up, so no frame of another interface slips in;
``PACKET_IGNORE_OUTGOING`` keeps the host's own transmissions out (a mirror
port only receives).  Frames the kernel dropped because the ring was full
are read from ``PACKET_STATISTICS`` and reported per interface.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from ..model import FLOW_SCHEMA, empty
from ..sources import DecodeContext
from ..sources.pcap import _Chunk, _flows, _rebatch
from .tpacket import BLOCK, RETIRE_MS, Ring, warm

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
MIN_FRAME = 64  # bytes a frame takes in a ring block at least (header + data, aligned)
# ARPHRD_* hardware type → pcap link type of the frames a SOCK_RAW packet socket reads there
LINK_OF_HATYPE = {1: 1, 772: 1, 65534: 101}  # Ethernet, loopback (Ethernet headers), tun/none (raw IP)


@dataclasses.dataclass
class Frames:
    """Frames received on one interface since its last hand-over (buf holds them back to back)."""

    iface: str
    buf: np.ndarray
    off: np.ndarray
    cap: np.ndarray
    orig: np.ndarray
    ts: np.ndarray
    first: int  # ordinal of the first frame on this interface (error offsets)


@dataclasses.dataclass
class Interface:
    """One capturing socket and what it has counted."""

    name: str
    sock: socket.socket
    index: int
    link: int
    packets: int = 0
    kernel_packets: int = 0
    kernel_drops: int = 0
    ring: Ring | None = None
    chunk_us: int = 0  # every frame stamped before this (µs) has been queued
    drained_us: int = 0  # when the ring was last seen empty, less the age a frame can have in an open block


def open_socket(iface: str) -> tuple[socket.socket, Ring]:
    """A packet socket with a TPACKET_V3 ring, bound to iface with every protocol."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        with contextlib.suppress(OSError):  # kernels before 4.20: outgoing frames are captured too
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        ring = Ring(sock)
        sock.bind((iface, ETH_P_ALL))  # CPython puts the protocol in network order
    except BaseException:
        sock.close()
        raise
    return sock, ring


class AfPacketCollector:
    """Captures on every interface until stopped, and yields decoded 1-packet flow batches."""

    def __init__(
        self,
        interfaces: list[str],
        ctx: DecodeContext,
        flush_s: float = 0.02,
        chunk_bytes: int = 32 << 20,
        chunk_frames: int = 65536,
    ) -> None:
        self.ctx = ctx
        self.flush_s = flush_s
        self.chunk_bytes = max(chunk_bytes, 2 * BLOCK)
        self.chunk_frames = max(chunk_frames, 2 * BLOCK // MIN_FRAME)
        self.stop = threading.Event()
        self.chunks: queue.Queue[Frames] = queue.Queue(maxsize=1024)
        self.interfaces: list[Interface] = []
        self.beat_us = 0
        try:
            for name in interfaces:
                sock, ring = open_socket(name)
                self.interfaces.append(Interface(name, sock, socket.if_nametoindex(name), _link(sock), ring=ring))
        except BaseException:
            self.close()
            raise
        _warm()
        self.threads = [
            threading.Thread(target=self._receive, args=(i,), name=f"afpacket:{i.name}", daemon=True)
            for i in self.interfaces
        ]

    def start(self) -> None:
        """Start the receiver threads."""
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        """Stop capturing and close the sockets (their last kernel counters are read first)."""
        self.stop.set()
        for thread in getattr(self, "threads", []):
            if thread.is_alive():
                thread.join(timeout=2)
        for i in self.interfaces:
            if i.sock.fileno() >= 0:
                self._read_stats(i)
                if i.ring is not None:
                    i.ring.close()
                i.sock.close()

    def _receive(self, i: Interface) -> None:
        first = 0
        while not self.stop.is_set():
            frames = self._fill(i, first)
            if frames is None:
                break
            if len(frames.off):
                self.chunks.put(frames)
                first += len(frames.off)
            i.chunk_us = i.drained_us  # only now are the frames stamped before it all queued

    def _fill(self, i: Interface, first: int) -> Frames | None:
        """Copy ring blocks until the chunk is full or flush_s passed; None once the socket is gone."""
        ring = i.ring
        if ring is None or i.sock.fileno() < 0:
            return None
        buf = np.empty(self.chunk_bytes, dtype=np.uint8)
        off = np.empty(self.chunk_frames, dtype=np.int64)
        cap = np.empty(self.chunk_frames, dtype=np.int64)
        orig = np.empty(self.chunk_frames, dtype=np.int64)
        ts = np.empty(self.chunk_frames, dtype=np.int64)
        n = pos = 0
        deadline = time.monotonic() + self.flush_s
        while not self.stop.is_set():
            if ring.ready():
                if pos + BLOCK > self.chunk_bytes or n + BLOCK // MIN_FRAME > self.chunk_frames:
                    break  # full: hand over, the block waits in the ring
                pos, n, lost = ring.take(buf, pos, off, cap, orig, ts, n)
                if lost:
                    self.ctx.errors.add(f"afpacket:{i.name}", "damaged ring block", first + n, n=lost)
            else:
                i.drained_us = time.time_ns() // 1000 - 2 * RETIRE_MS * 1000
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                try:
                    select.select([i.sock], [], [], min(wait, 0.01))
                except (OSError, ValueError):
                    return None
            if time.monotonic() >= deadline:
                break
        i.packets += n
        return Frames(i.name, buf[:pos], off[:n], cap[:n], orig[:n], ts[:n], first)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Decoded flow batches; an empty batch whenever nothing came for flush_s (a heartbeat)."""
        by_name = {i.name: i for i in self.interfaces}
        while not (self.stop.is_set() and self.chunks.empty()):
            beat = min((i.chunk_us for i in self.interfaces), default=0)  # read before the queue is found empty
            try:
                frames = self.chunks.get(timeout=self.flush_s)
            except queue.Empty:
                self.beat_us = max(self.beat_us, beat)
                yield empty(FLOW_SCHEMA)
                continue
            yield from self.decode(frames, by_name[frames.iface])

    def heartbeat(self) -> int:
        """Event time (µs) every frame before which has been yielded: the engine's watermark may pass it.

        It is the start of the chunks still being filled, read before the queue was last found empty, so
        it lags the wall clock by at most flush_s, so this source's lateness is 0 (engine.ORIGIN_LATENESS_S).
        """
        return self.beat_us

    def decode(self, frames: Frames, i: Interface) -> Iterator[pa.RecordBatch]:
        """One chunk's frames through the pcap decoder's kernel: 1-packet flows, damage counted."""
        n = len(frames.off)
        c = _Chunk(
            frames.ts,
            frames.off,
            frames.cap,
            frames.orig,
            np.arange(frames.first, frames.first + n, dtype=np.int64),
            np.full(n, i.link, dtype=np.int64),
            np.full(n, i.index, dtype=np.int64),
        )
        yielded = False
        for batch in _rebatch(_flows(f"afpacket:{i.name}", frames.buf, c, self.ctx), max(1, self.ctx.batch_size)):
            yielded = True
            yield batch
        if not yielded:
            yield empty(FLOW_SCHEMA)

    def _read_stats(self, i: Interface) -> None:
        """Add the kernel's counters since the last read (reading resets them)."""
        try:
            raw = i.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:
            return
        packets, drops = struct.unpack("II", raw)
        i.kernel_packets += packets
        i.kernel_drops += drops

    def stats(self) -> dict[str, dict[str, int]]:
        """Per interface: frames received, frames the kernel saw and frames it dropped (buffer full)."""
        for i in self.interfaces:
            if i.sock.fileno() >= 0:
                self._read_stats(i)
        return {
            i.name: {"packets": i.packets, "kernel_packets": i.kernel_packets, "kernel_drops": i.kernel_drops}
            for i in self.interfaces
        }


# One Ethernet + IPv4 + TCP SYN frame (192.0.2.1 → 192.0.2.2, documentation addresses).
_WARM_FRAME = bytes.fromhex(
    "000000000002000000000001080045000028000100004006f6cfc0000201c0000202d43100500000000000000000500220000000000000"
)


def _warm() -> None:
    """Decode one frame now: the kernels' first call costs ~0.4 s (numba cache load), not the first attack's."""
    buf = np.frombuffer(_WARM_FRAME, dtype=np.uint8)
    one = np.array([0], dtype=np.int64)
    size = np.array([len(_WARM_FRAME)], dtype=np.int64)
    chunk = _Chunk(one, one, size, size, one, one + 1, one)
    _flows("warm-up", buf, chunk, DecodeContext())
    warm()


def _link(sock: socket.socket) -> int:
    """The pcap link type of the bound interface's frames (unknown hardware: counted as an unknown link)."""
    hatype = sock.getsockname()[3]
    return LINK_OF_HATYPE.get(hatype, 100000 + hatype)

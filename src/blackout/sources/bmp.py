"""BMP (RFC 7854) byte streams → ROUTE_SCHEMA batches: the ``bmp`` file decoder and :class:`BmpStream`.

A BMP session is a TCP byte stream of messages; :class:`BmpStream` consumes it
in pieces of any size (the live listener feeds it what ``recv`` returns) and a
file holding such a stream is read by feeding it once.  What becomes rows:

* Route Monitoring: the BGP UPDATE inside, one row per prefix (withdrawals,
  then announcements, as the MRT reader, whose UPDATE and attribute decoding
  is reused: see :mod:`.bmp_kernel`);
* Peer Up: a STATE row Established (old_state 5 OpenConfirm, new_state 6);
* Peer Down: a STATE row Idle (6 → 1), which makes the routing state drop
  the peer's routes.

Initiation, Termination, Statistics, Route Mirroring and End-of-RIB markers are
only counted.  ``ts`` is the per-peer header's time, or the arrival time when
the router leaves it zero.

The model has no column for the monitoring view, so it is kept in
``collector``: ``<name>`` for pre-policy Adj-RIB-In, ``<name>:post`` for
post-policy (the L flag), ``<name>:out`` / ``<name>:out-post`` for Adj-RIB-Out
(RFC 8671) and ``<name>:loc`` for Loc-RIB (RFC 9069).  A router monitoring
both pre and post policy thus gives two independent views of each peer, and a
Peer Down gives one STATE row per view the peer was seen in.  RD and local
instance peers (VRFs) get their route distinguisher too, ``<name>:rd=65500:108``,
so one address in two VRFs stays two peers.  ``<name>`` is
``bmp:<router address>`` live, the file's base name for a file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import time
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..addr import from_matrix
from ..errors import DecodeError, Truncated
from ..model import ROUTE_SCHEMA, ElemType, Kind
from . import bmp_kernel as B
from . import mrt_kernel as K
from .base import DecodeContext, register_file
from .mrt import MrtDecoder, _Chunk

SUFFIXES = ("", ":post", ":out", ":out-post", ":loc")  # indexed by bmp_kernel.V_*
CHUNK_ROWS = 16384  # rows per kernel call; small enough that many sessions stay cheap


@dataclasses.dataclass
class _Rows:
    """The filled part of a kernel chunk, shaped as :class:`.mrt._Chunk` for its assembler."""

    rows: tuple[np.ndarray, ...]
    blobs: tuple[np.ndarray, ...]


class BmpStream:
    """Incremental parser of one BMP session: feed() bytes, get ROUTE_SCHEMA batches.

    ``collector`` names the rows (suffixed per view), ``source`` names the
    stream in ``ctx.errors`` and ``ctx.counters``.  Per-peer state (add-path,
    views seen) lives here, so one object must see the whole session, in order.
    ``resync`` (files) steps over damaged bytes to the next plausible message;
    without it (TCP sessions) a damaged header raises DecodeError and the
    stream is dead: the caller should drop the session.
    """

    def __init__(self, collector: str, ctx: DecodeContext, source: str | None = None, resync: bool = False) -> None:
        self.collector = collector
        self.source = source or collector
        self.ctx = ctx
        self.resync = resync
        self.dead = False
        self._base = 0  # stream offset of self._buf[0]
        self._buf = b""
        self._pos = 0  # how far into self._buf the walk has consumed
        self._chunk = _Chunk(min(ctx.batch_size, CHUNK_ROWS))
        self._var = np.zeros(self._chunk.cap, np.int32)  # per row: peer index * 8 + view
        self._peers = self._peer_table(256)
        self._pdict = K.new_table()
        self._st = np.zeros(9, np.int64)
        self._ctr = np.zeros(len(B.COUNTERS), np.int64)
        self._names: dict[int, str] = {}  # peer index * 8 + view -> collector name

    @staticmethod
    def _peer_table(n: int) -> tuple[np.ndarray, ...]:
        """Key (type, distinguisher, address), add-path (in v4, v6, out v4, v6), views seen, count, address, AS."""
        return (
            np.zeros((n, 25), np.uint8),
            np.full((n, 4), -1, np.int8),
            np.zeros(n, np.uint8),
            np.zeros(1, np.int64),
            np.zeros((n, 16), np.uint8),
            np.zeros(n, np.uint32),
        )

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet consumed."""
        return self._base + self._pos

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message waiting for the rest."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes, arrival_us: int | None = None) -> Iterator[pa.RecordBatch]:
        """Consume bytes; yield the rows of every message they complete.

        ``arrival_us`` (µs since the epoch, default now) stands in for zero
        per-peer timestamps.  Raises DecodeError, after yielding what came
        before, when the stream is lost (never with ``resync``).
        """
        if self.dead:
            raise DecodeError(self.source, self._base, "BMP stream already lost")
        self._base += self._pos
        rest = self._buf[self._pos :]
        self._buf, self._pos = (rest + data if rest else bytes(data)), 0
        now = time.time_ns() // 1000 if arrival_us is None else arrival_us
        st, chunk = self._st, self._chunk
        while True:
            st[K.S_POS] = self._pos
            st[K.S_N] = st[K.S_NBLOB] = st[K.S_NERR] = st[K.S_NEED] = 0
            ec = (np.zeros(K.KEEP_ERRORS, np.int64), np.zeros(K.KEEP_ERRORS, np.int64), np.zeros(B.NREASONS, np.int64))
            table = K.new_table()
            buf = np.frombuffer(self._buf, np.uint8)
            before = self._ctr.copy()
            B.walk(buf, chunk.cap, chunk.rows, self._var, table, chunk.blobs, ec, self._peers, self._pdict, st,
                   self._ctr, now, self.resync)  # fmt: skip
            self._pos = int(st[K.S_POS])  # consumed before yielding: an abandoned feed never decodes twice
            self._report(ec, self._ctr - before)
            n = int(st[K.S_N])
            if n:
                batch = self._assemble(buf, n, int(st[K.S_NBLOB]))
                for start in range(0, n, self.ctx.batch_size):
                    yield batch.slice(start, self.ctx.batch_size)
            status = int(st[K.S_STATUS])
            if status == B.FULL and st[K.S_NEED] > chunk.cap:
                chunk = self._chunk = _Chunk(int(st[K.S_NEED]))
                self._var = np.zeros(chunk.cap, np.int32)
            elif status == B.PEERS:
                self._grow_peers()
            elif status == B.FATAL:
                self.dead = True
                off = self._base + int(st[K.S_FATALOFF])
                self._buf, self._pos = b"", 0
                raise DecodeError(self.source, off, "implausible BMP header: the stream is lost")
            elif status == B.DONE:
                return

    def finish(self) -> None:
        """The stream has ended: an incomplete message left over is counted and raised as Truncated."""
        if not self.pending or self.dead:
            return
        rest, off = self._buf[self._pos :], self._base + self._pos
        needed = int.from_bytes(rest[1:5], "big") if len(rest) >= 6 else 6
        self.ctx.errors.add(self.source, "truncated BMP message", off)
        self.ctx.counters[(self.source, "decode_errors")] += 1
        self._base, self._buf, self._pos = off + len(rest), b"", 0
        raise Truncated(self.source, off, len(rest), needed, "BMP message")

    def end_rows(self, at_us: int) -> pa.RecordBatch:
        """STATE rows Idle for every peer and view of the session, for when the session itself ends.

        A router's BMP session going away means its monitoring data is stale
        (RFC 7854 section 3.3): the routing state must drop those routes, and
        the router resends everything when it reconnects.
        """
        n = int(self._peers[3][0])
        masks = self._peers[2][:n]
        bits = np.unpackbits(masks[:, None], axis=1, bitorder="little")[:, : len(SUFFIXES)]
        bits[masks == 0, 0] = 1
        peer_idx, view = np.nonzero(bits)
        m = len(peer_idx)
        cols = {
            "ts": pa.array(np.full(m, at_us, np.int64), pa.int64()).cast(ROUTE_SCHEMA.field("ts").type),
            "collector": self._collectors(peer_idx * 8 + view),
            "peer_addr": from_matrix(self._peers[4][peer_idx]),
            "peer_asn": pa.array(self._peers[5][peer_idx]),
            "elem_type": pa.array(np.full(m, ElemType.STATE, np.uint8)),
            "old_state": pa.array(np.full(m, B.ESTABLISHED, np.uint8)),
            "new_state": pa.array(np.full(m, B.IDLE, np.uint8)),
        }
        arrays = [cols.get(f.name, pa.nulls(m, f.type)) for f in ROUTE_SCHEMA]
        return pa.RecordBatch.from_arrays(arrays, schema=ROUTE_SCHEMA)

    def _grow_peers(self) -> None:
        old = self._peers
        new = self._peer_table(2 * len(old[2]))
        n = int(old[3][0])
        for a, b in zip(old, new, strict=True):
            b[:n] = a[:n]
        self._peers = new

    def _report(self, ec: tuple[np.ndarray, ...], counted: np.ndarray) -> None:
        err_off, err_code, counts = ec
        kept = np.zeros(B.NREASONS, np.int64)
        for i in range(int(self._st[K.S_NERR])):
            code = int(err_code[i])
            kept[code] += 1
            self.ctx.errors.add(self.source, B.REASONS[code], self._base + int(err_off[i]))
        for rest in np.nonzero(counts - kept)[0]:
            self.ctx.errors.add(self.source, B.REASONS[rest], None, n=int(counts[rest] - kept[rest]))
        for c in np.nonzero(counted)[0]:
            self.ctx.counters[(self.source, B.COUNTERS[c])] += int(counted[c])

    def _assemble(self, buf: np.ndarray, n: int, nblobs: int) -> pa.RecordBatch:
        # Arrow wraps the numpy arrays without copying and the chunk is reused by the next walk:
        # hand the assembler copies of the rows filled (cheap: n rows, not the chunk's capacity).
        rows = _Rows(tuple(a[:n].copy() for a in self._chunk.rows), tuple(a[:nblobs] for a in self._chunk.blobs))
        batch = MrtDecoder._assemble(buf, rows, n, nblobs, self.collector)  # type: ignore[arg-type]
        codes = self._var[:n].astype(np.int64)
        ptype = self._peers[0][:, 0]
        vrf = (ptype == 1) | (ptype == 2)  # per peer: an RD or local instance peer
        if (codes & 7).any() or vrf[codes >> 3].any():  # else every row has the plain name
            batch = batch.set_column(1, ROUTE_SCHEMA.field("collector"), self._collectors(codes))
        return batch

    def _collectors(self, codes: np.ndarray) -> pa.Array:
        """Collector names of rows coded peer index * 8 + view."""
        uniq, inverse = np.unique(codes, return_inverse=True)
        names = pa.array([self._name(c) for c in uniq.tolist()], pa.string())
        return pc.take(names, pa.array(inverse.ravel().astype(np.int32)))

    def _name(self, code: int) -> str:
        """The collector of one peer and view: RD and local instance peers carry their distinguisher,
        so the same address in two VRFs stays two peers."""
        name = self._names.get(code)
        if name is None:
            key = self._peers[0][code >> 3]
            rd = ":rd=" + rd_text(bytes(key[1:9])) if key[0] in (1, 2) else ""
            name = self._names[code] = self.collector + rd + SUFFIXES[code & 7]
        return name


def rd_text(rd: bytes) -> str:
    """A route distinguisher as RFC 4364 section 4.2 writes it: ASN:number or IPv4:number."""
    kind, value = int.from_bytes(rd[:2], "big"), rd[2:]
    if kind == 0:
        return f"{int.from_bytes(value[:2], 'big')}:{int.from_bytes(value[2:], 'big')}"
    if kind == 1:
        return f"{ipaddress.IPv4Address(value[:4])}:{int.from_bytes(value[4:], 'big')}"
    if kind == 2:
        return f"{int.from_bytes(value[:4], 'big')}:{int.from_bytes(value[4:], 'big')}"
    return rd.hex()


def _sniff_header(head: bytes, q: int) -> int:
    """Length of a plausible BMP v3 message at q, 0 if none (the next header may be cut off)."""
    if len(head) < q + 6 or head[q] != 3 or head[q + 5] > 6:
        return 0
    ln = int.from_bytes(head[q + 1 : q + 5], "big")
    least = 6 if head[q + 5] in (4, 5) else 6 + B.PEER_HDR
    return ln if least <= ln <= B.MAX_LEN else 0


class BmpDecoder:
    """The ``bmp`` file decoder: a file holding a raw BMP byte stream (as a collector would record it)."""

    name: ClassVar[str] = "bmp"
    kind: ClassVar[Kind] = Kind.ROUTE

    def sniff(self, head: bytes) -> bool:
        """A first plausible BMP v3 header, and a second one after it when the head reaches it."""
        ln = _sniff_header(head, 0)
        if not ln:
            return False
        return len(head) < ln + 6 or _sniff_header(head, ln) > 0

    def read(self, path: str, data: bytes, ctx: DecodeContext) -> Iterator[pa.RecordBatch]:
        """Yield ROUTE_SCHEMA batches; zero per-peer times become the file's modification time."""
        try:
            arrival = os.stat(path).st_mtime_ns // 1000
        except OSError:
            arrival = time.time_ns() // 1000
        stream = BmpStream(os.path.basename(path), ctx, source=path, resync=True)
        yield from stream.feed(data, arrival)
        stream.finish()


register_file(BmpDecoder())

"""MRT archives (RFC 6396, add-path RFC 8050) → ROUTE_SCHEMA batches, one row per prefix as ``bgpdump -m``.

Reads TABLE_DUMP (v1), TABLE_DUMP_V2 (PEER_INDEX_TABLE, RIB IPv4/IPv6 unicast
and multicast, RIB_GENERIC for AFI 1/2 SAFI 1/2, the add-path subtypes 8-12),
BGP4MP and BGP4MP_ET (MESSAGE, MESSAGE_AS4, *_LOCAL, STATE_CHANGE(_AS4), the
add-path subtypes 8-11) and the deprecated MRT type BGP (5) that 1999 RIS
files use.  Each UPDATE gives its withdrawals, then its announcements, in
bgpdump's order; a RIB entry gives one ``RIB`` row per peer.

How (measured on the jinx RIB, 503,590 rows, see bench/bench_mrt.py):

* :mod:`.mrt_kernel` walks the records with numba into preallocated numpy
  arrays and deduplicates attribute blobs (a RIB repeats the same attribute
  bytes for many prefixes); :mod:`.bgp_attrs` decodes each distinct blob once,
  writing the AS path and community texts straight into Arrow string buffers;
* the per-row string columns are gathered with Arrow ``take`` (C++), so no
  Python object is made per row.  Decoding every row's strings in the kernel
  instead was not needed: ``take`` over ~100k distinct blobs costs a few ms.

Damage (see :mod:`.mrt_kernel`): malformed records are counted in
``ctx.errors`` with their offset and skipped; implausible headers trigger a
resync; a file that ends inside a record, or whose damage cannot be stepped
over, raises :class:`~blackout.errors.Truncated` / :class:`~blackout.errors.DecodeError`
after everything before it was yielded.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DecodeError, Truncated
from ..model import ADDR, ROUTE_SCHEMA, TIME, ElemType, Kind
from . import mrt_kernel as K
from .base import DecodeContext, register_file
from .bgp_attrs import ORIGIN_NAMES, decode_blobs

_SNIFF_TYPES = {5, 11, 12, 13, 16, 17, 32, 33, 48, 49}
_MIN_CHUNK = 1 << 18  # rows per kernel call: large enough that blob dedupe pays off


def _mask_bitmap(valid: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _addr_column(mat: np.ndarray, valid: np.ndarray) -> pa.Array:
    n = len(mat)
    data = pa.py_buffer(np.ascontiguousarray(mat).tobytes())
    bitmap = None if valid.all() else _mask_bitmap(valid)
    return pa.Array.from_buffers(ADDR, n, [bitmap, data])


def _repeat(text: str, n: int) -> pa.Array:
    raw = text.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])


def _texts(offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.string(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


class _Chunk:
    """Preallocated kernel outputs for up to ``cap`` rows (and as many distinct blobs)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.rows = (
            np.zeros(cap, np.int64),  # ts µs
            np.zeros((cap, 16), np.uint8),  # peer
            np.zeros(cap, np.uint32),  # peer asn
            np.zeros(cap, np.uint8),  # elem type
            np.zeros((cap, 16), np.uint8),  # prefix
            np.zeros(cap, np.uint8),  # prefix len
            np.zeros(cap, np.int32),  # blob index, -1 none
            np.zeros(cap, np.uint8),  # next hop source: 0 NEXT_HOP, 1 MP_REACH first
            np.zeros(cap, np.uint32),  # path id
            np.zeros(cap, np.bool_),  # has path id
            np.zeros(cap, np.uint8),  # old state
            np.zeros(cap, np.uint8),  # new state
        )
        self.blobs = (np.zeros(cap, np.int64), np.zeros(cap, np.int64), np.zeros(cap, np.int64))


class MrtDecoder:
    """The ``mrt`` file decoder."""

    name: ClassVar[str] = "mrt"
    kind: ClassVar[Kind] = Kind.ROUTE

    def sniff(self, head: bytes) -> bool:
        """A first MRT header with a known type, a time after 1990 and a length that is sane."""
        if len(head) < 12:
            return False
        ts, typ, sub, ln = struct.unpack_from(">IHHI", head)
        return typ in _SNIFF_TYPES and sub < 64 and 631152000 <= ts < 4102444800 and ln < (1 << 24)

    def read(self, path: str, data: bytes, ctx: DecodeContext) -> Iterator[pa.RecordBatch]:
        """Yield ROUTE_SCHEMA batches of at most ctx.batch_size rows (see the module doc for damage)."""
        buf = np.frombuffer(data, dtype=np.uint8)
        collector = os.path.basename(path)
        peers = (np.zeros((65536, 16), np.uint8), np.zeros(65536, np.uint32))
        st = np.zeros(9, np.int64)
        ec = (np.zeros(K.KEEP_ERRORS, np.int64), np.zeros(K.KEEP_ERRORS, np.int64), np.zeros(K.NREASONS, np.int64))
        # a record of ln bytes yields at most ln + 1 rows, so a small input needs no 20 MB of kernel outputs
        # (a FULL walk still grows the chunk): fuzzing spent most of each input's time allocating them
        cap = min(max(ctx.batch_size, _MIN_CHUNK), len(data) + 1)
        while True:
            chunk = _Chunk(cap)  # fresh each time: yielded batches share its memory (zero copy)
            st[K.S_N] = st[K.S_NBLOB] = st[K.S_NERR] = st[K.S_NEED] = 0
            ec[2][:] = 0
            table = K.new_table()
            K.walk(buf, chunk.cap, chunk.rows, table, chunk.blobs, ec, peers, st)
            self._report(path, ctx, st, ec)
            n = int(st[K.S_N])
            if n:
                batch = self._assemble(buf, chunk, n, int(st[K.S_NBLOB]), collector)
                for start in range(0, n, ctx.batch_size):
                    yield batch.slice(start, ctx.batch_size)
            status = int(st[K.S_STATUS])
            off = int(st[K.S_FATALOFF])
            if status == K.DONE:
                return
            if status == K.FULL:
                cap = max(cap, int(st[K.S_NEED]))
                continue
            if status == K.TRUNC:
                got = len(data) - off
                needed = 12 + struct.unpack_from(">I", data, off + 8)[0] if got >= 12 else 12
                raise Truncated(path, off, got, needed, "MRT record")
            raise DecodeError(path, off, "implausible MRT header and no later record to resync on")

    @staticmethod
    def _report(path: str, ctx: DecodeContext, st: np.ndarray, ec: tuple[np.ndarray, ...]) -> None:
        err_off, err_code, counts = ec
        kept = np.zeros(K.NREASONS, np.int64)
        for i in range(int(st[K.S_NERR])):
            code = int(err_code[i])
            kept[code] += 1
            ctx.errors.add(path, K.REASONS[code], int(err_off[i]))
        for code in np.nonzero(counts - kept)[0].tolist():
            ctx.errors.add(path, K.REASONS[code], None, n=int(counts[code] - kept[code]))

    @staticmethod
    def _assemble(buf: np.ndarray, chunk: _Chunk, n: int, nblobs: int, collector: str) -> pa.RecordBatch:
        ts, peer, pasn, etype, pfx, plen, blob, nhsrc, pid, haspid, old, new = (a[:n] for a in chunk.rows)
        b_off, b_len, b_asn = (a[:nblobs] for a in chunk.blobs)
        (origin, lp, has_lp, med, has_med, nh, has_nh, mpnh, has_mpnh, oasn, path_off, path_txt, has_path, comm_off,
         comm_txt, has_comm) = decode_blobs(buf, b_off, b_len, b_asn, nblobs)  # fmt: skip
        if nblobs == 0:  # keep the gathers below in bounds
            origin, lp, med, oasn = (
                np.full(1, -1, np.int8),
                np.zeros(1, np.uint32),
                np.zeros(1, np.uint32),
                np.full(1, -1),
            )
            has_lp = has_med = has_nh = has_mpnh = has_path = has_comm = np.zeros(1, np.bool_)
            nh = mpnh = np.zeros((1, 16), np.uint8)
            path_off = comm_off = np.zeros(2, np.int32)
        valid = blob >= 0
        b = np.where(valid, blob, 0)
        is_state = etype == ElemType.STATE
        use_mp = (nhsrc == 1) & has_mpnh[b]
        nh_valid = valid & (use_mp | has_nh[b])
        next_hop = np.where(use_mp[:, None], mpnh[b], nh[b])
        org = origin[b]
        org_valid = valid & (org >= 0)
        org_idx = pa.array(np.minimum(org, 2).astype(np.int32), mask=~org_valid)
        o_asn = oasn[b]
        cols = [
            pa.Array.from_buffers(TIME, n, [None, pa.py_buffer(ts)]),
            _repeat(collector, n),
            _addr_column(peer, np.ones(n, np.bool_)),
            pa.array(pasn, pa.uint32()),
            pa.array(etype, pa.uint8()),
            _addr_column(pfx, ~is_state),
            pa.array(plen, pa.uint8(), mask=is_state),
            pc.take(_texts(path_off, path_txt), pa.array(b, pa.int32(), mask=~(valid & has_path[b]))),
            pa.array(np.maximum(o_asn, 0).astype(np.uint32), pa.uint32(), mask=~(valid & (o_asn >= 0))),
            _addr_column(next_hop, nh_valid),
            pc.take(pa.array(ORIGIN_NAMES), org_idx),
            pa.array(lp[b], pa.uint32(), mask=~(valid & has_lp[b])),
            pa.array(med[b], pa.uint32(), mask=~(valid & has_med[b])),
            pc.take(_texts(comm_off, comm_txt), pa.array(b, pa.int32(), mask=~(valid & has_comm[b]))),
            pa.array(pid, pa.uint32(), mask=~haspid),
            pa.array(old, pa.uint8(), mask=~is_state),
            pa.array(new, pa.uint8(), mask=~is_state),
        ]
        return pa.RecordBatch.from_arrays(cols, schema=ROUTE_SCHEMA)


register_file(MrtDecoder())

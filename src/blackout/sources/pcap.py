"""pcap and pcapng captures → flow records: one 1-packet flow per IP packet, or the exports they carry.

The file is read in chunks of ``ctx.batch_size`` packets: a numba walk finds
the records (:mod:`.pcap_records`), a numba kernel decodes their headers
(:mod:`.packets`), and the batch is built from the resulting numpy arrays.  No
Python object is made per packet, except for packets that carry flow exports.

Captures of flow exports: UDP payloads whose first word is a NetFlow/IPFIX
version (5, 9, 10) or an sFlow version (5) are offered to the registered
datagram decoders' ``sniff_datagram``; those that one accepts are decoded by
it (exporter = the packet's source address, arrival = the packet's time) and
its records take the place of the packets' 1-packet flows, in file order.  The
vectorised version-word check keeps the per-packet sniff off the hot path.

Why our own reader rather than dpkt or scapy: they build objects per packet;
this path is measured in ``bench/bench_pcap.py`` against a dpkt loop.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import ClassVar, NamedTuple

import numpy as np
import pyarrow as pa

from .. import addr
from ..errors import DecodeError, Truncated
from ..model import FLOW_SCHEMA, TIME, Kind
from . import packets
from . import pcap_records as rec
from .base import DATAGRAM_DECODERS, DecodeContext, register_file

# Magic as the first four bytes read: (big-endian, nanosecond).
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": (False, False),
    b"\xa1\xb2\xc3\xd4": (True, False),
    b"\x4d\x3c\xb2\xa1": (False, True),
    b"\xa1\xb2\x3c\x4d": (True, True),
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

# First word of an export datagram, per datagram decoder: (u16 versions, u32 versions).  A decoder
# not listed here is offered every UDP payload.
EXPORT_VERSIONS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "netflow": ((5, 9, 10), ()),
    "sflow": ((), (5,)),
}


class PcapDecoder:
    """Reads classic pcap (either byte order, µs or ns) and pcapng (any number of sections and interfaces)."""

    name: ClassVar[str] = "pcap"
    kind: ClassVar[Kind] = Kind.FLOW

    def sniff(self, head: bytes) -> bool:
        """True for the four classic pcap magics and the pcapng section header."""
        return head[:4] in PCAP_MAGICS or head[:4] == PCAPNG_MAGIC

    def read(self, path: str, data: bytes, ctx: DecodeContext) -> Iterator[pa.RecordBatch]:
        """Yield flow batches of at most ctx.batch_size rows in file order."""
        buf = np.frombuffer(data, dtype=np.uint8)
        size = max(1, ctx.batch_size)
        for chunk in _chunks(path, buf, size, ctx):
            yield from _rebatch(_flows(path, buf, chunk, ctx), size)


def _header(path: str, buf: np.ndarray) -> tuple[bool, np.ndarray, int]:
    """Check the file header: (is pcapng, walk state, max packet length)."""
    head = bytes(buf[:28])
    if head[:4] == PCAPNG_MAGIC:
        if len(head) < 28:
            raise Truncated(path, 0, len(head), 28, "pcapng section header")
        bom = head[8:12]
        if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            raise DecodeError(path, 8, f"bad pcapng byte-order magic {bom.hex()}")
        e = ">" if bom == b"\x1a\x2b\x3c\x4d" else "<"
        blen, _, major = struct.unpack_from(e + "IIH", head, 4)
        if major != 1:
            raise DecodeError(path, 12, f"unsupported pcapng version {major}")
        if blen < 28 or blen % 4 or blen > len(buf):
            raise DecodeError(path, 4, f"bad section header length {blen}")
        if struct.unpack(e + "I", bytes(buf[blen - 4 : blen]))[0] != blen:
            raise DecodeError(path, blen - 4, "section header trailer does not repeat its length")
        return True, rec.new_state(0, e == ">"), rec.MAX_PACKET
    if head[:4] not in PCAP_MAGICS:
        raise DecodeError(path, 0, f"not a pcap or pcapng file (magic {head[:4].hex()})")
    if len(head) < 24:
        raise Truncated(path, 0, len(head), 24, "pcap file header")
    big, _ = PCAP_MAGICS[head[:4]]
    major, _, _, _, snaplen, linktype = struct.unpack_from(">HHiIII" if big else "<HHiIII", head, 4)
    if major != 2:
        raise DecodeError(path, 4, f"unsupported pcap version {major}")
    return False, rec.new_state(24, big, linktype & 0x03FFFFFF, snaplen), max(snaplen, rec.MAX_PACKET)


class _Chunk(NamedTuple):
    """The packets one walk found: numpy arrays, one entry per packet."""

    ts: np.ndarray  # µs since the epoch
    off: np.ndarray  # where the frame's bytes start in the buffer
    cap: np.ndarray  # captured length
    orig: np.ndarray  # length on the wire
    record: np.ndarray  # where the packet's record starts (for error offsets)
    link: np.ndarray  # link type
    iface: np.ndarray  # pcapng interface id (0 for classic pcap)


def _chunks(path: str, buf: np.ndarray, size: int, ctx: DecodeContext) -> Iterator[_Chunk]:
    """Walk the whole buffer, size packets at a time, counting damage as it is met."""
    ng, st, max_len = _header(path, buf)
    nano = not ng and PCAP_MAGICS[bytes(buf[:4])][1]
    ev = np.zeros((rec.MAX_EVENTS, 3), dtype=np.int64)
    done = False
    while not done:
        out = np.empty((7, size), dtype=np.int64)  # fresh each time: the batches keep views of it
        if ng:
            n, k, done = rec.walk_pcapng(buf, st, out, ev)
        else:
            n, k, done = rec.walk_pcap(buf, st, nano, max_len, out, ev)
        for code, offset, extra in ev[:k].tolist():
            ctx.errors.add(path, rec.EV_NAMES[code], offset)
            if code in rec.EV_SKIPS:
                ctx.counters[(os.path.basename(path), "bytes skipped")] += extra
        if n:
            yield _Chunk(*out[:, :n])
    if st[rec.ST_OVER_SNAP]:  # accepted, as every reader does, but said
        ctx.counters[(os.path.basename(path), "caplen above snaplen")] += int(st[rec.ST_OVER_SNAP])


def _flows(path: str, buf: np.ndarray, c: _Chunk, ctx: DecodeContext) -> list[pa.RecordBatch]:
    """One chunk's flow batches in file order: 1-packet flows, with export datagrams decoded in place."""
    f = packets.decode_frames(buf, c.off, c.cap, c.orig, c.link)
    status = f["status"]
    n = len(status)
    exporter = os.path.basename(path)
    ctx.counters[(exporter, "packets")] += n
    _count_bad(path, status, c, ctx)
    kept = status == packets.OK
    export = _exports(buf, kept & (f["protocol"] == 17), f["payload"], f["payload_len"])
    cols = {name: pa.array(f[name]) for name in FLOW_SCHEMA.names if name in f and f[name].ndim == 1}
    cols |= {
        "ts": pa.array(c.ts, type=TIME),
        "exporter": pa.repeat(pa.scalar(exporter), n),
        "src_addr": addr.from_matrix(f["src_addr"]),
        "dst_addr": addr.from_matrix(f["dst_addr"]),
        "packets": pa.repeat(pa.scalar(1, pa.uint64()), n),
        "sampling_rate": pa.repeat(pa.scalar(1, pa.uint32()), n),
        "in_if": pa.array(c.iface.astype(np.uint32)),
        "out_if": pa.repeat(pa.scalar(0, pa.uint32()), n),
    }
    table = pa.RecordBatch.from_arrays([cols[name] for name in FLOW_SCHEMA.names], schema=FLOW_SCHEMA)
    if not export:
        return [table if kept.all() else table.filter(pa.array(kept))]
    return _with_exports(buf, table, kept, export, f, c.ts, ctx)


def _count_bad(path: str, status: np.ndarray, c: _Chunk, ctx: DecodeContext) -> None:
    """Count every frame that is not an IP packet, per reason, with the first one's file offset."""
    bad = np.flatnonzero(status != packets.OK)
    if not len(bad):
        return
    codes = status[bad]
    for code in np.unique(codes).tolist():
        rows = bad[codes == code]
        if code == packets.UNKNOWN_LINK:
            for lt in np.unique(c.link[rows]).tolist():
                sel = rows[c.link[rows] == lt]
                ctx.errors.add(path, f"unknown link type {lt}", int(c.record[sel[0]]), n=len(sel))
        else:
            ctx.errors.add(path, packets.REASONS[code], int(c.record[rows[0]]), n=len(rows))


def _exports(buf: np.ndarray, udp: np.ndarray, pay: np.ndarray, pay_len: np.ndarray) -> dict[int, str]:
    """Packet index → datagram decoder name, for UDP payloads a registered decoder accepts."""
    if not DATAGRAM_DECODERS:
        return {}
    cand = np.flatnonzero(udp & (pay >= 0) & (pay_len >= 8))
    if not len(cand):
        return {}
    p = pay[cand]
    w16 = (buf[p].astype(np.int64) << 8) | buf[p + 1]
    w32 = (w16 << 16) | (buf[p + 2].astype(np.int64) << 8) | buf[p + 3]
    out: dict[int, str] = {}
    for name, decoder in DATAGRAM_DECODERS.items():
        versions = EXPORT_VERSIONS.get(name)
        sel = cand if versions is None else cand[np.isin(w16, versions[0]) | np.isin(w32, versions[1])]
        for i in sel.tolist():
            if i not in out and decoder.sniff_datagram(bytes(buf[pay[i] : pay[i] + pay_len[i]])):
                out[i] = name
    return out


def _with_exports(
    buf: np.ndarray,
    table: pa.RecordBatch,
    kept: np.ndarray,
    export: dict[int, str],
    f: dict[str, np.ndarray],
    ts: np.ndarray,
    ctx: DecodeContext,
) -> list[pa.RecordBatch]:
    """Split the chunk at export packets: plain runs stay 1-packet flows, each export run is decoded at once."""
    src, pay, pay_len = f["src_addr"], f["payload"], f["payload_len"]
    out: list[pa.RecordBatch] = []
    idx = sorted(export)
    start = 0
    j = 0
    while j < len(idx):
        i0 = idx[j]
        name = export[i0]
        run = [i0]
        while j + 1 < len(idx) and idx[j + 1] == run[-1] + 1 and export[idx[j + 1]] == name:
            j += 1
            run.append(idx[j])
        j += 1
        if i0 > start:
            out.append(table.slice(start, i0 - start).filter(pa.array(kept[start:i0])))
        rows = np.array(run)
        payloads = [bytes(buf[pay[i] : pay[i] + pay_len[i]]) for i in run]
        senders = [addr.format_one(bytes(src[i])) or "" for i in run]
        batch = DATAGRAM_DECODERS[name].decode(payloads, senders, ts[rows], ctx)
        out.append(batch if batch.schema == FLOW_SCHEMA else batch.select(FLOW_SCHEMA.names).cast(FLOW_SCHEMA))
        start = run[-1] + 1
    if start < len(kept):
        out.append(table.slice(start).filter(pa.array(kept[start:])))
    return out


def _rebatch(batches: list[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """The batches as batches of at most size rows, empty ones dropped."""
    batches = [b for b in batches if b.num_rows]
    if len(batches) == 1 and batches[0].num_rows <= size:
        yield batches[0]
        return
    if batches:
        yield from pa.Table.from_batches(batches, schema=FLOW_SCHEMA).combine_chunks().to_batches(size)


register_file(PcapDecoder())

"""NetFlow v9 / IPFIX templates: the field table, template records, and whole-set field extraction.

Shared by :mod:`.netflow_v9` and :mod:`.ipfix` (RFC 3954 and RFC 7011 differ only in
headers, set ids and template record layout, not in how data records follow a template).

A template is a tuple of ``(field id, length)``; only the fields in :data:`FIELDS` are
ever extracted, the rest (enterprise fields, unknown fields, variable-length strings)
are stepped over by their length.  Fixed-length templates decode every record of many
sets in one ``np.frombuffer`` with a structured big-endian dtype compiled once per
template; variable-length templates (IPFIX length 65535) are walked by a numba kernel
that only records where the wanted fields start, then gathered with numpy.
"""

from __future__ import annotations

import dataclasses
import functools
import struct

import numpy as np
from numba import njit

VARLEN = 65535
SCOPE_BASE = 0x10000  # NetFlow v9 option scope types are mapped above every real field id
ENTERPRISE_BASE = 0x20000  # enterprise-specific fields are never extracted

# Field id → (IANA / RFC 3954 name, FLOW_SCHEMA column or role it feeds).  Where several
# fields feed one column, the earlier entry wins (see flowsets.py for the order).
FIELDS: dict[int, tuple[str, str]] = {
    1: ("octetDeltaCount", "bytes"),  # v9 IN_BYTES
    2: ("packetDeltaCount", "packets"),  # v9 IN_PKTS
    4: ("protocolIdentifier", "protocol"),
    6: ("tcpControlBits", "tcp_flags"),
    7: ("sourceTransportPort", "src_port"),
    8: ("sourceIPv4Address", "src_addr"),
    10: ("ingressInterface", "in_if"),
    11: ("destinationTransportPort", "dst_port"),
    12: ("destinationIPv4Address", "dst_addr"),
    14: ("egressInterface", "out_if"),
    21: ("flowEndSysUpTime", "time"),  # v9 LAST_SWITCHED
    22: ("flowStartSysUpTime", "time"),  # v9 FIRST_SWITCHED
    23: ("postOctetDeltaCount", "bytes"),  # v9 OUT_BYTES
    24: ("postPacketDeltaCount", "packets"),  # v9 OUT_PKTS
    27: ("sourceIPv6Address", "src_addr"),
    28: ("destinationIPv6Address", "dst_addr"),
    32: ("icmpTypeCodeIPv4", "dst_port"),
    34: ("samplingInterval", "sampling"),
    35: ("samplingAlgorithm", "sampling"),
    48: ("samplerId", "sampling"),  # v9 FLOW_SAMPLER_ID
    49: ("samplerMode", "sampling"),
    50: ("samplerRandomInterval", "sampling"),
    52: ("minimumTTL", "ttl"),
    53: ("maximumTTL", "ttl"),
    85: ("octetTotalCount", "bytes"),
    86: ("packetTotalCount", "packets"),
    88: ("fragmentOffset", "fragment"),
    139: ("icmpTypeCodeIPv6", "dst_port"),
    150: ("flowStartSeconds", "time"),
    152: ("flowStartMilliseconds", "time"),
    154: ("flowStartMicroseconds", "time"),
    156: ("flowStartNanoseconds", "time"),
    160: ("systemInitTimeMilliseconds", "time"),
    176: ("icmpTypeIPv4", "dst_port"),
    177: ("icmpCodeIPv4", "dst_port"),
    178: ("icmpTypeIPv6", "dst_port"),
    179: ("icmpCodeIPv6", "dst_port"),
    192: ("ipTTL", "ttl"),
    197: ("fragmentFlags", "fragment"),
    231: ("initiatorOctets", "bytes"),  # Cisco ASA NSEL
    298: ("initiatorPackets", "packets"),
    302: ("selectorId", "sampling"),
    305: ("samplingPacketInterval", "sampling"),
    306: ("samplingPacketSpace", "sampling"),
}
ADDRESS_FIELDS = frozenset({8, 12, 27, 28})


class TemplateError(ValueError):
    """A template record that cannot be used (no fields, zero-length records, runs past its set)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Template:
    """One (options) template: its fields in wire order, and whether it describes option records.

    Compared by identity (hashing the field tuple per data set was measurable): make them
    with :func:`make_template`, which returns one object per distinct template.
    """

    fields: tuple[tuple[int, int], ...]
    options: bool = False

    @functools.cached_property
    def layout(self) -> Layout:
        return compile_layout(self.fields)


@functools.lru_cache(maxsize=4096)
def make_template(fields: tuple[tuple[int, int], ...], options: bool = False) -> Template:
    """The one Template object of these fields (exporters re-send templates every few packets)."""
    return Template(fields, options)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the wanted fields are: a structured dtype for fixed-length records, or a kernel plan."""

    reclen: int  # record length, 0 when variable
    minlen: int  # shortest possible record (variable templates)
    dtype: np.dtype | None  # fixed: wanted fields at their offsets
    lengths: np.ndarray  # all field lengths (VARLEN for variable)
    want_index: np.ndarray  # per field: column of `wanted` it feeds, or -1
    wanted: tuple[tuple[int, int], ...]  # (field id, length) extracted


@functools.lru_cache(maxsize=4096)
def compile_layout(fields: tuple[tuple[int, int], ...]) -> Layout:
    """Compile a template once: wanted fields (first occurrence, ≤ 8 bytes or 16-byte addresses)."""
    wanted: list[tuple[int, int]] = []
    want_index = np.full(len(fields), -1, dtype=np.int64)
    names: list[str] = []
    formats: list[object] = []
    offsets: list[int] = []
    off = 0
    variable = False
    seen: set[int] = set()
    for k, (fid, flen) in enumerate(fields):
        usable = flen != VARLEN and (flen <= 8 or (flen == 16 and fid in ADDRESS_FIELDS))
        if fid in ADDRESS_FIELDS and flen != (16 if fid in (27, 28) else 4):
            usable = False  # an address of another length is stepped over (fuzzing: an IPv6 field of 4 bytes crashed)
        if fid in FIELDS and fid not in seen and usable and flen > 0:
            seen.add(fid)
            want_index[k] = len(wanted)
            wanted.append((fid, flen))
            names.append(f"f{fid}")
            formats.append(f">u{flen}" if flen in (1, 2, 4, 8) else (np.uint8, (flen,)))
            offsets.append(off)
        if flen == VARLEN:
            variable = True
            off += 1
        else:
            off += flen
    lengths = np.array([f[1] for f in fields], dtype=np.int64)
    if variable:
        return Layout(0, off, None, lengths, want_index, tuple(wanted))
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": max(off, 1)})
    return Layout(off, off, dtype, lengths, want_index, tuple(wanted))


def parse_fields(buf: bytes, pos: int, end: int, count: int, enterprise_bit: bool) -> tuple[tuple[int, int], ...]:
    """Read ``count`` (type, length) specifiers; IPFIX enterprise fields (bit 15) carry a 4-byte PEN."""
    if count == 0 or count * 4 > end - pos:
        raise TemplateError(f"template with {count} fields does not fit in {end - pos} bytes")
    if not enterprise_bit:
        return _plain_fields(buf[pos : pos + 4 * count])
    out = []
    for _ in range(count):
        if pos + 4 > end:
            raise TemplateError("template field list runs past its set")
        fid, flen = struct.unpack_from("!HH", buf, pos)
        pos += 4
        if enterprise_bit and fid & 0x8000:
            if pos + 4 > end:
                raise TemplateError("enterprise number runs past its set")
            fid = ENTERPRISE_BASE + (fid & 0x7FFF)
            pos += 4
        out.append((fid, flen))
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _plain_fields(raw: bytes) -> tuple[tuple[int, int], ...]:
    """(type, length) pairs without enterprise numbers (NetFlow v9), cached by their bytes."""
    return tuple(struct.iter_unpack("!HH", raw))


def fields_size(count: int, fields: tuple[tuple[int, int], ...]) -> int:
    """Bytes the field specifiers took on the wire (enterprise fields take 8)."""
    return 4 * count + 4 * sum(1 for fid, _ in fields if fid >= ENTERPRISE_BASE)


def check_template(fields: tuple[tuple[int, int], ...]) -> None:
    """Refuse templates whose records could not advance (zero-length records loop forever)."""
    if fields and compile_layout(fields).minlen == 0:
        raise TemplateError("template records have zero length")


def be_uint(mat: np.ndarray) -> np.ndarray:
    """(n, L ≤ 8) big-endian bytes → uint64 values."""
    n, width = mat.shape
    padded = np.zeros((n, 8), dtype=np.uint8)
    padded[:, 8 - width :] = mat
    return padded.view(">u8").ravel().astype(np.uint64)


def _column(raw: np.ndarray, flen: int, fid: int) -> np.ndarray:
    """One extracted field: uint64 values, or an (n, 16) matrix for IPv6 addresses."""
    if flen == 16:
        return np.ascontiguousarray(raw).reshape(-1, 16)
    if raw.ndim == 2:
        return be_uint(raw)
    return raw.astype(np.uint64)


def extract_fixed(layout: Layout, data: bytes) -> dict[int, np.ndarray]:
    """All records of concatenated fixed-length data: wanted field id → values."""
    assert layout.dtype is not None
    recs = np.frombuffer(data, dtype=layout.dtype, count=len(data) // layout.reclen)
    return {fid: _column(recs[f"f{fid}"], flen, fid) for fid, flen in layout.wanted}


@njit(cache=True)
def _walk_variable(buf, starts, ends, lengths, want_index, out_off, out_set, out_stop):  # type: ignore[no-untyped-def]
    """Walk variable-length records (RFC 7011 7: 1-byte length, 255 → 2-byte length follows).

    ``out_stop[s]``: where set ``s``'s last whole record ends (its start if it has none).
    """
    n = 0
    nfields = lengths.shape[0]
    cap = out_off.shape[0]
    for s in range(starts.shape[0]):
        pos = starts[s]
        end = ends[s]
        while n < cap:
            p = pos
            ok = True
            for k in range(nfields):
                flen = lengths[k]
                if flen == 65535:
                    if p >= end:
                        ok = False
                        break
                    flen = np.int64(buf[p])
                    p += 1
                    if flen == 255:
                        if p + 2 > end:
                            ok = False
                            break
                        flen = (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])
                        p += 2
                if p + flen > end:
                    ok = False
                    break
                j = want_index[k]
                if j >= 0:
                    out_off[n, j] = p
                p += flen
            if not ok or p == pos:
                break
            out_set[n] = s
            n += 1
            pos = p
        out_stop[s] = pos
    return n


def extract_variable(
    layout: Layout, data: bytes, starts: np.ndarray, ends: np.ndarray
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Records of variable-length sets laid end to end in ``data`` ([starts[i], ends[i]) per set).

    Returns wanted field id → values, per record the index of the set it came from, and per
    set where its last whole record ends (bytes after it are padding or a record cut short).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    cap = len(buf) // max(layout.minlen, 1) + 1
    out_off = np.zeros((cap, max(len(layout.wanted), 1)), dtype=np.int64)
    out_set = np.zeros(cap, dtype=np.int64)
    out_stop = np.array(starts, dtype=np.int64)
    n = _walk_variable(buf, starts, ends, layout.lengths, layout.want_index, out_off, out_set, out_stop)
    cols: dict[int, np.ndarray] = {}
    for j, (fid, flen) in enumerate(layout.wanted):
        idx = out_off[:n, j, None] + np.arange(flen, dtype=np.int64)
        mat = buf[idx]
        cols[fid] = mat if flen == 16 else be_uint(mat)
    return cols, out_set[:n], out_stop

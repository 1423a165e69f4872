"""Record walks over classic pcap and pcapng buffers: where each packet is, when, on which link.

Why numba: records are variable-length and chained (each header says where the
next one starts), so numpy cannot find them without a walk.  The kernels hop
from header to header and fill preallocated arrays (time in µs, data offset,
captured and original length, link type, interface, record offset), at most
``len(out_ts)`` packets per call, so the caller streams the file in chunks.

Damage is never raised here.  The kernels write events ``(code, offset, extra)``
that the caller counts in ``ctx.errors``; a record header that cannot be true
(length beyond any snaplen, pcapng trailer mismatch) makes the walk *resync*:
it scans forward for the next position where two chained headers look valid,
and reports how many bytes it stepped over.

State that outlives a call (byte order, the pcapng interface table) lives in a
small int64 array so a walk can stop when its buffers are full and resume.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

# Events written by the walks: (code, offset of the damaged record, extra).
EV_CUT_HEADER = 1  # the file ends inside a record header (extra: bytes left)
EV_CUT_PACKET = 2  # the file ends inside a packet (extra: bytes left)
EV_BAD_RECORD = 3  # impossible record header, resynced (extra: bytes skipped)
EV_BAD_PACKET = 4  # pcapng packet block whose lengths do not fit it (skipped)
EV_UNKNOWN_IF = 5  # pcapng packet on an interface no IDB described
EV_TOO_MANY_IF = 6  # more IDBs in one section than the table holds
EV_NAMES = {
    EV_CUT_HEADER: "truncated record header",
    EV_CUT_PACKET: "truncated packet",
    EV_BAD_RECORD: "damaged record, resynced",
    EV_BAD_PACKET: "damaged packet block",
    EV_UNKNOWN_IF: "packet on undeclared interface",
    EV_TOO_MANY_IF: "too many interfaces",
}
EV_SKIPS = (EV_CUT_HEADER, EV_CUT_PACKET, EV_BAD_RECORD)  # events whose extra is a count of bytes skipped
MAX_EVENTS = 256

# Largest packet any reader accepts whatever the snaplen says (Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD).
MAX_PACKET = 262144

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
MAX_IF = 1024

# Layout of the state array.
ST_POS, ST_BE, ST_NIF, ST_LAST_TS, ST_LINK, ST_SNAP, ST_OVER_SNAP = range(7)  # OVER_SNAP: packets above snaplen
IF_BASE = 8  # then per interface: link, snaplen, tsresol, tsoffset (seconds)

# Rows of the walks' output array, one column per packet.
TS, OFF, CAP, ORIG, REC, LINK, IFACE = range(7)  # µs time, data offset, captured, original, record offset, link, if


def new_state(pos: int, big_endian: bool, linktype: int = -1, snaplen: int = 0) -> np.ndarray:
    """Walk state for a buffer: resume position, byte order, classic link type and snaplen, pcapng interfaces."""
    st = np.zeros(IF_BASE + 4 * MAX_IF, dtype=np.int64)
    st[ST_POS] = pos
    st[ST_BE] = int(big_endian)
    st[ST_LINK] = linktype
    st[ST_SNAP] = snaplen
    return st


@njit(cache=True, inline="always")
def _u16(b: np.ndarray, p: Any, be: Any) -> Any:
    if be:
        return (np.int64(b[p]) << 8) | np.int64(b[p + 1])
    return np.int64(b[p]) | (np.int64(b[p + 1]) << 8)


@njit(cache=True, inline="always")
def _u32(b: np.ndarray, p: Any, be: Any) -> Any:
    if be:
        return (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3])
    return np.int64(b[p]) | (np.int64(b[p + 1]) << 8) | (np.int64(b[p + 2]) << 16) | (np.int64(b[p + 3]) << 24)


@njit(cache=True, inline="always")
def _event(ev: np.ndarray, k: int, code: int, off: int, extra: int) -> int:
    ev[k, 0] = code
    ev[k, 1] = off
    ev[k, 2] = extra
    return k + 1


@njit(cache=True, inline="always")
def _emit(out: np.ndarray, n: int, ts: int, off: int, cap: int, orig: int, rec: int, link: int, iface: int) -> None:
    out[TS, n] = ts
    out[OFF, n] = off
    out[CAP, n] = cap
    out[ORIG, n] = orig
    out[REC, n] = rec
    out[LINK, n] = link
    out[IFACE, n] = iface


@njit(cache=True)
def _tail(ev: np.ndarray, k: int, pos: int, end: int, need: int) -> tuple[int, int]:
    """Count a record header cut by the end of the file (fewer than ``need`` bytes left): (events, position)."""
    if pos < end and end - pos < need and k < ev.shape[0]:
        return _event(ev, k, EV_CUT_HEADER, pos, end - pos), end
    return k, pos


# ------------------------------------------------------------------ classic pcap
@njit(cache=True)
def _pcap_plausible(b: np.ndarray, p: int, be: int, frac_max: int, max_len: int, near: int) -> int:
    """Length of the record at p if its header could be true, else -1.

    ``near`` (seconds, or -1) asks for a time within a week of it: packet bytes
    rarely look like a time that close, which keeps resyncs out of zero runs.
    """
    if p + 16 > b.shape[0]:
        return -1
    sec = _u32(b, p, be)
    frac = _u32(b, p + 4, be)
    incl = _u32(b, p + 8, be)
    orig = _u32(b, p + 12, be)
    if frac >= frac_max or incl > max_len or incl > orig or orig == 0 or p + 16 + incl > b.shape[0]:
        return -1
    if near >= 0 and abs(sec - near) > 7 * 86400:
        return -1
    return 16 + incl


@njit(cache=True)
def _pcap_resync(b: np.ndarray, start: int, be: int, frac_max: int, max_len: int, near: int) -> int:
    """First position from start where three chained records (or fewer, then the end of file) look valid."""
    end = b.shape[0]
    for q in range(start, end - 15):
        p = q
        for _ in range(3):
            n = _pcap_plausible(b, p, be, frac_max, max_len, near)
            if n < 0:
                break
            p += n
            if p == end:
                return q
        else:
            return q
    return end


@njit(cache=True)
def walk_pcap(b: np.ndarray, st: np.ndarray, nano: bool, max_len: int, out: np.ndarray, ev: np.ndarray) -> tuple:
    """Walk classic pcap records from st[ST_POS] into out: (packets found, events written, reached the end)."""
    end = b.shape[0]
    pos = st[ST_POS]
    be = st[ST_BE]
    frac_max = 1_000_000_000 if nano else 1_000_000
    near = -1  # seconds of the last good record
    n = 0
    k = 0
    while n < out.shape[1] and k < ev.shape[0] and end - pos >= 16:
        incl = _u32(b, pos + 8, be)
        ok = incl <= max_len and pos + 16 + incl <= end
        if ok and _pcap_plausible(b, pos, be, frac_max, max_len, -1) < 0:
            # An odd header (fraction over a second, captured > original): believed only when the next one is sane,
            # so that a damaged length cannot walk us out of step through the packet bytes.
            nxt = pos + 16 + incl
            ok = nxt == end or _pcap_plausible(b, nxt, be, frac_max, max_len, -1) >= 0
        if not ok:
            # A length no reader accepts, or one running past the end: damage if a valid record follows.
            q = _pcap_resync(b, pos + 1, be, frac_max, max_len, near)
            k = _event(ev, k, EV_BAD_RECORD if q < end else EV_CUT_PACKET, pos, q - pos)
            pos = q
            continue
        near = _u32(b, pos, be)
        frac = _u32(b, pos + 4, be)
        us = near * 1_000_000 + (frac // 1000 if nano else frac)
        _emit(out, n, us, pos + 16, incl, _u32(b, pos + 12, be), pos, st[ST_LINK], 0)
        st[ST_OVER_SNAP] += 0 < st[ST_SNAP] < incl
        n += 1
        pos += 16 + incl
    k, pos = _tail(ev, k, pos, end, 16)
    st[ST_POS] = pos
    return n, k, pos >= end


# ------------------------------------------------------------------------ pcapng
@njit(cache=True)
def _to_us(t: int, res: int, tsoff: int) -> int:
    """A pcapng timestamp in units of if_tsresol (10^-res, or 2^-(res & 0x7f) when the top bit is set) as µs."""
    us = 0
    if res & 0x80:
        e = res & 0x7F
        if e == 0:
            us = t * 1_000_000
        elif e < 63:
            whole = t >> e
            frac = t & ((1 << e) - 1)
            if e <= 40:
                us = whole * 1_000_000 + ((frac * 1_000_000) >> e)
            else:
                us = whole * 1_000_000 + int(frac / 2.0**e * 1e6)
    elif res == 6:
        us = t
    elif res > 6:
        if res - 6 <= 18:
            us = t // (10 ** (res - 6))
    else:
        us = t * 10 ** (6 - res)
    return us + tsoff * 1_000_000


@njit(cache=True)
def _block_ok(b: np.ndarray, p: int, be: int) -> bool:
    """Whether a pcapng block could start at p (length sane, trailer repeats it); used to resync."""
    end = b.shape[0]
    if p + 12 > end:
        return False
    btype = _u32(b, p, be)
    if btype == PCAPNG_SHB:
        if p + 28 > end:
            return False
        bom = _u32(b, p + 8, 0)
        if bom == PCAPNG_BOM:
            be = 0
        elif bom == 0x4D3C2B1A:
            be = 1
        else:
            return False
    elif btype == 0 or btype > 10:
        return False
    blen = _u32(b, p + 4, be)
    return blen >= 12 and blen % 4 == 0 and p + blen <= end and _u32(b, p + blen - 4, be) == blen


@njit(cache=True)
def _read_idb(b: np.ndarray, body: int, body_end: int, be: int, st: np.ndarray, slot: int) -> None:
    """Fill interface slot from an IDB body: link type, snaplen, if_tsresol (9), if_tsoffset (14)."""
    st[slot] = _u16(b, body, be)
    st[slot + 1] = _u32(b, body + 4, be)
    st[slot + 2] = 6
    st[slot + 3] = 0
    p = body + 8
    while p + 4 <= body_end:
        code = _u16(b, p, be)
        olen = _u16(b, p + 2, be)
        if code == 0 or p + 4 + olen > body_end:
            break
        if code == 9 and olen >= 1:
            st[slot + 2] = b[p + 4]
        elif code == 14 and olen >= 8:
            lo, hi = (p + 8, p + 4) if be else (p + 4, p + 8)
            st[slot + 3] = (_u32(b, hi, be) << 32) | _u32(b, lo, be)
        p += 4 + ((olen + 3) // 4) * 4


@njit(cache=True)
def walk_pcapng(b: np.ndarray, st: np.ndarray, out: np.ndarray, ev: np.ndarray) -> tuple:
    """Walk pcapng blocks from st[ST_POS] (SHB, IDB, EPB, SPB, obsolete PB; others stepped over)."""
    end = b.shape[0]
    pos = st[ST_POS]
    be = st[ST_BE]
    n = 0
    k = 0
    while n < out.shape[1] and k < ev.shape[0] and end - pos >= 12:
        btype = _u32(b, pos, be)
        if btype == PCAPNG_SHB:
            bom = _u32(b, pos + 8, 0)
            if bom == PCAPNG_BOM or bom == 0x4D3C2B1A:
                be = 0 if bom == PCAPNG_BOM else 1
                st[ST_NIF] = 0
        blen = _u32(b, pos + 4, be)
        if blen < 12 or blen % 4 != 0 or pos + blen > end or _u32(b, pos + blen - 4, be) != blen:
            # Damaged framing, or a block running past the end: damage if a valid block follows.
            q = pos + 4
            while q < end and not _block_ok(b, q, be):
                q += 4
            q = min(q, end)
            cut = q == end and blen >= 12 and blen % 4 == 0 and pos + blen > end
            k = _event(ev, k, EV_CUT_PACKET if cut else EV_BAD_RECORD, pos, q - pos)
            pos = q
            continue
        body = pos + 8
        body_end = pos + blen - 4
        nif = st[ST_NIF]
        if btype == 1 and blen >= 20:
            if nif < MAX_IF:
                _read_idb(b, body, body_end, be, st, IF_BASE + 4 * nif)
                st[ST_NIF] = nif + 1
            else:
                k = _event(ev, k, EV_TOO_MANY_IF, pos, nif)
        elif btype == 6 or btype == 2 or btype == 3:
            if btype == 3:  # simple packet block: interface 0, no time, length capped by snaplen
                ifid = 0
                t = -1
                olen = _u32(b, body, be) if blen >= 16 else 0
                data = body + 4
                clen = min(olen, body_end - data)
                if nif > 0 and 0 < st[IF_BASE + 1] < clen:
                    clen = st[IF_BASE + 1]
            elif blen >= 32:
                ifid = _u32(b, body, be) if btype == 6 else _u16(b, body, be)
                t = (_u32(b, body + 4, be) << 32) | _u32(b, body + 8, be)
                clen = _u32(b, body + 12, be)
                olen = _u32(b, body + 16, be)
                data = body + 20
            else:
                ifid = -1
                t = -1
                clen = -1
                olen = 0
                data = body
            if clen < 0 or data + clen > body_end:
                k = _event(ev, k, EV_BAD_PACKET, pos, blen)
            elif ifid >= nif:
                k = _event(ev, k, EV_UNKNOWN_IF, pos, ifid)
            else:
                slot = IF_BASE + 4 * ifid
                if t >= 0:
                    st[ST_LAST_TS] = _to_us(t, st[slot + 2], st[slot + 3])
                _emit(out, n, st[ST_LAST_TS], data, clen, olen, pos, st[slot], ifid)
                st[ST_OVER_SNAP] += 0 < st[slot + 1] < clen
                n += 1
        pos += blen
    k, pos = _tail(ev, k, pos, end, 12)
    st[ST_POS] = pos
    st[ST_BE] = be
    return n, k, pos >= end

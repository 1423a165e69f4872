"""Captured frames → flow-record fields, for every packet of a chunk in one numba kernel.

Input: the file buffer and, per packet, where its bytes start, how many were
captured, its original length and its link type.  Output: one array per
FLOW_SCHEMA field plus a status and where the UDP payload lies (so captures of
flow exports can be handed to the datagram decoders).

Why a kernel: a frame is a chain of variable-length layers (link header, VLAN
tags, MPLS labels, PPPoE, IPv4 options, IPv6 extension headers) that numpy can
only follow with one masked pass per layer and per branch; the kernel follows
each frame once and writes into preallocated arrays.  The Ethernet tag/label
walk and the IP header parser are :mod:`.rawheader`'s (sFlow's sampled
headers are the same frames); this module adds the other link types, the
damage reasons and the UDP payload's place.

Choices, matching what NetFlow exporters report:

* link types: Ethernet (1), Linux cooked SLL (113) and SLL2 (276), raw IP
  (101, 12, 14, 228, 229), BSD loopback/null (0) and OpenBSD loop (108);
  802.1Q / 802.1ad / 0x9100 tags, MPLS stacks and PPPoE sessions are stepped over;
* the reported header is the outer one (tunnels are not entered);
* ``l3_bytes`` is the IP length the header states (IPv4 total length, IPv6
  payload length + 40); when that is 0 (TSO, jumbograms) the captured frame's
  original length minus the link header is used;
* ``protocol`` is the one after the IPv6 extension headers; fragments
  (IPv4 MF or offset, any IPv6 fragment header) set ``fragment``, and only a
  first fragment carries ports;
* ICMP and ICMPv6 put ``type << 8 | code`` in ``dst_port``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .rawheader import OK as RAW_OK
from .rawheader import _parse_ip, _skip_l2

# Per-packet outcome; everything but OK is counted in ctx.errors under REASONS.
OK = 0
NON_IP = 1
CUT_LINK = 2
CUT_IP = 3
BAD_IP = 4
UNKNOWN_LINK = 5
REASONS = {
    NON_IP: "non-ip frame",
    CUT_LINK: "truncated link header",
    CUT_IP: "truncated ip header",
    BAD_IP: "bad ip header",
    UNKNOWN_LINK: "unknown link type",
}

_RAW = -2  # "look at the IP version nibble"

LINK_ETHERNET = 1
LINK_SLL = 113
LINK_SLL2 = 276
LINKS_RAW = (101, 12, 14)


@njit(cache=True, inline="always")
def _be16(b: np.ndarray, p: Any) -> Any:
    return (np.int64(b[p]) << 8) | np.int64(b[p + 1])


@njit(cache=True)
def _link(b: np.ndarray, p: Any, e: Any, lt: Any) -> tuple[Any, Any]:
    """(ethertype, L3 offset) past the link header and any VLAN tags or MPLS labels.

    Ethertype -1: cut short; -3: unknown link type; _RAW: the IP version nibble says.
    """
    if lt == LINK_ETHERNET:
        return _skip_l2(b, p, e)
    if lt == LINK_SLL:  # an Ethernet header with two more bytes in front: same offsets from p + 2
        return _skip_l2(b, p + 2, e)
    if lt == LINK_SLL2:
        if e - p < 20:
            return -1, p
        et = _be16(b, p)
        if et == 0x8100 or et == 0x88A8 or et == 0x9100:
            # A tag follows the 20-byte header: from p + 10 it reads as an Ethernet header of the tag's inner type.
            return _skip_l2(b, p + 10, e)
        return et, p + 20
    if lt == 101 or lt == 12 or lt == 14:
        return _RAW, p
    if lt == 228:
        return 0x0800, p
    if lt == 229:
        return 0x86DD, p
    if lt == 0 or lt == 108:
        if e - p < 4:
            return -1, p
        # BSD address family, in the capturing host's byte order for DLT_NULL, big-endian for LOOP.
        af = np.int64(b[p]) | (np.int64(b[p + 1]) << 8) | (np.int64(b[p + 2]) << 16) | (np.int64(b[p + 3]) << 24)
        if lt == 108 or af > 0xFFFF:
            af = (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3])
        if af == 2:
            return 0x0800, p + 4
        if af == 10 or af == 24 or af == 28 or af == 30:
            return 0x86DD, p + 4
        return 0, p + 4
    return -3, p


@njit(cache=True)
def _inner(b: np.ndarray, q: Any, e: Any, et: Any) -> tuple[Any, Any]:
    """Step over a PPPoE session header, or read the version of a raw IP packet: (ethertype, L3 offset)."""
    if et == 0x8864:
        if e - q < 8:
            return -1, q
        ppp = _be16(b, q + 6)
        return (0x0800 if ppp == 0x0021 else (0x86DD if ppp == 0x0057 else 0)), q + 8
    if et == _RAW:
        if e - q < 1:
            return -1, q
        nib = b[q] >> 4
        return (0x0800 if nib == 4 else (0x86DD if nib == 6 else 0)), q
    return et, q


# What decode_frames fills per packet: name → (dtype, width).  Names are FLOW_SCHEMA's where they are its columns.
FRAME_COLUMNS: dict[str, tuple[type, int]] = {
    "status": (np.uint8, 1),  # OK or a REASONS code
    "src_addr": (np.uint8, 16),  # IPv4-mapped
    "dst_addr": (np.uint8, 16),
    "src_port": (np.uint16, 1),
    "dst_port": (np.uint16, 1),
    "protocol": (np.uint8, 1),
    "tcp_flags": (np.uint8, 1),
    "ttl": (np.uint8, 1),
    "fragment": (np.bool_, 1),
    "bytes": (np.uint64, 1),
    "payload": (np.int64, 1),  # where a whole UDP payload starts in the buffer, -1 when there is none
    "payload_len": (np.int64, 1),
}


def decode_frames(
    b: np.ndarray, off: np.ndarray, cap: np.ndarray, orig: np.ndarray, link: np.ndarray
) -> dict[str, np.ndarray]:
    """Decode the frames at b[off : off + cap] (original length orig, link type link) into FRAME_COLUMNS arrays.

    Rows whose status is not OK hold zeros.
    """
    n = len(off)
    cols: dict[str, np.ndarray] = {
        name: np.zeros((n, w) if w > 1 else n, dtype=t) for name, (t, w) in FRAME_COLUMNS.items()
    }
    cols["payload"][:] = -1
    _decode(b, off, cap, orig, link, *cols.values())
    return cols


@njit(cache=True)
def _decode(
    b: np.ndarray,
    off: np.ndarray,
    cap: np.ndarray,
    orig: np.ndarray,
    link: np.ndarray,
    status: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    sport: np.ndarray,
    dport: np.ndarray,
    proto: np.ndarray,
    flags: np.ndarray,
    ttl: np.ndarray,
    frag: np.ndarray,
    l3: np.ndarray,
    pay: np.ndarray,
    pay_len: np.ndarray,
) -> None:
    """The kernel of decode_frames: one pass per frame, writing row i of every output."""
    n = off.shape[0]
    for i in range(n):
        p = np.int64(off[i])
        e = p + np.int64(cap[i])
        et, q = _link(b, p, e, link[i])
        if et == -3:
            status[i] = UNKNOWN_LINK
            continue
        et, q = _inner(b, q, e, et)
        if et == -1:
            status[i] = CUT_LINK
            continue
        if et != 0x0800 and et != 0x86DD:
            status[i] = NON_IP
            continue
        need = 20 if et == 0x0800 else 40
        if e - q < need:
            status[i] = CUT_IP
            continue
        ihl = (np.int64(b[q]) & 0x0F) * 4 if et == 0x0800 else need
        total = _be16(b, q + 2) if et == 0x0800 else 0
        if ihl < 20 or (total != 0 and total < ihl):
            status[i] = BAD_IP
            continue
        if e - q < ihl:
            status[i] = CUT_IP
            continue
        st, l4, nh, ttl[i], frag[i], total = _parse_ip(b, q, e, et, i, src, dst)
        if st != RAW_OK:
            status[i] = BAD_IP
            continue
        proto[i] = nh
        if total == 0:
            total = max(np.int64(orig[i]) - (q - p), 0)
        l3[i] = total
        if l4 < 0:
            continue
        l4_end = min(e, q + total)  # Ethernet pads short frames: stop at the IP length
        room = l4_end - l4
        if (nh == 6 or nh == 17 or nh == 132) and room >= 4:
            sport[i] = _be16(b, l4)
            dport[i] = _be16(b, l4 + 2)
            if nh == 6 and room >= 14:
                flags[i] = b[l4 + 13]
            elif nh == 17 and room >= 8 and not frag[i]:
                ulen = _be16(b, l4 + 4)
                if 8 <= ulen <= room:
                    pay[i] = l4 + 8
                    pay_len[i] = ulen - 8
        elif (nh == 1 or nh == 58) and room >= 2:
            dport[i] = (np.int64(b[l4]) << 8) | np.int64(b[l4 + 1])

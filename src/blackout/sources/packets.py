"""Captured frames → flow-record fields, for every packet of a chunk in one numba kernel.

Input: the file buffer and, per packet, where its bytes start, how many were
captured, its original length and its link type.  Output: one array per
FLOW_SCHEMA field plus a status and where the UDP payload lies (so captures of
flow exports can be handed to the datagram decoders).

Why a kernel: a frame is a chain of variable-length layers (link header, VLAN
tags, MPLS labels, PPPoE, IPv4 options, IPv6 extension headers) that numpy can
only follow with one masked pass per layer and per branch; the kernel follows
each frame once and writes into preallocated arrays.

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
    """(ethertype or _RAW, offset after the link header); ethertype -1 = cut short, -3 = unknown link type."""
    if lt == LINK_ETHERNET:
        return (_be16(b, p + 12), p + 14) if e - p >= 14 else (-1, p)
    if lt == LINK_SLL:
        return (_be16(b, p + 14), p + 16) if e - p >= 16 else (-1, p)
    if lt == LINK_SLL2:
        return (_be16(b, p), p + 20) if e - p >= 20 else (-1, p)
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
    """Step over VLAN tags, an MPLS label stack and a PPPoE session header: (ethertype, L3 offset)."""
    for _ in range(16):
        if et == 0x8100 or et == 0x88A8 or et == 0x9100:
            if e - q < 4:
                return -1, q
            et = _be16(b, q + 2)
            q += 4
        elif et == 0x8847 or et == 0x8848:
            while True:
                if e - q < 4:
                    return -1, q
                q += 4
                if b[q - 2] & 1:
                    break
            et = _RAW
        elif et == 0x8864:
            if e - q < 8:
                return -1, q
            ppp = _be16(b, q + 6)
            et = 0x0800 if ppp == 0x0021 else (0x86DD if ppp == 0x0057 else 0)
            q += 8
        else:
            break
    if et == _RAW:
        if e - q < 1:
            return -1, q
        nib = b[q] >> 4
        et = 0x0800 if nib == 4 else (0x86DD if nib == 6 else 0)
    return et, q


@njit(cache=True)
def decode_frames(
    b: np.ndarray,
    off: np.ndarray,
    cap: np.ndarray,
    orig: np.ndarray,
    link: np.ndarray,
) -> tuple:
    """Decode n captured frames.

    Returns (status, src, dst, src_port, dst_port, protocol, tcp_flags, ttl,
    fragment, l3_bytes, udp_payload_offset, udp_payload_length); addresses are
    (n, 16) IPv4-mapped matrices; rows whose status is not OK hold zeros, and
    the payload offset is -1 where there is no whole UDP payload.
    """
    n = off.shape[0]
    status = np.zeros(n, dtype=np.uint8)
    src = np.zeros((n, 16), dtype=np.uint8)
    dst = np.zeros((n, 16), dtype=np.uint8)
    sport = np.zeros(n, dtype=np.uint16)
    dport = np.zeros(n, dtype=np.uint16)
    proto = np.zeros(n, dtype=np.uint8)
    flags = np.zeros(n, dtype=np.uint8)
    ttl = np.zeros(n, dtype=np.uint8)
    frag = np.zeros(n, dtype=np.bool_)
    l3 = np.zeros(n, dtype=np.uint64)
    pay = np.full(n, -1, dtype=np.int64)
    pay_len = np.zeros(n, dtype=np.int64)
    for i in range(n):
        p = np.int64(off[i])
        e = p + np.int64(cap[i])
        et, q = _link(b, p, e, link[i])
        if et == -3:
            status[i] = UNKNOWN_LINK
            continue
        if et >= 0 or et == _RAW:
            et, q = _inner(b, q, e, et)
        if et == -1:
            status[i] = CUT_LINK
            continue
        if et == 0x0800:
            if e - q < 20:
                status[i] = CUT_IP
                continue
            ihl = (np.int64(b[q]) & 0x0F) * 4
            total = _be16(b, q + 2)
            if b[q] >> 4 != 4 or ihl < 20 or (total != 0 and total < ihl):
                status[i] = BAD_IP
                continue
            if e - q < ihl:
                status[i] = CUT_IP
                continue
            fo = _be16(b, q + 6)
            frag[i] = (fo & 0x3FFF) != 0
            ttl[i] = b[q + 8]
            nh = np.int64(b[q + 9])
            src[i, 10] = 0xFF
            src[i, 11] = 0xFF
            dst[i, 10] = 0xFF
            dst[i, 11] = 0xFF
            for j in range(4):
                src[i, 12 + j] = b[q + 12 + j]
                dst[i, 12 + j] = b[q + 16 + j]
            l4 = q + ihl if (fo & 0x1FFF) == 0 else -1
        elif et == 0x86DD:
            if e - q < 40:
                status[i] = CUT_IP
                continue
            if b[q] >> 4 != 6:
                status[i] = BAD_IP
                continue
            total = _be16(b, q + 4) + 40 if _be16(b, q + 4) else 0
            nh = np.int64(b[q + 6])
            ttl[i] = b[q + 7]
            for j in range(16):
                src[i, j] = b[q + 8 + j]
                dst[i, j] = b[q + 24 + j]
            l4 = q + 40
            # Extension headers: hop-by-hop (0), routing (43), fragment (44), AH (51), destination options (60).
            for _ in range(16):
                if nh != 0 and nh != 43 and nh != 44 and nh != 51 and nh != 60:
                    break
                if e - l4 < 8:
                    l4 = -1
                    break
                nxt = np.int64(b[l4])
                if nh == 44:
                    frag[i] = True
                    if _be16(b, l4 + 2) & 0xFFF8:
                        nh = nxt
                        l4 = -1
                        break
                    l4 += 8
                elif nh == 51:
                    l4 += (np.int64(b[l4 + 1]) + 2) * 4
                else:
                    l4 += (np.int64(b[l4 + 1]) + 1) * 8
                nh = nxt
        else:
            status[i] = NON_IP
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
    return status, src, dst, sport, dport, proto, flags, ttl, frag, l3, pay, pay_len

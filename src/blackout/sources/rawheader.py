"""Decode sampled packet headers (Ethernet, IPv4, IPv6) into flow-record fields.

sFlow's raw packet header record (and any capture of truncated frames) holds the
first bytes of a packet.  :func:`decode_headers` turns many of them, given as
offsets into one byte buffer, into the columns of a flow record in one numba
kernel: addresses, ports (ICMP ``type << 8 | code`` in ``dst_port``), protocol,
TCP flags, TTL, fragment flag and the L3 length.

Why a kernel: each header is a short chain of variable-length layers (VLAN tags,
MPLS labels, IPv4 options, IPv6 extension headers, a VXLAN tunnel) that numpy
cannot walk without one pass per layer and per branch; the kernel walks each
header once and writes into preallocated arrays, so no Python object is made
per packet.

Choices:

* 802.1Q, 802.1ad (QinQ) and 0x9100 tags are stepped over, as is an MPLS label
  stack (the payload's version nibble says IPv4 or IPv6).
* VXLAN (UDP destination port 4789): the **inner** packet's 5-tuple, TTL and
  TCP flags are reported, since that is the traffic being attacked or
  attacking; when the inner packet is cut short, the outer one is reported.
* ``l3_bytes`` is the **outer** IP length as the header says (IPv4 total
  length, IPv6 payload length + 40): what crossed the sampled link at L3.
  When that is 0 (jumbo or offloaded packets), it falls back to the frame
  length minus the L2 header and the 4-byte Ethernet FCS.
* ``fragment`` is set when any IP layer is a fragment; later fragments carry
  no ports.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

# Header protocols (sFlow v5 "header_protocol" values).
PROTO_ETHERNET = 1
PROTO_IPV4 = 11
PROTO_IPV6 = 12

# Per-header outcome.
OK = 0
NOT_IP = 1  # a well-formed header without IP (ARP, LLDP, an unsupported header protocol)
SHORT = 2  # the header ends inside the L2 or IP header

VXLAN_PORT = 4789


@njit(cache=True, inline="always")
def _u16(b: np.ndarray, o: Any) -> Any:
    return (np.int64(b[o]) << 8) | np.int64(b[o + 1])


@njit(cache=True)
def _skip_l2(b: np.ndarray, pos: Any, end: Any) -> tuple[Any, Any]:
    """Step over an Ethernet header with its tags and labels: (ethertype, position of L3) or (-1, pos) when short."""
    if end - pos < 14:
        return -1, pos
    et = _u16(b, pos + 12)
    pos += 14
    while et == 0x8100 or et == 0x88A8 or et == 0x9100:
        if end - pos < 4:
            return -1, pos
        et = _u16(b, pos + 2)
        pos += 4
    if et == 0x8847 or et == 0x8848:
        while True:
            if end - pos < 4:
                return -1, pos
            bottom = b[pos + 2] & 1
            pos += 4
            if bottom:
                break
        if pos >= end:
            return -1, pos
        nib = b[pos] >> 4
        et = 0x0800 if nib == 4 else (0x86DD if nib == 6 else 0)
    return et, pos


@njit(cache=True)
def _parse_ip(b: np.ndarray, pos: Any, end: Any, et: Any, i: Any, src: np.ndarray, dst: np.ndarray) -> tuple:
    """Parse one IP header at pos; write addresses into row i.

    Returns (status, l4 position or -1 when no L4 header follows, protocol, ttl, fragment, l3 length).
    """
    if et == 0x0800:
        if end - pos < 20 or (b[pos] >> 4) != 4:
            return SHORT, -1, 0, 0, False, 0
        ihl = (b[pos] & 0x0F) * 4
        total = _u16(b, pos + 2)
        fo = _u16(b, pos + 6)
        frag = (fo & 0x3FFF) != 0
        ttl = b[pos + 8]
        proto = b[pos + 9]
        src[i, :10] = 0
        src[i, 10] = 0xFF
        src[i, 11] = 0xFF
        dst[i, :10] = 0
        dst[i, 10] = 0xFF
        dst[i, 11] = 0xFF
        for k in range(4):
            src[i, 12 + k] = b[pos + 12 + k]
            dst[i, 12 + k] = b[pos + 16 + k]
        l4 = pos + ihl if (ihl >= 20 and (fo & 0x1FFF) == 0) else -1
        return OK, l4, proto, ttl, frag, total
    if et == 0x86DD:
        if end - pos < 40 or (b[pos] >> 4) != 6:
            return SHORT, -1, 0, 0, False, 0
        plen = _u16(b, pos + 4)
        nh = b[pos + 6]
        ttl = b[pos + 7]
        for k in range(16):
            src[i, k] = b[pos + 8 + k]
            dst[i, k] = b[pos + 24 + k]
        l4 = pos + 40
        frag = False
        # Extension headers: hop-by-hop, routing, destination options, fragment, AH.
        for _ in range(8):
            if nh != 0 and nh != 43 and nh != 60 and nh != 44 and nh != 51:
                break
            if end - l4 < 8:
                l4 = -1
                break
            nxt = b[l4]
            if nh == 44:
                frag = True
                hlen: Any = 8
                if (_u16(b, l4 + 2) & 0xFFF8) != 0:  # a later fragment: no L4 header here
                    nh = nxt
                    l4 = -1
                    break
            elif nh == 51:
                hlen = (np.int64(b[l4 + 1]) + 2) * 4
            else:
                hlen = (np.int64(b[l4 + 1]) + 1) * 8
            nh = nxt
            l4 += hlen
        return OK, l4, nh, ttl, frag, (plen + 40 if plen else 0)
    return NOT_IP, -1, 0, 0, False, 0


@njit(cache=True)
def decode_headers(
    buf: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    protos: np.ndarray,
    frame_lengths: np.ndarray,
) -> tuple:
    """Decode n headers (buf[offsets[i] : offsets[i] + lengths[i]], header protocol protos[i]).

    Returns (status, src, dst, src_port, dst_port, protocol, tcp_flags, ttl, fragment, l3_bytes);
    rows whose status is not OK hold zeros.  A negative offset means "no header": status NOT_IP.
    """
    n = offsets.shape[0]
    status = np.full(n, NOT_IP, dtype=np.uint8)
    src = np.zeros((n, 16), dtype=np.uint8)
    dst = np.zeros((n, 16), dtype=np.uint8)
    sport = np.zeros(n, dtype=np.uint16)
    dport = np.zeros(n, dtype=np.uint16)
    proto = np.zeros(n, dtype=np.uint8)
    flags = np.zeros(n, dtype=np.uint8)
    ttl = np.zeros(n, dtype=np.uint8)
    frag = np.zeros(n, dtype=np.bool_)
    l3 = np.zeros(n, dtype=np.uint64)
    one_src = np.zeros((1, 16), dtype=np.uint8)
    one_dst = np.zeros((1, 16), dtype=np.uint8)
    for i in range(n):
        if offsets[i] < 0:
            continue
        pos = np.int64(offsets[i])
        end = pos + np.int64(lengths[i])
        hp = protos[i]
        start = pos
        if hp == PROTO_ETHERNET:
            et, pos = _skip_l2(buf, pos, end)
            if et < 0:
                status[i] = SHORT
                continue
        elif hp == PROTO_IPV4:
            et = 0x0800
        elif hp == PROTO_IPV6:
            et = 0x86DD
        else:
            continue
        st, l4, p, t, fr, total = _parse_ip(buf, pos, end, et, i, src, dst)
        status[i] = st
        if st != OK:
            continue
        if total == 0:
            fl = np.int64(frame_lengths[i]) - (pos - start) - (4 if hp == PROTO_ETHERNET else 0)
            total = fl if fl > 0 else 0
        l3[i] = total
        # A VXLAN tunnel: report the inner packet when it is there whole enough.
        if p == 17 and l4 >= 0 and end - l4 >= 8 and _u16(buf, l4 + 2) == VXLAN_PORT and end - l4 >= 16:
            iet, ipos = _skip_l2(buf, l4 + 16, end)
            if iet == 0x0800 or iet == 0x86DD:
                st2, l4b, p2, t2, fr2, _ = _parse_ip(buf, ipos, end, iet, 0, one_src, one_dst)
                if st2 == OK:
                    src[i, :] = one_src[0, :]
                    dst[i, :] = one_dst[0, :]
                    l4, p, t, fr = l4b, p2, t2, fr or fr2
        proto[i] = p
        ttl[i] = t
        frag[i] = fr
        if l4 < 0:
            continue
        room = end - l4
        if (p == 6 or p == 17 or p == 132) and room >= 4:
            sport[i] = _u16(buf, l4)
            dport[i] = _u16(buf, l4 + 2)
            if p == 6 and room >= 14:
                flags[i] = buf[l4 + 13]
        elif (p == 1 or p == 58) and room >= 2:
            dport[i] = (np.int64(buf[l4]) << 8) | np.int64(buf[l4 + 1])
    return status, src, dst, sport, dport, proto, flags, ttl, frag, l3

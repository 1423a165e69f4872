"""Wrap the BGP UPDATEs of real MRT archives into BMP Route Monitoring messages, for tests and the bench.

Each BGP4MP(_ET) MESSAGE(_AS4) record keeps its BGP message bytes; only the
framing changes (BMP common and per-peer header from the record's peer
address, AS, AS size and time), so the MRT decoder — itself checked against
bgpdump — is the oracle for what the BMP decoder must make of the stream.
Plain Python on purpose: this is test scaffolding, not a decoding path.
"""

from __future__ import annotations

import struct


def mrt_to_bmp(data: bytes) -> list[bytes]:
    """Each UPDATE of an MRT archive (decompressed) as one BMP Route Monitoring message."""
    out, pos = [], 0
    while pos + 12 <= len(data):
        ts, typ, sub, ln = struct.unpack_from(">IHHI", data, pos)
        body = data[pos + 12 : pos + 12 + ln]
        pos += 12 + ln
        if typ not in (16, 17) or sub not in (1, 4):
            continue
        usec = 0
        if typ == 17:
            usec, body = int.from_bytes(body[:4], "big"), body[4:]
        asn_len = 4 if sub == 4 else 2
        peer_as = int.from_bytes(body[:asn_len], "big")
        afi = int.from_bytes(body[2 * asn_len + 2 : 2 * asn_len + 4], "big")
        al = 16 if afi == 2 else 4
        addr = body[2 * asn_len + 4 : 2 * asn_len + 4 + al]
        bgp = body[2 * asn_len + 4 + 2 * al :]
        if len(bgp) < 19 or bgp[18] != 2:
            continue
        flags = (0x80 if al == 16 else 0) | (0x20 if asn_len == 2 else 0)  # V (IPv6 peer), A (2-byte AS path)
        peer = struct.pack(">BB8s16sIIII", 0, flags, b"", addr.rjust(16, b"\0"), peer_as, 0, ts, usec)
        out.append(struct.pack(">BIB", 3, 6 + len(peer) + len(bgp), 0) + peer + bgp)
    return out

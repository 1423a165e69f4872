"""Sampled headers the bundled captures lack, made from their real headers and read by tshark as the oracle.

Each variant rewrites the raw packet header of a real sample (MPLS labels,
QinQ with 0x88a8, IPv4 options, a later IPv4 fragment, raw IPv4/IPv6 header
protocols, IPv6 hop-by-hop and fragment headers, VXLAN over IPv6), puts it back
into the real datagram with its lengths fixed, and compares blackout's
decode with tshark's dissection of the same datagrams.
"""

from __future__ import annotations

import struct
from pathlib import Path

from conftest import DATA
from sflow_oracle import ours, tshark_decode, udp_payloads, write_sflow_pcap

SFLOW = DATA / "flow" / "akvorado" / "sflow"


def _records(payload: bytes) -> tuple[int, int, int, list[tuple[int, bytes]]]:
    """(offset of the first sample, its format, fixed-part length, [(record format, record body)])."""
    first = 28 if payload[4:8] == b"\0\0\0\1" else 40
    fmt, slen = struct.unpack_from(">II", payload, first)
    fixed = 32 if fmt == 1 else 44
    body = payload[first + 8 : first + 8 + slen]
    q, out = fixed, []
    for _ in range(struct.unpack_from(">I", body, fixed - 4)[0]):
        rfmt, rlen = struct.unpack_from(">II", body, q)
        out.append((rfmt, body[q + 8 : q + 8 + rlen]))
        q += 8 + rlen
    return first, fmt, fixed, out


def raw_header(payload: bytes) -> bytes:
    """The sampled header bytes of the datagram's first sample."""
    _, _, _, recs = _records(payload)
    body = next(b for f, b in recs if f == 1)
    return body[16 : 16 + struct.unpack_from(">I", body, 12)[0]]


def with_header(payload: bytes, header: bytes, protocol: int = 1) -> bytes:
    """The datagram (cut to its first sample) with that sample's raw header replaced."""
    first, fmt, fixed, recs = _records(payload)
    slen = struct.unpack_from(">I", payload, first + 4)[0]
    body = payload[first + 8 : first + 8 + slen]
    padded = header + b"\0" * (-len(header) % 4)
    parts = []
    for rfmt, rec in recs:
        if rfmt == 1:
            rec = struct.pack(">IIII", protocol, len(header) + 4, 0, len(header)) + padded
        parts.append(struct.pack(">II", rfmt, len(rec)) + rec)
    new_body = body[:fixed] + b"".join(parts)
    head = payload[: first - 4] + struct.pack(">I", 1)
    return head + struct.pack(">II", fmt, len(new_body)) + new_body


def _ipv4_variants(eth_ip: bytes) -> list[tuple[bytes, int]]:
    eth, ip = eth_ip[:14], eth_ip[14:]
    ihl = (ip[0] & 0x0F) * 4
    options = (
        bytes([(ip[0] & 0xF0) | (ihl + 4) // 4]) + ip[1:2] + struct.pack(">H", struct.unpack_from(">H", ip, 2)[0] + 4)
    )
    with_options = options + ip[4:ihl] + b"\x01\x01\x01\x00" + ip[ihl:]
    later_fragment = ip[:6] + struct.pack(">H", 0x2000 | 100) + ip[8:]
    label = struct.pack(">I", (16 << 12) | 64)
    bottom = struct.pack(">I", (17 << 12) | 0x100 | 64)
    return [
        (eth[:12] + b"\x88\x47" + label + bottom + ip, 1),
        (eth[:12] + b"\x88\xa8\x00\x64\x81\x00\x00\xc8\x08\x00" + ip, 1),
        (eth + with_options, 1),
        (eth + later_fragment, 1),
        (ip, 11),
    ]


def _ipv6_variants(eth_ip6: bytes, inner: bytes) -> list[tuple[bytes, int]]:
    eth, ip6 = eth_ip6[:14], eth_ip6[14:]
    plen, nh = struct.unpack_from(">HB", ip6, 4)

    def ext(next_header: int, extension: bytes, payload: bytes) -> bytes:
        return ip6[:4] + struct.pack(">HB", plen + len(extension), next_header) + ip6[7:40] + extension + payload

    hop_by_hop = bytes([nh, 0, 1, 4, 0, 0, 0, 0])
    first_fragment = bytes([nh, 0, 0, 1]) + b"\0\0\x30\x39"
    udp = struct.pack(">HHHH", 50000, 4789, 8 + 8 + len(inner), 0) + b"\x08\0\0\0\0\0\x64\0" + inner
    vxlan = ip6[:4] + struct.pack(">HB", len(udp), 17) + ip6[7:40] + udp
    return [
        (eth + ext(0, hop_by_hop, ip6[40:]), 1),
        (eth + ext(44, first_fragment, ip6[40:]), 1),
        (ip6, 12),
        (eth + vxlan, 1),
    ]


def test_rewritten_headers_match_tshark(tmp_path: Path) -> None:
    v4 = udp_payloads(SFLOW / "data-icmpv4.pcap")[0][0]
    v6 = udp_payloads(SFLOW / "data-1140.pcap")[0][0]
    base4, base6 = raw_header(v4), raw_header(v6)
    assert base4[12:14] == b"\x08\x00" and base6[12:14] == b"\x86\xdd"
    variants = [with_header(v4, h, p) for h, p in _ipv4_variants(base4)]
    variants += [with_header(v6, h, p) for h, p in _ipv6_variants(base6, base4)]
    pcap = tmp_path / "variants.pcap"
    write_sflow_pcap(pcap, variants)
    expected, _ = tshark_decode(pcap, ("-o", "ipv6.defragment:FALSE"))
    rows, ctx, _ = ours(pcap)
    assert ctx.errors.total == 0
    assert len(expected) == len(variants)
    assert [{k: r[k] for k in e} for r, e in zip(rows, expected, strict=True)] == expected
    # The variants do reach the paths they are for: a later fragment has no ports, VXLAN reports the inner packet.
    assert rows[3]["fragment"] and rows[3]["dst_port"] == 0
    assert rows[-1]["src_addr"] == expected[0]["src_addr"] and rows[-1]["protocol"] == 1

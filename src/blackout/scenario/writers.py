"""Writers of real telemetry formats, for scenarios: MRT BGP4MP updates, IPFIX exports in pcap, Atlas JSON.

blackout never sends traffic: a scenario is files in the formats collectors
write, which any tool (bgpdump, tshark, nfdump) reads as it would real ones —
and blackout's own decoders must read back exactly what was written.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
from collections.abc import Iterable
from typing import Any, BinaryIO

import numpy as np

# ------------------------------------------------------------------ MRT (RFC 6396)
BGP4MP = 16
BGP4MP_MESSAGE_AS4 = 4


def _prefix_bytes(prefix: str) -> bytes:
    network, length = prefix.split("/")
    bits = int(length)
    return bytes([bits]) + socket.inet_aton(network)[: (bits + 7) // 8]


def bgp_update(announce: list[str], withdraw: list[str], as_path: list[int], next_hop: str) -> bytes:
    """A BGP UPDATE message (IPv4 unicast, 4-byte AS numbers) with ORIGIN IGP, AS_PATH, NEXT_HOP."""
    withdrawn = b"".join(_prefix_bytes(p) for p in withdraw)
    attrs = b""
    if announce:
        path = struct.pack("!BB", 2, len(as_path)) + struct.pack(f"!{len(as_path)}I", *as_path)
        attrs += struct.pack("!BBB", 0x40, 1, 1) + b"\x00"  # ORIGIN IGP
        attrs += struct.pack("!BBB", 0x40, 2, len(path)) + path  # AS_PATH, one AS_SEQUENCE
        attrs += struct.pack("!BBB", 0x40, 3, 4) + socket.inet_aton(next_hop)
    nlri = b"".join(_prefix_bytes(p) for p in announce)
    body = struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs)) + attrs + nlri
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), 2) + body


def mrt_bgp4mp(ts: int, peer_as: int, peer_ip: str, local_as: int, local_ip: str, message: bytes) -> bytes:
    """One MRT BGP4MP_MESSAGE_AS4 record around a BGP message (IPv4 peers)."""
    body = (
        struct.pack("!IIHH", peer_as, local_as, 0, 1) + socket.inet_aton(peer_ip) + socket.inet_aton(local_ip) + message
    )
    return struct.pack("!IHHI", ts, BGP4MP, BGP4MP_MESSAGE_AS4, len(body)) + body


# ------------------------------------------------------------- IPFIX (RFC 7011)
# (element id, length): the template of the scenario's flow records.
IPFIX_FIELDS = [
    (152, 8),  # flowStartMilliseconds
    (153, 8),  # flowEndMilliseconds
    (8, 4),  # sourceIPv4Address
    (12, 4),  # destinationIPv4Address
    (7, 2),  # sourceTransportPort
    (11, 2),  # destinationTransportPort
    (4, 1),  # protocolIdentifier
    (6, 1),  # tcpControlBits (reduced-size encoding)
    (52, 1),  # minimumTTL
    (1, 8),  # octetDeltaCount
    (2, 8),  # packetDeltaCount
    (10, 4),  # ingressInterface
]
IPFIX_DTYPE = np.dtype(
    [
        ("start_ms", ">u8"),
        ("end_ms", ">u8"),
        ("src", ">u4"),
        ("dst", ">u4"),
        ("sport", ">u2"),
        ("dport", ">u2"),
        ("proto", "u1"),
        ("flags", "u1"),
        ("ttl", "u1"),
        ("bytes", ">u8"),
        ("packets", ">u8"),
        ("in_if", ">u4"),
    ]
)
TEMPLATE_ID = 256
OPTIONS_TEMPLATE_ID = 257
RECORDS_PER_MESSAGE = 24  # 24 x 51 bytes + headers stays under a 1,500-byte MTU


def _ipfix_message(export_s: int, seq: int, domain: int, sets: bytes) -> bytes:
    return struct.pack("!HHIII", 10, 16 + len(sets), export_s, seq, domain) + sets


def ipfix_template_sets(sampling_interval: int) -> bytes:
    """The data template and an options template + record announcing the sampling interval (field 34)."""
    fields = b"".join(struct.pack("!HH", fid, flen) for fid, flen in IPFIX_FIELDS)
    template = struct.pack("!HH", TEMPLATE_ID, len(IPFIX_FIELDS)) + fields
    tset = struct.pack("!HH", 2, 4 + len(template)) + template
    # Options template: scope observationDomainId (149), option samplingInterval (34).
    options = struct.pack("!HHH", OPTIONS_TEMPLATE_ID, 2, 1) + struct.pack("!HHHH", 149, 4, 34, 4)
    oset = struct.pack("!HH", 3, 4 + len(options)) + options
    orec = struct.pack("!II", 1, sampling_interval)
    odata = struct.pack("!HH", OPTIONS_TEMPLATE_ID, 4 + len(orec)) + orec
    return tset + oset + odata


def ipfix_messages(records: np.ndarray, sampling_interval: int, resend_every: int = 200) -> list[tuple[int, bytes]]:
    """IPFIX messages (export time in s, bytes) carrying records (IPFIX_DTYPE, sorted by end time).

    Templates are re-sent every `resend_every` messages, as exporters do over UDP.
    """
    out: list[tuple[int, bytes]] = []
    raw = records.astype(IPFIX_DTYPE, copy=False)
    seq = 0
    for i, start in enumerate(range(0, len(raw), RECORDS_PER_MESSAGE)):
        chunk = raw[start : start + RECORDS_PER_MESSAGE]
        export_s = int(chunk["end_ms"].max() // 1000) + 1
        sets = ipfix_template_sets(sampling_interval) if i % resend_every == 0 else b""
        data = chunk.tobytes()
        sets += struct.pack("!HH", TEMPLATE_ID, 4 + len(data)) + data
        out.append((export_s, _ipfix_message(export_s, seq, 1, sets)))
        seq += len(chunk)
    return out


# ------------------------------------------------------------------ pcap
def write_pcap_udp(fh: BinaryIO, datagrams: Iterable[tuple[int, bytes]], src: str, dst: str, dport: int) -> None:
    """A classic pcap of Ethernet/IPv4/UDP frames carrying the datagrams (capture time = given seconds)."""
    fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    for ts, payload in datagrams:
        udp = struct.pack("!HHHH", 50000, dport, 8 + len(payload), 0) + payload
        total = 20 + len(udp)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 17, 0, s, d)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + ip + udp
        fh.write(struct.pack("<IIII", ts, 0, len(frame), len(frame)) + frame)


def _checksum(header: bytes) -> int:
    words = np.frombuffer(header, dtype=">u2").astype(np.uint32).sum()
    while words >> 16:
        words = (words & 0xFFFF) + (words >> 16)
    return int(~words & 0xFFFF)


# ------------------------------------------------------------ RIPE Atlas
def atlas_ping(ts: int, prb_id: int, msm_id: int, src: str, dst: str, rtts: list[float | None]) -> dict[str, Any]:
    """One RIPE Atlas ping result object (the documented fields a reader needs)."""
    got = [r for r in rtts if r is not None]
    return {
        "fw": 4790,
        "type": "ping",
        "af": 4,
        "proto": "ICMP",
        "msm_id": msm_id,
        "prb_id": prb_id,
        "timestamp": ts,
        "src_addr": src,
        "from": src,
        "dst_addr": dst,
        "dst_name": dst,
        "size": 48,
        "ttl": 50,
        "sent": len(rtts),
        "rcvd": len(got),
        "dup": 0,
        "min": min(got) if got else -1,
        "avg": round(sum(got) / len(got), 3) if got else -1,
        "max": max(got) if got else -1,
        "result": [{"rtt": r} if r is not None else {"x": "*"} for r in rtts],
    }


def write_json_lines(fh: Any, objects: Iterable[dict[str, Any]]) -> None:
    """JSON lines, one result per line (as RIPE Atlas streams and downloads them)."""
    for obj in objects:
        fh.write(json.dumps(obj, separators=(",", ":")) + "\n")

"""NetFlow v5: fixed 24-byte header and 48-byte records, decoded for many datagrams at once.

Every record of every datagram is viewed through one structured big-endian dtype
(one ``np.frombuffer``); header fields are repeated per record with ``np.repeat``.
ICMP flows already carry type << 8 | code in the destination port.
"""

from __future__ import annotations

import struct

import numpy as np

from .flowsets import SetBatch, address

HEADER = struct.Struct("!HHIIIIBBH")  # version, count, sysUptime, secs, nsecs, sequence, engine type/id, sampling
RECORD = np.dtype(
    {
        "names": ["src", "dst", "in_if", "out_if", "packets", "bytes", "first", "sport", "dport", "flags", "proto"],
        "formats": [">u4", ">u4", ">u2", ">u2", ">u4", ">u4", ">u4", ">u2", ">u2", "u1", "u1"],
        "offsets": [0, 4, 12, 14, 16, 20, 24, 32, 34, 37, 38],
        "itemsize": 48,
    }
)


def decode_v5(payloads: list[bytes], exporters: list[int], names: list[str], batch: SetBatch) -> dict[str, np.ndarray]:
    """Columns of all records of the v5 datagrams given (exporters[i] indexes names)."""
    chunks: list[bytes] = []
    heads: list[tuple[int, int, int, int, int]] = []
    for payload, exp in zip(payloads, exporters, strict=True):
        if len(payload) < HEADER.size:
            batch.error(names[exp], f"truncated v5 header: got {len(payload)} bytes, needed {HEADER.size}", 0)
            continue
        _, count, uptime, secs, nsecs, _, _, _, sampling = HEADER.unpack_from(payload)
        have = (len(payload) - HEADER.size) // 48
        if count > have:
            batch.error(names[exp], f"truncated v5 datagram: {count} records announced, {have} present", 2)
            count = have
        if count:
            chunks.append(payload[HEADER.size : HEADER.size + 48 * count])
            heads.append((exp, count, uptime, secs * 1_000_000 + nsecs // 1000, sampling & 0x3FFF))
    head = np.array(heads, dtype=np.int64).reshape(-1, 5)
    counts = head[:, 1]
    recs = np.frombuffer(b"".join(chunks), dtype=RECORD)
    n = len(recs)
    first = recs["first"].astype(np.int64)
    ago = ((np.repeat(head[:, 2], counts) - first) & 0xFFFFFFFF).astype(np.uint32).view(np.int32).astype(np.int64)
    return {
        "exporter": np.repeat(head[:, 0], counts).astype(np.int32),
        "ts": np.repeat(head[:, 3], counts) - ago * 1000,
        "src_addr": address(recs["src"], None, n),
        "dst_addr": address(recs["dst"], None, n),
        "src_port": recs["sport"].astype(np.uint16),
        "dst_port": recs["dport"].astype(np.uint16),
        "protocol": recs["proto"].astype(np.uint8),
        "tcp_flags": recs["flags"].astype(np.uint8),
        "fragment": np.zeros(n, dtype=bool),
        "ttl": np.zeros(n, dtype=np.uint8),
        "bytes": recs["bytes"].astype(np.uint64),
        "packets": recs["packets"].astype(np.uint64),
        "sampling_rate": np.maximum(np.repeat(head[:, 4], counts), 1).astype(np.uint32),
        "in_if": recs["in_if"].astype(np.uint32),
        "out_if": recs["out_if"].astype(np.uint32),
    }

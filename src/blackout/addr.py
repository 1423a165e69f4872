"""Whole-column address operations on the model's 16-byte addresses.

Every function takes or returns numpy arrays or Arrow arrays for a whole batch;
none loops over rows in Python, except the string conversions meant for
output (JSON, CLI), which use the standard library's formatting.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa

from .model import ADDR

V4_MAPPED = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


def as_matrix(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """View a fixed_size_binary(16) column as an (n, 16) uint8 matrix (copy only if chunked or sliced)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if len(arr) == 0:
        return np.zeros((0, 16), dtype=np.uint8)
    buf = arr.buffers()[1]
    data = np.frombuffer(buf, dtype=np.uint8, count=(arr.offset + len(arr)) * 16)
    return data[arr.offset * 16 :].reshape(-1, 16)


def from_matrix(mat: np.ndarray) -> pa.Array:
    """An (n, 16) uint8 matrix back into a fixed_size_binary(16) Arrow array."""
    mat = np.ascontiguousarray(mat, dtype=np.uint8)
    return pa.Array.from_buffers(ADDR, len(mat), [None, pa.py_buffer(mat.tobytes())])


def is_v4(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean mask of IPv4-mapped addresses."""
    m = as_matrix(arr)
    return np.all(m[:, :12] == V4_MAPPED, axis=1)


def v4_to_u32(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The low 32 bits as host-order uint32 (the IPv4 address for mapped rows)."""
    m = as_matrix(arr)
    return np.ascontiguousarray(m[:, 12:16]).view(">u4").ravel().astype(np.uint32)


def from_v4_u32(values: np.ndarray) -> pa.Array:
    """IPv4 addresses given as uint32 numbers, as a column of mapped addresses."""
    values = np.asarray(values, dtype=np.uint32)
    mat = np.zeros((len(values), 16), dtype=np.uint8)
    mat[:, 10:12] = 0xFF
    mat[:, 12:16] = values.astype(">u4").view(np.uint8).reshape(-1, 4)
    return from_matrix(mat)


def from_v6_bytes(raw: np.ndarray) -> pa.Array:
    """IPv6 addresses given as an (n, 16) byte matrix."""
    return from_matrix(raw)


def words(arr: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The address as two host-order uint64 (high, low) words, for sorting and prefix arithmetic."""
    m = np.ascontiguousarray(as_matrix(arr)).view(">u8").reshape(-1, 2)
    return m[:, 0].astype(np.uint64), m[:, 1].astype(np.uint64)


def slash24(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The /24 of each IPv4 address as uint32 (address >> 8); IPv6 rows give 0xFFFFFFFF."""
    out = v4_to_u32(arr) >> np.uint32(8)
    out[~is_v4(arr)] = np.uint32(0xFFFFFFFF)
    return out


def parse(text: str) -> bytes:
    """One address as its 16 stored bytes (IPv4 mapped)."""
    ip = ipaddress.ip_address(text)
    if ip.version == 4:
        return bytes(V4_MAPPED) + ip.packed
    return ip.packed


def from_strings(texts: list[str]) -> pa.Array:
    """Addresses from text (for tests, configs and scenario generators, not hot paths)."""
    return pa.array([parse(t) for t in texts], type=ADDR)


def format_one(raw: bytes | None) -> str | None:
    """One stored address as text: dotted quad for mapped IPv4, RFC 5952 for IPv6."""
    if raw is None:
        return None
    if raw[:12] == bytes(V4_MAPPED):
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


def to_strings(arr: pa.Array | pa.ChunkedArray) -> list[str | None]:
    """A column of addresses as text (output only)."""
    return [format_one(v) for v in arr.to_pylist()]


def format_prefix(raw: bytes | None, length: int | None) -> str | None:
    """A stored prefix and its length as text: "175.45.176.0/24"."""
    if raw is None or length is None:
        return None
    return f"{format_one(raw)}/{length}"

"""One tick's flow columns as numpy, converted once and shared by every part of the DDoS detector.

Rates, role evidence, the sanity filter and the attack accounting all read
the same columns; converting each Arrow column once per tick (instead of once
per reader) and grouping rows into hosts by an exact hash table (one pass, no
sort of the rows) is what lets the detector keep up with the decoders.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pyarrow as pa
from numba import njit

from .. import addr

_GOLD = np.uint64(0x9E3779B97F4A7C15)
_HIGH = np.uint64(1 << 63)


@dataclasses.dataclass
class TickColumns:
    """The columns of the tick's rows (numpy), in row order; ``rate`` is the sampling rate, at least 1."""

    table: pa.Table
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    protocol: np.ndarray
    tcp_flags: np.ndarray
    fragment: np.ndarray
    packets: np.ndarray  # float64, as sent (not sampling-corrected)
    bytes: np.ndarray  # float64, as sent
    rate: np.ndarray  # float64, sampling rate with 0 (unknown) counted as 1

    @classmethod
    def of(cls, table: pa.Table) -> TickColumns:
        """Convert every column the detector reads, once."""
        table = table.combine_chunks()
        hi, lo = addr.words(table.column("dst_addr"))
        return cls(
            table,
            hi,
            lo,
            table.column("src_port").to_numpy(),
            table.column("dst_port").to_numpy(),
            table.column("protocol").to_numpy(),
            table.column("tcp_flags").to_numpy(),
            table.column("fragment").to_numpy(zero_copy_only=False),
            table.column("packets").to_numpy().astype(np.float64),
            table.column("bytes").to_numpy().astype(np.float64),
            np.maximum(table.column("sampling_rate").to_numpy().astype(np.float64), 1.0),
        )

    def __len__(self) -> int:
        return len(self.packets)

    def select(self, keep: np.ndarray) -> TickColumns:
        """The rows where ``keep`` is true (a boolean mask), table included."""
        fields = {f.name: getattr(self, f.name)[keep] for f in dataclasses.fields(self) if f.name != "table"}
        return TickColumns(self.table.filter(pa.array(keep)), **fields)

    @functools.cached_property
    def corrected_packets(self) -> np.ndarray:
        """Packets times the sampling rate."""
        return self.packets * self.rate

    @functools.cached_property
    def src_words(self) -> tuple[np.ndarray, np.ndarray]:
        """The source addresses as (high, low) words."""
        return addr.words(self.table.column("src_addr"))


def group_exact(
    keys: np.ndarray, hi: np.ndarray, lo: np.ndarray, tag: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, first row, inverse) of the distinct (hi, lo, tag) triples, ordered by key.

    One pass through an open-addressing table on the exact triple (no sort of
    the rows, no collision fallback: ``keys`` only place a triple in the
    table), then a radix sort of the distinct keys (sorted targets make the
    state's searchsorted several times faster).
    """
    keys = np.asarray(keys, np.uint64)
    first, inv = _hash_group(keys, hi, lo, tag)
    return _renumber(keys, first, inv, radix_argsort(keys[first]))


@njit(cache=True)
def _renumber(
    keys: np.ndarray, first: np.ndarray, inv: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Groups renumbered so that group g is the one order[g] was: (keys, first rows, inverse)."""
    rank = np.empty(len(order), dtype=np.int64)
    out_keys = np.empty(len(order), dtype=np.uint64)
    out_first = np.empty(len(order), dtype=np.int64)
    for g in range(len(order)):
        rank[order[g]] = g
        out_first[g] = first[order[g]]
        out_keys[g] = keys[out_first[g]]
    out_inv = np.empty(len(inv), dtype=np.int64)
    for i in range(len(inv)):
        out_inv[i] = rank[inv[i]]
    return out_keys, out_first, out_inv


@njit(cache=True)
def radix_argsort(keys: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """A stable argsort of uint64 keys: 16-bit digits, least significant first, digits all keys share skipped
    (IPv4 host keys share their top half: two passes)."""
    n = len(keys)
    order = np.arange(n)
    tmp = np.empty(n, dtype=np.int64)
    count = np.empty(1 << 16, dtype=np.int64)
    for shift in range(0, 64, 16):
        sh = np.uint64(shift)
        count[:] = 0
        for i in range(n):
            count[np.int64((keys[i] >> sh) & np.uint64(0xFFFF))] += 1
        if n == 0 or count[np.int64((keys[0] >> sh) & np.uint64(0xFFFF))] == n:
            continue
        total = 0
        for digit in range(1 << 16):
            c = count[digit]
            count[digit] = total
            total += c
        for i in range(n):
            j = order[i]
            d = np.int64((keys[j] >> sh) & np.uint64(0xFFFF))
            tmp[count[d]] = j
            count[d] += 1
        order, tmp = tmp, order
    return order


@njit(cache=True)
def _hash_group(
    keys: np.ndarray, hi: np.ndarray, lo: np.ndarray, tag: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """(first row of each group, group of each row), groups numbered in order of appearance.  The table
    holds keys and group numbers; a key below 2^63 (an IPv4 address's own word) is exact, a higher one (a
    hash) has its triple compared too."""
    n = len(keys)
    bits = 1
    while (1 << bits) < 2 * n:
        bits += 1
    mask = (1 << bits) - 1
    shift = np.uint64(64 - bits)
    ids = np.full(1 << bits, -1, dtype=np.int32)
    held = np.empty(1 << bits, dtype=np.uint64)
    first = np.empty(n, dtype=np.int64)
    inv = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        k = keys[i]
        h = np.int64((k * _GOLD) >> shift)
        while True:
            j = ids[h]
            if j < 0:
                ids[h] = m
                held[h] = k
                first[m] = i
                inv[i] = m
                m += 1
                break
            if held[h] == k:
                f = first[j]
                if k < _HIGH or (hi[f] == hi[i] and lo[f] == lo[i] and tag[f] == tag[i]):
                    inv[i] = j
                    break
            h = (h + 1) & mask
    return first[:m], inv

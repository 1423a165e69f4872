"""Grouping a tick's rows by 64-bit keys without sorting the rows: a hash table, then a radix sort of the groups.

``np.unique`` sorts every row; a tick has 200k rows toward 90k hosts, so one
pass through an open-addressing table and a sort of the distinct keys only is
several times cheaper.  Keys come out sorted, as ``np.unique`` gives them
(sorted target keys also make the state's searchsorted fast).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GOLD = np.uint64(0x9E3779B97F4A7C15)
_HIGH = np.uint64(1 << 63)


def group_by_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted distinct keys, one row of each, inverse): :func:`.sketch.group_keys`'s answer by hashing."""
    keys = np.asarray(keys, np.uint64)
    zeros = np.zeros(len(keys), np.uint8)
    first, inv = _hash_group(keys, keys, keys, zeros, True)
    return _renumber(keys, first, inv, radix_argsort(keys[first]))


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
    first, inv = _hash_group(keys, hi, lo, tag, False)
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
    keys: np.ndarray, hi: np.ndarray, lo: np.ndarray, tag: np.ndarray, by_key: bool
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """(first row of each group, group of each row), groups numbered in order of appearance.  The table
    holds keys and group numbers; with ``by_key`` the key is the group, otherwise a key below 2^63 (an
    IPv4 address's own word) is exact and a higher one (a hash) has its triple compared too.

    The table starts small and doubles when half full: sized for the distinct keys, not the rows (a
    flood's tick is a million rows from some 40,000 sources; a table for a million rows was 24 MB of
    cache misses, measured 51 ms a tick against ~10)."""
    n = len(keys)
    bits = 12
    ids = np.full(1 << bits, -1, dtype=np.int32)
    held = np.empty(1 << bits, dtype=np.uint64)
    first = np.empty(n, dtype=np.int64)
    inv = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        k = keys[i]
        mask = (1 << bits) - 1
        h = np.int64((k * _GOLD) >> np.uint64(64 - bits))
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
                if by_key or k < _HIGH or (hi[f] == hi[i] and lo[f] == lo[i] and tag[f] == tag[i]):
                    inv[i] = j
                    break
            h = (h + 1) & mask
        if 2 * m > (1 << bits):
            bits += 1
            ids, held = _rehash(ids, held, bits)
    return first[:m], inv


@njit(cache=True)
def _rehash(ids: np.ndarray, held: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """The table's entries moved into one of 2^bits slots (same probing as :func:`_hash_group`)."""
    new_ids = np.full(1 << bits, -1, dtype=np.int32)
    new_held = np.empty(1 << bits, dtype=np.uint64)
    mask = (1 << bits) - 1
    for s in range(len(ids)):
        if ids[s] < 0:
            continue
        k = held[s]
        h = np.int64((k * _GOLD) >> np.uint64(64 - bits))
        while new_ids[h] >= 0:
            h = (h + 1) & mask
        new_ids[h] = ids[s]
        new_held[h] = k
    return new_ids, new_held

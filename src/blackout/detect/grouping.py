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


def group_by_key(keys: np.ndarray, expect: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted distinct keys, one row of each, inverse): :func:`.sketch.group_keys`'s answer by hashing.
    ``expect``: about how many distinct keys there will be (the table is sized for them at once)."""
    keys = np.asarray(keys, np.uint64)
    zeros = np.zeros(len(keys), np.uint8)
    first, inv = _hash_group(keys, keys, keys, zeros, True, expect)
    return _renumber(keys, first, inv, radix_argsort(keys[first]))


def group_exact(
    keys: np.ndarray, hi: np.ndarray, lo: np.ndarray, tag: np.ndarray, expect: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, first row, inverse) of the distinct (hi, lo, tag) triples, ordered by key.

    One pass through an open-addressing table on the exact triple (no sort of
    the rows, no collision fallback: ``keys`` only place a triple in the
    table), then a radix sort of the distinct keys (sorted targets make the
    state's searchsorted several times faster).  ``expect`` as in :func:`group_by_key`
    (the detector passes the previous tick's count).
    """
    keys = np.asarray(keys, np.uint64)
    first, inv = _hash_group(keys, hi, lo, tag, False, expect)
    return _renumber(keys, first, inv, radix_argsort(keys[first]))


@njit(cache=True)
def _renumber(
    keys: np.ndarray, first: np.ndarray, inv: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Groups renumbered so that group g is the one order[g] was: (keys, first rows, inverse).  When the
    groups came in key order already (a flood toward one host), the inverse is returned as it is."""
    out_keys = np.empty(len(order), dtype=np.uint64)
    in_order = True
    for g in range(len(order)):
        if order[g] != g:
            in_order = False
            break
    if in_order:
        for g in range(len(order)):
            out_keys[g] = keys[first[g]]
        return out_keys, first, inv
    rank = np.empty(len(order), dtype=np.int64)
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
    keys: np.ndarray, hi: np.ndarray, lo: np.ndarray, tag: np.ndarray, by_key: bool, expect: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """(first row of each group, group of each row), groups numbered in order of appearance.  With
    ``by_key`` the key is the group, otherwise a key below 2^63 (an IPv4 address's own word) is exact and
    a higher one (a hash) has its triple compared too.

    Measured choices (a tick of bench/bench_ddos.py, this kernel alone): a row with the previous row's
    key takes its group without probing, the previous key and group held in registers (a flood's
    million rows toward one host: 17.6 -> 1.3 ms; reading them back from the arrays cost as much as
    probing); each slot holds key and group + 1 side by side, one cache line per probe instead of two;
    the table is sized for ``expect`` distinct keys at once and doubles when half full, so it fits the
    distinct keys, not the rows (a table sized for a flood's million rows was 24 MB of cache misses).
    With both: 200k rows toward 87k hosts 6.9 -> 2.6 ms, a million rows from 37k sources 30 -> 10 ms."""
    n = len(keys)
    bits = 12
    while (1 << bits) < 2 * min(expect, n) and bits < 30:  # a hint never sizes past this tick's rows
        bits += 1
    table = np.zeros(2 << bits, dtype=np.uint64)  # slot s: key at 2s, group + 1 at 2s + 1 (0: empty)
    first = np.empty(n, dtype=np.int64)
    inv = np.empty(n, dtype=np.int64)
    m = 0
    prev_key, prev_group = np.uint64(0), -1
    for i in range(n):
        k = keys[i]
        if prev_group >= 0 and k == prev_key:
            f = first[prev_group]
            if by_key or k < _HIGH or (hi[f] == hi[i] and lo[f] == lo[i] and tag[f] == tag[i]):
                inv[i] = prev_group
                continue
        mask = (1 << bits) - 1
        h = np.int64((k * _GOLD) >> np.uint64(64 - bits))
        while True:
            g = table[2 * h + 1]
            if g == 0:
                table[2 * h] = k
                table[2 * h + 1] = m + 1
                first[m] = i
                j = m
                m += 1
                break
            if table[2 * h] == k:
                j = int(g) - 1
                f = first[j]
                if by_key or k < _HIGH or (hi[f] == hi[i] and lo[f] == lo[i] and tag[f] == tag[i]):
                    break
            h = (h + 1) & mask
        inv[i] = j
        prev_key, prev_group = k, j
        if 2 * m > (1 << bits):
            bits += 1
            table = _rehash(table, bits)
    return first[:m], inv


@njit(cache=True)
def _rehash(table: np.ndarray, bits: int) -> np.ndarray:  # pragma: no cover - compiled
    """The table's entries moved into one of 2^bits slots (same probing as :func:`_hash_group`)."""
    out = np.zeros(2 << bits, dtype=np.uint64)
    mask = (1 << bits) - 1
    for s in range(len(table) // 2):
        if table[2 * s + 1] == 0:
            continue
        k = table[2 * s]
        h = np.int64((k * _GOLD) >> np.uint64(64 - bits))
        while out[2 * h + 1] != 0:
            h = (h + 1) & mask
        out[2 * h] = k
        out[2 * h + 1] = table[2 * s + 1]
    return out

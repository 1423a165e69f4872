"""Compiled passes of the attack accounting: a tick's rows summed per attack, read through row numbers.

:func:`.attack.fold_tick` hands each live attack its share of the tick: the
entries (attack, row) list every row once per attack it feeds (a row toward
an attacked host inside an attacked /24 feeds both).  Gathering each column
through the entries and bincounting it once per sum read the 1-2M entries of
a flood's tick some twenty times; these kernels read them once per job,
through the row numbers, with the sums taken in entry order, so every
result is the bincount's bit for bit (measured: the attack records' digest
is unchanged, bench/bench_ddos.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def owner_totals(
    owner: np.ndarray,
    sel: np.ndarray,
    packets: np.ndarray,
    nbytes: np.ndarray,
    vector: np.ndarray,
    ttl: np.ndarray,
    sampled: np.ndarray,
    owners: int,
    n_vectors: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Per attack: packets, bytes, packets per vector, packets per TTL, whether any row was sampled
    (entry i is row sel[i] of attack owner[i]; packets and bytes sampling-corrected)."""
    out_packets = np.zeros(owners)
    out_bytes = np.zeros(owners)
    out_vectors = np.zeros((owners, n_vectors))
    out_ttl = np.zeros((owners, 256))
    out_sampled = np.zeros(owners, dtype=np.bool_)
    for i in range(len(owner)):
        o, r = owner[i], sel[i]
        pk = packets[r]
        out_packets[o] += pk
        out_bytes[o] += nbytes[r]
        out_vectors[o, vector[r]] += pk
        out_ttl[o, ttl[r]] += pk
        if sampled[r]:
            out_sampled[o] = True
    return out_packets, out_bytes, out_vectors, out_ttl, out_sampled


@njit(cache=True)
def _compact(
    grid: np.ndarray, seen: np.ndarray, owners: int, n_codes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The seen cells of an (owner, code) grid as :func:`.sketch.fold_by_owner` returns them."""
    present = np.flatnonzero(seen)
    k = grid.shape[1]
    sums = np.empty((len(present), k))
    codes = np.empty(len(present), dtype=np.int64)
    bounds = np.zeros(owners + 1, dtype=np.int64)
    for p in range(len(present)):
        cell = present[p]
        codes[p] = cell % n_codes
        bounds[cell // n_codes + 1] += 1
        for j in range(k):
            sums[p, j] = grid[cell, j]
    for o in range(owners):
        bounds[o + 1] += bounds[o]
    return bounds, codes, sums


@njit(cache=True)
def fold_sources(
    owner: np.ndarray,
    sel: np.ndarray,
    owners: int,
    src_code: np.ndarray,
    n_src: int,
    source_country: np.ndarray,
    n_country: int,
    source_asn: np.ndarray,
    n_asn: int,
    packets: np.ndarray,
    raw: np.ndarray,
    flag: np.ndarray,
) -> tuple[
    tuple[np.ndarray, np.ndarray, np.ndarray],
    tuple[np.ndarray, np.ndarray, np.ndarray],
    tuple[np.ndarray, np.ndarray, np.ndarray],
]:  # pragma: no cover - compiled
    """Three :func:`fold_codes` on dense grids in one pass over the entries (a flood's tick: few attacks,
    tens of thousands of sources): per (attack, source) packets, raw packets and the spoofed flag; per
    (attack, source country) and (attack, source AS) packets.  Flag, country and AS are per source, read
    through it (``source_country[src_code[r]]``: no per-row column).  The grids have owners × n codes
    cells each: the caller keeps them to :data:`.sketch.DENSE_CELLS`."""
    src = np.zeros((owners * n_src, 3))
    src_seen = np.zeros(owners * n_src, dtype=np.bool_)
    country = np.zeros((owners * n_country, 1))
    country_seen = np.zeros(owners * n_country, dtype=np.bool_)
    asn = np.zeros((owners * n_asn, 1))
    asn_seen = np.zeros(owners * n_asn, dtype=np.bool_)
    for i in range(len(owner)):
        o, r = owner[i], sel[i]
        s = src_code[r]
        pk = packets[r]
        cell = o * n_src + s
        src_seen[cell] = True
        src[cell, 0] += pk
        src[cell, 1] += raw[r]
        src[cell, 2] += flag[s]
        cell = o * n_country + source_country[s]
        country_seen[cell] = True
        country[cell, 0] += pk
        cell = o * n_asn + source_asn[s]
        asn_seen[cell] = True
        asn[cell, 0] += pk
    return (
        _compact(src, src_seen, owners, n_src),
        _compact(country, country_seen, owners, n_country),
        _compact(asn, asn_seen, owners, n_asn),
    )


@njit(cache=True)
def attack_entries(
    row_host: np.ndarray, host_prefix: np.ndarray, host_group: np.ndarray, ordinal: np.ndarray, owners: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The tick's rows toward the attacked targets, as (rows, owner, sel): the distinct rows ascending, and
    one entry per (attack, row), attacks ascending and rows ascending within each, entry i being row
    rows[sel[i]] of attack owner[i].  ``ordinal[t]`` is target t's attack number (-1: none); a row
    reaches its host, the host's prefix and its group (-1: none).  Two passes over the rows, no sort."""
    n = len(row_host)
    count = np.zeros(owners + 1, dtype=np.int64)
    pos = np.full(n, -1, dtype=np.int64)
    used = 0
    for r in range(n):
        h = row_host[r]
        hit = False
        for t in (h, host_prefix[h], host_group[h]):
            if t >= 0 and ordinal[t] >= 0:
                count[ordinal[t] + 1] += 1
                hit = True
        if hit:
            pos[r] = used
            used += 1
    for o in range(owners):
        count[o + 1] += count[o]
    rows = np.empty(used, dtype=np.int64)
    owner = np.empty(count[owners], dtype=np.int64)
    sel = np.empty(count[owners], dtype=np.int64)
    for r in range(n):
        p = pos[r]
        if p < 0:
            continue
        rows[p] = r
        h = row_host[r]
        for t in (h, host_prefix[h], host_group[h]):
            if t >= 0 and ordinal[t] >= 0:
                o = ordinal[t]
                owner[count[o]] = o
                sel[count[o]] = p
                count[o] += 1
    return rows, owner, sel


@njit(cache=True)
def port_codes(port: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """(the distinct ports of the kept rows ascending, each row's index there or -1 if not kept):
    :func:`.sketch.dense_codes` of 16-bit ports in two passes, without widening the column.  ``port`` must
    be uint16 (the flow schema's): a wider value would index past the 2^16-slot table unchecked."""
    seen = np.zeros(1 << 16, dtype=np.int64)
    for r in range(len(port)):
        if keep[r]:
            seen[port[r]] = 1
    distinct = 0
    for p in range(1 << 16):
        if seen[p]:
            seen[p] = distinct
            distinct += 1
        else:
            seen[p] = -1
    keys = np.empty(distinct, dtype=np.uint64)
    for p in range(1 << 16):
        if seen[p] >= 0:
            keys[seen[p]] = p
    codes = np.full(len(port), -1, dtype=np.int64)
    for r in range(len(port)):
        if keep[r]:
            codes[r] = seen[port[r]]
    return keys, codes


@njit(cache=True)
def fold_codes(
    owner: np.ndarray,
    sel: np.ndarray,
    row_code: np.ndarray,
    n_codes: int,
    owners: int,
    weights: tuple[np.ndarray, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """:func:`.sketch.fold_by_owner` reading code and weights through the row numbers: (bounds, codes,
    sums), entries whose row code is negative left out.  Attack by attack (``owner`` ascending), a code →
    slot scratch of n_codes entries that only the attack's own codes touch and reset, then those codes
    sorted: no grid of attacks × codes, so it serves any number of attacks (a /24 carpet-bombed host by
    host).  Sums in entry order, as fold_by_owner's bincount takes them; memory O(entries + n_codes).
    (A dense grid was as fast for ports, 6.1 ms on a flood's 1.8M entries; for 37k sources the fused
    :func:`fold_sources` grid is: 9.7 ms against 15.4.)"""
    k = len(weights)
    n = len(owner)
    slot = np.full(n_codes, -1, dtype=np.int64)
    out_codes = np.empty(n, dtype=np.int64)
    out_sums = np.empty((n, k))
    bounds = np.zeros(owners + 1, dtype=np.int64)
    most = min(n, n_codes)  # one attack's distinct codes
    touched = np.empty(most, dtype=np.int64)
    scratch = np.empty((most, k))
    done = 0
    i = 0
    for o in range(owners):
        used = 0
        while i < n and owner[i] == o:
            r = sel[i]
            c = row_code[r]
            i += 1
            if c < 0:
                continue
            s = slot[c]
            if s < 0:
                s = used
                slot[c] = s
                touched[s] = c
                for j in range(k):
                    scratch[s, j] = 0.0
                used += 1
            for j in range(k):
                scratch[s, j] += weights[j][r]
        codes = np.sort(touched[:used])
        for p in range(used):
            c = codes[p]
            out_codes[done + p] = c
            for j in range(k):
                out_sums[done + p, j] = scratch[slot[c], j]
        for p in range(used):
            slot[codes[p]] = -1
        done += used
        bounds[o + 1] = done
    return bounds, out_codes[:done], out_sums[:done]

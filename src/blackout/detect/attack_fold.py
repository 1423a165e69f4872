"""Compiled passes of the attack accounting: a tick's rows summed per attack, read through row numbers.

:func:`.attack.fold_tick` hands each live attack its share of the tick.  A
row toward an attacked host inside an attacked /24 feeds both attacks.  With
few attacks (a flood's tick), :func:`fold_rows` does every sum in one pass
row by row, each row adding to the attacks its host, prefix and group
number.  With many attacks, the (attack, row) entries list every row once
per attack it feeds (:func:`attack_entries`), and the sums go attack by
attack over them.  Either way each sum is taken over rows in ascending
order within its attack, as np.bincount over the entries took it, so every
result is the bincount's bit for bit (measured: the attack records' digests
are unchanged, bench/bench_ddos.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_TTL, _VECTORS = 3, 3 + 256  # columns of a totals grid: packets, bytes, sampled, packets per TTL, per vector


@njit(cache=True, inline="always")
def _add_totals(
    grid: np.ndarray, o: int, pk: float, nbytes: float, vector: int, ttl: int, sampled: bool
) -> None:  # pragma: no cover - compiled
    """One row's share of attack o's totals (see :data:`_TTL`)."""
    grid[o, 0] += pk
    grid[o, 1] += nbytes
    if sampled:
        grid[o, 2] = 1.0
    grid[o, _TTL + ttl] += pk
    grid[o, _VECTORS + vector] += pk


def split_totals(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A totals grid as (packets, bytes, packets per vector, packets per TTL, whether any row was sampled)."""
    return grid[:, 0], grid[:, 1], grid[:, _VECTORS:], grid[:, _TTL:_VECTORS], grid[:, 2] > 0


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
) -> np.ndarray:  # pragma: no cover - compiled
    """Per attack: packets, bytes, packets per vector, packets per TTL, whether any row was sampled, as a
    grid (:func:`split_totals`; entry i is row sel[i] of attack owner[i]; packets and bytes
    sampling-corrected)."""
    grid = np.zeros((owners, _VECTORS + n_vectors))
    for i in range(len(owner)):
        r = sel[i]
        _add_totals(grid, owner[i], packets[r], nbytes[r], vector[r], ttl[r], sampled[r])
    return grid


@njit(cache=True)
def _compact(
    grid: np.ndarray, owners: int, n_codes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """The seen cells of a grid as :func:`.sketch.fold_by_owner` returns them: cell code × owners + owner
    (the attacks of one code side by side: a row feeding a host and its /24 touches one cache line),
    its last column 1 where seen, the others the sums."""
    k = grid.shape[1] - 1
    bounds = np.zeros(owners + 1, dtype=np.int64)
    for cell in range(len(grid)):
        if grid[cell, k] > 0:
            bounds[cell % owners + 1] += 1
    for o in range(owners):
        bounds[o + 1] += bounds[o]
    sums = np.empty((bounds[owners], k))
    codes = np.empty(bounds[owners], dtype=np.int64)
    for o in range(owners):
        p = bounds[o]
        for c in range(n_codes):
            cell = c * owners + o
            if grid[cell, k] > 0:
                codes[p] = c
                for j in range(k):
                    sums[p, j] = grid[cell, j]
                p += 1
    return bounds, codes, sums


@njit(cache=True)
def fold_rows(
    rows: np.ndarray,
    route: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    owners: int,
    codes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    sizes: tuple[int, int, int],
    ported: np.ndarray,
    packets: np.ndarray,
    raw: np.ndarray,
    flag: np.ndarray,
    nbytes: np.ndarray,
    vector: np.ndarray,
    n_vectors: int,
    ttl: np.ndarray,
    sampled: np.ndarray,
) -> tuple[
    np.ndarray,
    tuple[np.ndarray, np.ndarray, np.ndarray],
    tuple[np.ndarray, np.ndarray, np.ndarray],
    tuple[np.ndarray, np.ndarray, np.ndarray],
    tuple[np.ndarray, np.ndarray, np.ndarray],
]:  # pragma: no cover - compiled
    """Every per-attack sum of a tick (few attacks, tens of thousands of sources: a flood) in one pass over
    its attack rows, row by row, with no (attack, row) entries built: :func:`owner_totals`, then
    :func:`fold_codes`' answers on dense grids for sources (packets, raw packets, spoofed flag), source
    countries, source ASes (all per source, read through it) and destination ports.

    Row p of the attack rows is the tick's row rows[p]; ``route`` is (row_host, host_prefix, host_group,
    ordinal): the row feeds the attacks ``ordinal[t]`` of its host t = row_host[rows[p]], the host's
    prefix and group (-1: none).  ``codes``: the source of each row
    (index into the tick's sources), the country and AS code of each source, the destination port of each
    row (uint16, kept where ``ported[vector]``; the port is its own code, no pass to number them);
    ``sizes`` the numbers of sources, countries and ASes.  Each cell of a grid receives its rows in
    ascending order, as the entries (attack by attack, rows ascending) gave them: the sums are
    bincount's bit for bit.  The grids have owners × n codes cells: the caller bounds them
    (:data:`.sketch.DENSE_CELLS`).  Fused because a flood's 2M entries were built and read four times
    (entries, totals, sources, ports): measured in bench/bench_ddos.py, the flood alone."""
    row_host, host_prefix, host_group, ordinal = route
    src_code, source_country, source_asn, dst_port = codes
    n_src, n_country, n_asn = sizes
    n_ports = 1 << 16
    totals = np.zeros((owners, _VECTORS + n_vectors))
    src = np.zeros((n_src * owners, 4))  # packets, raw packets, flag, seen (see _compact)
    country = np.zeros((n_country * owners, 2))
    asn = np.zeros((n_asn * owners, 2))
    port = np.zeros((n_ports * owners, 2))
    for p in range(len(rows)):
        h = row_host[rows[p]]
        s = src_code[p]
        pk = packets[p]
        c = np.int64(dst_port[p]) if ported[vector[p]] else -1
        for t in (h, host_prefix[h], host_group[h]):
            if t < 0 or ordinal[t] < 0:
                continue
            o = ordinal[t]
            _add_totals(totals, o, pk, nbytes[p], vector[p], ttl[p], sampled[p])
            cell = s * owners + o
            src[cell, 0] += pk
            src[cell, 1] += raw[p]
            src[cell, 2] += flag[s]
            src[cell, 3] = 1.0
            cell = source_country[s] * owners + o
            country[cell, 0] += pk
            country[cell, 1] = 1.0
            cell = source_asn[s] * owners + o
            asn[cell, 0] += pk
            asn[cell, 1] = 1.0
            if c >= 0:
                cell = c * owners + o
                port[cell, 0] += pk
                port[cell, 1] = 1.0
    return (
        totals,
        _compact(src, owners, n_src),
        _compact(country, owners, n_country),
        _compact(asn, owners, n_asn),
        _compact(port, owners, n_ports),
    )


@njit(cache=True)
def attack_rows(
    row_host: np.ndarray, host_prefix: np.ndarray, host_group: np.ndarray, ordinal: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """The tick's rows that feed some attack, ascending: rows whose host, the host's prefix or its group
    has an attack number (``ordinal[t]`` >= 0; -1 for no prefix or group)."""
    n = len(row_host)
    keep = np.empty(n, dtype=np.int64)
    used = 0
    for r in range(n):
        h = row_host[r]
        for t in (h, host_prefix[h], host_group[h]):
            if t >= 0 and ordinal[t] >= 0:
                keep[used] = r
                used += 1
                break
    return keep[:used]


@njit(cache=True)
def attack_entries(
    rows: np.ndarray, route: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], owners: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """One entry per (attack, attack row) as (owner, sel): attacks ascending and rows ascending within
    each, entry i being attack row sel[i] (tick row rows[sel[i]]) of attack owner[i]; ``route`` as in
    :func:`fold_rows`.  Two passes over the rows, no sort; built only for the sums :func:`fold_rows` does
    not do."""
    row_host, host_prefix, host_group, ordinal = route
    count = np.zeros(owners + 1, dtype=np.int64)
    for p in range(len(rows)):
        h = row_host[rows[p]]
        for t in (h, host_prefix[h], host_group[h]):
            if t >= 0 and ordinal[t] >= 0:
                count[ordinal[t] + 1] += 1
    for o in range(owners):
        count[o + 1] += count[o]
    owner = np.empty(count[owners], dtype=np.int64)
    sel = np.empty(count[owners], dtype=np.int64)
    for p in range(len(rows)):
        h = row_host[rows[p]]
        for t in (h, host_prefix[h], host_group[h]):
            if t >= 0 and ordinal[t] >= 0:
                o = ordinal[t]
                owner[count[o]] = o
                sel[count[o]] = p
                count[o] += 1
    return owner, sel


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
    host).  An attack touching over 1/16 of the codes has them listed by one walk of the slots instead of
    a sort (hosts=256: the /24's 200k sources a tick, fold_codes 1.30 -> 0.83-0.90 s under cProfile).
    Sums in entry order, as fold_by_owner's bincount takes them; memory O(entries + n_codes).
    (A dense grid was as fast for ports, 6.1 ms on a flood's 1.8M entries; for 37k sources the fused
    dense grid (now :func:`fold_rows`) was: 9.7 ms against 15.4.)"""
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
        if used * 16 > n_codes:  # most codes touched (a /24's 200k sources): one walk of the slots
            codes = touched[:used]
            p = 0
            for c in range(n_codes):
                if slot[c] >= 0:
                    codes[p] = c
                    p += 1
        else:
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

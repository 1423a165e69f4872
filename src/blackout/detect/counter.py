"""The DDoS detector's per-attack counters (sources, ports, countries, ASes): sorted keys, summed columns.

Every tick each live attack adds its folded share (distinct keys and their
sums); the counter keeps them waiting and merges them in one compiled pass
when they outweigh what it holds or something reads it.  With hundreds of
attacks open at once (a /24 carpet-bombed host by host) those merges, the
pruning of a capped counter and the top-k of each record are most of the
work, so each is one pass with no sort of what is held (hosts=256 on
bench/bench_ddos.py, detector alone: see the functions).  Every sum is taken
in the order the earlier numpy form took it (a key's chunks in the order
they came, then added to what was held): the records are bit for bit the same.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .grouping import group_by_key
from .sketch import SMALL_KEYS, HyperLogLog

TOP_BY_SORT = 2048  # up to this many keys top() sorts them all; past it a partition finds the k first


class SparseCounter:
    """Sums of float columns keyed by uint64, kept sorted; each key may carry uint64 tags (its address).

    Adding a tick's keys is one compiled merge, O(size) memory traffic and no
    per-key Python.  Past ``cap`` keys it keeps the heaviest half by column 0
    and flags itself inexact (heavy hitters stay right); from then on a
    HyperLogLog, seeded with every key held at that moment, counts the
    distinct keys (:meth:`distinct`).  Counters that never reach the cap never
    pay for the sketch.
    """

    def __init__(self, columns: int = 1, tags: int = 0, cap: int = 1 << 62, sketch: bool = True) -> None:
        self._keys = np.zeros(0, dtype=np.uint64)
        self._sums = np.zeros((0, columns), dtype=np.float64)
        self._tags = np.zeros((0, tags), dtype=np.uint64)
        self.cap = cap
        self.sketch = sketch  # False: past the cap only the heavy keys matter, no distinct count is kept
        self.exact = True
        self.hll: HyperLogLog | None = None
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # folded chunks not merged yet
        self._pending_n = 0

    @property
    def keys(self) -> np.ndarray:
        self._settle()
        return self._keys

    @property
    def sums(self) -> np.ndarray:
        self._settle()
        return self._sums

    @property
    def tags(self) -> np.ndarray:
        self._settle()
        return self._tags

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, keys: np.ndarray, sums: np.ndarray, tags: np.ndarray | None = None) -> np.ndarray:
        """Add rows (keys may repeat); return a mask over the distinct keys added that were new."""
        keys = np.asarray(keys, dtype=np.uint64)
        if len(keys) == 0:
            return np.zeros(0, dtype=bool)
        self._settle()
        sums = np.asarray(sums, dtype=np.float64).reshape(len(keys), -1)
        uniq, first, folded = _fold(keys, sums, need_first=tags is not None and self._tags.shape[1] > 0)
        if tags is not None and self._tags.shape[1]:
            tags = np.asarray(tags, dtype=np.uint64).reshape(len(keys), -1)[first]
        return self._insert(uniq, folded, tags)

    def add_distinct(self, keys: np.ndarray, sums: np.ndarray) -> None:
        """Add sorted distinct keys with their summed columns now (no tags): :meth:`add` minus the fold."""
        self._settle()
        self._insert(np.asarray(keys, dtype=np.uint64), np.asarray(sums, dtype=np.float64).reshape(len(keys), -1), None)

    def add_folded(self, keys: np.ndarray, sums: np.ndarray, tags: np.ndarray | None = None) -> None:
        """Add distinct keys with their summed columns (and tags), merged lazily.

        Chunks wait until they outweigh what is held (or could pass the cap, or
        something reads the counter), then are merged in one pass: a tick's few
        hundred sources no longer pay for copying the whole sorted table.  The
        result is the same as adding each chunk at once (pruning only happens
        past the cap, and the cap forces the merge before it could be passed).
        """
        if len(keys) == 0:
            return
        width = self._tags.shape[1]
        if tags is None or not width:
            tag_rows = np.zeros((len(keys), width), np.uint64)
        else:
            tag_rows = np.asarray(tags, dtype=np.uint64).reshape(len(keys), width)
        self._pending.append((keys, np.asarray(sums, dtype=np.float64).reshape(len(keys), -1), tag_rows))
        self._pending_n += len(keys)
        held = len(self._keys)
        if held + self._pending_n > self.cap or self._pending_n > max(held, 1 << 14):
            self._settle()

    def _settle(self) -> None:
        """Merge the waiting chunks: one stable argsort of their keys (sorted runs: timsort merges them)
        and one compiled fold (:func:`_fold_runs`), where a sort-based grouping and a bincount per column
        were: hosts=256 under cProfile, the 1032 settles at the records' reads 0.78 -> 0.58 s."""
        if not self._pending:
            return
        chunks, self._pending, self._pending_n = self._pending, [], 0
        if len(chunks) == 1:
            uniq, folded, tags = chunks[0]
        else:
            keys = np.concatenate([c[0] for c in chunks])
            order = np.argsort(keys, kind="stable")
            uniq, folded, tags = _fold_runs(
                keys, np.concatenate([c[1] for c in chunks]), np.concatenate([c[2] for c in chunks]), order
            )
        self._insert(uniq, folded, tags)

    def _insert(self, uniq: np.ndarray, folded: np.ndarray, tags: np.ndarray | None) -> np.ndarray:
        """Merge distinct sorted keys and their sums into the table; mask of the keys that were new."""
        if self.hll is not None:
            self.hll.add(uniq)
        width = self._tags.shape[1]
        if tags is None or not width:
            tags = np.zeros((len(uniq), width), dtype=np.uint64)
        self._keys, self._sums, self._tags, new = _merge_sorted(
            self._keys, self._sums, self._tags, uniq, np.ascontiguousarray(folded), np.ascontiguousarray(tags)
        )
        if len(self._keys) > self.cap:
            self._prune()
        return new

    def merge(self, other: SparseCounter) -> None:
        """Add another counter's sums (and tags for keys new here)."""
        other._settle()
        if other.hll is not None:
            self._settle()
            self._sketch().merge(other.hll)
            self.exact = False
        self.add_folded(other._keys, other._sums, other._tags)

    def distinct(self) -> int:
        """How many distinct keys were added: exact until the cap, estimated after."""
        held = len(self.keys)  # first: merging what waits may prune and start the sketch
        return held if self.hll is None else round(self.hll.estimate())

    def _sketch(self) -> HyperLogLog:
        if self.hll is None:
            self.hll = HyperLogLog()
            self.hll.add(self._keys)
        return self.hll

    def top(self, k: int, column: int = 0) -> np.ndarray:
        """Indices of the k largest keys by one column, ties broken by key (deterministic).  Past
        :data:`TOP_BY_SORT` keys only the k chosen by :func:`heaviest` are sorted: a record's top ten
        sources of a host's 20k no longer sort all 20k (hosts=256 under cProfile: top() and _prune()
        0.46 + 0.67 -> 0.25 + 0.45 s)."""
        keys, col = self.keys, self.sums[:, column]
        if len(keys) <= TOP_BY_SORT:
            return np.lexsort((keys, -col))[:k]
        chosen = heaviest(col, k)
        return chosen[np.lexsort((keys[chosen], -col[chosen]))]

    def _prune(self) -> None:
        if self.sketch:
            self._sketch()
        self._keys, self._sums, self._tags = _keep_heaviest(self._keys, self._sums, self._tags, max(self.cap // 2, 0))
        self.exact = False


def heaviest(col: np.ndarray, k: int) -> np.ndarray:
    """Indices, ascending, of the k largest values of ``col``, ties going to the lowest index: the set of
    np.lexsort((index, -col))[:k] without the sort (a counter's keys ascend with the index, so ties go to
    the lowest key).  A /24 attack's million sources pruned to half: a lexsort of 1.2M rows (0.26 s)
    becomes one selection (5-12 ms)."""
    return _heaviest(np.ascontiguousarray(col, dtype=np.float64), k)


@njit(cache=True)
def _heaviest(col: np.ndarray, k: int) -> np.ndarray:  # pragma: no cover - compiled
    """:func:`heaviest`: a selection finds the k-th largest value v (:func:`_kth_largest`); every value
    above v is kept, then the first of those equal to v.  The sums are finite (packets and bytes of sane
    rows); a NaN would never be kept, so fewer than k could come back, never a row not picked."""
    n = len(col)
    if k >= n:
        return np.arange(n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    v = _kth_largest(col, k)
    ties = k
    for i in range(n):
        if col[i] > v:
            ties -= 1
    out = np.empty(k, dtype=np.int64)
    o = 0
    for i in range(n):
        if col[i] > v or (col[i] == v and ties > 0):
            if col[i] == v:
                ties -= 1
            out[o] = i
            o += 1
    return out[:o]


@njit(cache=True)
def _keep_heaviest(
    keys: np.ndarray, sums: np.ndarray, tags: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The rows :func:`heaviest` picks by column 0 (k < len), copied in one compiled call: a reflection's
    port counter (cap 64) prunes at nearly every tick of each of 256 attacks, where a dozen numpy calls
    each cost more than the rows (hosts=256 under cProfile: _prune 0.45 -> 0.17 s)."""
    keep = _heaviest(sums[:, 0].copy(), k)
    out_keys = np.empty(len(keep), dtype=np.uint64)
    out_sums = np.empty((len(keep), sums.shape[1]), dtype=np.float64)
    out_tags = np.empty((len(keep), tags.shape[1]), dtype=np.uint64)
    for o in range(len(keep)):
        _copy_row(out_keys, out_sums, out_tags, o, keys, sums, tags, keep[o])
    return out_keys, out_sums, out_tags


@njit(cache=True)
def _kth_largest(col: np.ndarray, k: int) -> float:  # pragma: no cover - compiled
    """The k-th largest value (1 <= k <= len): quickselect with a three-way partition, so a column of
    equal values (a spoofed flood's one packet per source) is one pass; np.partition's introselect took
    ~0.26 s on 1.2M mostly equal sums.  The pivot is the middle of first, middle and last."""
    work = col.copy()
    lo, hi = 0, len(work)
    want = k - 1  # rank from the top
    while True:
        a, b, c = work[lo], work[(lo + hi - 1) // 2], work[hi - 1]
        pivot = max(min(a, b), min(max(a, b), c))
        # [lo, gt) > pivot, [gt, i) == pivot, [lt, hi) < pivot
        gt, i, lt = lo, lo, hi
        while i < lt:
            x = work[i]
            if x > pivot:
                work[i], work[gt] = work[gt], x
                gt += 1
                i += 1
            elif x < pivot:
                lt -= 1
                work[i], work[lt] = work[lt], x
            else:
                i += 1
        if want < gt - lo:
            hi = gt
        elif want < lt - lo:
            return pivot
        else:
            want -= lt - lo
            lo = lt


@njit(cache=True)
def _fold_runs(
    keys: np.ndarray, sums: np.ndarray, tags: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Rows with repeated keys folded: (distinct keys ascending, summed columns, tags of each key's first
    row).  ``order`` is a stable argsort of ``keys``, so a key's rows are summed in row order, from 0.0,
    as np.bincount over the grouping's inverse summed them; the first row in that order gives the tags."""
    n, k, w = len(order), sums.shape[1], tags.shape[1]
    out_keys = np.empty(n, dtype=np.uint64)
    out_sums = np.zeros((n, k), dtype=np.float64)
    out_tags = np.empty((n, w), dtype=np.uint64)
    u = -1
    for p in range(n):
        r = order[p]
        if u < 0 or keys[r] != out_keys[u]:
            u += 1
            out_keys[u] = keys[r]
            for c in range(w):
                out_tags[u, c] = tags[r, c]
        for c in range(k):
            out_sums[u, c] += sums[r, c]
    return out_keys[: u + 1], out_sums[: u + 1], out_tags[: u + 1]


@njit(cache=True, inline="always")
def _copy_row(
    out_keys: np.ndarray,
    out_sums: np.ndarray,
    out_tags: np.ndarray,
    o: int,
    keys: np.ndarray,
    sums: np.ndarray,
    tags: np.ndarray,
    i: int,
) -> None:  # pragma: no cover - compiled
    """Row i of one table to row o of the merged one, cell by cell."""
    out_keys[o] = keys[i]
    for c in range(sums.shape[1]):
        out_sums[o, c] = sums[i, c]
    for c in range(tags.shape[1]):
        out_tags[o, c] = tags[i, c]


@njit(cache=True)
def _merge_sorted(
    keys: np.ndarray,
    sums: np.ndarray,
    tags: np.ndarray,
    add_keys: np.ndarray,
    add_sums: np.ndarray,
    add_tags: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Two sorted distinct key tables merged in one pass: sums of common keys added (held + added), their
    tags kept; returns the new arrays and the mask of added keys that were new.  Cells copied column by
    column (a row slice is an array view in compiled code: 570 -> 410 us for 16k + 8k rows)."""
    n, m = len(keys), len(add_keys)
    k, w = sums.shape[1], tags.shape[1]
    new = np.ones(m, dtype=np.bool_)
    i = 0
    fresh = 0
    for j in range(m):
        while i < n and keys[i] < add_keys[j]:
            i += 1
        if i < n and keys[i] == add_keys[j]:
            new[j] = False
        else:
            fresh += 1
    total = n + fresh
    out_keys = np.empty(total, dtype=np.uint64)
    out_sums = np.empty((total, k), dtype=np.float64)
    out_tags = np.empty((total, w), dtype=np.uint64)
    i = j = 0
    for o in range(total):
        if j == m or (i < n and keys[i] < add_keys[j]):
            _copy_row(out_keys, out_sums, out_tags, o, keys, sums, tags, i)
            i += 1
        elif i == n or add_keys[j] < keys[i]:
            _copy_row(out_keys, out_sums, out_tags, o, add_keys, add_sums, add_tags, j)
            j += 1
        else:
            out_keys[o] = keys[i]
            for c in range(k):
                out_sums[o, c] = sums[i, c] + add_sums[j, c]
            for c in range(w):
                out_tags[o, c] = tags[i, c]
            i += 1
            j += 1
    return out_keys, out_sums, out_tags, new


def _fold(keys: np.ndarray, sums: np.ndarray, need_first: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct keys, one row of each, summed columns).  Many rows of small keys (ports, packed
    country codes: below 2^16) are summed by bincount over the key itself, without a sort."""
    if not need_first and len(keys) > 4096 and int(keys.max()) < SMALL_KEYS:
        small = keys.astype(np.int64)
        rows = np.bincount(small, minlength=SMALL_KEYS)
        uniq = np.flatnonzero(rows)
        folded = np.stack(
            [np.bincount(small, weights=sums[:, c], minlength=SMALL_KEYS)[uniq] for c in range(sums.shape[1])], axis=1
        )
        return uniq.astype(np.uint64), np.zeros(0, np.int64), folded
    uniq, first, inv = group_by_key(keys)
    folded = np.zeros((len(uniq), sums.shape[1]), dtype=np.float64)
    for c in range(sums.shape[1]):
        folded[:, c] = np.bincount(inv, weights=sums[:, c], minlength=len(uniq))
    return uniq, first, folded

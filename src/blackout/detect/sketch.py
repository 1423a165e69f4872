"""Bounded counting for the DDoS detector: keyed sums, distinct counts, 64-bit keys.

Everything works on whole numpy arrays.  Keys are uint64: an IPv4 (mapped)
address is its own low word, exact; an IPv6 address is a 63-bit hash of its
two words with the top bit set, so the two families never collide and IPv6
keys collide with probability below 1e-7 at a million sources.  Per-attack
source sets therefore stay exact for IPv4 (what the tests compare with
tshark) at 8 bytes a source, and switch to a HyperLogLog estimate past a cap.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .grouping import group_by_key

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_V4_TAG = np.uint64(0x0000FFFF00000000)
_HIGH = np.uint64(1 << 63)
SMALL_KEYS = 1 << 16


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over a uint64 array (wrapping arithmetic, no per-element Python)."""
    x = np.asarray(x, dtype=np.uint64)
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def hash3(hi: np.ndarray, lo: np.ndarray, tag: np.ndarray | int) -> np.ndarray:
    """A 64-bit hash of (high word, low word, small tag): grouping key for targets and flows."""
    h = mix64(np.asarray(hi, dtype=np.uint64) + _GOLD)
    h = mix64(h ^ np.asarray(lo, dtype=np.uint64))
    return mix64(h ^ (np.asarray(tag, dtype=np.uint64) * _GOLD))


@njit(cache=True, inline="always")
def hash3_one(hi: np.uint64, lo: np.uint64, tag: int) -> np.uint64:  # pragma: no cover - compiled
    """:func:`hash3` of one triple, for compiled code (the same bits)."""
    h = _mix64_one(hi + _GOLD)
    h = _mix64_one(h ^ lo)
    return _mix64_one(h ^ (np.uint64(tag) * _GOLD))


@njit(cache=True, inline="always")
def _mix64_one(x: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def group_keys(keys: np.ndarray, runs: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sorted distinct keys, one row of each, inverse): np.unique's answer, 3-5x faster.

    np.unique asks for a stable sort to return first occurrences; any occurrence
    serves here, so the default (introsort) argsort does.  Deterministic.  ``runs``: keys are a few
    sorted runs one after another, which timsort (the stable kind) merges in near-linear time.
    """
    order = np.argsort(keys, kind="stable" if runs else None)
    ordered = keys[order]
    start = np.ones(len(keys), dtype=bool)
    start[1:] = ordered[1:] != ordered[:-1]
    inv = np.empty(len(keys), dtype=np.int64)
    inv[order] = np.cumsum(start) - 1
    return ordered[start], order[start], inv


def address_keys(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """One uint64 per address: the low word for IPv4-mapped (exact), a tagged hash for IPv6."""
    v4 = (hi == 0) & ((lo & np.uint64(0xFFFFFFFF00000000)) == _V4_TAG)
    out = lo.astype(np.uint64, copy=True)
    v6 = ~v4
    if v6.any():
        out[v6] = hash3(hi[v6], lo[v6], 0) | _HIGH
    return out


class SparseCounter:
    """Sums of float columns keyed by uint64, kept sorted; each key may carry uint64 tags (its address).

    Adding a tick's keys is a searchsorted plus one insert, O(size) memory
    traffic and no per-key Python.  Past ``cap`` keys it keeps the heaviest
    half by column 0 and flags itself inexact (heavy hitters stay right); from
    then on a HyperLogLog, seeded with every key held at that moment, counts
    the distinct keys (:meth:`distinct`).  Counters that never reach the cap
    never pay for the sketch.
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
        if not self._pending:
            return
        chunks, self._pending, self._pending_n = self._pending, [], 0
        if len(chunks) == 1:
            uniq, folded, tags = chunks[0]
        else:
            keys = np.concatenate([c[0] for c in chunks])
            uniq, first, folded = _fold(keys, np.concatenate([c[1] for c in chunks]), need_first=True, runs=True)
            tags = np.concatenate([c[2] for c in chunks])[first]
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
        """Indices of the k largest keys by one column, ties broken by key (deterministic)."""
        order = np.lexsort((self.keys, -self.sums[:, column]))
        return order[:k]

    def _prune(self) -> None:
        if self.sketch:
            self._sketch()
        keep = np.sort(self.top(self.cap // 2))
        self._keys, self._sums, self._tags = self._keys[keep], self._sums[keep], self._tags[keep]
        self.exact = False


@njit(cache=True)
def _merge_sorted(
    keys: np.ndarray,
    sums: np.ndarray,
    tags: np.ndarray,
    add_keys: np.ndarray,
    add_sums: np.ndarray,
    add_tags: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Two sorted distinct key tables merged in one pass: sums of common keys added, their tags kept;
    returns the new arrays and the mask of added keys that were new."""
    n, m = len(keys), len(add_keys)
    new = np.ones(m, dtype=np.bool_)
    i = 0
    for j in range(m):
        while i < n and keys[i] < add_keys[j]:
            i += 1
        if i < n and keys[i] == add_keys[j]:
            new[j] = False
    total = n + int(new.sum())
    out_keys = np.empty(total, dtype=np.uint64)
    out_sums = np.empty((total, sums.shape[1]), dtype=np.float64)
    out_tags = np.empty((total, tags.shape[1]), dtype=np.uint64)
    i = j = o = 0
    while i < n or j < m:
        if j == m or (i < n and keys[i] < add_keys[j]):
            out_keys[o], out_sums[o], out_tags[o] = keys[i], sums[i], tags[i]
            i += 1
        elif i == n or add_keys[j] < keys[i]:
            out_keys[o], out_sums[o], out_tags[o] = add_keys[j], add_sums[j], add_tags[j]
            j += 1
        else:
            out_keys[o], out_tags[o] = keys[i], tags[i]
            for c in range(sums.shape[1]):
                out_sums[o, c] = sums[i, c] + add_sums[j, c]
            i += 1
            j += 1
        o += 1
    return out_keys, out_sums, out_tags, new


def _fold(
    keys: np.ndarray, sums: np.ndarray, need_first: bool, runs: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    uniq, first, inv = group_keys(keys, runs) if runs else group_by_key(keys)
    folded = np.zeros((len(uniq), sums.shape[1]), dtype=np.float64)
    for c in range(sums.shape[1]):
        folded[:, c] = np.bincount(inv, weights=sums[:, c], minlength=len(uniq))
    return uniq, first, folded


DENSE_CELLS = 1 << 22  # owners × codes up to this: sums by one bincount over a dense grid, no sort


def dense_codes(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct keys, code of each row = its key's index there); many small keys without a sort,
    others by hashing (a tick's rows hold few distinct ASNs: no sort of the rows)."""
    keys = np.asarray(keys, dtype=np.uint64)
    if len(keys) > 4096 and int(keys.max()) < SMALL_KEYS:  # fewer rows: hashing them beats a 2^16 grid
        small = keys.astype(np.int64)
        seen = np.bincount(small, minlength=SMALL_KEYS) > 0
        return np.flatnonzero(seen).astype(np.uint64), (np.cumsum(seen) - 1)[small]
    uniq, _, inv = group_by_key(keys)
    return uniq, inv


def fold_by_owner(
    owner: np.ndarray, owners: int, codes: np.ndarray, n_codes: int, weights: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weight columns summed by (owner, code) for many owners at once: (bounds, codes, sums).

    One bincount (or one hash grouping) for all the attacks of a tick instead of one
    fold per attack; owner o's rows are bounds[o]:bounds[o + 1], codes ascending.
    ``weights``: one array per column (a list, not a 2-D array: no copy of the tick's rows).
    """
    cell = owner.astype(np.int64, copy=False) * n_codes + codes
    if owners * n_codes <= DENSE_CELLS:
        size = owners * n_codes
        present = np.flatnonzero(np.bincount(cell, minlength=size))
        sums = [np.bincount(cell, weights=w, minlength=size)[present] for w in weights]
    else:
        present, _, inv = group_by_key(cell)
        present = present.astype(np.int64)
        sums = [np.bincount(inv, weights=w, minlength=len(present)) for w in weights]
    bounds = np.searchsorted(present, np.arange(owners + 1, dtype=np.int64) * n_codes)
    return bounds, present % n_codes, np.stack(sums, axis=1)


class HyperLogLog:
    """Distinct-count estimate of uint64 keys (Flajolet et al. 2007), 2^p one-byte registers."""

    def __init__(self, p: int = 14) -> None:
        self.p = p
        self.registers = np.zeros(1 << p, dtype=np.uint8)

    def add(self, keys: np.ndarray) -> None:
        """Fold a batch of keys into the registers."""
        if len(keys) == 0:
            return
        h = mix64(np.asarray(keys, dtype=np.uint64) ^ _GOLD)
        index = (h >> np.uint64(64 - self.p)).astype(np.int64)
        rest = (h << np.uint64(self.p)) | np.uint64(1 << (self.p - 1))
        # leading zeros of the remaining bits + 1; float log2 is off by one only at 2^53+, harmless here
        rank = (64 - np.floor(np.log2(rest.astype(np.float64)))).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def merge(self, other: HyperLogLog) -> None:
        """Union with another sketch of the same size."""
        np.maximum(self.registers, other.registers, out=self.registers)

    def estimate(self) -> float:
        """The estimated number of distinct keys (linear counting in the small range)."""
        m = float(len(self.registers))
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.ldexp(1.0, -self.registers.astype(np.int64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return m * np.log(m / zeros)
        return raw


def smallest_distinct(current: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """The k smallest distinct keys of both arrays: enough to tell whether there are at least k sources."""
    return np.unique(np.concatenate([current, np.asarray(keys, dtype=np.uint64)]))[:k]

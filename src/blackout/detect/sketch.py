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

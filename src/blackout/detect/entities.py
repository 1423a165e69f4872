"""Entity bookkeeping for the outage signals: stable rows per entity, remembered origins, group counts.

Kept apart from :mod:`.signals` so that both the signal computer and the
detector can index entities the same way: a :class:`Registry` gives every
entity of one (signal, entity type) a row that never moves, so the detector's
ring buffers (:class:`~.ioda.Tracker`) line up with the values bin after bin,
and lookups of a whole bin's entities are one ``searchsorted``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class Registry:
    """Rows of the entities of one (signal, entity type), in order of first appearance.

    Keys are uint32 AS numbers or strings (country codes, prefix texts).
    """

    def __init__(self, numeric: bool) -> None:
        self.numeric = numeric
        self.keys = np.zeros(0, dtype=np.uint32 if numeric else object)
        self._sorted = self.keys.copy()
        self._rows = np.zeros(0, dtype=np.int64)
        self._labels: pa.Array = pa.array([], pa.string())

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self, keys: np.ndarray) -> np.ndarray:
        """Row of each key, registering new keys (at the end: existing rows never move)."""
        keys = np.asarray(keys, dtype=self.keys.dtype)
        found = self._find(keys)
        new = found < 0
        if new.any():
            fresh = np.unique(keys[new])
            self.keys = np.concatenate([self.keys, fresh])
            order = np.argsort(self.keys, kind="stable")
            self._sorted, self._rows = self.keys[order], order
            self._labels = pa.concat_arrays([self._labels, _labels(fresh)])
            found = self._find(keys)
        return found

    def _find(self, keys: np.ndarray) -> np.ndarray:
        if len(self._sorted) == 0 or len(keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        i = np.minimum(np.searchsorted(self._sorted, keys), len(self._sorted) - 1)
        return np.where(self._sorted[i] == keys, self._rows[i], -1)

    def labels(self, rows: np.ndarray | None = None) -> pa.Array:
        """Entity texts of rows (all rows when None)."""
        return self._labels if rows is None else self._labels.take(pa.array(rows, pa.int64()))

    def label(self, row: int) -> str:
        """Entity text of one row."""
        return str(self._labels[row].as_py())


def _labels(keys: np.ndarray) -> pa.Array:
    if keys.dtype == object:
        return pa.array(keys.tolist(), pa.string())
    return pa.array(keys).cast(pa.string())


class Homes:
    """Origin AS of /24 blocks last seen routed (sorted arrays; later answers win)."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.uint32)
        self.asn = np.zeros(0, dtype=np.uint32)

    def update(self, blocks: np.ndarray, asn: np.ndarray) -> None:
        """Remember the origin of routed blocks (asn 0 = unrouted: ignored)."""
        known = asn != 0
        if not known.any():
            return
        kb, ka = blocks[known], asn[known]
        order = np.argsort(kb)
        kb, ka = kb[order], ka[order]
        run = np.ones(len(kb), dtype=bool)
        run[1:] = kb[1:] != kb[:-1]
        b, a = kb[run], ka[run]
        pos = np.searchsorted(self.keys, b)
        found = np.zeros(len(b), dtype=bool)
        inside = pos < len(self.keys)
        found[inside] = self.keys[pos[inside]] == b[inside]
        self.asn[pos[found]] = a[found]
        if not found.all():
            self.keys = np.insert(self.keys, pos[~found], b[~found])
            self.asn = np.insert(self.asn, pos[~found], a[~found])

    def get(self, blocks: np.ndarray) -> np.ndarray:
        """Remembered origin of each block (0 when never seen routed)."""
        if len(self.keys) == 0:
            return np.zeros(len(blocks), dtype=np.uint32)
        i = np.minimum(np.searchsorted(self.keys, blocks), len(self.keys) - 1)
        return np.where(self.keys[i] == blocks, self.asn[i], 0).astype(np.uint32)


class Groups:
    """Rows grouped by an integer code, sorted once and summed many times (a sort and ``reduceat``;
    numpy's hash-based ``unique`` measured 3x slower on a million flows)."""

    def __init__(self, codes: np.ndarray) -> None:
        self.order = np.argsort(codes)
        c = codes[self.order]
        self.heads = np.flatnonzero(np.concatenate([[True], c[1:] != c[:-1]])) if len(c) else np.zeros(0, np.int64)
        self.keys = c[self.heads]

    def sum(self, weights: np.ndarray) -> np.ndarray:
        """Sum of the weights of each group, in key order."""
        if len(self.order) == 0:
            return np.zeros(0)
        return np.add.reduceat(np.asarray(weights, dtype=np.float64)[self.order], self.heads)


def group_sum(codes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct codes (ascending) and the sum of weights per code."""
    g = Groups(codes)
    return g.keys, g.sum(weights)


def group_distinct(codes: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct codes and the number of distinct items per code.  Items are 64-bit address identities
    of which the low 40 bits are kept (all of an IPv4 address; an IPv6 hash, where two of a million
    addresses collide with odds below one half), packed with the code into one key: one sort."""
    if len(codes) == 0:
        return codes, np.zeros(0)
    key = np.sort((codes.astype(np.uint64) << np.uint64(40)) | (np.asarray(items, np.uint64) & np.uint64(2**40 - 1)))
    owners = key[np.concatenate([[True], key[1:] != key[:-1]])] >> np.uint64(40)
    return group_sum(owners.astype(codes.dtype), np.ones(len(owners)))

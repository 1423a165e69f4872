"""SparseCounter's two ways of summing a batch (sorting, or bincount over small keys) against a Python Counter."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from blackout.detect.sketch import SparseCounter, dense_codes, fold_by_owner


@pytest.mark.parametrize("high", [1 << 16, 1 << 40], ids=["small-keys", "large-keys"])
def test_sums_match_a_python_counter(high: int) -> None:
    rng = np.random.default_rng(4)
    counter, want = SparseCounter(columns=2), Counter[int]()
    for n in (10, 5000, 20000, 3):  # below and above the bincount threshold
        keys = rng.integers(0, min(high, 3000) if n == 5000 else high, n).astype(np.uint64)
        weights = rng.integers(1, 50, n).astype(np.float64)
        counter.add(keys, np.stack([weights, 2 * weights], axis=1))
        for k, w in zip(keys.tolist(), weights.tolist(), strict=True):
            want[k] += w
    assert counter.keys.tolist() == sorted(want)
    assert counter.sums[:, 0].tolist() == [want[k] for k in sorted(want)]
    assert np.array_equal(counter.sums[:, 1], 2 * counter.sums[:, 0])


@pytest.mark.parametrize("high", [1 << 16, 1 << 40], ids=["dense-grid", "sorted"])
def test_batched_fold_into_many_counters_matches_python(high: int) -> None:
    """Many attacks' rows folded by (owner, key) at once, merged lazily, equal a Counter per owner;
    a capped counter prunes exactly as when each batch is added at once."""
    rng = np.random.default_rng(7)
    owners = 5
    lazy = [SparseCounter(tags=1) for _ in range(owners)] + [SparseCounter(cap=300, sketch=True)]
    eager = SparseCounter(cap=300, sketch=True)
    want = [Counter[int]() for _ in range(owners)]
    for n in (0, 50, 3000, 40000, 7):
        owner = np.sort(rng.integers(0, owners, n))
        keys = rng.integers(0, high, n).astype(np.uint64)
        weights = rng.integers(1, 9, n).astype(np.float64)
        uniq, codes = dense_codes(keys)
        bounds, code, sums = fold_by_owner(owner, owners, codes, len(uniq), weights)
        for o in range(owners):
            part = slice(int(bounds[o]), int(bounds[o + 1]))
            lazy[o].add_folded(uniq[code[part]], sums[part], uniq[code[part]] * np.uint64(3))
        for k, w, o in zip(keys.tolist(), weights.tolist(), owner.tolist(), strict=True):
            want[o][k] += w
        first = owner == 0
        only_first = slice(int(bounds[0]), int(bounds[1]))
        lazy[owners].add_folded(uniq[code[only_first]], sums[only_first])
        eager.add(keys[first], weights[first])
    for o in range(owners):
        assert lazy[o].keys.tolist() == sorted(want[o])
        assert lazy[o].sums[:, 0].tolist() == [want[o][k] for k in sorted(want[o])]
        assert np.array_equal(lazy[o].tags[:, 0], lazy[o].keys * np.uint64(3))
    capped = lazy[owners]
    assert capped.keys.tolist() == eager.keys.tolist() and not capped.exact
    assert capped.sums.tolist() == eager.sums.tolist() and capped.distinct() == eager.distinct()

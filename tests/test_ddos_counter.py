"""SparseCounter's compiled merge, fold and selection against the numpy forms they replaced, bit for bit."""

from __future__ import annotations

import numpy as np

from blackout.detect.counter import SparseCounter, _fold_runs, _merge_sorted, heaviest
from blackout.detect.sketch import group_keys


def test_fold_runs_equals_a_stable_grouping_and_bincount() -> None:
    """Chunks of sorted distinct keys folded as the settle did before: group_keys (stable) then one
    bincount per column; weights whose sums show their order, tags of each key's first chunk."""
    rng = np.random.default_rng(5)
    chunks = [np.unique(rng.integers(0, 400, rng.integers(0, 300)).astype(np.uint64)) for _ in range(9)]
    keys = np.concatenate(chunks)
    sums = rng.integers(1, 9, (len(keys), 3)) * rng.choice([1.0, 0.1, 3.7, 1e-9], (len(keys), 3))
    tags = rng.integers(0, 1 << 62, (len(keys), 2)).astype(np.uint64)
    uniq, first, inv = group_keys(keys, runs=True)
    want = np.stack([np.bincount(inv, weights=sums[:, c], minlength=len(uniq)) for c in range(3)], axis=1)
    got_keys, got_sums, got_tags = _fold_runs(keys, sums, tags, np.argsort(keys, kind="stable"))
    assert np.array_equal(got_keys, uniq) and np.array_equal(got_tags, tags[first])
    assert got_sums.tobytes() == want.tobytes()


def test_merge_sorted_equals_a_dict() -> None:
    rng = np.random.default_rng(6)
    for n, m in ((0, 5), (5, 0), (300, 200), (40, 900)):
        keys = np.unique(rng.integers(0, 1000, n).astype(np.uint64))
        add = np.unique(rng.integers(0, 1000, m).astype(np.uint64))
        sums, add_sums = rng.random((len(keys), 2)), rng.random((len(add), 2))
        tags, add_tags = keys[:, None] * np.uint64(3), add[:, None] * np.uint64(5)
        want = {int(k): (list(s), 3 * int(k)) for k, s in zip(keys, sums, strict=True)}
        for k, s in zip(add.tolist(), add_sums.tolist(), strict=True):
            held = want.get(k)
            want[k] = ([a + b for a, b in zip(held[0], s, strict=True)], held[1]) if held else (s, 5 * k)
        out_keys, out_sums, out_tags, new = _merge_sorted(keys, sums, tags, add, add_sums, add_tags)
        assert out_keys.tolist() == sorted(want)
        assert out_sums.tolist() == [want[k][0] for k in sorted(want)]
        assert out_tags[:, 0].tolist() == [want[k][1] for k in sorted(want)]
        assert new.tolist() == [k not in set(keys.tolist()) for k in add.tolist()]


def test_heaviest_and_top_equal_a_full_lexsort_with_ties() -> None:
    """The selection (three-way quickselect, ties to the lowest index) against lexsort, on columns of a few
    values (ties everywhere), all equal, and distinct; top() past TOP_BY_SORT keys too."""
    rng = np.random.default_rng(8)
    for n in (1, 2, 7, 300, 5000):
        for col in (rng.integers(0, 4, n) * 0.5, np.ones(n), rng.random(n)):
            for k in sorted({0, 1, 2, n // 3, n - 1, n, n + 3}):
                want = np.sort(np.lexsort((np.arange(n), -col))[: max(k, 0)])
                assert np.array_equal(heaviest(col, k), want), (n, k)
    counter = SparseCounter()
    keys = rng.choice(1 << 40, 9000, replace=False).astype(np.uint64)
    counter.add(keys, rng.integers(1, 4, len(keys)).astype(np.float64))
    for k in (0, 10, 11, 8999, 9000, 9500):
        assert np.array_equal(counter.top(k), np.lexsort((counter.keys, -counter.sums[:, 0]))[:k])

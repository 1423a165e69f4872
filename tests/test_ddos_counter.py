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


def test_fold_codes_lists_codes_by_sort_and_by_walk_alike() -> None:
    """fold_codes against fold_by_owner where one attack touches most codes (listed by a walk of the slots)
    and the others a few (sorted): codes ascending, sums in entry order, negative codes left out."""
    from blackout.detect.attack_fold import fold_codes
    from blackout.detect.sketch import fold_by_owner

    rng = np.random.default_rng(9)
    n_codes, owners = 5000, 6
    sizes = [20000, 30, 0, 200, 1, 3000]  # attack 0 touches most codes, attack 5 ~45% of them
    owner = np.repeat(np.arange(owners), sizes)
    sel = np.concatenate([np.sort(rng.choice(30000, s, replace=False)) for s in sizes])
    row_code = np.where(rng.random(30000) < 0.1, -1, rng.integers(0, n_codes, 30000))
    pk = rng.integers(1, 9, 30000) * rng.choice([1.0, 0.1, 3.7], 30000)
    keep = row_code[sel] >= 0
    want = fold_by_owner(owner[keep], owners, row_code[sel][keep], n_codes, [pk[sel][keep]])
    got = fold_codes(owner, sel, row_code, n_codes, owners, (pk,))
    assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True))
    assert len(got[1]) and int(got[0][1]) > n_codes // 2


def _numpy_keep_pairs(port: np.ndarray, key: np.ndarray, held: np.ndarray, most: int) -> tuple[np.ndarray, ...]:
    """PortReflections' former numpy form: np.isin, a lexsort, dedupe, rank within the port."""
    inside = np.isin(port, held)
    port, key = port[inside], key[inside]
    order = np.lexsort((key, port))
    port, key = port[order], key[order]
    new = np.ones(len(port), dtype=bool)
    new[1:] = (port[1:] != port[:-1]) | (key[1:] != key[:-1])
    port, key = port[new], key[new]
    first = np.ones(len(port), dtype=bool)
    first[1:] = port[1:] != port[:-1]
    index = np.arange(len(port))
    keep = index - np.maximum.accumulate(np.where(first, index, 0)) < most
    return port[keep], key[keep]


def test_keep_pairs_equals_the_numpy_form() -> None:
    from blackout.detect.reflection import _keep_pairs

    rng = np.random.default_rng(10)
    for n_old, n_new, most in ((0, 0, 3), (0, 50, 1), (40, 300, 10), (500, 7, 10), (60, 200, 0)):
        old_port, old_key = _numpy_keep_pairs(
            rng.integers(1, 30, n_old).astype(np.uint64), rng.integers(0, 40, n_old).astype(np.uint64),
            np.arange(1, 30, dtype=np.uint64), max(most, 1),
        )  # fmt: skip
        port, key = rng.integers(1, 30, n_new).astype(np.uint64), rng.integers(0, 40, n_new).astype(np.uint64)
        held = np.unique(rng.integers(1, 30, 12).astype(np.uint64))
        want = _numpy_keep_pairs(np.concatenate([old_port, port]), np.concatenate([old_key, key]), held, most)
        got = _keep_pairs(old_port, old_key, port, key, held, most)
        assert all(np.array_equal(g, w) for g, w in zip(got, want, strict=True)), (n_old, n_new, most)


def test_keep_heaviest_keeps_the_rows_heaviest_picks() -> None:
    """The compiled prune against a full lexsort and fancy indexing: ties to the lowest key, tags along."""
    from blackout.detect.counter import _keep_heaviest

    rng = np.random.default_rng(12)
    for n in (2, 9, 65, 1000):
        keys = np.unique(rng.integers(0, 1 << 40, n).astype(np.uint64))
        sums = np.stack([rng.integers(0, 3, len(keys)) * 0.5, rng.random(len(keys))], axis=1)
        tags = rng.integers(0, 1 << 60, (len(keys), 2)).astype(np.uint64)
        for k in (0, 1, len(keys) // 2, len(keys) - 1):
            keep = np.sort(np.lexsort((keys, -sums[:, 0]))[:k])
            got = _keep_heaviest(keys, sums, tags, k)
            assert all(np.array_equal(g, w) for g, w in zip(got, (keys[keep], sums[keep], tags[keep]), strict=True))

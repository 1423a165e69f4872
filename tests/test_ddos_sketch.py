"""SparseCounter's two ways of summing a batch (sorting, or bincount over small keys) against a Python Counter."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from blackout.detect.sketch import SparseCounter


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

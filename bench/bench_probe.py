"""Benchmark: the prober's Trinocular bookkeeping for one round over N /24 blocks (IODA tracks ~4.2M).

blackout keeps every block's belief, availability and schedule in numpy arrays
and updates a whole wave at once; the rival is the same model written the
obvious way, one Python loop iteration per block and result (what a per-block
prober does).  Both run the same round on the same answers: 2 % of the blocks
went dark (they take several probes to settle), the rest answer.  Sending is
not timed (it is paced by the rate limit, not by this code).

Run: python bench/bench_probe.py [N]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from blackout.probe.trinocular import (
    AVAIL_MIN,
    BELIEF_DOWN,
    BELIEF_MAX,
    BELIEF_MIN,
    BELIEF_START,
    BELIEF_UP,
    FALSE_ANSWER,
    Blocks,
)


def setup(n: int) -> tuple[Blocks, np.ndarray]:
    rng = np.random.default_rng(1)
    blocks = np.arange(n, dtype=np.uint32) + np.uint32(0x0A000000 >> 8)
    addrs = (blocks[:, None] << np.uint32(8)) | np.array([1, 9, 77], np.uint32)[None, :]
    b = Blocks()
    b.set_addresses(addrs.ravel())
    b.answers[:] = 20.0
    b.results[:] = 22.0
    dark = rng.random(n) < 0.02
    return b, dark


def blackout_round(b: Blocks, dark: np.ndarray) -> int:
    b.start_round()
    while len((w := b.wave(len(b)))[0]):
        b.observe(w[0], ~dark[w[0]])
    return int(b.sent.sum())


def rival_round(belief: list[float], answers: list[float], results: list[float], dark: list[bool]) -> int:
    """The same model, one block at a time."""
    sent = 0
    for i in range(len(belief)):
        for _ in range(14):
            sent += 1
            a = min(max((answers[i] + 1.0) / (results[i] + 2.0), AVAIL_MIN), 1.0 - FALSE_ANSWER)
            pos = not dark[i]
            odds = belief[i] / (1.0 - belief[i])
            odds *= a / FALSE_ANSWER if pos else (1.0 - a) / (1.0 - FALSE_ANSWER)
            belief[i] = min(max(odds / (1.0 + odds), BELIEF_MIN), BELIEF_MAX)
            if belief[i] > BELIEF_UP:
                answers[i] += pos
                results[i] += 1
            if (pos and belief[i] > BELIEF_UP) or (not pos and belief[i] < BELIEF_DOWN):
                break
    return sent


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    b, dark = setup(n)
    t0 = time.perf_counter()
    ours_sent = blackout_round(b, dark)
    ours = time.perf_counter() - t0
    belief, answers, results = [BELIEF_START] * n, [20.0] * n, [22.0] * n
    t0 = time.perf_counter()
    rival_sent = rival_round(belief, answers, results, dark.tolist())
    rival = time.perf_counter() - t0
    assert ours_sent == rival_sent, (ours_sent, rival_sent)
    # same model: every block ends the round with the same belief and availability counts
    assert np.allclose(b.belief, belief, rtol=1e-9, atol=0.0)
    assert np.array_equal(b.answers, answers) and np.array_equal(b.results, results)
    print(f"{n:,} blocks, {ours_sent:,} probes in the round")
    print(f"blackout (numpy waves): {ours:.3f} s")
    print(f"rival (per-block loop): {rival:.3f} s")
    print(f"ratio: {rival / ours:.1f}x faster")
    print(json.dumps({"bench": "probe", "blocks": n, "probes": ours_sent, "blackout_s": ours, "rival_s": rival}))


if __name__ == "__main__":
    main()

"""Trinocular's model (Quan, Heidemann, Pradkin, SIGCOMM 2013): a belief per /24 and adaptive probing.

Each /24 block ``b`` has a set ``E(b)`` of ever-responsive addresses and an
availability ``A`` (the share of them that answer while the block is up).
One probe result updates the belief ``B`` that the block is up by Bayes' rule::

    positive:  B' = A·B / (A·B + ε·(1 − B))
    negative:  B' = (1 − A)·B / ((1 − A)·B + (1 − ε)·(1 − B))

with ``ε`` the assumed chance of a wrong answer (1 %), ``B`` clamped to
[0.01, 0.99] and started at 0.99 (IODA's build); the block is up above 0.9 and
down below 0.1.  ``A`` is estimated as ``(answers + 1) / (results + 2)`` over
the results seen while the block was up, clamped to [0.1, 0.99] — the same
model the outage detector (:mod:`blackout.detect.signals`) keeps from the rows,
so prober and detector agree on every block.

Adaptive probing: every round each block gets one probe; a result that agrees
with a certain belief (answer while up, silence while down) ends the block's
round.  Otherwise the belief moved, and the block is probed again (next address
of ``E(b)``, round robin) until it is certain again or ``max_probes`` (14) were
sent — few probes when nothing changes, more exactly when something does.

All state is numpy arrays over blocks; a wave of probes updates every block at
once.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..config import register_section

# Trinocular's model as IODA runs it; the outage detector's probing signal uses the same numbers.
BELIEF_START, BELIEF_MIN, BELIEF_MAX, BELIEF_UP, FALSE_ANSWER = 0.99, 0.01, 0.99, 0.9, 0.01
BELIEF_DOWN = 0.1
AVAIL_MIN = 0.1


@dataclasses.dataclass
class ProbeConfig:
    """[probe] section: the prober's rounds and limits (defaults: IODA's Trinocular build)."""

    round_s: float = 600.0  # one round of probing every this many seconds
    max_probes: int = 14  # most probes per /24 per round
    timeout_s: float = 3.0  # an answer later than this is a loss
    rate_pps: float = 100.0  # global limit on probes sent per second (census included)
    method: str = "icmp"  # icmp | tcp (connect: SYN answered by SYN-ACK or RST = up)
    tcp_port: int = 80
    icmp_socket: str = "auto"  # auto (unprivileged datagram, else raw) | dgram | raw
    false_answer: float = FALSE_ANSWER  # ε: assumed chance of a wrong answer


register_section("probe", ProbeConfig)


def update(
    belief: np.ndarray, avail: np.ndarray, npos: np.ndarray, nneg: np.ndarray, eps: float = FALSE_ANSWER
) -> np.ndarray:
    """Belief after ``npos`` answers and ``nneg`` silences: Bayes' rule in log-odds (hundreds of results
    at once, e.g. a census, cannot overflow), then clamped."""
    logit = np.log(belief / (1.0 - belief))
    logit = logit + npos * np.log(avail / eps) + nneg * np.log((1.0 - avail) / (1.0 - eps))
    return np.clip(1.0 / (1.0 + np.exp(-np.clip(logit, -50.0, 50.0))), BELIEF_MIN, BELIEF_MAX)


def availability(answers: np.ndarray, results: np.ndarray, eps: float = FALSE_ANSWER) -> np.ndarray:
    """A: share of E(b) answering while up, Laplace-smoothed and clamped to [0.1, 1 − ε]."""
    return np.clip((answers + 1.0) / (results + 2.0), AVAIL_MIN, 1.0 - eps)


class Blocks:
    """Every probed /24: its ever-responsive addresses (CSR arrays), belief, availability, round state."""

    def __init__(self, max_probes: int = 14, eps: float = FALSE_ANSWER) -> None:
        self.max_probes = max_probes
        self.eps = eps
        self.blocks = np.zeros(0, np.uint32)  # /24 numbers (address >> 8), sorted
        self.offsets = np.zeros(1, np.int64)  # E(b) of block i: addrs[offsets[i]:offsets[i + 1]]
        self.addrs = np.zeros(0, np.uint32)
        self.belief = np.zeros(0)
        self.answers = np.zeros(0)
        self.results = np.zeros(0)
        self.cursor = np.zeros(0, np.int64)  # next address of E(b) to probe (round robin)
        self.sent = np.zeros(0, np.int64)  # probes this round
        self.active = np.zeros(0, bool)  # still probing this round
        self.queue = np.zeros(0, np.int64)  # blocks that may probe in the next wave

    def __len__(self) -> int:
        return len(self.blocks)

    def set_addresses(self, addrs: np.ndarray) -> None:
        """(Re)build E(b) of every block from a list of addresses; known blocks keep their state."""
        addrs = np.unique(np.asarray(addrs, np.uint32))
        blocks, first = np.unique(addrs >> np.uint32(8), return_index=True)
        keep = np.asarray(np.searchsorted(self.blocks, blocks), dtype=np.int64)
        known: np.ndarray = keep < len(self.blocks)
        known[known] = self.blocks[keep[known]] == blocks[known]

        def carry(arr: np.ndarray, fill: float) -> np.ndarray:
            out = np.full(len(blocks), fill, dtype=arr.dtype)
            out[known] = arr[keep[known]]
            return out

        self.belief = carry(self.belief, BELIEF_START)
        self.answers, self.results = carry(self.answers, 0.0), carry(self.results, 0.0)
        self.cursor, self.sent = carry(self.cursor, 0), carry(self.sent, 0)
        self.active = carry(self.active, False)
        self.blocks, self.addrs = blocks, addrs
        self.offsets = np.append(first, len(addrs)).astype(np.int64)

    # ---------------------------------------------------------------- rounds
    def start_round(self) -> None:
        """Every block with addresses gets (at least) one probe this round."""
        self.sent[:] = 0
        self.active = np.diff(self.offsets) > 0
        self.queue = np.flatnonzero(self.active)

    def wave(self, budget: int) -> tuple[np.ndarray, np.ndarray]:
        """(block index, target address) of the next probe of up to ``budget`` active blocks (each once)."""
        cand = self.queue[self.active[self.queue] & (self.sent[self.queue] < self.max_probes)]
        idx, self.queue = cand[: max(0, budget)], cand[max(0, budget) :]
        size = self.offsets[idx + 1] - self.offsets[idx]
        targets = self.addrs[self.offsets[idx] + self.cursor[idx] % size]
        self.cursor[idx] += 1
        self.sent[idx] += 1
        return idx, targets

    def observe(self, idx: np.ndarray, positive: np.ndarray) -> None:
        """Results of one wave (one per block, as :meth:`wave` hands out): Bayes update; decide who
        probes again.  Only the probed blocks are touched, so late waves over few blocks cost little."""
        self.count(idx, positive.astype(np.float64), (~positive).astype(np.float64))
        up = self.belief[idx] > BELIEF_UP
        # a result agreeing with a certain belief ends the block's round; anything else probes again
        settled = (positive & up) | (~positive & (self.belief[idx] < BELIEF_DOWN))
        self.active[idx] = ~settled & (self.sent[idx] < self.max_probes)
        self.queue = np.concatenate([self.queue, idx[self.active[idx]]])

    def count(self, idx: np.ndarray, npos: np.ndarray, nneg: np.ndarray) -> None:
        """Bayes update of blocks ``idx`` (distinct) by their answers and silences; while a block is up
        its results also teach its availability."""
        avail = availability(self.answers[idx], self.results[idx], self.eps)
        belief = update(self.belief[idx], avail, npos, nneg, self.eps)
        self.belief[idx] = belief
        up = belief > BELIEF_UP
        self.answers[idx] += np.where(up, npos, 0.0)
        self.results[idx] += np.where(up, npos + nneg, 0.0)

    def states(self) -> np.ndarray:
        """Per block: 1 up (belief > 0.9), 0 down (< 0.1), 0.5 uncertain."""
        return np.where(self.belief > BELIEF_UP, 1.0, np.where(self.belief < BELIEF_DOWN, 0.0, 0.5))

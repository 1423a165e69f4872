"""UDP reflection from source ports outside the amplifier table: ``udp_reflection:<port>``.

The amplifier table (:mod:`.vectors`) names the services known for
amplification; attackers keep finding others (STUN 3478, Ubiquiti discovery
10001, ...).  UDP toward the victim counts as a reflection from port P when

* P is a fixed service-like port: 1..49151 (IANA's dynamic range, where a
  flooder's random source ports mostly fall, is left out),
* the packets are large (``reflection_min_bytes`` on average per row:
  reflectors *amplify*; floods of empty datagrams are not that), and
* at least ``amplification_min_sources`` distinct sources sent from P (one
  server answering a client is not a reflection attack).

Otherwise those packets stay ``udp_flood``.  Memory per attack is bounded:
packets per port in a counter pruned to its heaviest ``MAX_PORTS``, and
source sets (capped at the minimum needed) only for the ports still held.
"""

from __future__ import annotations

import numpy as np

from .counter import SparseCounter

MAX_PORTS = 64  # candidate source ports kept per attack (a random-port flood prunes to its heaviest)
DYNAMIC_PORTS = 49152


def candidates(port: np.ndarray, size: np.ndarray, min_bytes: float) -> np.ndarray:
    """Mask of UDP-flood rows that could be reflections: a service-like source port, large packets."""
    return (port > 0) & (port < DYNAMIC_PORTS) & (size >= min_bytes)


class PortReflections:
    """Per attack: UDP-flood packets by source port, and enough distinct sources per port to decide."""

    def __init__(self, min_sources: int, min_bytes: float) -> None:
        self.min_sources = min_sources
        self.min_bytes = min_bytes
        self.ports = SparseCounter(cap=MAX_PORTS, sketch=False)
        # (port, source key) pairs sorted, at most min_sources per port, only for the ports the counter holds
        self.src_port = np.zeros(0, np.uint64)
        self.src_key = np.zeros(0, np.uint64)

    def add_candidates(self, ports: np.ndarray, sums: np.ndarray, port: np.ndarray, src_key: np.ndarray) -> None:
        """Fold in UDP-flood rows that already passed :func:`candidates`, their packets already summed
        by port (sorted distinct ``ports`` and ``sums``); ``port`` and ``src_key`` per row (uint64)."""
        self.ports.add_distinct(ports, sums)
        self._fold(port, src_key)

    def merge(self, other: PortReflections) -> None:
        """Add a later span's counts and sources."""
        self.ports.merge(other.ports)
        self._fold(other.src_port, other.src_key)

    def _fold(self, port: np.ndarray, src_key: np.ndarray) -> None:
        """Union the pairs, forget ports the counter pruned, keep the min_sources smallest keys per port
        (only whether a port reaches min_sources is ever read)."""
        port = np.concatenate([self.src_port, port])
        key = np.concatenate([self.src_key, src_key])
        held = np.isin(port, self.ports.keys)  # at most MAX_PORTS distinct
        port, key = port[held], key[held]
        order = np.lexsort((key, port))
        port, key = port[order], key[order]
        new = np.ones(len(port), dtype=bool)
        new[1:] = (port[1:] != port[:-1]) | (key[1:] != key[:-1])
        port, key = port[new], key[new]
        first = np.ones(len(port), dtype=bool)
        first[1:] = port[1:] != port[:-1]
        index = np.arange(len(port))
        rank = index - np.maximum.accumulate(np.where(first, index, 0))
        keep = rank < self.min_sources
        self.src_port, self.src_key = port[keep], key[keep]

    def reflected(self) -> dict[int, float]:
        """Port -> packets, for the ports that qualify as reflection sources."""
        ports, counts = np.unique(self.src_port, return_counts=True)
        enough = set(ports[counts >= self.min_sources].tolist())
        return {
            int(p): float(s)
            for p, s in zip(self.ports.keys.tolist(), self.ports.sums[:, 0].tolist(), strict=True)
            if int(p) in enough
        }

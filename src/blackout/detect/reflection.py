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

from .sketch import SparseCounter, smallest_distinct

MAX_PORTS = 64  # candidate source ports kept per attack (a random-port flood prunes to its heaviest)
DYNAMIC_PORTS = 49152


class PortReflections:
    """Per attack: UDP-flood packets by source port, and enough distinct sources per port to decide."""

    def __init__(self, min_sources: int, min_bytes: float) -> None:
        self.min_sources = min_sources
        self.min_bytes = min_bytes
        self.ports = SparseCounter(cap=MAX_PORTS, sketch=False)
        self.sources: dict[int, np.ndarray] = {}  # port -> its smallest distinct source keys (≤ min_sources)

    def add(self, port: np.ndarray, size: np.ndarray, src_key: np.ndarray, packets: np.ndarray) -> None:
        """Fold in a tick's UDP-flood rows (source port, bytes per packet, source key, corrected packets)."""
        keep = (port > 0) & (port < DYNAMIC_PORTS) & (size >= self.min_bytes)
        if not keep.any():
            return
        port, src_key = port[keep].astype(np.uint64), src_key[keep]
        self.ports.add(port, packets[keep])
        held = np.isin(port, self.ports.keys)  # at most MAX_PORTS distinct: the loop below is short
        if not held.any():  # every port of this tick was pruned from the counter at once
            return
        port, src_key = port[held], src_key[held]
        order = np.argsort(port, kind="stable")
        port, src_key = port[order], src_key[order]
        starts = np.flatnonzero(np.r_[True, port[1:] != port[:-1]])
        groups = np.split(src_key, starts[1:])
        self._fold({int(port[i]): g for i, g in zip(starts.tolist(), groups, strict=True)})

    def merge(self, other: PortReflections) -> None:
        """Add a later span's counts and sources."""
        self.ports.merge(other.ports)
        self._fold(other.sources)

    def _fold(self, sources: dict[int, np.ndarray]) -> None:
        held = set(self.ports.keys.tolist())
        for p, keys in sources.items():
            if p in held:
                got = self.sources.get(p, np.zeros(0, np.uint64))
                if len(got) < self.min_sources:
                    self.sources[p] = smallest_distinct(got, keys, self.min_sources)
        for p in [p for p in self.sources if p not in held]:  # pruned from the counter: forget it
            del self.sources[p]

    def reflected(self) -> dict[int, float]:
        """Port -> packets, for the ports that qualify as reflection sources."""
        return {
            int(p): float(s)
            for p, s in zip(self.ports.keys.tolist(), self.ports.sums[:, 0].tolist(), strict=True)
            if len(self.sources.get(int(p), ())) >= self.min_sources
        }

"""A bin's flows as distinct addresses with their summed bytes and packets.

The outage detector's traffic signals need, per side of a flow, only each address's total bytes and
packets and the set of distinct addresses; keeping every raw flow of a bin until it closed grew memory
by ~100 B per flow at collector rates and stalled the engine at the close (README, Reliability).
Sums are of integer-valued floats (counts times sampling rate), so they are exact in any order.
"""

from __future__ import annotations

import numpy as np

# A bin's flows on one side as distinct addresses: (high 64 bits, low 64 bits, bytes, packets), the
# counts scaled by their sampling rate.
AddressSums = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def sum_by_address(hi: np.ndarray, lo: np.ndarray, nbytes: np.ndarray, packets: np.ndarray) -> AddressSums:
    """Distinct addresses (two uint64 halves, sorted) and the bytes and packets summed per address."""
    if len(hi) == 0:
        return hi, lo, nbytes, packets
    order = np.lexsort((lo, hi))
    hi, lo = hi[order], lo[order]
    new = np.ones(len(hi), dtype=bool)
    new[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    starts = np.flatnonzero(new)
    return hi[starts], lo[starts], np.add.reduceat(nbytes[order], starts), np.add.reduceat(packets[order], starts)


def merge_sums(parts: list[AddressSums]) -> AddressSums:
    """Parts of one side's address sums as one."""
    if len(parts) == 1:
        return parts[0]
    return sum_by_address(*(np.concatenate([p[i] for p in parts]) for i in range(4)))

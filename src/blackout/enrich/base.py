"""What detectors may ask about an address: its routed prefix, origin AS and country.

Implemented by the routing state (prefix → origin AS from BGP, at the time the
flows were seen) and by the RIR country tables.  Everything is asked for a
whole column at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pyarrow as pa


@dataclasses.dataclass
class Enrichment:
    """Per-address answers, aligned with the addresses asked about."""

    prefix: Sequence[str | None]  # routed prefix text "175.45.176.0/24", None when unrouted
    origin_asn: np.ndarray  # uint32, 0 when unrouted or unknown
    country: np.ndarray  # object array of ISO 3166 alpha-2 codes, "" when unknown
    routed: np.ndarray  # bool: covered by a route visible at the time


class Enricher(Protocol):
    """Answers "where is this address" for a whole column, as of an event time."""

    def lookup(self, addrs: pa.Array, at_us: int) -> Enrichment:
        """Prefix, origin AS, country and routed flag of each address at time at_us."""
        ...


class NoEnrichment:
    """The enricher used when no routing or country data was given: everything unknown."""

    def lookup(self, addrs: pa.Array, at_us: int) -> Enrichment:
        """Unknown for every address."""
        n = len(addrs)
        return Enrichment(
            prefix=[None] * n,
            origin_asn=np.zeros(n, dtype=np.uint32),
            country=np.full(n, "", dtype=object),
            routed=np.zeros(n, dtype=bool),
        )

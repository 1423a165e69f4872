"""How much of an attack's traffic comes from spoofed source addresses: three clues, combined.

1. **Unroutable sources**: the share of distinct sources that are bogons
   (RFC 6890 special-purpose space, always known) or, when the enricher has
   routing state, not covered by any route at the time.  A spoofed source in
   such space is certain; this term stands on its own.
2. **Single-packet sources**: random spoofing draws a new address per packet,
   so nearly every source sends one packet (StopDDoS SYN flood: 37,405 of
   37,623).  Only meaningful without sampling (sampling makes every source
   look single-packet), so it is dropped for sampled flows.
3. **TTL spread**: real sources sit at many hop distances behind several
   initial TTLs, while spoofed packets from a few machines carry a few TTL
   values (the same SYN flood: two values carry every packet).  ``k90`` is
   the number of TTL values that carry 90 % of the packets; the clue is
   ``clip((8 − k90) / 6, 0, 1)``: 1 for one or two values, 0 from eight on.

Clues 2 and 3 need at least ``MIN_SOURCES`` sources, and are multiplied
(both must agree), then weighted by the share of packets that are not
reflected: a reflection's packets come from the real reflectors, whose
addresses are not spoofed (the attacker spoofed the *victim's* address in the
requests).  The estimate is ``max(clue 1, (1 − reflected) × clue 2 × clue 3)``;
an unavailable clue 2 or 3 is left out of the product, and with neither only
clue 1 remains.
"""

from __future__ import annotations

import numpy as np

from .rates import PrefixMatcher

MIN_SOURCES = 100

BOGONS = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/3",  # multicast and class E
    "::/8",
    "100::/64",
    "2001:db8::/32",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
]
# IPv4 and IPv6 apart: "::/8" would otherwise cover every IPv4-mapped address
_V4_BOGONS = PrefixMatcher([(net, 0) for net in BOGONS if ":" not in net])
_V6_BOGONS = PrefixMatcher([(net, 0) for net in BOGONS if ":" in net])


def bogon(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """True for source addresses in special-purpose space (never legitimately routed)."""
    v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    return np.where(v4, _V4_BOGONS.match(hi, lo) >= 0, _V6_BOGONS.match(hi, lo) >= 0)


def ttl_clue(ttl_packets: np.ndarray) -> float | None:
    """1 when one or two TTL values carry 90 % of the packets, falling to 0 at eight values; None if unknown."""
    known = ttl_packets[1:]  # TTL 0 = unknown
    total = float(known.sum())
    if total <= 0:
        return None
    ordered = np.sort(known)[::-1]
    k90 = int(np.searchsorted(np.cumsum(ordered), 0.9 * total) + 1)
    return float(np.clip((8 - k90) / 6, 0.0, 1.0))


def estimate(
    n_sources: int,
    unroutable_sources: int,
    single_packet_sources: int | None,
    ttl_packets: np.ndarray,
    reflected_share: float,
) -> float:
    """The combined share of spoofed sources, 0..1 (see the module docstring)."""
    if n_sources <= 0:
        return 0.0
    routed_clue = unroutable_sources / n_sources
    if n_sources < MIN_SOURCES:
        return routed_clue
    clues = [single_packet_sources / n_sources] if single_packet_sources is not None else []
    ttl = ttl_clue(ttl_packets)
    if ttl is not None:
        clues.append(ttl)
    if not clues:
        return routed_clue
    behaviour = float(np.prod(clues)) * (1.0 - reflected_share)
    return float(max(routed_clue, behaviour))

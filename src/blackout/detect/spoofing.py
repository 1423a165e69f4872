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

import ipaddress

import numpy as np

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


def _intervals(family: int) -> tuple[np.ndarray, np.ndarray]:
    """[first, last] of each bogon network of one family, as sorted integers of the word that decides:
    the IPv4 address itself, or the IPv6 high word (every IPv6 bogon is /64 or shorter)."""
    nets = sorted(
        (n for n in map(ipaddress.ip_network, BOGONS) if n.version == family), key=lambda n: n.network_address
    )
    shift = 0 if family == 4 else 64
    first = np.array([int(n.network_address) >> shift for n in nets], dtype=np.uint64)
    last = np.array([int(n.broadcast_address) >> shift for n in nets], dtype=np.uint64)
    if (family == 6 and any(n.prefixlen > 64 for n in nets)) or np.any(first[1:] <= last[:-1]):
        raise ValueError("BOGONS: IPv6 networks must be /64 or shorter and no two networks may overlap")
    return first, last


# IPv4 and IPv6 apart: "::/8" would otherwise cover every IPv4-mapped address
_V4_FIRST, _V4_LAST = _intervals(4)
_V6_FIRST, _V6_LAST = _intervals(6)


def _inside(word: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    i = np.searchsorted(first, word, side="right") - 1  # the last interval starting at or before word
    return (i >= 0) & (word <= last[np.maximum(i, 0)])


def bogon(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """True for source addresses in special-purpose space (never legitimately routed): one searchsorted."""
    v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    return np.where(v4, _inside(lo & np.uint64(0xFFFFFFFF), _V4_FIRST, _V4_LAST), _inside(hi, _V6_FIRST, _V6_LAST))


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

"""The bogon test of the spoofing estimate against Python's ipaddress, on every network's edges and at random."""

from __future__ import annotations

import ipaddress

import numpy as np

from blackout import addr
from blackout.detect.spoofing import BOGONS, bogon


def test_bogon_matches_ipaddress() -> None:
    nets = [ipaddress.ip_network(n) for n in BOGONS]
    rng = np.random.default_rng(9)
    samples: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for n in nets:  # just outside, first, last, just after
        first, last = int(n.network_address), int(n.broadcast_address)
        for edge in (first - 1, first, last, last + 1):
            samples.append(type(n.network_address)(edge % 2**n.max_prefixlen))
    samples += [ipaddress.IPv4Address(int(x)) for x in rng.integers(0, 2**32, 3000)]
    samples += [ipaddress.IPv6Address(int(x) << 64) for x in rng.integers(0, 2**63, 1000)]
    samples += [ipaddress.IPv6Address((0xFE80 << 112) + 5), ipaddress.IPv6Address(1), ipaddress.IPv6Address(0)]
    want = [any(a in n for n in nets if n.version == a.version) for a in samples]
    hi, lo = addr.words(addr.from_strings([str(a) for a in samples]))
    assert bogon(hi, lo).tolist() == want
    assert 0 < sum(want) < len(want)

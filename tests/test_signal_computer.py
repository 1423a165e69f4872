"""SignalComputer's per-bin signals against plain-Python oracles over a small routing table.

Traffic: a bin's flows arrive in several ticks and are folded into per-address sums as they come; the
per-AS and per-prefix bytes, packets and distinct addresses must equal a dictionary pass over all the
raw flows at once.  BGP per watched prefix: visible /24s inside it and the most full-feed peers seeing
one route inside or covering it, against sets of /24 numbers built with ``ipaddress``.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict

import numpy as np
import pyarrow as pa

from bgpdump_oracle import addr16, routes_table
from blackout.detect.signals import SignalComputer, Watch
from blackout.enrich.enricher import RoutingEnricher
from blackout.enrich.routing import RoutingConfig, RoutingState
from blackout.model import FLOW_SCHEMA, PROBE_SCHEMA

# (prefix, origin AS, peers that carry it): three peers with more than two prefixes are full feeds
ROUTES = [
    ("10.1.0.0/16", 65001, "abc"),
    ("10.1.2.0/24", 65002, "ab"),
    ("10.1.3.0/25", 65002, "a"),
    ("10.2.0.0/22", 65003, "bc"),
    ("10.3.0.0/24", 65003, "c"),
    ("10.4.0.0/20", 65004, "a"),
    ("10.0.0.0/8", 65005, "abc"),
]
PEERS = {"a": "192.0.2.1", "b": "192.0.2.2", "c": "192.0.2.3"}
WATCHED = ["10.1.0.0/16", "10.1.2.0/23", "10.1.3.128/26", "10.2.1.0/24", "10.4.0.0/21", "10.5.0.0/16", "11.0.0.0/8"]


def state() -> RoutingState:
    lines = [
        f"TABLE_DUMP2|1000|B|{PEERS[p]}|{64500 + i}|{pfx}|{64500 + i} {asn}|IGP|{PEERS[p]}|0|0||NAG||"
        for pfx, asn, peers in ROUTES
        for i, p in enumerate(peers)
    ]
    rs = RoutingState(RoutingConfig(full_feed_v4=2))
    rs.apply(routes_table(lines))
    return rs


def flows(rng: np.random.Generator, n: int) -> pa.Table:
    pool = [f"10.{a}.{b}.{c}" for a in range(1, 6) for b in range(0, 5) for c in (1, 7, 130, 200)] + ["2001:db8::1"]
    cols: dict[str, pa.Array] = {f.name: pa.nulls(n, f.type) for f in FLOW_SCHEMA if f.nullable}
    for side in ("src_addr", "dst_addr"):
        cols[side] = pa.array([addr16(pool[i]) for i in rng.integers(0, len(pool), n)], FLOW_SCHEMA.field(side).type)
    cols["ts"] = pa.array(np.full(n, 1_000_000, np.int64)).cast(FLOW_SCHEMA.field("ts").type)
    cols["bytes"] = pa.array(rng.integers(40, 10**7, n).astype(np.uint64))
    cols["packets"] = pa.array(rng.integers(1, 10**4, n).astype(np.uint64))
    cols["sampling_rate"] = pa.array(rng.choice([1, 64, 1000], n).astype(np.uint32))
    for f in FLOW_SCHEMA:
        if f.name not in cols:
            cols[f.name] = pa.array(np.zeros(n, np.int64)).cast(f.type)
    return pa.table(cols, schema=FLOW_SCHEMA)


def origin_of(address: str) -> int:
    """Longest-prefix match over ROUTES (0: unrouted)."""
    ip = ipaddress.ip_address(address)
    best = max(
        (ipaddress.ip_network(p) for p, _, _ in ROUTES if ip in ipaddress.ip_network(p)),
        key=lambda n: n.prefixlen,
        default=None,
    )
    return next(a for p, a, _ in ROUTES if ipaddress.ip_network(p) == best) if best else 0


def test_traffic_folded_per_tick_equals_one_pass_over_the_raw_flows() -> None:
    rs = state()
    sc = SignalComputer(Watch.parse([f"prefix:{p}" for p in WATCHED]), True, rs, RoutingEnricher(rs))
    rng = np.random.default_rng(11)
    ticks = [flows(rng, n) for n in (500, 1, 2000, 300)]
    for t in ticks:
        sc.add(t, PROBE_SCHEMA.empty_table())
    got = {
        (s.signal, s.entity_type): dict(zip(s.registry.keys.tolist(), s.values.tolist(), strict=True))
        for s in sc.close(2_000_000)
        if s.signal.startswith("traffic")
    }
    raw = pa.concat_tables(ticks).to_pylist()
    expect: dict[tuple[str, str], dict[object, float]] = defaultdict(lambda: defaultdict(float))
    seen: dict[tuple[str, str], dict[object, set[str]]] = defaultdict(lambda: defaultdict(set))
    for row in raw:
        rate = max(row["sampling_rate"], 1)
        for side, col in (("in", "dst_addr"), ("out", "src_addr")):
            ip = ipaddress.IPv6Address(row[col])
            text = str(ip.ipv4_mapped or ip)
            owners: list[tuple[str, object]] = [("asn", origin_of(text))] if origin_of(text) else []
            v4 = ip.ipv4_mapped
            owners += [("prefix", w) for w in WATCHED if v4 is not None and v4 in ipaddress.ip_network(w)]
            for etype, key in owners:
                expect[(f"traffic_{side}_bytes", etype)][key] += row["bytes"] * rate
                expect[(f"traffic_{side}_packets", etype)][key] += row["packets"] * rate
                seen[(f"traffic_{side}_addrs", etype)][key].add(text)
    for k, per in seen.items():
        expect[k] = {key: float(len(s)) for key, s in per.items()}
    for (signal, etype), values in expect.items():
        nonzero = {k: v for k, v in got[(signal, etype)].items() if v}
        assert nonzero == dict(values), (signal, etype)
    assert len(expect[("traffic_in_bytes", "asn")]) >= 4


def test_bgp_per_watched_prefix_against_slash24_sets() -> None:
    rs = state()
    sc = SignalComputer(Watch.parse([f"prefix:{p}" for p in WATCHED]), False, rs, None)
    got = {
        (s.signal, s.entity_type): dict(zip(s.registry.keys.tolist(), s.values.tolist(), strict=True))
        for s in sc.close(2_000_000)
    }
    full = {p for p in PEERS if sum(p in peers for _, _, peers in ROUTES) > 2}
    visible24: set[int] = set()
    for pfx, _, peers in ROUTES:
        net = ipaddress.ip_network(pfx)
        if 2 * len(set(peers) & full) > len(full) and 8 <= net.prefixlen <= 24:
            first = int(net.network_address) >> 8
            visible24.update(range(first, first + (1 << (24 - net.prefixlen))))
    for w in WATCHED:
        net = ipaddress.ip_network(w)
        lo = int(net.network_address) >> 8
        inside = range(lo, max(lo + 1, (int(net.broadcast_address) + 1) >> 8))
        assert got[("bgp", "prefix")][w] == len(visible24 & set(inside)), w
        over = [set(peers) & full for p, _, peers in ROUTES if net.overlaps(ipaddress.ip_network(p))]
        assert got[("bgp_peers", "prefix")][w] == max((len(s) for s in over), default=0), w

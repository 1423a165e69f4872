"""The attributor's route history of a watched country over the real jinx RIB, against a brute-force replay.

Watching one country used to make the RIB load quadratic (a sorted-array union per learnt prefix: AU
turned a 3.2 s replay into 35.6 s); the history must come out the same as a plain dictionary pass.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from blackout import addr
from blackout.detect.outage import OutageConfig, OutageDetector
from blackout.detect.routing_tracker import RoutingTracker
from blackout.engine import Engine, EngineConfig, Source
from blackout.enrich.country import Delegations
from blackout.enrich.enricher import RoutingEnricher
from blackout.enrich.routing import RoutingState
from blackout.explain.attributor import Attributor
from blackout.model import ElemType, Kind
from conftest import DATA
from test_outage import flows_table, kp_rows, rib, stamped, us

APNIC = DATA / "rir" / "delegated-apnic-20141102.txt"


def test_watching_a_country_over_the_jinx_rib_keeps_every_route_once() -> None:
    table = rib()
    state = RoutingState()
    enricher = RoutingEnricher(state, Delegations.load([APNIC]))
    outage = OutageDetector(OutageConfig(watch=["country:AU"], method="fast"), state, enricher)
    attributor = Attributor(outage, None, enricher)
    source = Source("routes", Kind.ROUTE, table.to_batches(max_chunksize=1 << 16))
    Engine([RoutingTracker(state), attributor], lambda _: None, EngineConfig(tick_s=60)).run([source])
    hist = attributor.history["country:AU"]

    # brute force: every v4 RIB row the enricher puts in AU, in order, into a dictionary
    rows = table.filter(pa.array(addr.is_v4(table.column("prefix"))))
    origin = rows.column("origin_asn").fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    cc = enricher.countries(rows.column("prefix"), origin.astype(np.uint32), None).astype(str)
    au = rows.filter(pa.array(cc == "AU"))
    paths: dict[str, str] = {}
    origins: dict[str, int] = {}
    for rec in au.to_pylist():
        if rec["elem_type"] != ElemType.RIB or not rec["as_path"]:
            continue
        pfx = f"{addr.format_one(rec['prefix'])}/{rec['prefix_len']}"
        paths[pfx] = rec["as_path"]
        if rec["origin_asn"]:
            origins[pfx] = rec["origin_asn"]
    assert len(paths) > 5000  # AU held thousands of prefixes in 2014
    assert hist.paths == paths
    assert hist.origins == origins
    # the upstream: the AS before the origin on most paths (prepending skipped), ties to the lowest
    votes = Counter()
    for path in paths.values():
        hops = [int(h) for h in path.split() if h.isdigit()]
        if [h for h in hops if h != hops[-1]]:
            votes[[h for h in hops if h != hops[-1]][-1]] += 1
    assert hist.upstream() == min(votes, key=lambda a: (-votes[a], a)) and votes[hist.upstream()] > 100

    # known_mask on a slice of rows: exactly the rows whose (net, length) is a learnt prefix
    part = rows.slice(0, 100_000)
    nets = [int(ipaddress.IPv4Address(addr.format_one(p))) for p in part.column("prefix").to_pylist()]
    lens = part.column("prefix_len").to_pylist()
    mask = hist.known_mask(np.array(nets, dtype=np.uint64), np.array(lens, dtype=np.int64))
    expect = [f"{ipaddress.IPv4Address(n)}/{ln}" in paths for n, ln in zip(nets, lens, strict=True)]
    assert mask.tolist() == expect
    assert 0 < sum(expect) < len(expect)


def test_the_attributor_keeps_the_series_of_the_watched_entities_only() -> None:
    """With every AS and country judged, the attributor's traffic-in and BGP series are those of the drained
    signal rows of its watched entities, read in plain Python, and nothing of the thousands of others."""
    t0, down = us("2014-12-22T12:59:00Z"), us("2014-12-22T13:15:00Z")
    routes = pa.concat_tables([stamped(rib(), t0), stamped(kp_rows(), down, ElemType.WITHDRAW)])
    flows = flows_table("2014-12-22T13:00:00Z", 0.5, ("2014-12-22T13:15:00Z", "2014-12-22T13:30:00Z"))
    flows = flows.set_column(flows.schema.get_field_index("dst_addr"), "dst_addr", flows["src_addr"])  # toward them
    watch = ["country:KP", "asn:131279", "prefix:175.45.176.0/22", "asn:15169"]
    state = RoutingState()
    enricher = RoutingEnricher(state, Delegations.load([APNIC]))
    outage = OutageDetector(OutageConfig(watch=watch, all_entities=True, method="fast"), state, enricher)
    attributor = Attributor(outage, None, enricher)
    sunk: list[dict[str, Any]] = []
    sources = [
        Source("routes", Kind.ROUTE, routes.to_batches(max_chunksize=1 << 16)),
        Source("flows", Kind.FLOW, flows.to_batches(max_chunksize=4096)),
    ]
    Engine([RoutingTracker(state), attributor], sunk.append, EngineConfig(tick_s=60)).run(sources)

    table = pa.concat_tables([b["signals"] for b in sunk if "signals" in b])
    assert len(pc.unique(table["entity"])) > 1000  # every AS of the table was judged
    pairs = [w.split(":", 1) for w in watch]
    mine = [pc.and_(pc.equal(table["entity_type"], etype), pc.equal(table["entity"], name)) for etype, name in pairs]
    expect: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for row in table.filter(functools.reduce(pc.or_, mine)).to_pylist():
        label = f"{row['entity_type']}:{row['entity']}"
        if label in watch and row["signal"] in ("traffic_in_bytes", "bgp"):
            ts = row["ts"].replace(tzinfo=dt.UTC) if row["ts"].tzinfo is None else row["ts"]
            expect[label][row["signal"]].append((int(ts.timestamp()) * 1_000_000, row["value"]))
    assert {label: dict(attributor.history[label].series) for label in watch} == {
        label: dict(expect[label]) for label in watch
    }
    assert all(expect[label]["traffic_in_bytes"] and expect[label]["bgp"] for label in ("asn:131279", "asn:15169"))


def withdrawals(rows: pa.Table, at_us: int) -> pa.Table:
    """The rows as real withdrawals at at_us: no path, no origin."""
    out = stamped(rows, at_us, ElemType.WITHDRAW)
    for name in ("as_path", "origin_asn"):
        field = out.schema.field(name)
        out = out.set_column(out.schema.get_field_index(name), field, pa.nulls(out.num_rows, field.type))
    return out


def test_a_ticks_route_changes_count_as_a_pass_in_row_order_would() -> None:
    """KP's real RIB rows (four /24s) at two peers in two ticks.  First: withdrawn before any
    announcement (unknown: not counted), announced, then withdrawn at one peer (counted: known by then).
    Then: announced, withdrawn, withdrawn again, all counted.  Paths: each prefix's last row's, as a
    dictionary pass over the rows in order keeps them."""
    one = kp_rows()  # the jinx RIB has them from one peer: a second peer (a documentation address) too
    other = addr.from_strings(["192.0.2.9"] * one.num_rows)
    at = one.schema.get_field_index("peer_addr")
    kp = pa.concat_tables([one, one.set_column(at, one.schema.field(at), other)])
    tick = us("2014-12-22T10:00:00Z")  # 60 s ticks: the first two route changes 10 s into this one and the next
    t1, t2 = tick + 10_000_000, tick + 70_000_000
    ticks = [withdrawals(kp, t1), stamped(kp, t1 + 1, ElemType.ANNOUNCE), withdrawals(one, t1 + 2)]
    ticks += [stamped(kp, t2, ElemType.ANNOUNCE), withdrawals(kp, t2 + 1), withdrawals(kp, t2 + 2)]
    state = RoutingState()
    watch = ["prefix:175.45.176.0/22", "asn:131279"]
    attributor = Attributor(OutageDetector(OutageConfig(watch=watch, method="fast"), state), None)
    source = Source("routes", Kind.ROUTE, pa.concat_tables(ticks).to_batches(max_chunksize=7))
    Engine([RoutingTracker(state), attributor], lambda _: None, EngineConfig(tick_s=60)).run([source])

    rows = kp.to_pylist()
    prefixes = {f"{addr.format_one(r['prefix'])}/{r['prefix_len']}" for r in rows}
    paths = {f"{addr.format_one(r['prefix'])}/{r['prefix_len']}": r["as_path"] for r in rows}
    peers = len({r["peer_addr"] for r in rows})
    assert len(prefixes) == 4 and len(rows) == 8 and peers == 2
    for label in ("prefix:175.45.176.0/22", "asn:131279"):
        hist = attributor.history[label]
        first, second = hist.changes
        assert (first.time_us, first.withdrawals, first.announcements, first.withdrawn) == (tick, 4, 8, prefixes)
        assert first.peers == 1
        assert (second.withdrawals, second.announcements, second.withdrawn) == (2 * len(rows), len(rows), prefixes)
        assert second.peers == peers and second.upstream == 4837
        assert hist.paths == paths and set(hist.origins.values()) == {131279}

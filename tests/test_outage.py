"""Outage detection per country, AS and prefix, on the real jinx RIB replayed as North Korea's December 2014.

Facts the tests match (tests/data/truth/kp_dec2014_events.csv, PROVENANCE.md): AS131279 originates four /24s
(175.45.176.0/24-175.45.179.0/24, APNIC: KP); Dyn saw them all withdrawn on 22 Dec 2014 at 16:15 UTC and back at
01:46 UTC on 23 Dec (9 h 31 min).  The withdrawals are built from the RIB's own rows for those prefixes (real
peers, real paths).  IODA numbers are computed by hand from IODA's published formulas.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import functools
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from atlas_results import ping
from bgpdump_oracle import bgpdump_lines
from blackout import addr, events
from blackout.config import Config
from blackout.detect import ioda
from blackout.detect.base import Tick
from blackout.detect.outage import OutageConfig, OutageDetector, outage_detectors
from blackout.detect.routing_tracker import RoutingTracker
from blackout.engine import Engine, EngineConfig, Source
from blackout.enrich.country import Delegations
from blackout.enrich.enricher import RoutingEnricher
from blackout.enrich.routing import RoutingConfig, RoutingState
from blackout.errors import ConfigError
from blackout.events import event_id
from blackout.model import FLOW_SCHEMA, PROBE_SCHEMA, ROUTE_SCHEMA, TIME, ElemType, Kind
from blackout.sources import FILE_DECODERS, DecodeContext, read_input
from blackout.store.duckdb_store import DuckDBStore
from conftest import DATA

RIB = DATA / "mrt" / "routeviews.route-views.jinx.ribs.1401487200.bz2"
APNIC = DATA / "rir" / "delegated-apnic-20141102.txt"
KP_LO, KP_HI = int.from_bytes(bytes([175, 45, 176, 0]), "big"), int.from_bytes(bytes([175, 45, 180, 0]), "big")
WATCH = ["country:KP", "asn:131279", "prefix:175.45.176.0/22", "asn:15169", "country:US"]
MIN = 60_000_000


def us(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


def dyn_outage() -> tuple[int, int]:
    """Start and end of the 22 Dec total outage as published (truth CSV, Dyn Research / Reuters)."""
    with open(DATA / "truth" / "kp_dec2014_events.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["event"] == "total_outage_1")
    return us(row["start_utc"] + ":00Z"), us(row["end_utc"] + ":00Z")


@functools.cache
def rib() -> pa.Table:
    """The real RIB, as blackout's MRT reader decodes it."""
    ctx = DecodeContext(batch_size=1 << 20)
    return pa.Table.from_batches(list(FILE_DECODERS["mrt"].read(str(RIB), read_input(str(RIB)), ctx)))


def stamped(table: pa.Table, at_us: int, kind: ElemType | None = None) -> pa.Table:
    """The rows moved to another time (and made announcements or withdrawals)."""
    cols = {f.name: table.column(f.name) for f in ROUTE_SCHEMA}
    cols["ts"] = pa.array(np.full(table.num_rows, at_us, np.int64)).cast(TIME)
    if kind is not None:
        cols["elem_type"] = pa.array(np.full(table.num_rows, int(kind), np.uint8))
    return pa.table(cols, schema=ROUTE_SCHEMA)


def kp_rows() -> pa.Table:
    """The RIB's own rows for AS131279's four /24s (every peer that had them)."""
    t = rib()
    ip = addr.v4_to_u32(t.column("prefix").combine_chunks()).astype(np.int64)
    sel = (ip >= KP_LO) & (ip < KP_HI) & addr.is_v4(t.column("prefix")) & (t.column("prefix_len").to_numpy() == 24)
    return t.filter(pa.array(sel))


def flaps(start: int, plan: list[tuple[str, str]]) -> list[pa.Table]:
    """The RIB at `start`, then KP withdrawals (W) and re-announcements (A) at the given times."""
    out = [stamped(rib(), start)]
    for when, what in plan:
        out.append(stamped(kp_rows(), us(when), ElemType.WITHDRAW if what == "W" else ElemType.ANNOUNCE))
    return out


@dataclasses.dataclass
class Replay:
    """The detectors of one engine run and everything they handed to the sink."""

    det: dict[str, OutageDetector]
    sunk: list[dict[str, Any]]


def run(routes: list[pa.Table], detectors: dict[str, OutageConfig], **extra: Any) -> Replay:
    """One engine run: routing tracker first, then one outage detector per config."""
    state = RoutingState(extra.get("routing"))
    enricher = RoutingEnricher(state, Delegations.load([APNIC]))
    dets = {name: OutageDetector(cfg, state, enricher) for name, cfg in detectors.items()}
    sources = [Source("routes", Kind.ROUTE, pa.concat_tables(routes).to_batches(max_chunksize=1 << 16))]
    for name, kind, table in extra.get("sources", []):
        sources.append(Source(name, kind, table.to_batches(max_chunksize=4096)))
    sunk: list[dict[str, Any]] = []
    Engine([RoutingTracker(state), *dets.values()], sunk.append, EngineConfig(tick_s=60)).run(sources)
    return Replay(dets, sunk)


def event(det: OutageDetector, entity: str) -> list[dict[str, Any]]:
    etype, _, name = entity.partition(":")
    return [r for r in det.records() if (r["entity_type"], r["entity"]) == (etype, name)]


def signal(sunk: list[dict[str, Any]], entity: str, name: str) -> pa.Table:
    etype, _, ent = entity.partition(":")
    t = pa.concat_tables([b["signals"] for b in sunk if "signals" in b])
    mask = pc.and_(pc.and_(pc.equal(t["entity_type"], etype), pc.equal(t["entity"], ent)), pc.equal(t["signal"], name))
    return t.filter(mask).sort_by("ts")


# ------------------------------------------------------------------------------------------ 22 Dec 2014


@pytest.fixture(scope="module")
def dec22() -> Replay:
    down, up = dyn_outage()
    routes = [stamped(rib(), us("2014-12-22T14:00:00Z"))]
    routes.append(stamped(kp_rows(), down, ElemType.WITHDRAW))
    routes.append(stamped(kp_rows(), up, ElemType.ANNOUNCE))
    fast_all = OutageConfig(method="fast", all_entities=True, emit_signals=False)
    return run(
        routes,
        {"ioda": OutageConfig(watch=WATCH), "fast": OutageConfig(watch=WATCH, method="fast"), "all": fast_all},
    )


def test_bgp_signal_is_four_slash24s_then_zero_then_four(dec22: Replay) -> None:
    down, up = dyn_outage()
    kp24 = {ln.split("|")[5] for ln in bgpdump_lines(RIB) if ln.split("|")[6].endswith(" 131279")}
    assert len(kp24) == 4  # the oracle (bgpdump) and the published fact agree
    for entity in ("asn:131279", "country:KP", "prefix:175.45.176.0/22"):
        t = signal(dec22.sunk, entity, "bgp")
        ts, v = t["ts"].cast(pa.int64()).to_numpy(), t["value"].to_numpy()
        assert set(v[ts < down]) == {4.0}
        assert set(v[(ts >= down) & (ts < up)]) == {0.0}
        assert set(v[ts >= up]) == {4.0}
    assert set(signal(dec22.sunk, "prefix:175.45.176.0/22", "bgp_peers")["value"].to_pylist()) == {0.0, 1.0}


@pytest.mark.parametrize("method", ["ioda", "fast"])
def test_dec22_outage_found_at_dyns_times(dec22: Replay, method: str) -> None:
    down, up = dyn_outage()
    det = dec22.det[method]
    for entity in ("asn:131279", "country:KP", "prefix:175.45.176.0/22"):
        (rec,) = event(det, entity)
        assert (rec["start"], rec["end"]) == (down, up)
        assert rec["id"] == event_id("outage", entity, down)
        assert rec["severity"] == 1.0
        # IODA alert area: 100 % lost for 571 one-minute bins (9 h 31 min)
        assert rec["score"] == pytest.approx(100.0 * (up - down) / MIN)
        assert rec["verdict"] == {"causes": []}
    assert event(det, "asn:131279")[0]["signals"] == ["bgp"]
    assert event(det, "prefix:175.45.176.0/22")[0]["signals"] == ["bgp", "bgp_peers"]
    assert not event(det, "asn:15169") and not event(det, "country:US")
    alert = det.alerts[event_id("outage", "asn:131279", down)]["bgp"]
    assert alert.transitions[0] == {"time": down, "level": "critical", "value": 0.0, "history": 4.0}
    assert alert.transitions[-1]["time"] == up and alert.transitions[-1]["level"] == "normal"
    assert (alert.worst_drop, alert.worst_value, alert.worst_history) == (100.0, 0.0, 4.0)


def test_dec22_every_as_of_the_table_only_kp_goes_dark(dec22: Replay) -> None:
    down, up = dyn_outage()
    det = dec22.det["all"]
    assert len(det.signals.registries[("bgp", "asn")]) > 40_000  # every AS of the full table was judged
    found = {(r["entity_type"], r["entity"]): (r["start"], r["end"]) for r in det.records()}
    assert found == {("asn", "131279"): (down, up), ("country", "KP"): (down, up)}


def test_outage_still_going_at_the_end_stays_open_and_is_stored() -> None:
    """Built from the configuration as a replay would, with the store as the sink."""
    down, _ = dyn_outage()
    config = Config.load(
        overrides=['outage.watch=["asn:131279", "country:KP"]', "outage.method=fast", f'enrich.rir_files=["{APNIC}"]']
    )
    detectors = outage_detectors(config)
    store = DuckDBStore(":memory:")
    routes = pa.concat_tables([stamped(rib(), us("2014-12-22T15:00:00Z")), stamped(kp_rows(), down, ElemType.WITHDRAW)])
    Engine(detectors, store.upsert, EngineConfig(tick_s=60)).run([Source("r", Kind.ROUTE, routes.to_batches())])
    stored = store.events("outages")
    found = sorted((o["entity_type"], o["entity"], o["end"]) for o in stored)
    assert found == [("asn", "131279", None), ("country", "KP", None)]
    assert {o["start"] for o in stored} == {events.iso(down)}
    bgp = store.signals("asn", "131279", "bgp")
    assert bgp.num_rows == (down - us("2014-12-22T15:00:00Z")) // MIN + 1  # one value per bin, none twice
    assert bgp["value"].to_pylist()[-1] == 0.0


@pytest.mark.parametrize(
    "override",
    ["outage.method=slow", 'outage.watch=["city:Pyongyang"]', 'outage.detect=["bgp", "tv"]', "outage.bin_s=0"],
)
def test_bad_configuration_is_refused(override: str) -> None:
    with pytest.raises(ConfigError):
        outage_detectors(Config.load(overrides=[override]))


# ------------------------------------------------------------------------------ warm-up and flapping


@pytest.fixture(scope="module")
def flapping() -> Replay:
    plan = [
        ("2014-12-21T14:30:00Z", "W"),
        ("2014-12-21T16:00:00Z", "A"),
        ("2014-12-21T17:00:00Z", "W"),
        ("2014-12-21T17:05:00Z", "A"),
        ("2014-12-21T17:20:00Z", "W"),
        ("2014-12-21T17:30:00Z", "A"),
    ]
    cfgs = {"ioda": OutageConfig(watch=WATCH[:2]), "fast": OutageConfig(watch=WATCH[:2], method="fast")}
    return run(flaps(us("2014-12-21T14:00:00Z"), plan), cfgs)


def spans(det: OutageDetector, entity: str) -> list[tuple[str, str | None]]:
    def iso(t: int | None) -> str | None:
        return None if t is None else dt.datetime.fromtimestamp(t / 1e6, dt.UTC).strftime("%H:%M")

    return [(iso(r["start"]), iso(r["end"])) for r in event(det, entity)]


def test_fast_flags_each_flap_in_its_own_bin(flapping: Replay) -> None:
    assert spans(flapping.det["fast"], "asn:131279") == [("14:30", "16:00"), ("17:00", "17:05"), ("17:20", "17:30")]


def test_ioda_waits_for_its_warm_up_then_alerts_per_its_rules(flapping: Replay) -> None:
    """Hand-computed: the series starts at 14:00, so no alert before 15:00 (3,600 s warm-up) although the
    prefixes are gone from 14:30.  At 15:00 the 24 h window holds 30 x 4 and 30 x 0 (no inpainting before
    warm-up): median 2, ratio 0 → critical; inpainting then pushes 2.  At 16:00 the value 4 is 2 x the median:
    normal.  At 17:00 the window holds 30 x 0, 60 x 2, 90 x 4 (median 3): value 0 → critical, back at 17:05;
    and again 17:20-17:30."""
    det = flapping.det["ioda"]
    assert spans(det, "asn:131279") == [("15:00", "16:00"), ("17:00", "17:05"), ("17:20", "17:30")]
    first = event(det, "asn:131279")[0]
    alert = det.alerts[first["id"]]["bgp"]
    assert alert.transitions[0]["history"] == 2.0
    assert first["score"] == pytest.approx(100.0 * 60)  # drop |2-0|/2 = 100 % for 60 one-minute bins
    later = det.alerts[event(det, "asn:131279")[1]["id"]]["bgp"]
    assert later.transitions[0]["history"] == 3.0


# ------------------------------------------------------------------------------------------- probing


def atlas_table(start: str, hours: float, dark: tuple[str, str]) -> pa.Table:
    """Atlas pings every 240 s (the measurement step) from 5 probes: to KP hosts that stop answering while
    `dark`, and to 8.8.8.8, which always answers; decoded by blackout's atlas reader."""
    t0, off, on = us(start) // 1_000_000, us(dark[0]) // 1_000_000, us(dark[1]) // 1_000_000
    objs = []
    for k in range(int(hours * 3600 / 240)):
        ts = t0 + 240 * k
        for prb, dst in enumerate(["175.45.176.8", "175.45.176.9", "175.45.176.10", "175.45.176.67", "8.8.8.8"]):
            lost = dst.startswith("175.") and off <= ts < on
            objs.append(ping(6000 + prb, dst, ts + prb, [None] * 3 if lost else [180.5, 181.0, 179.9]))
    ctx = DecodeContext()
    data = "\n".join(json.dumps(o) for o in objs).encode()
    table = pa.Table.from_batches(list(FILE_DECODERS["atlas"].read("atlas.json", data, ctx)))
    assert ctx.errors.total == 0 and table.num_rows == len(objs)
    return table


@pytest.mark.parametrize("method", ["ioda", "fast"])
def test_probing_outage_when_a_block_stops_answering(method: str) -> None:
    probes = atlas_table("2014-12-22T14:00:00Z", 6, ("2014-12-22T16:15:00Z", "2014-12-22T18:00:00Z"))
    google = rib().filter(pc.equal(rib()["origin_asn"], 15169))
    routes = [stamped(kp_rows(), us("2014-12-22T13:59:00Z")), stamped(google, us("2014-12-22T13:59:00Z"))]
    cfg = OutageConfig(watch=WATCH, method=method, detect=["probing_up", "probing_share"])
    replay = run(routes, {method: cfg}, sources=[("atlas", Kind.PROBE, probes)])
    det = replay.det[method]
    for entity in ("asn:131279", "country:KP", "prefix:175.45.176.0/22"):
        (rec,) = event(det, entity)
        assert us("2014-12-22T16:15:00Z") <= rec["start"] <= us("2014-12-22T16:20:00Z")
        assert us("2014-12-22T18:00:00Z") <= rec["end"] <= us("2014-12-22T18:05:00Z")
        assert rec["severity"] == 1.0
        assert "probing_share" in rec["signals"]
    assert not event(det, "asn:15169") and not event(det, "country:US")
    up = signal(replay.sunk, "asn:131279", "probing_up")
    assert set(up["value"].to_pylist()) == {0.0, 1.0}  # one /24 block, up then down then up


def test_bgp_and_probing_alerts_that_overlap_are_one_event() -> None:
    """Routes withdrawn 16:15-18:00 and the block's hosts silent over the same time: one event per entity.
    IODA's overall score is the product of the datasources' scores: BGP 100 % x 105 min = 10,500; probing
    (its worst signal, probing_up: one value per bin) 100 % x 104 min (from the first failed ping at 16:16)."""
    probes = atlas_table("2014-12-22T14:00:00Z", 6, ("2014-12-22T16:15:00Z", "2014-12-22T18:00:00Z"))
    small = RoutingConfig(full_feed_v4=3)  # the one peer below carries few prefixes: call it a full feed
    google = rib().filter(pc.equal(rib()["origin_asn"], 15169))
    start = us("2014-12-22T13:59:00Z")
    routes = [stamped(kp_rows(), start), stamped(google, start)]
    routes += [stamped(kp_rows(), us("2014-12-22T16:15:00Z"), ElemType.WITHDRAW)]
    routes += [stamped(kp_rows(), us("2014-12-22T18:00:00Z"), ElemType.ANNOUNCE)]
    replay = run(routes, {"ioda": OutageConfig(watch=WATCH)}, routing=small, sources=[("a", Kind.PROBE, probes)])
    det = replay.det["ioda"]
    (rec,) = event(det, "asn:131279")
    assert (rec["start"], rec["end"]) == (us("2014-12-22T16:15:00Z"), us("2014-12-22T18:00:00Z"))
    assert rec["signals"] == ["bgp", "probing_share", "probing_up"]
    alerts = det.alerts[rec["id"]]
    assert alerts["bgp"].area == 100.0 * 105
    assert alerts["probing_up"].area == 100.0 * 104
    assert rec["score"] == pytest.approx(100.0 * 105 * 100.0 * 104)
    assert not event(det, "asn:15169")


# ------------------------------------------------------------------------------------------- traffic


def flows_table(start: str, hours: float, dark: tuple[str, str], seed: int = 3, kp_hosts: int = 20) -> pa.Table:
    """One flow per minute from each of `kp_hosts` KP hosts and 20 Google hosts (packets vary ±10 %), sampled
    1:100; the KP hosts send nothing while `dark`."""
    rnd = np.random.default_rng(seed)
    t0, off, on = us(start), us(dark[0]), us(dark[1])
    minutes = int(hours * 60)
    kp = np.array([KP_LO + 8 + i for i in range(kp_hosts)], np.uint32)
    gg = np.array([int.from_bytes(bytes([8, 8, 8, i + 1]), "big") for i in range(20)], np.uint32)
    per_min = kp_hosts + 20
    ts = np.repeat(t0 + np.arange(minutes, dtype=np.int64) * MIN, per_min) + np.tile(np.arange(per_min) * 1000, minutes)
    src = np.tile(np.concatenate([kp, gg]), minutes)
    keep = ~(np.isin(src, kp) & (ts >= off) & (ts < on))
    n = int(keep.sum())
    pkts = rnd.integers(90, 111, len(ts))[keep].astype(np.uint64)
    cols = {
        "ts": pa.array(ts[keep]).cast(TIME),
        "exporter": pa.array(["192.0.2.1"] * n),
        "src_addr": addr.from_v4_u32(src[keep]),
        "dst_addr": addr.from_v4_u32(np.full(n, int.from_bytes(bytes([198, 51, 100, 7]), "big"), np.uint32)),
        "bytes": pa.array(pkts * 500),
        "packets": pa.array(pkts),
        "sampling_rate": pa.array(np.full(n, 100, np.uint32)),
    }
    zeros = {f.name: pa.array(np.zeros(n, f.type.to_pandas_dtype())) for f in FLOW_SCHEMA if f.name not in cols}
    return pa.table({**cols, **zeros}, schema=FLOW_SCHEMA)


@pytest.mark.parametrize("method", ["ioda", "fast"])
def test_traffic_outage_when_a_country_stops_sending(method: str) -> None:
    flows = flows_table("2014-12-22T13:00:00Z", 6, ("2014-12-22T16:15:00Z", "2014-12-22T17:00:00Z"))
    google = rib().filter(pc.equal(rib()["origin_asn"], 15169))
    routes = [stamped(kp_rows(), us("2014-12-22T12:59:00Z")), stamped(google, us("2014-12-22T12:59:00Z"))]
    cfg = OutageConfig(watch=WATCH, method=method)
    replay = run(routes, {method: cfg}, sources=[("flows", Kind.FLOW, flows)])
    det = replay.det[method]
    for entity in ("asn:131279", "country:KP", "prefix:175.45.176.0/22"):
        (rec,) = event(det, entity)
        assert (rec["start"], rec["end"]) == (us("2014-12-22T16:15:00Z"), us("2014-12-22T17:00:00Z"))
        assert rec["signals"] == ["traffic_out_addrs", "traffic_out_packets"]
        assert rec["severity"] == 1.0
    assert not event(det, "asn:15169") and not event(det, "country:US")
    pk = signal(replay.sunk, "asn:15169", "traffic_out_packets")["value"].to_numpy()
    assert pk.min() >= 20 * 90 * 100 and pk.max() <= 20 * 110 * 100  # sampling-corrected
    assert set(signal(replay.sunk, "asn:131279", "traffic_out_addrs")["value"].to_pylist()) == {0.0, 20.0}


@pytest.mark.parametrize("method", ["ioda", "fast"])
def test_a_chance_empty_minute_of_traffic_is_no_outage(method: str) -> None:
    """Thin sampled traffic has empty minutes by chance; only a drop lasting traffic_min_s (300 s) is one."""
    flows = flows_table("2014-12-22T13:00:00Z", 6, ("2014-12-22T16:15:00Z", "2014-12-22T16:17:00Z"))
    routes = [stamped(kp_rows(), us("2014-12-22T12:59:00Z"))]
    replay = run(routes, {method: OutageConfig(watch=WATCH, method=method)}, sources=[("flows", Kind.FLOW, flows)])
    for entity in ("asn:131279", "country:KP", "prefix:175.45.176.0/22"):
        assert not event(replay.det[method], entity)


@pytest.mark.parametrize("method", ["ioda", "fast"])
def test_thin_traffic_stopping_alone_is_no_outage(method: str) -> None:
    """Two sending hosts promise 2 x 5 = 10 address-bins per 300 s, under traffic_min_expected (20): their
    silence for 45 min is no outage by itself (thin sampled traffic falls silent by chance); four are enough."""
    dark = ("2014-12-22T16:15:00Z", "2014-12-22T17:00:00Z")
    flows = flows_table("2014-12-22T13:00:00Z", 6, dark, kp_hosts=2)
    routes = [stamped(kp_rows(), us("2014-12-22T12:59:00Z"))]
    alone = run(routes, {method: OutageConfig(watch=WATCH, method=method)}, sources=[("flows", Kind.FLOW, flows)])
    for entity in ("asn:131279", "country:KP", "prefix:175.45.176.0/22"):
        assert not event(alone.det[method], entity)
    thick = flows_table("2014-12-22T13:00:00Z", 6, dark, kp_hosts=4)  # 4 x 5 = 20: enough to open
    opened = run(routes, {method: OutageConfig(watch=WATCH, method=method)}, sources=[("flows", Kind.FLOW, thick)])
    (rec,) = event(opened.det[method], "asn:131279")
    assert (rec["start"], rec["end"]) == (us(dark[0]), us(dark[1]))
    assert rec["signals"] == ["traffic_out_addrs", "traffic_out_packets"]


# ------------------------------------------------------------------------------------- IODA arithmetic


def judged(rule: ioda.Rule, values: list[float], history: float = 1.0, inclusive: bool = False) -> ioda.Step:
    """One row per value, each judged by the tracker's own step after one bin of `history` (no warm-up)."""
    tr = ioda.Tracker(rule, 60, warmup_s=0, inclusive=inclusive)
    tr.grow(len(values))
    tr.step(0, np.full(len(values), history))
    return tr.step(1, np.array(values))


def test_thresholds_are_iodas() -> None:
    bgp, probing, traffic = ioda.RULES["bgp"], ioda.RULES["probing"], ioda.RULES["traffic"]
    assert (bgp.window_s, probing.window_s, traffic.window_s) == (86_400, 604_800, 604_800)
    # value / history below warning: warning; below critical: critical; a missing value keeps "normal"
    assert judged(bgp, [1.0, 0.99, 0.989, 0.5, 0.49]).level.tolist() == [0, 0, 1, 1, 2]
    assert judged(probing, [0.8, 0.79, 0.5, 0.49]).level.tolist() == [0, 1, 1, 2]
    assert judged(traffic, [0.25, 0.2, 0.1, 0.09, np.nan]).level.tolist() == [0, 1, 1, 2, 0]
    # the fast method's inclusive threshold: at half the level is an alert
    assert judged(ioda.Rule(3600, 0.5, 0.5), [0.5, 0.51], inclusive=True).level.tolist() == [2, 0]


def test_drop_is_iodas_formula() -> None:
    # drop = |history - value| / max(history, value) x 100, where the value fell below the history
    assert judged(ioda.RULES["bgp"], [0.0, 150.0, 200.0, 250.0], history=200.0).drop.tolist() == [100, 25, 0, 0]
    assert judged(ioda.RULES["bgp"], [0.0], history=0.0).drop.tolist() == [0]


def test_tracker_warm_up_inpainting_and_new_normal() -> None:
    """BGP rule at 300 s bins: 12 bins (1 h) of 4, then 0.  Warm-up ends at bin 12: critical there with
    history 4.  With inpainting capped at 2 bins, the real zeros enter from bin 14: bin 26 still sees the
    median of 14 fours and 12 zeros (4) ... until the zeros are the majority: at bin 27 the window holds
    14 x 4 and 13 x 0 (median 4, critical); at bin 28, 14 and 14 (median 2, critical); at bin 29, 14 and 15:
    median 0, ratio undefined: normal, the new normal."""
    tr = ioda.Tracker(ioda.RULES["bgp"], 300, warmup_s=3600, inpaint_max_s=600)
    tr.grow(1)
    levels, hist = [], []
    for i, v in enumerate([4.0] * 12 + [0.0] * 20):
        step = tr.step(i, np.array([v]))
        levels.append(int(step.level[0]))
        hist.append(float(step.history[0]))
    assert levels[:12] == [0] * 12
    assert levels[12:29] == [2] * 17 and levels[29] == 0
    assert hist[12] == 4.0 and hist[27] == 4.0 and hist[28] == 2.0 and hist[29] == 0.0


def test_tracker_no_alert_during_warm_up_and_missing_values_keep_the_level() -> None:
    tr = ioda.Tracker(ioda.RULES["probing"], 600)
    tr.grow(2)
    s = tr.step(0, np.array([10.0, 10.0]))
    for i in range(1, 6):  # 50 minutes: still warming up
        s = tr.step(i, np.array([0.0, 10.0]))
        assert s.level.tolist() == [0, 0]
    s = tr.step(6, np.array([0.0, 10.0]))  # 1 h after the first value: median of 10, 0 x5 → 0: no drop
    assert s.level.tolist() == [0, 0]
    s = tr.step(7, np.array([np.nan, 3.0]))
    assert s.level.tolist() == [0, 2]
    s = tr.step(8, np.array([np.nan, np.nan]))
    assert s.level.tolist() == [0, 2]


def test_a_month_without_input_is_a_gap_not_forty_thousand_bins() -> None:
    """Archives months apart: bins are judged up to max_quiet_s after the last input, then skipped."""
    closed: list[int] = []

    class Counting(OutageDetector):
        def _close(self, start_us: int, with_traffic: bool = True) -> None:
            closed.append(start_us)
            super()._close(start_us, with_traffic)

    det = Counting(OutageConfig(max_quiet_s=3600.0))
    t0 = 1_419_000_000_000_000
    for start in (t0, t0 + 30 * 86400 * 1_000_000):
        empty = FLOW_SCHEMA.empty_table()
        det.on_tick(Tick(start, start + 1_000_000, empty, ROUTE_SCHEMA.empty_table(), PROBE_SCHEMA.empty_table()))
    assert 60 <= len(closed) <= 62  # one hour of bins after the first input, none for the rest of the month
    assert det.bin_start == t0 + 30 * 86400 * 1_000_000

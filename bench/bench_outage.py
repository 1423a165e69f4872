"""Benchmark: IODA's moving-median rule for every AS of a full table, vectorised vs one series at a time.

The real jinx RIB (tests/data) gives the BGP signal of its ~47k origin ASes
(visible /24s).  Both sides judge the same values bin after bin with IODA's BGP
rule (24 h window of 60 s bins, < 99 % / < 50 %, warm-up, inpainting):

* blackout: :class:`blackout.detect.ioda.Tracker`, one step per bin for all ASes;
* the rival: the rule written per series as one would without vectorising
  (a deque window per AS and ``statistics.median`` each bin, as IODA's
  per-series description reads).  No packaged implementation of IODA's
  detector exists to run instead.

Two loads: "churn", 1 % of the ASes change value each bin (BGP as it is), and
"all change", every value moves each bin (traffic-like).  The rival is timed on
three bins and 2,000 ASes (46k Python windows of 1,440 floats would not fit
in memory) and scaled to the whole table.  Both start from full windows.
Then the whole outage detector (signals + rule + events) with
``all_entities`` is timed per bin.

The issue's two figures (issue 6, "Performance"):

* per-tick signals for every country and every AS of a full table, as a share
  of the tick (goal < 10 %): the jinx RIB, then the real jinx updates of
  23:45-24:00 bin by bin; each such bin changes what is reachable, so the BGP
  signals of all ~47k ASes and of the countries are computed again (no cache
  helps).  Countries: APNIC's real delegations of 2014-02-14, and a stand-in
  for all five RIRs (200,000 ranges over 250 codes: only APNIC's file is in
  tests/data);
* how long after visibility is lost the outage is flagged, in event time: the
  RIB's rows of North Korea's four /24s withdrawn at several offsets inside a
  bin, the detector advanced second by second until AS131279 has an open
  outage.  blackout's ``fast`` method on 60 s bins against IODA's rule on
  IODA's 300 s BGP bins (the ``ioda`` method with ``bin_s=300``), same run.
  The engine's lateness (``engine.lateness_s``) comes on top of both when live.

Run: python bench/bench_outage.py [bins]
"""

from __future__ import annotations

import collections
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from blackout import addr
from blackout.detect import ioda
from blackout.detect.base import Tick
from blackout.detect.outage import OutageConfig, OutageDetector
from blackout.detect.routing_tracker import RoutingTracker
from blackout.detect.signals import SignalComputer, Watch
from blackout.engine import Engine, EngineConfig, Source
from blackout.enrich.country import Delegations
from blackout.enrich.enricher import RoutingEnricher
from blackout.enrich.routing import RoutingState
from blackout.enrich.visibility import V4Ranges
from blackout.model import FLOW_SCHEMA, PROBE_SCHEMA, ROUTE_SCHEMA, TIME, ElemType, Kind
from blackout.sources import FILE_DECODERS, DecodeContext, read_input

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
RIB = DATA / "mrt" / "routeviews.route-views.jinx.ribs.1401487200.bz2"
UPDATES = DATA / "mrt" / "routeviews.route-views.jinx.updates.1401493500.bz2"
APNIC = DATA / "rir" / "delegated-apnic-20140214.txt"
KP_LO, KP_HI = 175 << 24 | 45 << 16 | 176 << 8, 175 << 24 | 45 << 16 | 180 << 8  # 175.45.176.0/22, AS131279
US = 1_000_000
BIN_S = 60.0
SAMPLE = 2000  # ASes the rival runs on


def load_rib(path: Path = RIB) -> pa.Table:
    ctx = DecodeContext(batch_size=1 << 20)
    return pa.Table.from_batches(list(FILE_DECODERS["mrt"].read(str(path), read_input(str(path)), ctx)))


def series(base: np.ndarray, bins: int, share: float, seed: int = 5) -> np.ndarray:
    """(bins, n) values: the table's values, a share of them moved ±20 % each bin."""
    rnd = np.random.default_rng(seed)
    out = np.repeat(base[None, :], bins, axis=0)
    moved = rnd.random(out.shape) < share
    out[moved] = np.round(out[moved] * rnd.uniform(0.8, 1.2, int(moved.sum())))
    return out


def ours(values: np.ndarray, base: np.ndarray) -> float:
    """Seconds per bin, from a full 24 h window (steady state)."""
    tr = ioda.Tracker(ioda.RULES["bgp"], BIN_S)
    tr.grow(values.shape[1])
    tr.ring[:] = base[:, None].astype(np.float32)
    tr.sorted[:] = tr.ring
    tr.count[:] = tr.width
    tr.median[:] = base
    tr.first[:] = -tr.width
    start = time.perf_counter()
    for i, row in enumerate(values):
        tr.step(i, row)
    return (time.perf_counter() - start) / len(values)


class _Series:
    """IODA's rule for one series, the plain way."""

    def __init__(self, width: int) -> None:
        self.window: collections.deque[float] = collections.deque(maxlen=width)
        self.seen = 0
        self.run = 0

    def step(self, value: float, rule: ioda.Rule, warm_bins: int, max_paint: int) -> int:
        history = statistics.median(self.window) if self.window else None
        self.seen += 1
        level = ioda.NORMAL
        push = value
        if history is not None and self.seen > warm_bins:
            ratio = value / history if history > 0 else float("nan")
            if ratio < rule.critical:
                level = ioda.CRITICAL
            elif ratio < rule.warning:
                level = ioda.WARNING
            if ratio < ioda.INPAINT_LOW or ratio > ioda.INPAINT_HIGH:
                self.run += 1
                push = history if self.run <= max_paint else value
            else:
                self.run = 0
        self.window.append(push)
        return level


def rival(values: np.ndarray, base: np.ndarray) -> float:
    """Seconds per bin for the given series, from full windows."""
    rule = ioda.RULES["bgp"]
    width = round(rule.window_s / BIN_S)
    per = [_Series(width) for _ in range(values.shape[1])]
    for s, b in zip(per, base.tolist(), strict=True):
        s.window.extend([b] * width)
        s.seen = width
    warm, paint = round(ioda.WARMUP_S / BIN_S), round(ioda.INPAINT_MAX_S / BIN_S)
    start = time.perf_counter()
    for row in values.tolist():
        for s, v in zip(per, row, strict=True):
            s.step(v, rule, warm, paint)
    return (time.perf_counter() - start) / len(values)


def detector_per_bin(rib: pa.Table, bins: int) -> tuple[float, int]:
    """Seconds per bin of the whole outage detector with all_entities over the RIB, and ASes judged."""
    t0 = 1_419_264_000_000_000
    cols = {f.name: rib.column(f.name) for f in ROUTE_SCHEMA}
    cols["ts"] = pa.array(np.full(rib.num_rows, t0, np.int64)).cast(TIME)
    table = pa.table(cols, schema=ROUTE_SCHEMA)
    last = table.slice(0, 1)
    cols["ts"] = pa.array([t0 + bins * 60_000_000], pa.int64()).cast(TIME)
    end = pa.table({k: (v if k == "ts" else last.column(k)) for k, v in cols.items()}, schema=ROUTE_SCHEMA)
    state = RoutingState()
    det = OutageDetector(OutageConfig(all_entities=True, emit_signals=False), state, None)
    tracker = RoutingTracker(state)
    engine = Engine([tracker, det], None, EngineConfig(tick_s=60))
    start = time.perf_counter()
    engine.run([Source("rib", Kind.ROUTE, [b for t in (table, end) for b in t.to_batches()])])
    total = time.perf_counter() - start
    state2 = RoutingState()
    start = time.perf_counter()
    state2.apply(table)
    state2.visible_slash24_by_asn()
    fixed = time.perf_counter() - start  # applying the RIB and the first view: the enricher's, not ours
    return max(total - 2 * fixed, 0.0) / bins, len(det.signals.registries[("bgp", "asn")])


def traffic_per_bin(rib: pa.Table, n: int = 1_000_000) -> float:
    """Seconds for the traffic signals of one bin of n flows between random IPv4 addresses, every AS and
    country (steady state: the second bin, the enricher's caches warm)."""
    state = RoutingState()
    state.apply(rib)
    enricher = RoutingEnricher(state, Delegations.load([DATA / "rir" / "delegated-apnic-20141102.txt"]))
    rnd = np.random.default_rng(1)
    cols = {
        "ts": pa.array(np.full(n, 1_419_264_000_000_000, np.int64)).cast(TIME),
        "src_addr": addr.from_v4_u32(rnd.integers(1 << 24, 223 << 24, n).astype(np.uint32)),
        "dst_addr": addr.from_v4_u32(rnd.integers(1 << 24, 223 << 24, n).astype(np.uint32)),
        "bytes": pa.array(rnd.integers(40, 1500, n).astype(np.uint64)),
        "packets": pa.array(np.ones(n, np.uint64)),
        "sampling_rate": pa.array(np.full(n, 1000, np.uint32)),
    }
    for f in FLOW_SCHEMA:
        if f.name not in cols:
            cols[f.name] = pa.array(np.zeros(n, np.uint8)).cast(f.type) if f.name != "exporter" else pa.array([""] * n)
    flows = pa.table(cols, schema=FLOW_SCHEMA)
    signals = SignalComputer(Watch.parse([]), True, state, enricher, enricher.delegations)
    for _ in range(2):
        signals.add(flows, PROBE_SCHEMA.empty_table())
        start = time.perf_counter()
        signals.close(1_419_264_060_000_000)
    return time.perf_counter() - start


class WorldRanges:
    """A stand-in for the five RIRs' country tables: the unicast IPv4 space cut in n ranges over 250 codes."""

    def __init__(self, n: int = 200_000, codes: int = 250) -> None:
        self.codes = [chr(65 + i // 26) + chr(65 + i % 26) for i in range(codes)]
        edges = np.linspace(1 << 24, 224 << 24, n + 1).astype(np.uint64)
        self.ranges = (edges[:-1], edges[1:], np.arange(n) % codes)

    def v4_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.ranges


def tick(start_us: int, end_us: int, routes: pa.Table) -> Tick:
    return Tick(start_us, end_us, FLOW_SCHEMA.empty_table(), routes, PROBE_SCHEMA.empty_table())


def signals_per_tick(
    rib: pa.Table, updates: pa.Table, countries: V4Ranges
) -> tuple[list[float], list[float], int, int]:
    """Seconds to close each 60 s bin of the real updates (all ASes and countries judged, fast method),
    seconds to apply each bin's updates to the routing state, and the ASes and countries judged."""
    bin_us = round(BIN_S * US)
    state = RoutingState()
    det = OutageDetector(OutageConfig(all_entities=True, emit_signals=False, method="fast"), state, None, countries)
    tracker = RoutingTracker(state)
    first = tick(int(rib["ts"].cast(pa.int64())[0].as_py()) // bin_us * bin_us, 0, rib)
    for det_or_tracker in (tracker, det):
        det_or_tracker.on_tick(first)
    ts = updates["ts"].cast(pa.int64()).to_numpy()
    bins = ts // bin_us * bin_us
    times, applies = [], []
    for start in np.unique(bins).tolist():
        routes = updates.filter(pa.array(bins == start))
        det.advance(start)  # the quiet bins before: BGP signals cached, only the rule runs
        t = tick(start, start + bin_us, routes)
        began = time.perf_counter()
        tracker.on_tick(t)
        applies.append(time.perf_counter() - began)
        det.on_tick(t)
        began = time.perf_counter()
        det.advance(start + bin_us)
        times.append(time.perf_counter() - began)
    regs = det.signals.registries
    return times, applies, len(regs[("bgp", "asn")]), len(regs.get(("bgp", "country"), []))


def flag_delay(rib: pa.Table, countries: Delegations, method: str, bin_s: float, offset_s: float) -> float:
    """Event-time seconds from the withdrawal of KP's four /24s (at offset_s into a bin, 2 h after the RIB)
    to the moment AS131279's outage is open, the detector advanced second by second."""
    bin_us = round(bin_s * US)
    t0 = int(rib["ts"].cast(pa.int64())[0].as_py()) // bin_us * bin_us
    lost = t0 + 7200 * US + round(offset_s * US)
    start = addr.v4_to_u32(rib["prefix"]).astype(np.int64)
    kp = rib.filter(pa.array((start >= KP_LO) & (start < KP_HI)))
    cols = {f.name: kp[f.name] for f in ROUTE_SCHEMA}
    cols["ts"] = pa.array(np.full(kp.num_rows, lost, np.int64)).cast(TIME)
    cols["elem_type"] = pa.array(np.full(kp.num_rows, int(ElemType.WITHDRAW), np.uint8))
    withdrawals = pa.table(cols, schema=ROUTE_SCHEMA)
    state = RoutingState()
    cfg = OutageConfig(watch=["asn:131279"], method=method, bin_s=bin_s, emit_signals=False)
    det, tracker = OutageDetector(cfg, state, None, countries), RoutingTracker(state)
    for d in (tracker, det):
        d.on_tick(tick(t0, t0 + US, rib))
    at = lost // US * US
    det.advance(at)
    assert not det.open, "an outage before the withdrawal"
    for d in (tracker, det):
        d.on_tick(tick(at, at + US, withdrawals))
    now = at
    while not det.open:
        now += US
        det.advance(now)
        if now - lost > 3600 * US:
            raise RuntimeError(f"{method}: no outage an hour after the withdrawal")
    return (now - lost) / US


def main() -> None:
    bins = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    rib = load_rib()
    state = RoutingState()
    state.apply(rib)
    base = state.visible_slash24_by_asn()["slash24"].to_numpy().astype(np.float64)
    n = len(base)
    out: dict[str, object] = {"bench": "outage", "ases": n, "bins": bins}
    for name, share in (("churn", 0.01), ("all_change", 1.0)):
        values = series(base, bins, share)
        t_ours = ours(values, base)
        # the rival on a sample of ASes (46k Python windows of 1,440 floats do not fit), scaled to all
        t_rival = rival(values[:3, :SAMPLE], base[:SAMPLE]) * n / SAMPLE
        print(f"{name}: {n} ASes, blackout {t_ours * 1e3:.2f} ms/bin, per-series Python {t_rival * 1e3:.0f} ms/bin")
        print(f"  ratio: blackout is {t_rival / t_ours:.0f}x faster")
        out.update({f"{name}_ours_ms": t_ours * 1e3, f"{name}_rival_ms": t_rival * 1e3})
        out[f"{name}_ratio"] = t_rival / t_ours
    per_bin, judged = detector_per_bin(rib, bins)
    print(f"whole outage detector, all {judged} ASes, bins without routing changes: {per_bin * 1e3:.1f} ms per bin")
    out["detector_ms_per_bin"] = per_bin * 1e3
    t_traffic = traffic_per_bin(rib)
    print(f"traffic signals of 1,000,000 flows in one bin, every AS and country: {t_traffic:.2f} s")
    out["traffic_1m_flows_s"] = t_traffic
    updates = load_rib(UPDATES)
    apnic = Delegations.load([APNIC])
    world: V4Ranges = WorldRanges()
    for name, countries in (("apnic", apnic), ("world", world)):
        times, applies, ases, ccs = signals_per_tick(rib, updates, countries)
        mean, worst = float(np.mean(times)), float(np.max(times))
        print(
            f"per-tick signals, every AS ({ases}) and country ({ccs}, {name} table) of the full table, "
            f"{len(times)} bins of real updates: mean {mean * 1e3:.0f} ms = {mean / BIN_S * 100:.2f} % of the "
            f"{BIN_S:.0f} s tick, worst {worst * 1e3:.0f} ms = {worst / BIN_S * 100:.2f} % (goal < 10 %); "
            f"applying the bin's updates to the routing state: mean {np.mean(applies) * 1e3:.0f} ms more"
        )
        out[f"signals_tick_{name}_mean_pct"] = mean / BIN_S * 100
        out[f"signals_tick_{name}_worst_pct"] = worst / BIN_S * 100
    offsets = tuple(float(o) for o in range(1, 300, 37))  # spread over IODA's 300 s bin
    fast = [flag_delay(rib, apnic, "fast", BIN_S, o) for o in offsets]
    iodas = [flag_delay(rib, apnic, "ioda", 300.0, o) for o in offsets]
    print(
        "outage flagged after visibility is lost (event time, KP's /24s withdrawn at "
        f"{', '.join(f'{o:.0f}' for o in offsets)} s after a 300 s boundary): "
        f"blackout fast/60 s bins {', '.join(f'{d:.0f}' for d in fast)} s (worst {max(fast):.0f} s, goal <= 60 s); "
        f"IODA rule/300 s bins {', '.join(f'{d:.0f}' for d in iodas)} s (worst {max(iodas):.0f} s)"
    )
    print(
        f"  ratio: blackout flags {np.mean(iodas) / np.mean(fast):.1f}x sooner on average "
        f"({np.mean(fast):.0f} s vs {np.mean(iodas):.0f} s), {max(iodas) / max(fast):.1f}x in the worst case"
    )
    out.update({"flag_fast_worst_s": max(fast), "flag_ioda300_worst_s": max(iodas)})
    out["flag_ratio"] = float(np.mean(iodas) / np.mean(fast))
    out["ratio"] = out["churn_ratio"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()

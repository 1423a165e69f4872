"""The event-time engine: ticks hold exactly their records, whatever the batching or file split."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pytest

from blackout import addr, events
from blackout.cli.replay import run_summary
from blackout.config import Config
from blackout.detect.base import Tick
from blackout.detect.ddos import DdosDetector
from blackout.detect.ddos_config import DdosConfig
from blackout.engine import Engine, EngineConfig, RunStats, Source
from blackout.model import FLOW_SCHEMA, Kind
from blackout.pipeline import Inputs
from blackout.sources import DecodeContext
from conftest import DATA

US = 1_000_000


class TickLedger:
    """A detector that records, for every tick, what it was handed (an independent oracle is numpy below)."""

    name: ClassVar[str] = "ledger"

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.pending: list[dict[str, Any]] = []
        self.last_advance = -1
        self.finished: tuple[int, bool] | None = None

    def advance(self, now_us: int) -> None:
        assert now_us >= self.last_advance, "time must not go backwards"
        self.last_advance = now_us

    def on_tick(self, tick: Tick) -> None:
        ts = tick.flows.column("ts").cast(pa.int64()).to_numpy()
        assert len(ts) and ts.max() < tick.end_us  # late records (counted) may be older than start
        assert np.all(np.diff(ts) >= 0), "records in a tick are time-sorted"
        row = {
            "id": events.event_id("attack", "tick", tick.start_us),
            "target": "tick",
            "start": tick.start_us,
            "total_packets": float(len(ts)),
            "total_bytes": float(pa.compute.sum(tick.flows.column("bytes")).as_py()),
            "unique_sources": len(set(tick.flows.column("src_addr").to_pylist())),
        }
        self.rows.append(row)
        self.pending.append(row)

    def finish(self, end_us: int, close_open: bool) -> None:
        self.finished = (end_us, close_open)

    def drain(self) -> dict[str, list[dict[str, Any]]]:
        out, self.pending = self.pending, []
        return {"attacks": out}


def synthetic_flows(n: int, seed: int, disorder_s: float) -> pa.Table:
    """Flows over ~10 minutes, arriving out of order by up to disorder_s (as exports do)."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(1_400_000_000 * US, 1_400_000_600 * US, n))
    arrival = ts + rng.integers(0, int(disorder_s * US) + 1, n)
    order = np.argsort(arrival, kind="stable")
    ts = ts[order]
    src = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32) % 5000
    cols = {
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "exporter": pa.array(["test"] * n),
        "src_addr": addr.from_v4_u32(src),
        "dst_addr": addr.from_v4_u32(np.full(n, 0x0A0A0A01, np.uint32)),
    }
    for field in FLOW_SCHEMA:
        if field.name not in cols:
            cols[field.name] = pa.array(rng.integers(1, 1500, n) if field.name == "bytes" else np.ones(n), field.type)
    return pa.table(cols, schema=FLOW_SCHEMA)


def run(parts: list[pa.Table], batch_size: int, lateness_s: float = 30.0) -> tuple[list[dict[str, Any]], Engine]:
    ledger = TickLedger()
    stored: dict[str, dict[str, Any]] = {}

    def sink(batch: dict[str, list[dict[str, Any]]]) -> None:
        for rec in batch["attacks"]:
            stored[rec["id"]] = rec

    engine = Engine([ledger], sink, EngineConfig(tick_s=1.0, lateness_s=lateness_s))
    sources = [Source(f"part{i}", Kind.FLOW, t.to_batches(max_chunksize=batch_size)) for i, t in enumerate(parts)]
    engine.run(sources)
    return sorted(stored.values(), key=lambda r: r["start"]), engine


@pytest.mark.parametrize("batch_size", [1, 1000, 65536])
def test_ticks_are_identical_whatever_the_batch_size_or_split(batch_size: int) -> None:
    flows = synthetic_flows(5000, seed=7, disorder_s=20)
    reference, _ = run([flows], 65536)
    # The oracle, straight from numpy: records per one-second tick.
    ts = flows.column("ts").cast(pa.int64()).to_numpy()
    ticks, counts = np.unique(ts // US, return_counts=True)
    assert [r["total_packets"] for r in reference] == counts.astype(float).tolist()
    assert [r["start"] for r in reference] == (ticks * US).tolist()
    # Same events with this batch size, and with the input split into 3 files.
    whole, engine = run([flows], batch_size)
    assert engine.stats.late == 0
    thirds = [flows.slice(0, 1700), flows.slice(1700, 1700), flows.slice(3400)]
    split, _ = run(thirds, batch_size)
    dump = [events.dumps(r) for r in reference]
    assert [events.dumps(r) for r in whole] == dump
    assert [events.dumps(r) for r in split] == dump


def test_records_later_than_the_lateness_are_counted_not_lost() -> None:
    flows = synthetic_flows(3000, seed=3, disorder_s=20)
    rows, engine = run([flows], 100, lateness_s=2.0)
    assert engine.stats.late > 0
    assert sum(r["total_packets"] for r in rows) == 3000  # every record reached a tick


# ------------------------------------------------------- per-source lateness
def test_each_source_waits_only_its_own_lateness() -> None:
    """An in-order capture (origin afpacket: lateness 0 by default) beside a disordered export (30 s): the
    ticks are still byte-identical to the numpy oracle at every batch size, and nothing is late."""
    flows = synthetic_flows(4000, seed=11, disorder_s=20)
    ts = flows.column("ts").cast(pa.int64()).to_numpy()
    in_order = flows.take(np.argsort(ts[:2000], kind="stable"))
    export = flows.slice(2000)
    reference, _ = run([flows], 65536)
    for batch_size in (1, 1000, 65536):
        ledger_rows, engine = run_sources(
            [Source("afpacket", Kind.FLOW, in_order.to_batches(batch_size)), export_source(export, batch_size)]
        )
        assert engine.stats.late == 0
        assert [events.dumps(r) for r in ledger_rows] == [events.dumps(r) for r in reference]


def test_lateness_by_origin_overrides_the_source_default() -> None:
    """A disordered stream named afpacket has lateness 0 (its records come late, counted); the config's
    lateness_by_origin gives it 30 s and then nothing is late; a file source keeps engine.lateness_s."""
    flows = synthetic_flows(2000, seed=5, disorder_s=20)
    _, engine = run_sources([Source("afpacket", Kind.FLOW, flows.to_batches(100))])
    assert engine.stats.late > 0
    config = EngineConfig(tick_s=1.0, lateness_s=30.0, lateness_by_origin={"afpacket": 25.0})
    rows, engine = run_sources([Source("afpacket", Kind.FLOW, flows.to_batches(100))], config)
    assert engine.stats.late == 0 and sum(r["total_packets"] for r in rows) == 2000
    assert Source("x.pcap", Kind.FLOW, [], origin="pcap").lateness_s is None  # engine.lateness_s applies
    assert Source("bmp:11019", Kind.ROUTE, []).origin == "bmp"


def export_source(table: pa.Table, batch_size: int) -> Source:
    return Source("export", Kind.FLOW, table.to_batches(batch_size), origin="netflow")


def run_sources(sources: list[Source], config: EngineConfig | None = None) -> tuple[list[dict[str, Any]], Engine]:
    ledger = TickLedger()
    engine = Engine([ledger], None, config or EngineConfig(tick_s=1.0, lateness_s=30.0))
    engine.run(sources)
    return ledger.rows, engine


# ------------------------------------------------------------- future guard
SYNFLOOD = DATA / "pcap/stopddos/pkt.TCP.synflood.spoofed.pcap"
LOW = ["ddos.threshold_pps=500", "ddos.ban_for_bandwidth=off", "ddos.baseline=false"]
FAR = 4_000_000_000  # 2096-10-02: 75 years past the capture (classic pcap's u32 seconds end in 2106)


def pcap_record_offsets(data: bytes) -> list[int]:
    """Offsets of the record headers of a little-endian classic pcap (16-byte headers, incl_len at +8)."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    assert pos == len(data)
    return offsets


def replay_attacks(path: Path, config: EngineConfig) -> tuple[list[str], RunStats, dict[str, Any]]:
    """The file through the replay command's sources and a DDoS detector: final attack records (dumped).

    Batches of 4,096 packets, so the ~38k-packet capture spans several (as any large file does)."""
    inputs = Inputs(DecodeContext(batch_size=4096))
    latest: dict[str, dict[str, Any]] = {}

    def sink(out: dict[str, list[dict[str, Any]]]) -> None:
        latest.update((rec["id"], rec) for rec in out.get("attacks", []))

    detector = DdosDetector(Config.load(overrides=LOW).section("ddos", DdosConfig), None)
    stats = Engine([detector], sink, config, errors=inputs.ctx.errors).run(inputs.open([str(path)]))
    dumped = [events.dumps(r) for r in sorted(latest.values(), key=lambda r: r["start"])]
    return dumped, stats, run_summary(stats, inputs, len(latest), 0, "-")  # what `blackout replay --json` prints


def test_a_record_dated_decades_ahead_is_dropped_and_counted(tmp_path: Path) -> None:
    """StopDDoS SYN flood with one packet in mid-attack re-dated to 2096: the attack record is byte for byte
    that of the capture without that packet, and the packet is counted (per file and as a skipped reason).
    Unguarded (max_future_s=0) the watermark jumps to 2096 and the rest of the flood lands late in one tick."""
    data = SYNFLOOD.read_bytes()
    offsets = pcap_record_offsets(data)
    at = offsets[len(offsets) // 2]
    dated = bytearray(data)
    struct.pack_into("<I", dated, at, FAR)
    cut = data[:at] + data[at + 16 + struct.unpack_from("<I", data, at + 8)[0] :]
    (tmp_path / "dated.pcap").write_bytes(dated)
    (tmp_path / "cut.pcap").write_bytes(cut)
    config = EngineConfig(tick_s=1.0, lateness_s=5.0)
    clean, clean_stats, _ = replay_attacks(tmp_path / "cut.pcap", config)
    guarded, stats, summary = replay_attacks(tmp_path / "dated.pcap", config)
    assert clean and '"10.10.10.10"' in clean[0]
    assert guarded == clean
    assert stats.future == {str(tmp_path / "dated.pcap"): 1} and stats.late == clean_stats.late == 0
    reason = "record dated more than 86400 s after the source's latest record, with the next record back (dropped)"
    assert summary["skipped_reasons"] == {reason: 1} and summary["future_records"] == stats.future
    assert summary["detector_counters"] == {"ddos": {"bad_rows": 0, "stale_ticks": 0, "untracked": 0, "evictions": 0}}
    unguarded, loose, _ = replay_attacks(
        tmp_path / "dated.pcap", EngineConfig(tick_s=1.0, lateness_s=5.0, max_future_s=0)
    )
    assert unguarded != clean and loose.late > len(offsets) // 3 and not loose.future


@pytest.mark.parametrize("batch_size", [1, 2, 3, 1000])
def test_a_source_that_really_jumps_keeps_everything(batch_size: int) -> None:
    """Two days without records, then the source goes on (a collector down, archives days apart): a jump,
    not an outlier — every record is kept, whatever the batching.  A lone outlier between them is dropped,
    including when it is the last row of a batch (it waits for the next), and a last record of all is kept."""
    day = 86400 * US
    base = 1_400_000_000 * US
    times = [base, base + US, base + 2 * day, base + 2 * day + US, base + 2 * day + 2 * US, base + 9 * day]
    outlier = base + 2 * day + 3 * US + 80 * 365 * day  # then back to the new time
    times[5:5] = [outlier, base + 2 * day + 4 * US]
    flows = synthetic_flows(len(times), seed=2, disorder_s=0)
    flows = flows.set_column(0, FLOW_SCHEMA.field("ts"), pa.array(times, pa.timestamp("us", tz="UTC")))
    rows, engine = run([flows], batch_size)
    assert engine.stats.future == {"part0": 1}
    kept = sorted(t // US for t in times if t != outlier)
    assert [r["start"] // US for r in rows] == kept  # one tick each: every record but the outlier


def test_a_live_record_ahead_of_the_wall_clock_is_dropped() -> None:
    """A live source (heartbeat): a record an hour past the wall clock is dropped and counted; one now is kept."""
    now = time.time_ns() // 1000
    flows = synthetic_flows(2, seed=1, disorder_s=0)
    ts = pa.array([now, now + 3600 * US], pa.timestamp("us", tz="UTC"))
    batch = flows.set_column(0, FLOW_SCHEMA.field("ts"), ts).to_batches()[0]
    rows, engine = run_sources([Source("udp", Kind.FLOW, [batch], heartbeat=lambda: time.time_ns() // 1000)])
    assert engine.stats.future == {"udp": 1}
    assert sum(r["total_packets"] for r in rows) == 1


# ------------------------------------------------------------- live watermark
def live_export(
    clock: list[int], ledger: TickLedger, behind: list[float], idle_at: int | None
) -> Iterator[pa.RecordBatch]:
    """A busy exporter whose records are dated 40 s behind the clock (a flow is exported long after it
    began: 34-45 s in the soak's softflowd datagram), 20 a batch, the clock moving 1 s a batch; at idle_at
    one quiet moment (an empty batch, as UdpCollector yields when nothing came for flush_s).  Before each
    batch it notes in `behind` how far the engine's released time lags the clock."""
    steps = 50
    flows = synthetic_flows(steps * 20, seed=9, disorder_s=0)
    dates = np.arange(steps * 20) // 20 * US + (clock[0] - 40 * US)
    flows = flows.set_column(0, FLOW_SCHEMA.field("ts"), pa.array(dates, pa.timestamp("us", tz="UTC")))
    for i, batch in enumerate(flows.to_batches(20)):
        if i == idle_at:
            yield pa.RecordBatch.from_pylist([], FLOW_SCHEMA)
        behind.append((clock[0] - ledger.last_advance) / US)
        yield batch
        clock[0] += US


def run_live(idle_at: int | None) -> tuple[list[dict[str, Any]], list[float], Engine]:
    clock = [1_700_000_000 * US]
    ledger, behind = TickLedger(), list[float]()
    engine = Engine([ledger], None, EngineConfig(tick_s=1.0, lateness_s=60.0))
    source = Source("udp", Kind.FLOW, live_export(clock, ledger, behind, idle_at), heartbeat=lambda: clock[0])
    engine.run([source])
    return ledger.rows, behind, engine


def test_a_live_source_releases_ticks_by_its_clock_busy_or_idle() -> None:
    """A live source's event time is its heartbeat whether or not its last batch was empty.  It was the
    heartbeat only after an empty batch and the records' own time otherwise, so one quiet moment moved
    the watermark to the clock, 40 s ahead of the records, and while datagrams kept coming no tick was
    released until their dates caught up (the soak's 15-33 s stalls).  Now the released time follows the
    clock at lateness_s (60 s) plus at most a tick, and the ticks are the same with or without the pause."""
    steady, behind_steady, engine = run_live(None)
    paused, behind_paused, _ = run_live(10)
    assert engine.stats.late == 0 and sum(r["total_packets"] for r in steady) == 50 * 20
    assert max(behind_steady[1:]) <= 61 and max(behind_paused[1:]) <= 61
    assert [events.dumps(r) for r in paused] == [events.dumps(r) for r in steady]

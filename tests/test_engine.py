"""The event-time engine: ticks hold exactly their records, whatever the batching or file split."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pytest

from blackout import addr, events
from blackout.detect.base import Tick
from blackout.engine import Engine, EngineConfig, Source
from blackout.model import FLOW_SCHEMA, Kind

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

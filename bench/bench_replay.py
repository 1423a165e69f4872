"""Time the Dec-2014 KP replay end to end (what `blackout demo` runs) and split the time per detector.

    python bench/bench_replay.py [--out DIR] [--hours H] [--from ISO]

Writes the scenario into --out unless already there (as the demo does), then
replays it through the same detectors the demo builds, each wrapped in a timer.
``--hours`` keeps only that much of the flows and probes (and the route updates
before its end) from ``--from``: a quicker look while profiling.  There is no
rival here: the figure to beat is issue 8's budget (demo under 3 minutes on 2
cores).  Prints CPU seconds with the load average (the machine is shared: compare
CPU seconds, not wall time), events/s, flows/s, the split and a final JSON line.

History, not a comparison (each run at its own load, the second with py-spy attached), whole replay
on the shared 2-core machine:
  before (d22666d): 441 s wall, 247.5 s CPU at load ~4.5; the outage detector
    (Attributor) 313 s of the wall time — ~40 rebuilds of the full LPM table
    (numpy 2's hash unique: 2.4 s each), ~25 numpy calls per series per bin;
  after (ff6d1c2 + 814836c + e0911f2): 208.5 s CPU at load 6.5 (py-spy attached),
    the tracker steps 1 % of the samples; whole `blackout demo --no-serve` with the
    scenario cached: 167 s CPU (4 min 4 s wall at load ~5.5).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from blackout.cli.demo import data_dir, demo_defaults, scenario_files
from blackout.config import Config
from blackout.detect.base import Detector, Tick
from blackout.engine import Engine, EngineConfig, Source
from blackout.model import Kind
from blackout.pipeline import Inputs, build_detectors
from blackout.sources import DecodeContext


class Timed:
    """A detector wrapped to add up the time spent in it."""

    name: ClassVar[str] = "timed"

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.seconds = 0.0

    def _time(self, fn: Any, *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds += time.perf_counter() - began

    def advance(self, now_us: int) -> None:
        self._time(self.inner.advance, now_us)

    def on_tick(self, tick: Tick) -> None:
        self._time(self.inner.on_tick, tick)

    def finish(self, end_us: int, close_open: bool) -> None:
        self._time(self.inner.finish, end_us, close_open)

    def drain(self) -> dict[str, Any]:
        out: dict[str, Any] = self._time(self.inner.drain)
        return out


def windowed(source: Source, lo_us: int, hi_us: int) -> Iterator[pa.RecordBatch]:
    """The source's batches cut to [lo, hi) (route elements: everything before hi, the RIB included)."""
    for batch in source.batches:
        ts = batch.column("ts").cast(pa.int64())
        keep = pc.less(ts, hi_us)
        if source.kind is not Kind.ROUTE:
            keep = pc.and_(keep, pc.greater_equal(ts, lo_us))
        yield batch.filter(keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="./var/kp-2014")
    ap.add_argument("--hours", type=float, default=0.0, help="replay only this many hours (0: all)")
    ap.add_argument("--from", dest="start", default="2014-12-18T00:00:00", help="window start (UTC)")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="SECTION.KEY=VALUE")
    args = ap.parse_args()
    root = data_dir(None)
    config = Config.load(None, args.overrides, base=demo_defaults(root))
    files = scenario_files(root, Path(args.out))
    engine_config = config.section("engine", EngineConfig)
    inputs = Inputs(DecodeContext(batch_size=engine_config.batch_size))
    sources = inputs.open(files)
    if args.hours:
        lo = int(dt.datetime.fromisoformat(args.start).replace(tzinfo=dt.UTC).timestamp() * 1e6)
        hi = lo + int(args.hours * 3600e6)
        sources = [Source(s.name, s.kind, windowed(s, lo, hi)) for s in sources]
    timed = [Timed(d) for d in build_detectors(config)]
    counts: dict[str, int] = {}

    def sink(events: dict[str, Any]) -> None:
        for table, rows in events.items():
            counts[table] = counts.get(table, 0) + len(rows)

    began, cpu = time.perf_counter(), time.process_time()
    stats = Engine(list(timed), sink, engine_config).run(sources)
    total = time.perf_counter() - began
    cpu = time.process_time() - cpu
    records = sum(stats.records.values())
    flows = stats.records[Kind.FLOW.value]
    split = {type(t.inner).__name__: round(t.seconds, 2) for t in timed}
    rest = total - sum(t.seconds for t in timed)
    rate = records / total
    load = os.getloadavg()[0]
    print(f"replay: {total:.1f} s ({cpu:.1f} s CPU, load average {load:.1f} on {os.cpu_count()} cores)")
    print(f"{stats.ticks} ticks, {records} records ({rate:,.0f} events/s)")
    print(f"flows: {flows} ({flows / total:,.0f} flows/s); events: {counts}")
    for name, sec in split.items():
        print(f"  {name:<16} {sec:8.1f} s")
    print(f"  {'decode+engine':<16} {rest:8.1f} s")
    result = {
        "seconds": round(total, 2),
        "cpu_s": round(cpu, 2),
        "load_avg": round(load, 2),
        "ticks": stats.ticks,
        "records": records,
        "flows": flows,
    }
    print(json.dumps({**result, "events_per_s": round(records / total), "split": split, "events": counts}))


if __name__ == "__main__":
    main()

"""Soak: sustained live ingest at half the measured maximum; RSS and per-tick latency must stay flat.

    python bench/soak.py --seconds 600          # `make soak`
    python bench/soak.py --seconds 48 --measure-seconds 4 --window 4   # short form (tests/test_soak.py)

1. Maximum: a bounded loopback sender (tests/udp_flood.py export: a real softflowd
   NetFlow v9 datagram, export time set to now) sends as fast as it can for
   --measure-seconds; the maximum is what the collector decoded per second
   (the rest the kernel dropped).
2. Soak: the sender paces at half that for --seconds.  Every 10 s of wall time
   the script prints the collector's RSS and the per-tick latency (wall time the
   detectors spend on one 1-second tick, median and max of the window, and the
   median of the engine thread's CPU time for it).
Fails (exit 1) when the last quarter's RSS (median of samples) or tick CPU time
(median of every tick) exceeds the second quarter's (the first is warm-up) by
more than --tolerance (10 %; CPU time plus --floor-ms, 2 ms, below which a
median is timer noise), or when the engine went --max-stall-s (10 s) without
releasing a tick after warm-up.  A tick's latency is everything the engine does
for it: each detector's advance (where outage bins close) and on_tick, and the
store's upsert.  engine.lateness_s is 50: the datagram's flows began 34-45 s
before its export time, so a smaller lateness would make most records late
(a live export's lateness bounds how long after its date a record arrives).
The collector runs in this process,
wired as `blackout collect` wires it (same decoders, engine, detectors, store),
so the ticks can be timed; the sender is a separate process on the other core.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from blackout.collect.udp import Listener, UdpCollector
from blackout.config import Config
from blackout.engine import Engine, EngineConfig, Source
from blackout.model import Kind
from blackout.pipeline import build_detectors
from blackout.sources import DecodeContext
from blackout.store import open_store

SENDER = str(Path(__file__).resolve().parent.parent / "tests/udp_flood.py")


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Collector:
    """UDP collector + engine + detectors + store in this process, with timed ticks."""

    def __init__(self, db: str) -> None:
        self.ctx = DecodeContext()
        self.udp = UdpCollector([Listener(0, ["netflow"], "127.0.0.1")], self.ctx)
        self.port = self.udp.ports[0]
        self.store = open_store(db)
        config = Config.load(overrides=["engine.lateness_s=50"])
        engine_config = config.section("engine", EngineConfig)
        self.engine = Engine(build_detectors(config), self.store.upsert, engine_config, errors=self.ctx.errors)
        # (wall time done, seconds spent on the tick, engine thread CPU seconds spent on it)
        self.ticks: list[tuple[float, float, float]] = []
        self._spent = [0.0, 0.0]  # of the tick under way: every detector's advance and on_tick, and the store
        self._depth = 0
        self.engine.sink = self._timed(self.engine.sink, False)
        dets = self.engine.detectors
        for i, det in enumerate(dets):
            det.advance = self._timed(det.advance, False)  # type: ignore[method-assign]
            det.on_tick = self._timed(det.on_tick, i == len(dets) - 1)  # type: ignore[method-assign]
        self.failed: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _timed(self, fn: Any, last: bool) -> Any:
        """Charge fn's time to the tick under way; the last detector's on_tick closes the tick.

        advance() counts (an outage bin closes there: its signals over the whole bin; timing on_tick
        alone hid a 20 s bin close), and so does the store's upsert of the events and signals.
        Only the outermost call is charged: a detector's on_tick may call its own advance."""

        def wrapper(*args: Any) -> Any:
            self._depth += 1
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                out = fn(*args)
            finally:
                self._depth -= 1
            if not self._depth:
                self._spent[0] += time.perf_counter() - started
                self._spent[1] += time.thread_time() - cpu
            if last:
                self.ticks.append((time.monotonic(), self._spent[0], self._spent[1]))
                self._spent = [0.0, 0.0]
            return out

        return wrapper

    def _run(self) -> None:
        source = Source("udp", Kind.FLOW, self.udp.batches(), heartbeat=lambda: time.time_ns() // 1000)
        try:
            self.engine.run([source], close_open=False)
        except BaseException as exc:  # a dead engine must fail the soak, not idle it
            self.failed = exc
            raise

    def records(self) -> int:
        return sum(n for (_, what), n in self.ctx.counters.items() if what == "records")

    def datagrams(self) -> int:
        return sum(n for (_, what), n in self.ctx.counters.items() if what == "datagrams")

    def start(self) -> None:
        self.udp.start()
        self.thread.start()

    def stop(self) -> None:
        self.udp.stop.set()
        self.thread.join(timeout=60)
        self.udp.close()
        self.store.close()


def send(port: int, rate: float, seconds: float) -> subprocess.Popen[str]:
    cmd = [sys.executable, SENDER, "export", "--port", str(port), "--rate", str(rate), "--seconds", str(seconds)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def measure_max(collector: Collector, seconds: float) -> float:
    """Datagrams per second the collector takes end to end (decoded and through the detectors).

    The sender goes as fast as it can for `seconds`; the clock stops when every chunk
    queued meanwhile has passed the engine, so a backlog does not count as throughput.
    """
    before, started = collector.engine.stats.records["flow"], time.monotonic()
    sender = send(collector.port, 1e9, seconds)
    sent = json.loads(sender.communicate(timeout=seconds + 60)[0])
    while not collector.udp.chunks.empty():
        time.sleep(0.05)
    took = time.monotonic() - started
    records = collector.engine.stats.records["flow"] - before
    per_gram = collector.records() / max(1, collector.datagrams())  # as decoded: 7 in the softflowd datagram
    rate = records / per_gram / took
    print(
        f"max: sender {sent['per_s']:,} datagrams/s; through the engine {records:,} records "
        f"in {took:.1f} s = {rate:,.0f} datagrams/s"
    )
    return rate


def soak(collector: Collector, rate: float, seconds: float, window: float) -> dict[str, Any]:
    """Ingest at `rate` for `seconds`; RSS and tick latency per window."""
    collector.ticks.clear()
    sender = send(collector.port, rate, seconds)
    started = time.monotonic()
    rows: list[dict[str, float]] = []
    before, then = collector.records(), started
    while time.monotonic() - started < seconds:
        time.sleep(window)
        now, decoded = time.monotonic(), collector.records()
        window_ticks = [t for t in collector.ticks if t[0] >= now - window]
        lat, cpu = [t[1] for t in window_ticks], [t[2] for t in window_ticks]
        rows.append(
            {
                "t_s": round(now - started),
                "rss_mb": round(rss_mb(), 1),
                "arrow_mb": round(pa.total_allocated_bytes() / 2**20, 1),  # records awaiting release, detector state
                "tick_ms_median": round(1000 * statistics.median(lat), 2) if lat else 0.0,
                "tick_ms_max": round(1000 * max(lat), 2) if lat else 0.0,
                "tick_cpu_ms_median": round(1000 * statistics.median(cpu), 2) if cpu else 0.0,
                "ticks": len(lat),
                # decoded in this window (a cumulative average hid a 3 s hold of the engine thread)
                "records_per_s": round((decoded - before) / (now - then)),
            }
        )
        before, then = decoded, now
        r = rows[-1]
        print(
            f"t={r['t_s']:>4} s  RSS {r['rss_mb']:7.1f} MB (Arrow {r['arrow_mb']:6.1f})  "
            f"tick latency median {r['tick_ms_median']:7.2f} ms "
            f"max {r['tick_ms_max']:7.2f} ms, CPU {r['tick_cpu_ms_median']:7.2f} ms  "
            f"({r['ticks']} ticks)  {r['records_per_s']:,} records/s",
            flush=True,
        )
    sent = json.loads(sender.communicate(timeout=60)[0])
    span = (started, time.monotonic())
    return {"rate": rate, "sent": sent, "series": rows, "ticks": collector.ticks[:], "span": span}


def verdict(
    rows: list[dict[str, float]],
    ticks: list[tuple[float, float, float]],
    tolerance: float,
    floor_ms: float,
    max_stall_s: float,
    span: tuple[float, float],
) -> tuple[bool, dict[str, float]]:
    """Second quarter (the first is warm-up) against the last: RSS of the samples, the engine thread's
    CPU time of every tick (wall latency is printed beside it: on a shared machine it mostly measures the
    other processes, 90-350 ms medians from one 4 s window to the next for the same work); and no stall:
    the longest wait between two ticks after warm-up (medians alone hid a bin close that held the engine
    20 s every minute, the kernel dropping meanwhile)."""
    q = max(1, len(rows) // 4)
    early, late = rows[q : 2 * q], rows[-q:]
    done = [t[0] for t in ticks]
    start = min(done) if done else 0.0
    span_ticks = (max(done) - start) if done else 0.0
    early_ticks = [t for t in ticks if span_ticks * 0.25 <= t[0] - start < span_ticks * 0.5]
    late_ticks = [t for t in ticks if t[0] - start >= span_ticks * 0.75]

    def ms(part: list[tuple[float, float, float]], i: int) -> float:
        return round(1000 * statistics.median(t[i] for t in part), 2) if part else 0.0

    figures = {
        "rss_early_mb": statistics.median(r["rss_mb"] for r in early),
        "rss_late_mb": statistics.median(r["rss_mb"] for r in late),
        "tick_ms_early": ms(early_ticks, 1),
        "tick_ms_late": ms(late_ticks, 1),
        "tick_cpu_ms_early": ms(early_ticks, 2),
        "tick_cpu_ms_late": ms(late_ticks, 2),
    }
    # gaps between ticks from the end of warm-up to the end of the soak (both ends count: a stall may
    # begin before the first tick after warm-up or last to the end)
    t0, t1 = span
    warm = t0 + (t1 - t0) * 0.25
    after = [warm, *(d for d in done if d >= warm), t1]
    figures["longest_stall_s"] = round(max((b - a for a, b in itertools.pairwise(after)), default=0.0), 2)
    figures["rss_growth"] = round(figures["rss_late_mb"] / figures["rss_early_mb"] - 1, 4)
    figures["tick_growth"] = round(figures["tick_ms_late"] / max(figures["tick_ms_early"], 1e-9) - 1, 4)
    figures["tick_cpu_growth"] = round(figures["tick_cpu_ms_late"] / max(figures["tick_cpu_ms_early"], 1e-9) - 1, 4)
    ok = (
        bool(early_ticks and late_ticks)
        and figures["rss_late_mb"] <= (1 + tolerance) * figures["rss_early_mb"]
        and figures["tick_cpu_ms_late"] <= (1 + tolerance) * figures["tick_cpu_ms_early"] + floor_ms
        and figures["longest_stall_s"] <= max_stall_s
    )
    return ok, figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=600.0, help="soak length (default 600)")
    p.add_argument("--measure-seconds", type=float, default=5.0, help="length of the maximum measurement")
    p.add_argument("--window", type=float, default=10.0, help="seconds per printed sample (default 10)")
    p.add_argument("--db", default=None, help="store (default: a temporary file)")
    p.add_argument("--tolerance", type=float, default=0.10, help="growth allowed (default 0.10)")
    p.add_argument("--max-stall-s", type=float, default=10.0, help="longest wait between ticks (default 10)")
    p.add_argument("--floor-ms", type=float, default=2.0, help="latency growth below this is noise (default 2)")
    args = p.parse_args(argv)
    if args.seconds < 3 * args.window:  # fewer samples: no median (StatisticsError) or one compared with itself
        p.error("--seconds must cover at least three --window samples (the verdict compares their quarters)")
    with tempfile.TemporaryDirectory() as tmp:
        collector = Collector(args.db or f"{tmp}/soak.duckdb")
        collector.start()
        try:
            peak = measure_max(collector, args.measure_seconds)
            result = soak(collector, peak / 2, args.seconds, args.window)
        finally:
            collector.stop()
    ok, figures = verdict(
        result["series"], result["ticks"], args.tolerance, args.floor_ms, args.max_stall_s, result.pop("span")
    )
    if collector.failed is not None:
        print(f"the engine died: {collector.failed!r}")
        ok = False
    print(
        f"soak at {result['rate']:,.0f} datagrams/s (half of {peak:,.0f}) for {args.seconds:.0f} s: "
        f"RSS {figures['rss_early_mb']:.1f} -> {figures['rss_late_mb']:.1f} MB ({figures['rss_growth']:+.1%}), "
        f"tick latency {figures['tick_ms_early']:.2f} -> {figures['tick_ms_late']:.2f} ms "
        f"({figures['tick_growth']:+.1%}; CPU {figures['tick_cpu_ms_early']:.2f} -> "
        f"{figures['tick_cpu_ms_late']:.2f} ms, {figures['tick_cpu_growth']:+.1%}), "
        f"longest stall {figures['longest_stall_s']:.1f} s: {'OK' if ok else 'FAILED'}"
    )
    result["ticks"] = len(result["ticks"])
    result["late_records"] = collector.engine.stats.late  # later than engine.lateness_s: joined an open tick
    print(json.dumps({"soak": {"max_datagrams_per_s": round(peak), **result, **figures, "ok": ok}}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

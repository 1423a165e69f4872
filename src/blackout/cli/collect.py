"""`blackout collect`: listen for flow exports and run the live engine into the store.

The same decoders, engine and detectors as `replay`; the difference is only
that datagrams come from sockets and the watermark also follows the clock.
SIGTERM or Ctrl-C stops cleanly (flush, store closed, exit 0); a second one
exits at once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ..collect.udp import Listener, UdpCollector, kernel_drops
from ..engine import Engine, EngineConfig, Source
from ..model import Kind
from ..pipeline import build_detectors, flow_keeper
from ..sources import DecodeContext
from ..store import StoreConfig
from .common import add_config_args, add_db_arg, load_config, store_for

HELP = "listen for NetFlow v5/v9, IPFIX and sFlow on UDP and detect live into the store"
EPILOG = """examples:
  blackout collect --netflow 2055 --ipfix 4739 --sflow 6343
  blackout collect --netflow 2055 --bind 127.0.0.1 --duration 60 --json   # a bounded run, JSON report
Per exporter it reports datagrams, records, decode errors and template misses, and per port the
datagrams the kernel dropped (from /proc/net/udp): a growing drop count means the receive buffer
is too small or the machine too slow for the export rate.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for family in ("netflow", "ipfix", "sflow"):
        p.add_argument(
            f"--{family}",
            type=int,
            action="append",
            default=[],
            metavar="PORT",
            help=f"UDP port carrying {family} (repeatable; one port may carry several formats)",
        )
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--stats-interval", type=float, default=10.0, help="seconds between status lines (default 10)")
    p.add_argument("--json", action="store_true", help="status lines and the final report as JSON")
    add_db_arg(p)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ports: dict[int, list[str]] = {}
    for family in ("netflow", "ipfix", "sflow"):
        for port in getattr(args, family):
            ports.setdefault(port, []).append(family)
    if not ports:
        print("blackout collect: give at least one of --netflow PORT, --ipfix PORT, --sflow PORT", file=sys.stderr)
        return 2
    config = load_config(args)
    engine_config = config.section("engine", EngineConfig)
    ctx = DecodeContext(batch_size=engine_config.batch_size)
    collector = UdpCollector([Listener(p, f, args.bind) for p, f in ports.items()], ctx)
    store = store_for(args)
    _install_signals(collector)
    collector.start()
    started = time.monotonic()
    print(f"blackout collect: listening on {args.bind} UDP {collector.ports} -> {args.db}", file=sys.stderr)

    def batches() -> Iterator[pa.RecordBatch]:
        last = time.monotonic()
        for batch in collector.batches():
            yield batch
            now = time.monotonic()
            if args.duration is not None and now - started >= args.duration:
                collector.stop.set()
            if now - last >= args.stats_interval:
                _print(status(collector, ctx), args.json)
                last = now

    source = Source("udp", Kind.FLOW, batches(), heartbeat=lambda: time.time_ns() // 1000)
    keep = flow_keeper(store) if config.section("store", StoreConfig).keep_flows else None
    engine = Engine(build_detectors(config), store.upsert, engine_config, on_batch=keep)
    try:
        engine.run([source], close_open=False)
    finally:
        collector.close()
        report = status(collector, ctx)
        report["attacks_in_store"] = store.count("attacks")
        report["flows_in_store"] = store.flow_totals()
        store.close()
    _print(report, args.json)
    return 0


def status(collector: UdpCollector, ctx: DecodeContext) -> dict[str, Any]:
    """Per exporter counters and per port kernel drops."""
    exporters: dict[str, dict[str, int]] = {}
    for (exporter, what), n in sorted(ctx.counters.items()):
        exporters.setdefault(exporter, {})[what] = n
    drops = kernel_drops(collector.ports)
    return {
        "exporters": exporters,
        "kernel_drops": {str(p): n for p, n in drops.items()},
        "unrecognised_datagrams": collector.unknown,
        "skipped": ctx.errors.by_reason(),
    }


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True), flush=True)
        return
    for exporter, counts in report["exporters"].items():
        print(f"{exporter}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), flush=True)
    print(f"kernel drops: {report['kernel_drops']}", flush=True)


def _install_signals(collector: UdpCollector) -> None:
    """First SIGTERM/SIGINT: stop receiving, let the engine flush; second: exit at once."""

    def handler(signum: int, _frame: Any) -> None:
        if collector.stop.is_set():
            os._exit(128 + signum)
        collector.stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

"""`blackout collect`: listen for flow exports and BMP sessions, and run the live engine into the store.

The same decoders, engine and detectors as `replay`; the difference is only
that datagrams and BMP streams come from sockets and the watermark also
follows the clock.
SIGTERM or Ctrl-C stops cleanly (flush, store closed, exit 0); a second one
exits at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ..collect.afpacket import AfPacketCollector
from ..collect.bmp import BmpCollector
from ..collect.udp import Listener, UdpCollector, kernel_drops
from ..engine import Engine, EngineConfig, Source
from ..model import Kind
from ..pipeline import build_detectors, flow_keeper
from ..serve.alerts import router_for
from ..sources import DecodeContext
from ..store import StoreConfig
from .common import add_config_args, add_db_arg, install_stop_signals, load_config, store_for

HELP = "listen for NetFlow v5/v9, IPFIX and sFlow on UDP and BMP on TCP, and detect live into the store"
EPILOG = """examples:
  blackout collect --netflow 2055 --ipfix 4739 --sflow 6343 --bmp 11019
  blackout collect --netflow 2055 --bind 127.0.0.1 --duration 60 --json   # a bounded run, JSON report
Per exporter it reports datagrams, records, decode errors and template misses, and per port the
datagrams the kernel dropped (from /proc/net/udp): a growing drop count means the receive buffer
is too small or the machine too slow for the export rate.  Per BMP router it reports messages,
route monitoring, peers up/down, sessions and decode errors (a damaged session is dropped; the
router reconnects).
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
    p.add_argument(
        "--bmp",
        type=int,
        action="append",
        default=[],
        metavar="PORT",
        help="TCP port where routers connect with BMP (RFC 7854) (repeatable)",
    )
    p.add_argument(
        "--interface",
        action="append",
        default=[],
        metavar="IFACE",
        help="capture every packet on this interface (AF_PACKET, e.g. a mirror port) (repeatable); "
        "packets arrive in order, so this source waits for no late records (lateness 0); "
        "--set engine.tick_s=0.25 flags attacks on a finer grid than FastNetMon's 1 s (bench_fastnetmon.py)",
    )
    p.add_argument("--bind", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--stats-interval", type=float, default=10.0, help="seconds between status lines (default 10)")
    p.add_argument("--json", action="store_true", help="status lines and the final report as JSON")
    p.add_argument(
        "--stats-file",
        metavar="FILE",
        help="also write the status JSON to FILE every interval (serve --stats-file FILE exports it in /metrics)",
    )
    add_db_arg(p)
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ports: dict[int, list[str]] = {}
    for family in ("netflow", "ipfix", "sflow"):
        for port in getattr(args, family):
            ports.setdefault(port, []).append(family)
    if not ports and not args.bmp and not args.interface:
        print(
            "blackout collect: give at least one of --netflow PORT, --ipfix PORT, --sflow PORT, --bmp PORT,"
            " --interface IFACE",
            file=sys.stderr,
        )
        return 2
    config = load_config(args)
    engine_config = config.section("engine", EngineConfig)
    ctx = DecodeContext(batch_size=engine_config.batch_size)
    udp = UdpCollector([Listener(p, f, args.bind) for p, f in ports.items()], ctx) if ports else None
    bmps = [BmpCollector(port, ctx, args.bind) for port in args.bmp]
    cap = AfPacketCollector(args.interface, ctx) if args.interface else None
    stops = ([udp.stop] if udp else []) + [b.stop for b in bmps] + ([cap.stop] if cap else [])
    store = store_for(args)
    router = router_for(config, store.upsert)  # the store, then alerts and mitigation ([alerts], [mitigation])
    install_stop_signals(stops, "blackout collect: stopping, storing what was received")
    if udp:
        udp.start()
    for b in bmps:
        b.start()
    if cap:
        cap.start()
    started = time.monotonic()
    last = [started]
    where = (f" UDP {udp.ports}" if udp else "") + (f" BMP (TCP) {[b.port for b in bmps]}" if bmps else "")
    where += f" interfaces {args.interface}" if cap else ""
    print(f"blackout collect: listening on {args.bind}{where} -> {args.db}", file=sys.stderr)

    def watched(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield batch
            now = time.monotonic()
            if args.duration is not None and now - started >= args.duration:
                for stop in stops:
                    stop.set()
            if now - last[0] >= args.stats_interval:
                current = status(udp, bmps, ctx, cap)
                _print(current, args.json)
                _write_stats(args.stats_file, current)
                last[0] = now

    def heartbeat() -> int:
        return time.time_ns() // 1000

    sources = [Source("udp", Kind.FLOW, watched(udp.batches()), heartbeat=heartbeat)] if udp else []
    sources += [Source("afpacket", Kind.FLOW, watched(cap.batches()), heartbeat=cap.heartbeat)] if cap else []
    sources += [Source(f"bmp:{b.port}", Kind.ROUTE, watched(b.batches()), heartbeat=heartbeat) for b in bmps]
    keep = flow_keeper(store) if config.section("store", StoreConfig).keep_flows else None
    engine = Engine(build_detectors(config), router, engine_config, on_batch=keep, errors=ctx.errors)
    stats = None
    try:
        stats = engine.run(sources, close_open=False)
    finally:
        if udp:
            udp.close()
        for b in bmps:
            b.close()
        if cap:
            cap.close()
        router.close()
        report = status(udp, bmps, ctx, cap)
        report["alerts"] = router.stats()
        report["records"] = stats.records if stats else {}
        report["late_records"] = stats.late if stats else 0  # e.g. a BMP table dump's old route times
        report["future_records"] = stats.future if stats else {}  # dated past engine.max_future_live_s: dropped
        report["detector_counters"] = stats.detectors if stats else {}
        report["attacks_in_store"] = store.count("attacks")
        report["flows_in_store"] = store.flow_totals()
        store.close()
    _print(report, args.json)
    _write_stats(args.stats_file, report)
    return 0


def _write_stats(path: str | None, report: dict[str, Any]) -> None:
    """Replace the stats file atomically, so a reader never sees half of it."""
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(report, fh, sort_keys=True)
    os.replace(tmp, path)


def status(
    udp: UdpCollector | None, bmps: list[BmpCollector], ctx: DecodeContext, cap: AfPacketCollector | None = None
) -> dict[str, Any]:
    """Per exporter (and BMP router) counters, per UDP port kernel drops, open BMP sessions, per interface frames."""
    exporters: dict[str, dict[str, int]] = {}
    for (exporter, what), n in sorted(ctx.counters.items()):
        exporters.setdefault(exporter, {})[what] = n
    drops = (udp.drops if udp.drops is not None else kernel_drops(udp.ports)) if udp else {}
    out = {
        "exporters": exporters,
        "kernel_drops": {str(p): n for p, n in drops.items()},
        "unrecognised_datagrams": udp.unknown if udp else 0,
        "bmp_sessions": {str(b.port): len(b.sessions) for b in bmps},
        "skipped": ctx.errors.by_reason(),
    }
    if cap:
        out["interfaces"] = cap.stats()  # frames received, and seen / dropped by the kernel (PACKET_STATISTICS)
    return out


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True), flush=True)
        return
    for exporter, counts in report["exporters"].items():
        print(f"{exporter}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()), flush=True)
    print(f"kernel drops: {report['kernel_drops']}", flush=True)

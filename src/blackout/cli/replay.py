"""`blackout replay`: run recorded telemetry through the detectors into the store.

The same engine as live collection: merged by event time, ticked, detected,
stored with deterministic ids (replaying twice leaves one copy of each event).
SIGTERM or Ctrl-C stops cleanly: no more input is read, what was read is
detected and stored, events still running stay open, the store is closed,
exit 0; a second signal exits at once.  Replaying the same files again
completes the run (same event ids).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

from ..engine import RunStats
from ..events import iso
from ..pipeline import Inputs, replay
from .common import add_config_args, add_db_arg, install_stop_signals, load_config, print_json, progress, store_for

HELP = "replay recorded telemetry (pcap, flow exports, MRT, probes) through the detectors into the store"
EPILOG = """examples:
  blackout replay tests/data/pcap/stopddos/*.pcap
  blackout replay --db /tmp/kp.duckdb --set ddos.threshold_pps=500 rib.bz2 updates.bz2 flows.pcap
  blackout attacks --db /tmp/kp.duckdb        # then look at what was found
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="input files, formats detected from content")
    add_db_arg(p)
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    store = store_for(args)
    stop = threading.Event()
    install_stop_signals([stop], "blackout replay: stopping after the current batch")
    total = sum(os.path.getsize(f) for f in args.files if os.path.isfile(f))
    with progress(total, "replay") as bar:
        stats, inputs = replay(args.files, store, config, on_file_done=lambda _p, size: bar.update(size), stop=stop)
    if stop.is_set():
        print("blackout replay: stopped by signal; what was read is stored, replay again to finish", file=sys.stderr)
    summary = run_summary(stats, inputs, store.count("attacks"), store.count("outages"), args.db)
    store.close()
    for failure in inputs.failures:
        print(f"blackout: {failure.message}", file=sys.stderr)
    if args.json:
        print_json(summary)
    else:
        print_summary(summary)
    return 2 if inputs.failures else 0


def run_summary(stats: RunStats, inputs: Inputs, attacks: int, outages: int, db: str) -> dict[str, Any]:
    """What a run read, skipped and found, as JSON-ready data."""
    return {
        "db": db,
        "files": len(inputs.formats) + len(inputs.failures),
        "failed_files": [f.message for f in inputs.failures],
        "records": stats.records,
        "skipped": inputs.ctx.errors.total,
        "skipped_reasons": inputs.ctx.errors.by_reason(),
        "late_records": stats.late,
        "future_records": stats.future,  # dropped per file: dated engine.max_future_s past the file's latest
        "detector_counters": stats.detectors,  # e.g. ddos: bad_rows, stale_ticks, untracked, evictions
        "ticks": stats.ticks,
        "from": iso(stats.first_us),
        "until": iso(stats.last_us),
        "events_written": stats.events,
        "attacks_in_store": attacks,
        "outages_in_store": outages,
    }


def print_summary(s: dict[str, Any]) -> None:
    """The run summary for people."""
    rec = s["records"]
    print(
        f"replayed {s['files']} file(s): {rec['flow']:,} flow records, {rec['route']:,} route elements, "
        f"{rec['probe']:,} probe results ({s['from']} → {s['until']}, {s['ticks']:,} ticks)"
    )
    if s["skipped"]:
        print(f"skipped {s['skipped']:,} damaged or unsupported items: {s['skipped_reasons']}")
    drops = [f"{s['late_records']:,} late record(s) joined the next open tick"]
    for name, counted in s["detector_counters"].items():
        drops.append(f"{name} " + ", ".join(f"{k} {v:,}" for k, v in counted.items()))
    print("counted: " + "; ".join(drops))
    print(f"store {s['db']}: {s['attacks_in_store']} attack(s), {s['outages_in_store']} outage(s)")

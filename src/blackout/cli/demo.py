"""`blackout demo`: replay the bundled real data and show what blackout finds.

`make run` calls this.  It replays real captures of DDoS attacks (StopDDoS,
CIC-DDoS2019) and real BGP archives that ship in the repository's tests/data,
into a fresh store, and prints the run summary and the attacks found.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import BlackoutError
from ..pipeline import replay
from ..sources import FILE_DECODERS
from ..store import open_store
from .common import add_config_args, load_config, progress
from .events_cmd import print_attacks, print_outages
from .replay import print_summary, run_summary

HELP = "replay the bundled real telemetry and print what blackout finds (what `make run` does)"
DEMO_FILES = [
    "pcap/stopddos/pkt.TCP.synflood.spoofed.pcap",
    "pcap/stopddos/amp.TCP.reflection.SYNACK.pcap",
    "pcap/stopddos/amp.dns.RRSIG.fragmented.pcap",
    "pcap/stopddos/pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng",
    "mrt/routeviews.route-views.jinx.updates.1401493500.bz2",
]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=HELP, description=HELP)
    p.add_argument(
        "--db", default="./var/demo.duckdb", help="store for the demo (recreated; default ./var/demo.duckdb)"
    )
    p.add_argument("--data", default=None, help="folder of the bundled data (default: the repository's tests/data)")
    p.add_argument(
        "--no-serve", action="store_true", help="print the results and exit instead of serving the dashboard"
    )
    add_config_args(p)
    p.set_defaults(func=run)


def data_dir(given: str | None) -> Path:
    """Where the bundled real data is: --data, $BLACKOUT_DATA, or the source checkout's tests/data."""
    candidates = [given, os.environ.get("BLACKOUT_DATA"), str(Path(__file__).resolve().parents[3] / "tests" / "data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "pcap").is_dir():
            return Path(candidate)
    raise BlackoutError("bundled data not found: run from a clone of the repository or pass --data DIR")


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    root = data_dir(args.data)
    formats = {"pcap": "pcap", "mrt": "mrt"}
    files = [str(root / f) for f in DEMO_FILES if formats[f.split("/")[0]] in FILE_DECODERS]
    for suffix in ("", ".wal"):
        if os.path.exists(args.db + suffix):
            os.remove(args.db + suffix)
    store = open_store(args.db)
    with progress(sum(os.path.getsize(f) for f in files), "demo") as bar:
        stats, inputs = replay(files, store, config, on_file_done=lambda _p, size: bar.update(size))
    summary = run_summary(stats, inputs, store.count("attacks"), store.count("outages"), args.db)
    print("blackout demo: real DDoS captures (StopDDoS 2021) and a RouteViews archive (2014)\n")
    print_summary(summary)
    print()
    print_attacks(store.events("attacks"))
    if store.count("outages"):
        print()
        print_outages(store.events("outages"))
    store.close()
    if not args.no_serve:
        print("\n(the dashboard is not part of this version yet; results are in the store above)")
    return 2 if inputs.failures else 0

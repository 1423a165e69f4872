"""`blackout scenario kp-2014 --out DIR`: write the Dec-2014 North Korea reconstruction as real telemetry."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..scenario.kp2014 import SEED, plan
from ..scenario.render import render
from .demo import data_dir

HELP = "write the Dec-2014 North Korea reconstruction as real-format telemetry (MRT, IPFIX pcap, Atlas JSON)"
EPILOG = """what it writes (2014-12-17 to 2014-12-28 UTC), from the published record in blackout/scenario/facts.py:
  rib.*.bz2              the real RouteViews jinx RIB of 2014-05-30 (the starting table)
  updates.*.mrt.gz       one BGP4MP update file per day: AS131279's four /24s flapping, withdrawn, returning
  flows.ipfix.pcap       IPFIX exports (sampled 1:1000) of traffic toward 175.45.176.0/22, with the attacks
  atlas-ping.jsonl       RIPE Atlas ping results toward the five published hosts
  truth.json             what was put in (for tests; the detectors never read it)
example:
  blackout scenario kp-2014 --out /tmp/kp && blackout replay /tmp/kp/* --db /tmp/kp.duckdb
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scenario", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("name", choices=["kp-2014"], help="which scenario")
    p.add_argument("--out", required=True, help="folder to write into (created)")
    p.add_argument("--seed", type=int, default=SEED, help="random seed (same seed, same bytes)")
    p.add_argument("--data", default=None, help="folder of the bundled data (default: the repository's tests/data)")
    p.add_argument("--json", action="store_true", help="print the listing of written files as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = data_dir(args.data)
    began = time.monotonic()
    files = render(
        plan(args.seed),
        Path(args.out),
        str(root / "mrt/routeviews.route-views.jinx.ribs.1401487200.bz2"),
        str(root / "asn/asnames.json.gz"),
        args.seed,
    )
    if args.json:
        print(json.dumps({"out": args.out, "files": files}, indent=2))
    else:
        print(f"wrote scenario {args.name} into {args.out} in {time.monotonic() - began:.1f} s:")
        for kind, names in files.items():
            print(f"  {kind:8} {', '.join(names) if isinstance(names, list) else names}")
    return 0

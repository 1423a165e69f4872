"""`blackout demo`: the December 2014 North Korea reconstruction, end to end (what `make run` does).

1. write the kp-2014 scenario (real formats, from the published record) into
   ./var/kp-2014 — once: it is reused while its plan is unchanged;
2. replay it with default detector settings into a fresh store;
3. print what blackout found: attacks, outages and their verdicts;
4. serve the dashboard over that store (unless --no-serve).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..config import Config
from ..detect.ddos_config import DdosConfig
from ..engine import EngineConfig
from ..errors import BlackoutError
from ..pipeline import replay
from ..scenario.kp2014 import SEED, plan
from ..scenario.render import RENDER_VERSION, render
from ..store import open_store
from .common import add_config_args, progress
from .events_cmd import print_attacks, print_outages
from .replay import print_summary, run_summary

HELP = "replay the Dec-2014 North Korea reconstruction and show what blackout finds (what `make run` does)"
EPILOG = """examples:
  blackout demo --no-serve            # print the findings and exit
  blackout demo                       # then serve the dashboard on http://127.0.0.1:8080/
"""
DEMO_TICK_S = 15.0
WATCH = ["country:KP", "asn:131279", "prefix:175.45.176.0/22"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--db", default="./var/demo.duckdb", help="store for the demo (recreated; default ./var/demo.duckdb)"
    )
    p.add_argument("--out", default="./var/kp-2014", help="where the scenario files go (default ./var/kp-2014)")
    p.add_argument("--data", default=None, help="folder of the bundled data (default: the repository's tests/data)")
    p.add_argument("--no-serve", action="store_true", help="print the results and exit instead of serving")
    p.add_argument("--port", type=int, default=8080, help="dashboard port on 127.0.0.1 (default 8080)")
    add_config_args(p)  # over the demo's own defaults (demo_defaults)
    p.set_defaults(func=run)


def data_dir(given: str | None) -> Path:
    """Where the bundled real data is: --data, $BLACKOUT_DATA, or the source checkout's tests/data."""
    candidates = [given, os.environ.get("BLACKOUT_DATA"), str(Path(__file__).resolve().parents[3] / "tests" / "data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "mrt").is_dir():
            return Path(candidate)
    raise BlackoutError("bundled data not found: run from a clone of the repository or pass --data DIR")


def demo_defaults(root: Path) -> dict[str, dict[str, Any]]:
    """The demo's settings: 2014 registry data for countries, the entities to watch, and 15 s ticks.

    Twelve days at 1 s ticks are ~200k detector calls (issue 8: over 10 min on 2 cores); 15 s ticks
    cut that fifteenfold (10 s ticks took 3:03 warm on an idle 2-core machine, over the 3 min
    target).  Rates are still per second over the tick, the scenario holds its peaks for two
    minutes and its background is exported per minute, so peaks and attacks are measured the
    same; end_ticks is scaled to keep the default quiet time that ends an attack (30 s: 2 ticks).
    """
    return {
        "engine": {"tick_s": DEMO_TICK_S},
        "ddos": {"end_ticks": max(1, round(DdosConfig.end_ticks * EngineConfig.tick_s / DEMO_TICK_S))},
        "enrich": {
            "rir_files": [str(root / "rir/delegated-apnic-20141102.txt")],
            "asnames_file": str(root / "asn/asnames.json.gz"),
            "lpm_refresh_s": 300.0,  # IODA's BGP bin; the jinx churn rebuilt the table every minute
        },
        "outage": {"watch": WATCH},
    }


def scenario_files(root: Path, out: Path) -> list[str]:
    """The scenario's files, written unless a complete copy of the same plan is already there."""
    the_plan = plan(SEED)
    stamp = out / "plan.json"
    fingerprint = json.dumps({**the_plan.truth(), "render": RENDER_VERSION}, sort_keys=True)
    if not (stamp.exists() and stamp.read_text() == fingerprint):
        began = time.monotonic()
        print(f"writing the kp-2014 scenario into {out} ...", file=sys.stderr)
        files = render(
            the_plan,
            out,
            str(root / "mrt/routeviews.route-views.jinx.ribs.1401487200.bz2"),
            str(root / "asn/asnames.json.gz"),
            SEED,
        )
        (out / "files.json").write_text(json.dumps(files))
        stamp.write_text(fingerprint)
        print(f"  done in {time.monotonic() - began:.0f} s", file=sys.stderr)
    files = json.loads((out / "files.json").read_text())
    ordered = [files["rib"], *files["updates"], files["flows"], files["probes"]]
    return [str(out / name) for name in ordered]


def run(args: argparse.Namespace) -> int:
    root = data_dir(args.data)
    config = Config.load(args.config, args.overrides, base=demo_defaults(root))
    files = scenario_files(root, Path(args.out))
    for suffix in ("", ".wal"):
        if os.path.exists(args.db + suffix):
            os.remove(args.db + suffix)
    store = open_store(args.db)
    began = time.monotonic()
    with progress(sum(os.path.getsize(f) for f in files), "replay") as bar:
        stats, inputs = replay(files, store, config, on_file_done=lambda _p, size: bar.update(size))
    summary = run_summary(stats, inputs, store.count("attacks"), store.count("outages"), args.db)
    print("blackout demo: North Korea, 17-28 December 2014, rebuilt from the published record\n")
    print_summary(summary)
    print(f"(replayed in {time.monotonic() - began:.0f} s)\n")
    print_attacks(store.events("attacks"))
    print()
    print_outages(store.events("outages"))
    store.close()
    if args.no_serve:
        return 2 if inputs.failures else 0
    return serve(args.db, args.port, str(root / "asn/asnames.json.gz"))


def serve(db: str, port: int, asnames: str) -> int:
    """Serve the dashboard over the demo's store until Ctrl-C (the `serve` command, on loopback; AS names
    from the bundled registry lines, so AS131279 reads STAR-KP)."""
    from . import main as cli

    print(f"\ndashboard: http://127.0.0.1:{port}/  (Ctrl-C to stop)", flush=True)
    return cli.main(["serve", "--db", db, "--host", "127.0.0.1", "--port", str(port), "--asnames", asnames])

"""`blackout probe`: Trinocular-style active probing of /24 blocks, live into the engine and the store.

The prober is a live source like `collect`'s sockets: its rows go through the
same engine and detectors (the outage detector's ``probing_up`` and
``probing_share`` signals), so a block that goes dark opens an outage for the
watched prefix, AS or country.  ``--out`` also writes every result as RIPE
Atlas ping JSON lines, which `blackout replay` reads back.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from typing import IO, Any

import numpy as np

from ..config import Config
from ..engine import Engine, EngineConfig, Source
from ..model import Kind
from ..pipeline import build_detectors
from ..probe import BELIEF_DOWN, ProbeConfig, Prober, Targets
from ..serve.alerts import router_for
from ..store import DEFAULT_PATH, open_store
from .common import add_config_args, install_stop_signals

HELP = "probe /24 blocks (ICMP echo or TCP) Trinocular-style and detect outages live into the store"
EPILOG = """examples:
  blackout probe 192.0.2.0/24 198.51.100.7 --rounds 6 --round-s 600     # IODA's 10-minute rounds
  blackout probe --targets-file blocks.txt --method tcp --port 443 --rate 50 --out probes.jsonl
  blackout replay probes.jsonl                                            # the results, read back
A /24 given as a prefix is first censused (every address probed once) to find its responsive
addresses; give addresses to skip that.  Options also come from the [probe] configuration section.
Only probe networks you are allowed to probe.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("targets", nargs="*", metavar="TARGET", help="IPv4 /24 prefixes or addresses")
    p.add_argument("--targets-file", metavar="FILE", help="more targets, one per line")
    p.add_argument("--rounds", type=int, default=None, help="stop after N rounds (default: until interrupted)")
    p.add_argument("--round-s", type=float, default=None, help="seconds per round (default [probe] round_s, 600)")
    p.add_argument("--rate", type=float, default=None, help="global limit, probes per second (default 100)")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait for an answer (default 3)")
    p.add_argument("--max-probes", type=int, default=None, help="most probes per /24 per round (default 14)")
    p.add_argument("--method", choices=("icmp", "tcp"), default=None, help="ICMP echo (default) or TCP connect")
    p.add_argument("--port", type=int, default=None, help="TCP port for --method tcp (default 80)")
    p.add_argument("--db", metavar="PATH", default=None, help=f"store file (default {DEFAULT_PATH} unless --out)")
    p.add_argument("--out", metavar="FILE.jsonl", help="also write results as RIPE Atlas ping JSON lines")
    p.add_argument("--json", action="store_true", help="one JSON status line per round and a JSON report")
    add_config_args(p)
    p.set_defaults(func=run)


def probe_config(args: argparse.Namespace, base: ProbeConfig) -> ProbeConfig:
    """The [probe] section with the command line's options over it."""
    over = {
        "round_s": args.round_s,
        "rate_pps": args.rate,
        "timeout_s": args.timeout,
        "max_probes": args.max_probes,
        "method": args.method,
        "tcp_port": args.port,
    }
    return dataclasses.replace(base, **{k: v for k, v in over.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    # the prober's heartbeat is exact (nothing in flight between batches): no lateness to wait for
    config = Config.load(args.config, args.overrides, base={"engine": {"lateness_s": 0.0}})
    items = list(args.targets) + (Targets.read(args.targets_file) if args.targets_file else [])
    if not items:
        print("blackout probe: give at least one TARGET (a /24 prefix or an address)", file=sys.stderr)
        return 2
    targets = Targets.parse(items)
    out: IO[str] | None = open(args.out, "a") if args.out else None  # noqa: SIM115 - closed below
    prober = Prober(targets, probe_config(args, config.section("probe", ProbeConfig)), out=out)
    stop = threading.Event()
    install_stop_signals([stop], "blackout probe: stopping, storing what was probed")
    db = args.db if args.db is not None or args.out is None else None
    store = open_store(db) if db is not None else None
    router = router_for(config, store.upsert if store else None)
    prober.on_round = lambda p: _status(p, args.json) if p.round else None
    engine = Engine(build_detectors(config), router, config.section("engine", EngineConfig))
    source = Source("probe", Kind.PROBE, prober.run(args.rounds, stop.is_set), heartbeat=prober.heartbeat)
    stats = None
    try:
        stats = engine.run([source], close_open=False)
    finally:
        prober.close()
        router.close()
        if out is not None:
            out.close()
    _status(prober, args.json)
    report: dict[str, Any] = {"rounds": prober.round, "probes": stats.records["probe"] if stats else 0}
    if store is not None:
        report["outages_in_store"] = store.count("outages")
        store.close()
    print(json.dumps(report) if args.json else f"probed {report['rounds']} round(s), {report['probes']} probes")
    return 0


def _status(prober: Prober, as_json: bool) -> None:
    """The last round: probes sent, blocks up / down / uncertain."""
    if not prober.history:
        return
    last = prober.history[-1]
    states = prober.blocks.states()
    line = {
        "round": last["round"],
        "probes": int(np.sum(last["sent"])),
        "blocks": len(states),
        "up": int(np.sum(states == 1.0)),
        "down": int(np.sum(prober.blocks.belief < BELIEF_DOWN)),
        "uncertain": int(np.sum(states == 0.5)),
    }
    print(json.dumps(line) if as_json else ", ".join(f"{k} {v}" for k, v in line.items()), flush=True)

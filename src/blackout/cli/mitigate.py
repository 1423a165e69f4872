"""`blackout mitigate --exabgp`: the process ExaBGP runs, relaying blackout's mitigation commands to it."""

from __future__ import annotations

import argparse

from ..serve.mitigation import MitigationConfig
from ..serve.mitigation_bgp import relay
from .common import add_config_args, load_config

HELP = "run by ExaBGP as an API process: relay blackout's RTBH/FlowSpec announcements to ExaBGP"
EPILOG = """ExaBGP configuration (blackout collect, with [mitigation] enabled, writes to the same FIFO):
  process blackout { run /usr/bin/blackout mitigate --exabgp --fifo /var/lib/blackout/exabgp.fifo; encoder text; }
  neighbor 192.0.2.254 { ...; family { ipv4 unicast; ipv4 flow; } api { processes [ blackout ]; } }
The relay exits when ExaBGP closes its stdin.  See blackout.serve.mitigation for the rules announced.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mitigate", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--exabgp", action="store_true", required=True, help="speak ExaBGP's process API on stdout")
    p.add_argument("--fifo", default=None, help="FIFO to relay (default: [mitigation] exabgp_fifo)")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fifo = args.fifo or load_config(args).section("mitigation", MitigationConfig).exabgp_fifo
    return relay(fifo)

"""The `blackout` command: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..config import defaults_toml
from ..errors import BlackoutError
from . import collect, demo, events_cmd, inspect_cmd, mitigate, probe, replay, report, scenario, serve

DESCRIPTION = """blackout tells you, for any country, AS or prefix: is it dark, who is attacking it,
and why did it go dark — from packet captures, flow exports (NetFlow, IPFIX, sFlow), BGP archives (MRT)
and probes."""
EPILOG = """start here:
  blackout demo --no-serve                 replay the bundled real data and print what is found
  blackout inspect FILE...                 decode files to JSON lines
  blackout replay FILE... && blackout attacks
run `blackout COMMAND --help` for each command's options and examples."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blackout", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"blackout {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    inspect_cmd.add_parser(sub)
    replay.add_parser(sub)
    events_cmd.add_parsers(sub)
    demo.add_parser(sub)
    collect.add_parser(sub)
    scenario.add_parser(sub)
    serve.add_parser(sub)
    report.add_parser(sub)
    probe.add_parser(sub)
    mitigate.add_parser(sub)
    cfg = sub.add_parser(
        "config",
        help="print every configuration option with its default, as TOML",
        description="print every configuration option with its default, as TOML",
    )
    cfg.add_argument("--defaults", action="store_true", help="(the only mode for now)")
    cfg.set_defaults(func=lambda _args: print(defaults_toml()) or 0)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except BlackoutError as exc:
        print(f"blackout: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blackout: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

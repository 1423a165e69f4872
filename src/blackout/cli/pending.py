"""Subcommands whose capability is not built yet: they exist so the CLI contract is whole,
explain what they will do, and fail clearly (exit 2) instead of pretending."""

from __future__ import annotations

import argparse
import sys

PENDING: dict[str, tuple[str, int]] = {}  # name -> (what it will do, issue number)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for name, (what, issue) in PENDING.items():
        p = sub.add_parser(name, help=f"{what} (not in this version yet)", description=what)
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(func=run, pending=(name, issue))


def run(args: argparse.Namespace) -> int:
    name, issue = args.pending
    print(f"blackout {name}: not available in this version yet (tracked in issue #{issue})", file=sys.stderr)
    return 2

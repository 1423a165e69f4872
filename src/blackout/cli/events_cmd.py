"""`blackout attacks` and `blackout outages`: what the store holds, for people or as JSON."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_db_arg, print_json, store_for

EPILOG = """examples:
  blackout {name}                       # a table
  blackout {name} --json | jq '.[0]'     # the stable JSON (docs/EVENTS.md)
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for name, what in (("attacks", "DDoS attacks"), ("outages", "outages with their verdicts")):
        text = f"list the {what} in the store"
        p = sub.add_parser(
            name,
            help=text,
            description=text,
            epilog=EPILOG.format(name=name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_db_arg(p)
        p.add_argument("--json", action="store_true", help="print a JSON array of events")
        p.set_defaults(func=run, table=name)


def run(args: argparse.Namespace) -> int:
    store = store_for(args)
    rows = store.events(args.table)
    store.close()
    if args.json:
        print_json(rows)
    elif args.table == "attacks":
        print_attacks(rows)
    else:
        print_outages(rows)
    return 0


def _rate(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    for prefix in ("", "k", "M", "G", "T"):
        if abs(value) < 1000:
            return f"{value:.3g} {prefix}{unit}"
        value /= 1000
    return f"{value:.3g} P{unit}"


def print_attacks(rows: list[dict[str, Any]]) -> None:
    """Attacks as a table."""
    if not rows:
        print("no attacks in the store")
        return
    print(f"{'start':20} {'end':20} {'target':16} {'role':6} {'peak':>10} {'peak':>11} {'sources':>8}  vectors")
    for r in rows:
        vectors = ", ".join(f"{v['name']} {v['share']:.0%}" for v in r.get("vectors") or [])
        print(
            f"{r['start']:20} {r['end'] or 'ongoing':20} {r['target']:16} {r.get('target_role') or '-':6} "
            f"{_rate(r.get('peak_pps'), 'pps'):>10} {_rate(r.get('peak_bps'), 'bps'):>11} "
            f"{r.get('unique_sources') or 0:>8}  {vectors}"
        )


def print_outages(rows: list[dict[str, Any]]) -> None:
    """Outages as a table."""
    if not rows:
        print("no outages in the store")
        return
    print(f"{'start':20} {'end':20} {'entity':20} {'severity':>8}  signals / verdict")
    for r in rows:
        causes = (r.get("verdict") or {}).get("causes") or []
        verdict = ", ".join(f"{c['cause']} {c['confidence']:.0%}" for c in causes) or "-"
        print(
            f"{r['start']:20} {r['end'] or 'ongoing':20} {r['entity_type'] + ' ' + r['entity']:20} "
            f"{(r.get('severity') or 0):>8.0%}  {','.join(r.get('signals') or [])} / {verdict}"
        )

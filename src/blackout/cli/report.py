"""`blackout report`: the ATLAS-style daily report of one country, AS or prefix, from the store."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import ipaddress
import sys

from ..errors import ConfigError
from ..explain import report as rp
from ..explain.plot import timeline
from .common import add_db_arg, store_for

HELP = "daily report of the attacks on and outages of a country, AS or prefix (md, json, html, csv)"
EPILOG = """examples:
  blackout report --country KP --from 2014-12-18 --to 2014-12-22          # markdown, 18 to 22 Dec inclusive
  blackout report --asn 131279 --from 2014-12-17 --to 2014-12-28 --format html --out kp.html
  blackout report --prefix 175.45.176.0/22 --from 2014-12-20 --to 2014-12-20 --format json --names hosts.csv
  blackout report --country KP --from 2014-12-17 --to 2014-12-28 --plot kp-timeline   # kp-timeline.png and .svg
--names FILE is a CSV of address,name (reverse DNS is not available offline).
A --to given as a date includes that whole day.
"""
FORMATS = ("md", "json", "html", "csv")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--country", metavar="CC", help="ISO 3166 alpha-2 code, e.g. KP")
    who.add_argument("--asn", metavar="N", type=int, help="origin AS number")
    who.add_argument("--prefix", metavar="P", help="IPv4 prefix, e.g. 175.45.176.0/22")
    p.add_argument("--from", dest="start", required=True, metavar="TIME", help="first day or ISO time (UTC)")
    p.add_argument("--to", dest="end", required=True, metavar="TIME", help="last day (inclusive) or ISO time (UTC)")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.add_argument("--names", metavar="FILE", help="CSV address,name of the targets")
    p.add_argument("--out", metavar="FILE", help="write the report here instead of stdout")
    p.add_argument("--plot", metavar="BASE", help="also write the timeline plot as BASE.png and BASE.svg")
    add_db_arg(p)
    p.set_defaults(func=run)


def parse_time(text: str, end: bool) -> int:
    """µs since the epoch; a bare date as --to means the end of that day."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"not a date or ISO time: {text!r} (e.g. 2014-12-18 or 2014-12-18T06:00Z)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if end and len(text) == 10:
        moment += dt.timedelta(days=1)
    return int(moment.timestamp()) * 1_000_000


def entity_of(args: argparse.Namespace) -> tuple[str, str]:
    """(entity type, entity) as the outage records spell them."""
    if args.country:
        return "country", args.country.upper()
    if args.asn is not None:
        return "asn", str(args.asn)
    try:
        return "prefix", str(ipaddress.ip_network(args.prefix, strict=False))
    except ValueError as exc:
        raise ConfigError(f"--prefix: not a prefix: {args.prefix!r} (e.g. 175.45.176.0/22)") from exc


def run(args: argparse.Namespace) -> int:
    etype, entity = entity_of(args)
    lo, hi = parse_time(args.start, False), parse_time(args.end, True)
    if hi <= lo:
        raise ConfigError("--to must be after --from")
    try:
        names, skipped = rp.load_names(args.names)
    except OSError as exc:
        raise ConfigError(f"{args.names}: cannot read the names table: {exc.strerror or exc}") from exc
    if skipped:
        print(
            f"{args.names}: skipped {len(skipped)} line(s) that are not address,name (first: line {skipped[0]})",
            file=sys.stderr,
        )
    store = store_for(args)
    attacks, outages = store.events("attacks"), store.events("outages")
    signals = store.signals(etype, entity)
    store.close()
    report = rp.build(attacks, outages, etype, entity, lo, hi, names)
    mine = [a for a in attacks if rp.matches(a, etype, entity)]
    signals = rp.in_period(signals, lo, hi)
    if args.plot:
        for fmt in ("png", "svg"):
            with open(f"{args.plot}.{fmt}", "wb") as fh:
                fh.write(timeline(report, signals, mine, fmt))
    if args.format == "json":
        text = rp.to_json(report)
    elif args.format == "csv":
        text = rp.to_csv(report)
    elif args.format == "html":
        text = rp.to_html(report, base64.b64encode(timeline(report, signals, mine, "png")).decode())
    else:
        text = rp.to_markdown(report)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0

"""`blackout inspect`: decode files and print their records, nothing else.

Files are read in the order given and share decoder state (NetFlow/IPFIX
templates sent in one file serve data in the next).  A file that cannot be
read is reported on one line naming it; the others are still decoded.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

import pyarrow as pa

from .. import addr, events
from ..model import ELEM_TYPE_LETTERS, ElemType
from ..pipeline import Inputs
from ..sources import DecodeContext

HELP = "decode telemetry files and print their records as JSON lines (or counts)"
EPILOG = """examples:
  blackout inspect tests/data/pcap/stopddos/pkt.TCP.synflood.spoofed.pcap | head
  blackout inspect --count tests/data/mrt/routeviews.route-views.jinx.updates.1401493500.bz2
  blackout inspect --format netflow --count tpl.dat data.dat     # templates then data, shared
"""
FORMATS = ["auto", "pcap", "netflow", "sflow", "mrt", "bmp", "atlas"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="pcap/pcapng, NetFlow/IPFIX/sFlow datagram, MRT, BMP ...")
    p.add_argument("--format", choices=FORMATS, default="auto", help="skip content detection (default: auto)")
    p.add_argument("--count", action="store_true", help='print one JSON object {"records": N, "errors": M, ...}')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inputs = Inputs(DecodeContext())
    sources = inputs.open(args.files, args.format)
    records = 0
    per_kind: Counter[str] = Counter()
    for source in sources:
        for batch in source.batches:
            records += batch.num_rows
            per_kind[source.kind.value] += batch.num_rows
            if not args.count:
                write_jsonl(batch)
    for failure in inputs.failures:
        print(f"blackout: {failure.message}", file=sys.stderr)
    errors = inputs.ctx.errors
    if args.count:
        summary: dict[str, Any] = {
            "records": records,
            "errors": errors.total,
            "by_kind": dict(sorted(per_kind.items())),
            "error_reasons": errors.by_reason(),
            "files": len(args.files),
            "formats": inputs.formats,
            "failed_files": [f.message for f in inputs.failures],
        }
        print(json.dumps(summary, sort_keys=True))
    elif errors.total:
        print(f"blackout: skipped {errors.total} damaged or unsupported items: {errors.by_reason()}", file=sys.stderr)
    return 2 if inputs.failures else 0


def write_jsonl(batch: pa.RecordBatch) -> None:
    """One JSON object per record, addresses and times as text."""
    out = sys.stdout
    for row in batch.to_pylist():
        out.write(json.dumps(record_json(row), separators=(",", ":")) + "\n")


def record_json(row: dict[str, Any]) -> dict[str, Any]:
    """A decoded record in readable form (for people and jq, not a hot path)."""
    result: dict[str, Any] = {}
    for key, value in row.items():
        if key == "prefix":
            result[key] = addr.format_prefix(value, row.get("prefix_len"))
        elif key == "prefix_len":
            continue
        elif key == "elem_type":
            result[key] = ELEM_TYPE_LETTERS[ElemType(value)]
        elif isinstance(value, bytes) and len(value) == 16:
            result[key] = addr.format_one(value)
        elif key == "ts":
            result[key] = events.iso(value)
        else:
            result[key] = value
    return result

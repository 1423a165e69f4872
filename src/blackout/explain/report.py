"""ATLAS-style daily reports of one country, AS or prefix: attacks per day, peaks, sources, targets, outages.

The report is built once as plain data (:func:`build`, from the store's stable
event JSON) and every format is a rendering of that one dict — markdown for the
terminal, JSON for machines, CSV (one row per day), HTML for the dashboard
(self-contained, with the timeline plot embedded) — so the forms cannot
disagree.  The plot is in :mod:`.plot`.

Country names come from Debian's iso-codes table (``iso_3166-1.json``) when it
is installed, else tzdata's ``iso3166.tab``, else the code itself; target
names from a user table (CSV ``address,name``), since reverse DNS is not
available offline.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import ipaddress
import json
import os
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..events import iso
from .evidence import gbps, matches

US = 1_000_000
ISO_CODES = "/usr/share/iso-codes/json/iso_3166-1.json"
TZ_TABLE = "/usr/share/zoneinfo/iso3166.tab"
CSV_FIELDS = [
    "day",
    "attacks",
    "peak_bps",
    "peak_bps_at",
    "peak_pps",
    "peak_pps_at",
    "vectors",
    "source_countries",
    "targets",
    "outages",
]


@functools.cache
def country_names() -> dict[str, str]:
    """ISO 3166 alpha-2 → common name, from whichever system table is installed."""
    if os.path.exists(ISO_CODES):
        with open(ISO_CODES, encoding="utf-8") as fh:
            rows = json.load(fh)["3166-1"]
        return {r["alpha_2"]: r.get("common_name") or r["name"] for r in rows}
    if os.path.exists(TZ_TABLE):
        with open(TZ_TABLE, encoding="utf-8") as fh:
            pairs = [line.rstrip("\n").split("\t", 1) for line in fh if not line.startswith("#") and "\t" in line]
        return dict((p[0], p[1]) for p in pairs)
    return {}


def country_name(code: str) -> str:
    """'the United States', 'China'."""
    name = country_names().get(code, code)
    if name.startswith(("United ", "Russian ")) or "Republic" in name or name.endswith(("lands", "ines")):
        return f"the {name}"
    return name


def load_names(path: str | None) -> tuple[dict[str, str], list[int]]:
    """address → name from a CSV file (address,name; a header line is allowed), and the numbers of the
    other lines that were not address,name: the caller says how many it skipped, not silently."""
    if not path:
        return {}, []
    out: dict[str, str] = {}
    skipped: list[int] = []
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        while True:
            try:  # csv.Error (a field past csv.field_size_limit): that line is skipped, the reader goes on
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:
                skipped.append(reader.line_num)
                continue
            if not row or row[0].lstrip().startswith("#"):
                continue
            try:
                if len(row) < 2:
                    raise ValueError(row)
                out[str(ipaddress.ip_address(row[0].strip()))] = row[1].strip()
            except ValueError:
                if reader.line_num > 1:  # the first line may be a header
                    skipped.append(reader.line_num)
    return out, skipped


def _us(text: str | None) -> int:
    assert text is not None
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * US)


def build(
    attacks: list[dict[str, Any]],
    outages: list[dict[str, Any]],
    etype: str,
    entity: str,
    from_us: int,
    to_us: int,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The report as data: per UTC day in [from, to), and the period's totals."""
    names = names or {}
    mine = [a for a in attacks if matches(a, etype, entity) and from_us <= _us(a["start"]) < to_us]
    dark = [o for o in outages if o["entity_type"] == etype and o["entity"] == entity]
    dark = [o for o in dark if from_us <= _us(o["start"]) < to_us]
    days = []
    d = from_us - from_us % (86400 * US)
    while d < to_us:
        today = [a for a in mine if d <= _us(a["start"]) < d + 86400 * US]
        gone = [o for o in dark if d <= _us(o["start"]) < d + 86400 * US]
        days.append({"day": str(iso(d))[:10], **_summary(today, names), "outages": [_outage(o) for o in gone]})
        d += 86400 * US
    return {
        "entity_type": etype,
        "entity": entity,
        "from": iso(from_us),
        "to": iso(to_us),
        "days": days,
        "total": _summary(mine, names),
        "outages": [_outage(o) for o in dark],
    }


def _summary(attacks: list[dict[str, Any]], names: dict[str, str]) -> dict[str, Any]:
    peak_b = max(attacks, key=lambda a: a.get("peak_bps") or 0.0, default=None)
    peak_p = max(attacks, key=lambda a: a.get("peak_pps") or 0.0, default=None)
    vectors: Counter[str] = Counter()
    countries: Counter[str] = Counter()
    targets: dict[str, dict[str, Any]] = {}
    for a in attacks:
        vectors[(a.get("vectors") or [{"name": "unknown"}])[0]["name"]] += 1
        src = a.get("source_countries") or []
        if src:
            countries[src[0]["country"]] += 1
        t = targets.setdefault(
            a["target"],
            {"target": a["target"], "role": a.get("target_role"), "name": names.get(a["target"]), "attacks": 0},
        )
        t["attacks"] += 1
    ranking = sorted(countries.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "attacks": len(attacks),
        "peak_bps": peak_b.get("peak_bps") if peak_b else None,
        "peak_bps_at": (peak_b.get("peak_bps_at") or peak_b["start"]) if peak_b else None,
        "peak_pps": peak_p.get("peak_pps") if peak_p else None,
        "peak_pps_at": (peak_p.get("peak_pps_at") or peak_p["start"]) if peak_p else None,
        "vectors": [{"name": k, "attacks": v} for k, v in sorted(vectors.items(), key=lambda kv: (-kv[1], kv[0]))],
        "source_countries": [
            {"country": c, "name": country_name(c), "attacks": n, "text": f"{n} from {country_name(c)}"}
            for c, n in ranking
        ],
        "targets": sorted(targets.values(), key=lambda t: (-t["attacks"], t["target"])),
    }


def _outage(o: dict[str, Any]) -> dict[str, Any]:
    causes = (o.get("verdict") or {}).get("causes") or []
    top = causes[0] if causes else None
    text = next((e["text"] for e in (top or {}).get("evidence") or [] if e.get("signal") == "summary"), None)
    return {
        "id": o["id"],
        "start": o["start"],
        "end": o["end"],
        "severity": o.get("severity"),
        "cause": top["cause"] if top else "unknown",
        "confidence": top["confidence"] if top else None,
        "causes": [{"cause": c["cause"], "confidence": c["confidence"]} for c in causes],
        "verdict": text or (top["cause"] if top else "no verdict"),
    }


# ------------------------------------------------------------------ renderings
def to_json(report: dict[str, Any]) -> str:
    """JSON for machines."""
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def _rate(bps: float | None, pps: float | None) -> tuple[str, str]:
    if not pps:
        return (gbps(bps) if bps else "-", "-")
    return (gbps(bps) if bps else "-", _pps(pps))


def _at(at: str | None) -> str:
    return f" at {at}" if at else ""


def _when(at: str | None) -> str:
    return f" ({at[11:19]})" if at else ""


def to_csv(report: dict[str, Any]) -> str:
    """One row per day (lists joined with ';')."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for d in report["days"]:
        w.writerow(
            {
                "day": d["day"],
                "attacks": d["attacks"],
                "peak_bps": d["peak_bps"] if d["peak_bps"] is not None else "",
                "peak_bps_at": d["peak_bps_at"] or "",
                "peak_pps": d["peak_pps"] if d["peak_pps"] is not None else "",
                "peak_pps_at": d["peak_pps_at"] or "",
                "vectors": ";".join(f"{v['name']}:{v['attacks']}" for v in d["vectors"]),
                "source_countries": ";".join(f"{c['country']}:{c['attacks']}" for c in d["source_countries"]),
                "targets": ";".join(f"{t['target']}:{t['role'] or ''}:{t['attacks']}" for t in d["targets"]),
                "outages": ";".join(f"{o['start']}:{o['cause']}" for o in d["outages"]),
            }
        )
    return out.getvalue()


def _target(t: dict[str, Any]) -> str:
    name = f" {t['name']}" if t.get("name") else ""
    return f"{t['target']}{name} ({t['role'] or 'other'}, {t['attacks']})"


def to_markdown(report: dict[str, Any]) -> str:
    """Markdown for the terminal."""
    r, tot = report, report["total"]
    bps, pps = _rate(tot["peak_bps"], tot["peak_pps"])
    lines = [
        f"# {r['entity_type']} {r['entity']}: {r['days'][0]['day']} to {r['days'][-1]['day']}",
        "",
        f"{tot['attacks']} attacks, peak {bps}{_at(tot['peak_bps_at'])}, {pps}{_at(tot['peak_pps_at'])}; "
        f"main sources: {', '.join(c['text'] for c in tot['source_countries']) or '-'}.",
        "",
        "| day | attacks | peak bps (when) | peak pps (when) | vectors | main source countries |",
        "|---|---|---|---|---|---|",
    ]
    for d in r["days"]:
        b, p = _rate(d["peak_bps"], d["peak_pps"])
        vec = ", ".join(f"{v['name']} {v['attacks']}" for v in d["vectors"])
        src = ", ".join(c["text"] for c in d["source_countries"])
        lines.append(
            f"| {d['day']} | {d['attacks']} | {b}{_when(d['peak_bps_at'])} | "
            f"{p}{_when(d['peak_pps_at'])} | {vec or '-'} | {src or '-'} |"
        )
    lines += ["", "## Targets", ""] + [f"- {_target(t)}" for t in tot["targets"]]
    lines += ["", "## Outages", ""]
    for o in r["outages"]:
        lines.append(f"- {o['start']} → {o['end'] or 'ongoing'}: **{o['cause']}** ({o['confidence']}) — {o['verdict']}")
    if not r["outages"]:
        lines.append("- none")
    return "\n".join(lines) + "\n"


def to_html(report: dict[str, Any], png_b64: str | None = None) -> str:
    """A self-contained page (the plot embedded as a data URI)."""
    import html

    md = to_markdown(report)
    body = []
    for line in md.splitlines():
        esc = html.escape(line)
        if line.startswith("# "):
            body.append(f"<h1>{esc[2:]}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{esc[3:]}</h2>")
        elif line.startswith("|---"):
            continue
        elif line.startswith("| day "):
            cells = "".join(f"<th>{c.strip()}</th>" for c in esc.strip("|").split("|"))
            body.append(f"<table><tr>{cells}</tr>")
        elif line.startswith("| "):
            cells = "".join(f"<td>{c.strip()}</td>" for c in esc.strip("|").split("|"))
            body.append(f"<tr>{cells}</tr>")
            continue
        elif line.startswith("- "):
            body.append(f"<li>{esc[2:].replace('**', '')}</li>")
        elif line:
            body.append(f"<p>{esc}</p>")
    page = "\n".join(body).replace("</tr>\n<h2>", "</tr></table>\n<h2>", 1)
    img = f'<img alt="timeline" src="data:image/png;base64,{png_b64}">' if png_b64 else ""
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{border:1px solid #ccc;padding:2px 6px}"
    data = html.escape(json.dumps(report, ensure_ascii=False))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report['entity'])} report</title>"
        f"<style>{style}</style></head><body>{page}\n{img}\n"
        f"<script type='application/json' id='report'>{data}</script></body></html>\n"
    )


def in_period(signals: pa.Table, from_us: int, to_us: int) -> pa.Table:
    """The signal rows whose bin falls in [from, to)."""
    if signals.num_rows == 0:
        return signals
    ts = signals.column("ts").cast(pa.int64())
    keep = pc.and_(pc.greater_equal(ts, from_us), pc.less(ts, to_us))
    return signals.filter(keep)


def _pps(pps: float) -> str:
    """1.20 Mpps / 38 kpps / 134 pps."""
    if pps >= 1e6:
        return f"{pps / 1e6:.2f} Mpps"
    return f"{pps / 1e3:.0f} kpps" if pps >= 1e3 else f"{pps:.0f} pps"

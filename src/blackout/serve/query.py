"""What the API answers about events: attacks, outages (IODA and CODF forms), summaries, verdicts, entities.

Every event is rendered by the store's own :meth:`events` (hence
:func:`blackout.events.to_json`), so an attack from the API is byte for byte
the one `blackout attacks --json` prints.  Filters become SQL over the store;
pagination selects the ids of one page in the store's order (start, id).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..detect.outage import family
from ..enrich.asnames import AsNames
from ..errors import InputError
from ..explain import report
from .params import US, QueryError, Window, parse_time
from .reader import ReadOnlyStore

# IODA's name for each of blackout's signal families (datasource).
DATASOURCE = {"bgp": "bgp", "probing": "ping-slash24", "traffic": "flows"}


def attacks(
    store: ReadOnlyStore,
    window: Window,
    target: str | None = None,
    country: str | None = None,
    vector: str | None = None,
    asn: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """One page of the attacks matching the filters, and how many match in all."""
    cond, params = window.overlap_sql()
    if target:
        cond.append("(target = ? OR target_prefix = ?)")
        params += [target, target]
    _equal(cond, params, target_country=country.upper() if country else None, target_asn=asn)
    if vector:
        cond.append("list_contains(list_transform(vectors, lambda v: v.name), ?)")
        params.append(vector)
    where = ("WHERE " + " AND ".join(cond)) if cond else ""
    total = int(store.rows(f"SELECT count(*) FROM attacks {where}", params)[0][0])
    ids = f"WHERE id IN (SELECT id FROM attacks {where} ORDER BY start, id LIMIT ? OFFSET ?)"
    return store.events("attacks", ids, [*params, limit, offset]), total


def _equal(cond: list[str], params: list[object], **columns: object) -> None:
    """Add ``column = ?`` for each column given a value (None: no filter)."""
    for column, value in columns.items():
        if value is not None and value != "":
            cond.append(f"{column} = ?")
            params.append(value)


def attack(store: ReadOnlyStore, attack_id: str) -> dict[str, Any]:
    """One attack in full, or a 404 naming the id."""
    rows = store.events("attacks", "WHERE id = ?", [attack_id])
    if not rows:
        raise QueryError(f"no attack with id {attack_id!r}: list them with GET /attacks", 404)
    return rows[0]


def outages(
    store: ReadOnlyStore, window: Window, entity_type: str | None = None, entity: str | None = None
) -> list[dict[str, Any]]:
    """Outages overlapping the window, optionally of one entity type or entity."""
    cond, params = window.overlap_sql()
    _equal(cond, params, entity_type=entity_type, entity=entity)
    where = ("WHERE " + " AND ".join(cond)) if cond else ""
    return store.events("outages", where, params)


def _us(iso_text: str | None) -> int | None:
    return parse_time(iso_text, "stored time")


def _span(row: dict[str, Any], window: Window, now_us: int) -> tuple[int, int, bool]:
    """(start s, duration s, overlaps_window) of an event as IODA counts them: an event still
    open, or reaching past either end of the window, overlaps it."""
    start = _us(row["start"]) or 0
    end = _us(row.get("end"))
    stop = end if end is not None else (window.until_us or now_us)
    overlaps = end is None or (window.until_us is not None and end > window.until_us)
    overlaps = overlaps or (window.from_us is not None and start < window.from_us)
    return start // US, max(0, (stop - start) // US), overlaps


def codf(rows: list[dict[str, Any]], window: Window, now_us: int) -> list[dict[str, Any]]:
    """Outages in the Common Outage Data Format fields IODA exports (``format=codf``).
    status: 1 while ongoing, 0 once ended; fraction: the share lost at the worst point."""
    out = []
    for row in rows:
        start, duration, overlaps = _span(row, window, now_us)
        out.append(
            {
                "location": f"{row['entity_type']}/{row['entity']}",
                "start": start,
                "duration": duration,
                "uncertainty": None,
                "status": 1 if row.get("end") is None else 0,
                "fraction": row.get("severity"),
                "score": row.get("score"),
                "overlaps_window": overlaps,
                "id": row["id"],
            }
        )
    return out


def ioda_events(rows: list[dict[str, Any]], window: Window, now_us: int, names: Names) -> list[dict[str, Any]]:
    """Outages in IODA's own event form (``format=ioda``), one per event with its datasources."""
    out = []
    for row in rows:
        start, duration, overlaps = _span(row, window, now_us)
        out.append(
            {
                "id": row["id"],
                "entity": names.entity(row["entity_type"], row["entity"]),
                "datasources": sorted({DATASOURCE.get(family(s), s) for s in row.get("signals") or []}),
                "start": start,
                "duration": duration,
                "score": row.get("score"),
                "severity": row.get("severity"),
                "overlapsWindow": overlaps,
                "verdict": row.get("verdict"),
            }
        )
    return out


def summary(rows: list[dict[str, Any]], names: Names) -> list[dict[str, Any]]:
    """Per entity: number of outage events and their scores (overall = sum, and per datasource),
    as IODA's /outages/summary, highest overall first."""
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["entity_type"], row["entity"])
        item = acc.setdefault(key, {"entity": names.entity(*key), "scores": {"overall": 0.0}, "event_cnt": 0})
        score = float(row.get("score") or 0.0)
        item["event_cnt"] += 1
        item["scores"]["overall"] += score
        for ds in {DATASOURCE.get(family(s), s) for s in row.get("signals") or []}:
            item["scores"][ds] = item["scores"].get(ds, 0.0) + score
    return sorted(acc.values(), key=lambda i: (-i["scores"]["overall"], i["entity"]["type"], i["entity"]["code"]))


def verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each outage's verdict (ranked causes with evidence), with the outage it explains."""
    return [
        {
            "outage_id": r["id"],
            "entity_type": r["entity_type"],
            "entity": r["entity"],
            "start": r["start"],
            "end": r.get("end"),
            "causes": (r.get("verdict") or {}).get("causes") or [],
        }
        for r in rows
    ]


class Names:
    """Display names of entities: AS names from a registry table when one is configured."""

    def __init__(self, asnames_path: str | Path | None = None) -> None:
        self.asnames: AsNames | None = None
        if asnames_path:
            try:
                self.asnames = AsNames.load(asnames_path)
            except InputError:
                self.asnames = None

    def name(self, kind: str, code: str) -> str:
        """ "AS131279 STAR-KP" for an AS, the code itself otherwise."""
        if kind == "asn" and code.isdigit():
            handle = self.asnames.name(int(code)) if self.asnames else ""
            return f"AS{code} {handle}".strip()
        return code

    def entity(self, kind: str, code: str) -> dict[str, str]:
        """IODA's entity object."""
        return {"type": kind, "code": code, "name": self.name(kind, code)}


def entities(
    store: ReadOnlyStore, names: Names, search: str = "", kind: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Countries, ASes and prefixes present in the store (in signals, outages or as attack targets)
    whose code or name contains ``search``, with how many attacks and outages concern them."""
    tables = store.tables()
    parts = []
    if "signals" in tables:
        parts.append("SELECT DISTINCT entity_type AS t, entity AS c, 0 AS a, 0 AS o FROM signals")
    parts.append("SELECT entity_type, entity, 0, 1 FROM outages")
    parts.append("SELECT 'country', target_country, 1, 0 FROM attacks WHERE target_country IS NOT NULL")
    parts.append("SELECT 'asn', CAST(target_asn AS VARCHAR), 1, 0 FROM attacks WHERE target_asn IS NOT NULL")
    parts.append("SELECT 'prefix', target_prefix, 1, 0 FROM attacks WHERE target_prefix IS NOT NULL")
    sql = f"SELECT t, c, sum(a), sum(o) FROM ({' UNION ALL '.join(parts)}) GROUP BY t, c ORDER BY t, c"
    needle = search.strip().lower()
    out = []
    for t, c, n_att, n_out in store.rows(sql):
        if kind and t != kind:
            continue
        name = names.name(t, c)
        if needle and needle not in c.lower() and needle not in name.lower():
            continue
        out.append({"type": t, "code": c, "name": name, "attacks": int(n_att), "outages": int(n_out)})
        if len(out) >= limit:
            break
    return out


def daily_report(store: ReadOnlyStore, entity: str | None, day: str | None) -> Any:
    """The ATLAS-style daily report of one entity ("country:KP", "asn:131279", "prefix:P") for one UTC day
    (default: the day of the newest event), built by the same code as `blackout report`."""
    if not entity or ":" not in entity:
        raise QueryError("give entity=TYPE:CODE, e.g. entity=country:KP, asn:131279 or prefix:175.45.176.0/22", 400)
    etype, code = entity.split(":", 1)
    if etype not in ("country", "asn", "prefix"):
        raise QueryError(f"entity type {etype!r} is not one of country, asn, prefix", 400)
    attacks, outages = store.events("attacks"), store.events("outages")
    if day is None:
        starts = [e["start"] for e in attacks + outages]
        if not starts:
            raise QueryError("the store holds no events yet: run `blackout replay` or `collect` first", 404)
        day = max(starts)[:10]
    first = parse_time(day, "day")
    if first is None:
        raise QueryError("day must be a date such as 2014-12-22", 400)
    begin = first - first % (86400 * US)
    return report.build(
        attacks, outages, etype, code.upper() if etype == "country" else code, begin, begin + 86400 * US
    )

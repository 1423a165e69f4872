"""Event records (attacks, outages) in their two forms: store records and stable JSON.

Detectors build *records*: plain dicts keyed by the model's ATTACK_SCHEMA /
OUTAGE_SCHEMA field names, times as int µs since the epoch.  The store writes
them as Arrow; the CLI (``--json``) and the API print them through
:func:`to_json`, so both speak exactly the same JSON.  Field names documented
in docs/EVENTS.md are never renamed; new fields may be added.

Event ids are deterministic (a hash of what identifies the event: kind,
entity, start), so replaying the same data twice upserts the same rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pyarrow as pa

from .model import ATTACK_SCHEMA, OUTAGE_SCHEMA

TABLES: dict[str, pa.Schema] = {"attacks": ATTACK_SCHEMA, "outages": OUTAGE_SCHEMA}
_TIME_FIELDS = {name: {f.name for f in schema if pa.types.is_timestamp(f.type)} for name, schema in TABLES.items()}


def event_id(kind: str, entity: str, start_us: int) -> str:
    """A stable id: the same event found again by a second replay gets the same id."""
    digest = hashlib.sha256(f"{kind}|{entity}|{start_us}".encode()).hexdigest()
    return f"{kind[0]}-{digest[:20]}"


def iso(us: int | dt.datetime | None) -> str | None:
    """ISO 8601 UTC with a Z, to the second when whole, else to the microsecond."""
    if us is None:
        return None
    if isinstance(us, dt.datetime):
        moment = us.astimezone(dt.UTC)
    else:
        moment = dt.datetime.fromtimestamp(us // 1_000_000, dt.UTC).replace(microsecond=us % 1_000_000)
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def to_arrow(table: str, records: list[dict[str, Any]]) -> pa.Table:
    """Records (times as µs ints) as an Arrow table of the event schema."""
    schema = TABLES[table]
    rows = []
    for rec in records:
        row = {f.name: rec.get(f.name) for f in schema}
        for name in _TIME_FIELDS[table]:
            value = row[name]
            if isinstance(value, int):
                row[name] = dt.datetime.fromtimestamp(value // 1_000_000, dt.UTC).replace(microsecond=value % 1_000_000)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=schema)


def to_json(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """One stored event (as read back from the store) as its stable JSON object."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        out[name] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    return value


def dumps(obj: Any) -> str:
    """Canonical JSON text (sorted keys, no spaces): byte-identical for identical events."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

"""The DuckDB store: versioned schema, idempotent upserts, the stable JSON form."""

from __future__ import annotations

from pathlib import Path

import pytest

from blackout import events
from blackout.errors import StoreError
from blackout.store import SCHEMA_VERSION, open_store

START = 1_419_004_800_000_000  # 2014-12-19T16:00:00Z


def attack(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "id": events.event_id("attack", "175.45.176.67", START),
        "target": "175.45.176.67",
        "target_prefix": "175.45.176.0/24",
        "target_asn": 131279,
        "target_country": "KP",
        "target_role": "web",
        "start": START,
        "end": None,
        "peak_bps": 5.97e9,
        "peak_pps": 1.7e6,
        "vectors": [{"name": "ntp_amplification", "share": 0.8}, {"name": "udp_flood", "share": 0.2}],
        "unique_sources": 1200,
        "source_countries": [{"country": "US", "share": 0.5}],
    }
    record.update(changes)
    return record


def test_upsert_twice_keeps_one_copy_and_the_latest_version(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.duckdb"))
    store.upsert({"attacks": [attack()]})
    store.upsert({"attacks": [attack(end=START + 3_353_000_000)]})
    rows = store.events("attacks")
    assert len(rows) == 1
    assert rows[0]["start"] == "2014-12-19T16:00:00Z" and rows[0]["end"] == "2014-12-19T16:55:53Z"
    assert rows[0]["vectors"][0] == {"name": "ntp_amplification", "share": 0.8}
    store.close()
    again = open_store(str(tmp_path / "s.duckdb"))
    assert again.count("attacks") == 1 and again.schema_version == SCHEMA_VERSION


def test_json_has_the_documented_fields(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.duckdb"))
    store.upsert({"attacks": [attack()]})
    row = store.events("attacks")[0]
    for name in (
        "id",
        "target",
        "target_prefix",
        "target_asn",
        "target_country",
        "target_role",
        "start",
        "end",
        "peak_bps",
        "peak_pps",
        "vectors",
        "unique_sources",
        "source_countries",
    ):
        assert name in row
    outage = {
        "id": events.event_id("outage", "country:KP", START),
        "entity_type": "country",
        "entity": "KP",
        "start": START,
        "signals": ["bgp"],
        "severity": 1.0,
        "score": 57100.0,
        "verdict": {"causes": [{"cause": "routing_withdrawal", "confidence": 0.9, "evidence": []}]},
    }
    store.upsert({"outages": [outage]})
    out = store.events("outages")[0]
    assert out["verdict"]["causes"][0]["cause"] == "routing_withdrawal" and out["end"] is None


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "s.duckdb"))
    store.con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(StoreError, match="newer than this blackout"):
        open_store(str(tmp_path / "s.duckdb"))


def test_event_ids_are_stable() -> None:
    assert events.event_id("attack", "1.2.3.4", 5) == events.event_id("attack", "1.2.3.4", 5)
    assert events.event_id("attack", "1.2.3.4", 5) != events.event_id("attack", "1.2.3.4", 6)

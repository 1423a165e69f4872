"""The embedded store: one DuckDB file, Arrow batch inserts, versioned schema, idempotent upserts.

Why DuckDB: embedded (no server for `make run`), columnar, reads and writes
Arrow without copies, and fast enough for months of events and signals.
Events are upserted by their deterministic id (delete-then-insert in one
transaction), so replaying the same data twice leaves one copy of each.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import duckdb
import pyarrow as pa

from .. import events
from ..config import register_section
from ..errors import StoreError
from ..model import FLOW_SCHEMA, SIGNAL_SCHEMA

SCHEMA_VERSION = 1

_DDL = {
    "attacks": """
        CREATE TABLE IF NOT EXISTS attacks (
            id VARCHAR PRIMARY KEY, target VARCHAR NOT NULL, target_prefix VARCHAR, target_asn UINTEGER,
            target_country VARCHAR, target_role VARCHAR, start TIMESTAMPTZ NOT NULL, "end" TIMESTAMPTZ,
            peak_bps DOUBLE, peak_bps_at TIMESTAMPTZ, peak_pps DOUBLE, peak_pps_at TIMESTAMPTZ,
            total_bytes DOUBLE, total_packets DOUBLE,
            vectors STRUCT(name VARCHAR, share DOUBLE)[], unique_sources UBIGINT,
            source_countries STRUCT(country VARCHAR, share DOUBLE)[],
            source_asns STRUCT(asn UINTEGER, share DOUBLE)[],
            top_sources STRUCT(address VARCHAR, share DOUBLE)[],
            spoofing DOUBLE, rule VARCHAR)""",
    "outages": """
        CREATE TABLE IF NOT EXISTS outages (
            id VARCHAR PRIMARY KEY, entity_type VARCHAR NOT NULL, entity VARCHAR NOT NULL,
            start TIMESTAMPTZ NOT NULL, "end" TIMESTAMPTZ, signals VARCHAR[], severity DOUBLE, score DOUBLE,
            verdict STRUCT(causes STRUCT(cause VARCHAR, confidence DOUBLE,
                evidence STRUCT(signal VARCHAR, "time" TIMESTAMPTZ, value DOUBLE,
                                source VARCHAR, text VARCHAR)[])[]))""",
    "signals": """
        CREATE TABLE IF NOT EXISTS signals (
            ts TIMESTAMPTZ NOT NULL, entity_type VARCHAR NOT NULL, entity VARCHAR NOT NULL,
            signal VARCHAR NOT NULL, value DOUBLE NOT NULL,
            PRIMARY KEY (entity_type, entity, signal, ts))""",
}


@dataclasses.dataclass
class StoreConfig:
    """[store] section."""

    keep_flows: bool = False  # also keep every decoded flow record (table `flows`); off: events only


register_section("store", StoreConfig)


class DuckDBStore:
    """A blackout store in one DuckDB file (":memory:" for tests)."""

    def __init__(self, path: str) -> None:
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        try:
            self.con = duckdb.connect(path)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from exc
        self.con.execute("SET TimeZone = 'UTC'")
        self._migrate()
        tables = {r[0] for r in self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        self._has_flows = "flows" in tables

    def _migrate(self) -> None:
        self.con.execute("CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        rows = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        version = int(rows[0][0]) if rows else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema version {version}, newer than this blackout's "
                f"{SCHEMA_VERSION}: upgrade blackout or use another --db"
            )
        for ddl in _DDL.values():
            self.con.execute(ddl)
        if version < SCHEMA_VERSION:
            self.con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    @property
    def schema_version(self) -> int:
        """The schema version written in the file."""
        rows = self.con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        return int(rows[0][0]) if rows else 0

    # ---------------------------------------------------------------- write
    def upsert(self, batch: dict[str, Any]) -> None:
        """Insert or replace events by id, each table in one transaction (the engine's sink).

        ``batch["signals"]``, when present, is an Arrow table of SIGNAL_SCHEMA rows,
        replaced by (entity_type, entity, signal, ts).
        """
        for table, records in batch.items():
            if table == "signals":
                self._upsert_signals(records)
                continue
            if not records:
                continue
            latest = {rec["id"]: rec for rec in records}  # the last version of each event wins
            arrow = events.to_arrow(table, list(latest.values()))
            self._replace(table, arrow)

    def _replace(self, table: str, arrow: pa.Table) -> None:
        self.con.register("incoming", arrow)
        try:
            self.con.execute("BEGIN TRANSACTION")
            self.con.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM incoming)")
            self.con.execute(f"INSERT INTO {table} SELECT * FROM incoming")
            self.con.execute("COMMIT")
        except duckdb.Error:
            self.con.execute("ROLLBACK")
            raise
        finally:
            self.con.unregister("incoming")

    def _upsert_signals(self, table: pa.Table) -> None:
        if table is None or table.num_rows == 0:
            return
        self.con.register("incoming_signals", table.cast(SIGNAL_SCHEMA))
        try:
            self.con.execute("INSERT OR REPLACE INTO signals SELECT * FROM incoming_signals")
        finally:
            self.con.unregister("incoming_signals")

    def signals(self, entity_type: str, entity: str, signal: str | None = None) -> pa.Table:
        """One entity's stored signal values, ordered by signal then time."""
        sql = "SELECT * FROM signals WHERE entity_type = ? AND entity = ?"
        params: list[Any] = [entity_type, entity]
        if signal is not None:
            sql += " AND signal = ?"
            params.append(signal)
        return self.con.sql(sql + " ORDER BY signal, ts", params=params).to_arrow_table()

    def append_flows(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Keep decoded flow records (when [store] keep_flows is on): one Arrow insert per batch."""
        table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        self.con.register("flow_batch", table.cast(FLOW_SCHEMA))
        try:
            if not self._has_flows:
                self.con.execute("CREATE TABLE IF NOT EXISTS flows AS SELECT * FROM flow_batch LIMIT 0")
                self._has_flows = True
            self.con.execute("INSERT INTO flows SELECT * FROM flow_batch")
        finally:
            self.con.unregister("flow_batch")

    def flow_totals(self) -> dict[str, int]:
        """Records, packets and bytes of the kept flows (as exported, not scaled by sampling)."""
        if not self._has_flows:
            return {"flows": 0, "packets": 0, "bytes": 0}
        row = self.con.execute("SELECT count(*), sum(packets), sum(bytes) FROM flows").fetchall()[0]
        return {"flows": int(row[0]), "packets": int(row[1] or 0), "bytes": int(row[2] or 0)}

    # ----------------------------------------------------------------- read
    def events(self, table: str, where: str = "", params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Stored events of one table as JSON-ready dicts, ordered by start then id."""
        if table not in events.TABLES:
            raise StoreError(f"no such event table {table!r}")
        sql = f"SELECT * FROM {table} {where} ORDER BY start, id"
        arrow = self.con.sql(sql, params=params or None).to_arrow_table()
        return [events.to_json(table, row) for row in arrow.to_pylist()]

    def count(self, table: str) -> int:
        """Number of stored events in one table."""
        return int(self.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    def close(self) -> None:
        """Flush and close the file."""
        self.con.close()

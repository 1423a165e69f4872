"""Where events and signals are kept: DuckDB embedded by default.

`open_store(path)` is the one entry point, so a ClickHouse store can be added
beside DuckDB without touching callers.
"""

from __future__ import annotations

from .duckdb_store import SCHEMA_VERSION, DuckDBStore, StoreConfig

DEFAULT_PATH = "./var/blackout.duckdb"


def open_store(path: str = DEFAULT_PATH) -> DuckDBStore:
    """Open (creating or migrating) the store at path."""
    return DuckDBStore(path)


__all__ = ["DEFAULT_PATH", "SCHEMA_VERSION", "DuckDBStore", "StoreConfig", "open_store"]

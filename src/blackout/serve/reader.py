"""Read the store while `replay` or `collect` write it: short read-only connections, snapshots when locked.

DuckDB allows one writing *process* per file, and a writer's lock keeps every
other process out, readers included (``Could not set lock on file``); a
reader's shared lock, the other way round, makes a `replay` or `collect`
started at that moment fail to open the store.  So by default `serve` never
locks the writer's file at all: each request reads a *snapshot*, the file and
its write-ahead log copied into a private folder and opened ``read_only``
there.  DuckDB replays the copied WAL, so every committed upsert shows up.
The copy is refreshed only when the file's or the WAL's size or mtime changed
(and at most every ``refresh_s``), and a copy during which they changed is
retried (a checkpoint rewrote the file meanwhile).  The price is one copy of
the store per change: fine for the embedded store's sizes, and why a big
deployment would use a server store instead.

``mode="direct"`` opens the file itself read-only for each request (no copy;
for a store nobody writes) and falls back to a snapshot when it is locked.

Events are rendered by :meth:`DuckDBStore.events` itself (one JSON renderer,
:func:`blackout.events.to_json`), on a read-only connection.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import duckdb

from ..errors import StoreError
from ..store import SCHEMA_VERSION, DuckDBStore

SNAPSHOT_TRIES = 5


class ReadOnlyStore(DuckDBStore):
    """A :class:`DuckDBStore` over an already open read-only connection (no migration, no writes)."""

    def __init__(self, path: str, con: duckdb.DuckDBPyConnection) -> None:
        self.path = path
        self.con = con
        self.con.execute("SET TimeZone = 'UTC'")
        self._has_flows = "flows" in self.tables()

    def tables(self) -> set[str]:
        """Names of the tables in the file."""
        return {r[0] for r in self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one query to its end (a pending result would block the connection's next query)."""
        return self.con.execute(sql, params or []).fetchall()

    def count(self, table: str) -> int:
        """Number of rows of one table (0 when the file predates it)."""
        if table not in self.tables():
            return 0
        return int(self.rows(f"SELECT count(*) FROM {table}")[0][0])


def _signature(path: str) -> tuple[tuple[int, int], ...]:
    """(size, mtime) of the file and of its WAL: what changes when a writer commits."""
    out = []
    for name in (path, path + ".wal"):
        try:
            st = os.stat(name)
            out.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append((-1, 0))
    return tuple(out)


def _locked(exc: duckdb.Error) -> bool:
    return "lock" in str(exc).lower()


class StoreReader:
    """Hands out read-only views of one store file, one per request (see the module docstring)."""

    def __init__(self, path: str, mode: str = "snapshot", refresh_s: float = 1.0) -> None:
        if mode not in ("snapshot", "direct"):
            raise StoreError(f"unknown store read mode {mode!r}: use snapshot or direct")
        self.path = os.path.abspath(path)
        self.mode = mode
        self.refresh_s = refresh_s
        self._dir = tempfile.mkdtemp(prefix="blackout-serve-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, True)  # also at exit
        self._snap_sig: tuple[tuple[int, int], ...] | None = None
        self._snap_at = 0.0
        self._copy_path = ""
        # one connection kept open per copy: DuckDB then keeps the database loaded, and each
        # request's own connection to it costs nothing (opening the file anew costs ~30 ms)
        self._keeper: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self.snapshots = 0  # snapshot copies taken (exposed in /metrics)
        self.last_mode = "none"  # "direct" or "snapshot": how the last request read

    def signature(self) -> tuple[tuple[int, int], ...]:
        """Changes whenever a writer commits: the dashboard's live mode polls it."""
        return _signature(self.path)

    @contextlib.contextmanager
    def open(self) -> Iterator[ReadOnlyStore]:
        """A read-only store for one request; closed afterwards."""
        if not os.path.exists(self.path):
            raise StoreError(f"no store at {self.path}: run `blackout replay FILE... --db {self.path}` first")
        con = self._connect()
        try:
            store = ReadOnlyStore(self.path, con)
            version = (
                store.rows("SELECT value FROM meta WHERE key = 'schema_version'") if "meta" in store.tables() else []
            )
            if version and int(version[0][0]) > SCHEMA_VERSION:
                raise StoreError(f"store {self.path} has schema version {version[0][0]}, newer than this blackout's")
            yield store
        finally:
            con.close()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self.mode == "snapshot":
            return self._snapshot()
        try:
            con = duckdb.connect(self.path, read_only=True)
            self.last_mode = "direct"
            return con
        except duckdb.Error as exc:
            if not _locked(exc):
                raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        return self._snapshot()

    def _snapshot(self) -> duckdb.DuckDBPyConnection:
        """Open a consistent copy of the locked file (refreshed when it changed)."""
        with self._lock:
            last: Exception | None = None
            for attempt in range(SNAPSHOT_TRIES):
                sig = _signature(self.path)
                fresh = time.monotonic() - self._snap_at < self.refresh_s
                if sig != self._snap_sig and not (fresh and self._snap_sig is not None):
                    # a new name per copy: DuckDB shares one instance per path inside a process
                    copy = os.path.join(self._dir, f"store-{self.snapshots + 1}.duckdb")
                    try:
                        self._copy(copy)
                    except OSError as exc:
                        last = exc
                        time.sleep(0.05 * (attempt + 1))
                        continue
                    if _signature(self.path) != sig:  # written while copying: try again
                        self._snap_sig = None
                        time.sleep(0.05 * (attempt + 1))
                        continue
                    self._retire()
                    self._snap_sig, self._snap_at, self._copy_path = sig, time.monotonic(), copy
                    self.snapshots += 1
                try:
                    if self._keeper is None:
                        self._keeper = duckdb.connect(self._copy_path, read_only=True)
                    con = duckdb.connect(self._copy_path, read_only=True)  # the kept instance: ~0 ms
                    self.last_mode = "snapshot"
                    return con
                except duckdb.Error as exc:
                    last = exc
                    self._snap_sig = None
                    time.sleep(0.05 * (attempt + 1))
            if self._copy_path:  # written too fast to copy whole: serve the last good copy
                with contextlib.suppress(duckdb.Error):
                    con = duckdb.connect(self._copy_path, read_only=True)
                    self.last_mode = "snapshot"
                    return con
            raise StoreError(f"store {self.path} is being written and no consistent snapshot could be read: {last}")

    def _copy(self, copy: str) -> None:
        for suffix in ("", ".wal"):
            if os.path.exists(self.path + suffix):
                shutil.copyfile(self.path + suffix, copy + suffix)

    def _retire(self) -> None:
        """Let go of the previous copy: close its keeper connection (requests still reading it have
        their own) and remove its files (open files stay readable until closed)."""
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None
        for suffix in ("", ".wal"):
            with contextlib.suppress(OSError):
                if self._copy_path:
                    os.remove(self._copy_path + suffix)

    def close(self) -> None:
        """Close the kept connection and remove the snapshot folder."""
        with self._lock:
            self._retire()
        self._cleanup()

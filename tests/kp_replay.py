"""The Dec-2014 KP scenario replayed once per test session through pipeline.replay (shared by the explain
and report tests: a module-level cache, since a session fixture can only be shared from conftest)."""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

from blackout.cli.demo import WATCH as DEMO_WATCH
from blackout.cli.demo import demo_defaults
from blackout.config import Config
from blackout.pipeline import replay
from blackout.store.duckdb_store import DuckDBStore
from conftest import DATA

WATCH = DEMO_WATCH


@dataclasses.dataclass
class Replayed:
    """Where the store is, what it holds, what the scenario put in, and how long the replay took."""

    db: str
    attacks: list[dict[str, Any]]
    outages: list[dict[str, Any]]
    truth: dict[str, Any]
    seconds: float


def config() -> Config:
    """Exactly what `blackout demo` runs with: the RIR file of the time, the AS registry lines, the watched
    entities, and its 15 s ticks (the scenario holds its published peak for two minutes)."""
    return Config(demo_defaults(DATA))


@functools.cache
def replayed(scenario: Path) -> Replayed:
    """Replay every file of the scenario (not truth.json) into a store beside it, once per session
    whichever test module asks first (keyed by the scenario alone: a per-module directory would
    replay it once per module)."""
    db = str(scenario.parent / f"{scenario.name}-replay.duckdb")
    store = DuckDBStore(db)
    files = sorted(str(p) for p in scenario.iterdir() if p.name != "truth.json")
    t0 = time.perf_counter()
    _, inputs = replay(files, store, config())
    seconds = time.perf_counter() - t0
    assert not inputs.failures, inputs.failures
    out = Replayed(db, store.events("attacks"), store.events("outages"), {}, seconds)
    store.close()
    out.truth = json.loads((scenario / "truth.json").read_text())
    print(f"KP scenario replay: {seconds:.1f} s")
    return out

"""The Dec-2014 KP scenario replayed once per test session through pipeline.replay (shared by the explain
and report tests: a module-level cache, since a session fixture can only be shared from conftest)."""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

from blackout.config import Config
from blackout.pipeline import replay
from blackout.store.duckdb_store import DuckDBStore
from conftest import DATA

WATCH = ["country:KP", "asn:131279", "prefix:175.45.176.0/22"]


@dataclasses.dataclass
class Replayed:
    """Where the store is, what it holds, what the scenario put in, and how long the replay took."""

    db: str
    attacks: list[dict[str, Any]]
    outages: list[dict[str, Any]]
    truth: dict[str, Any]
    seconds: float


def config() -> Config:
    """The issue's configuration: the RIR file of the time, the AS registry lines, the watched entities."""
    return Config(
        {
            "enrich": {
                "rir_files": [str(DATA / "rir/delegated-apnic-20141102.txt")],
                "asnames_file": str(DATA / "asn/asnames.json.gz"),
            },
            "outage": {"watch": list(WATCH)},
        }
    )


@functools.cache
def replayed(scenario: Path, workdir: Path) -> Replayed:
    """Replay every file of the scenario (not truth.json) into a store under workdir."""
    db = str(workdir / "kp.duckdb")
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

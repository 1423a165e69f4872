"""A store for the API and dashboard tests: the real StopDDoS captures replayed through the pipeline,
plus the December 2014 North Korea outage (published facts) with its BGP signal."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from blackout.config import Config
from blackout.detect.ddos import DdosDetector
from blackout.detect.ddos_config import DdosConfig
from blackout.engine import Engine, EngineConfig
from blackout.events import event_id
from blackout.model import SIGNAL_SCHEMA
from blackout.pipeline import Inputs, replay
from blackout.sources import DecodeContext
from blackout.store import open_store
from conftest import DATA

PCAPS = sorted(str(p) for p in (DATA / "pcap/stopddos").iterdir())
LOW = ["ddos.threshold_pps=500", "ddos.ban_for_bandwidth=off", "ddos.baseline=false", "engine.tick_s=1.0"]
US = 1_000_000
# Dyn Research / Renesys: North Korea's four /24s (AS131279) withdrawn 2014-12-22 ~16:00 UTC, back ~01:30 UTC.
KP_START = int(dt.datetime(2014, 12, 22, 16, 0, tzinfo=dt.UTC).timestamp()) * US
KP_END = int(dt.datetime(2014, 12, 23, 1, 30, tzinfo=dt.UTC).timestamp()) * US


def replay_attacks(db: str) -> str:
    """Replay the captures with `blackout replay`'s own code, one replay per capture (together they
    span 173 days the outage detector would step through minute by minute); when the pipeline has
    no DDoS detector wired in, run the same inputs through the engine with the real detector."""
    config = Config.load(None, LOW)
    store = open_store(db)
    for path in PCAPS:
        replay([path], store, config)
    if not store.events("attacks"):
        sources = Inputs(DecodeContext()).open(PCAPS)
        det = DdosDetector(config.section("ddos", DdosConfig))
        Engine([det], store.upsert, EngineConfig(tick_s=1.0, lateness_s=5.0)).run(sources, close_open=True)
    store.close()
    return "replayed"


def add_kp_outage(db: str) -> None:
    """The KP outage and its BGP signal (4 /24s visible, 0 while dark), one value a minute over two days."""
    start = KP_START - 24 * 3600 * US
    ts = np.arange(start, KP_END + 12 * 3600 * US, 60 * US, dtype=np.int64)
    bgp = np.where((ts >= KP_START) & (ts < KP_END), 0.0, 4.0)
    n = len(ts)
    rows = []
    for kind, code in (("country", "KP"), ("asn", "131279")):
        rows.append(
            pa.table(
                [
                    pa.array(ts).cast(pa.timestamp("us", tz="UTC")),
                    pa.array([kind] * n),
                    pa.array([code] * n),
                    pa.array(["bgp"] * n),
                    pa.array(bgp),
                ],
                schema=SIGNAL_SCHEMA,
            )
        )
    evidence = {
        "signal": "bgp",
        "time": KP_START,
        "value": 0.0,
        "source": "routing",
        "text": "all 4 /24s of AS131279 withdrawn by every peer",
    }
    outages = [
        {
            "id": event_id("outage", f"{kind}:{code}", KP_START),
            "entity_type": kind,
            "entity": code,
            "start": KP_START,
            "end": KP_END,
            "signals": ["bgp"],
            "severity": 1.0,
            "score": 100.0 * (KP_END - KP_START) / 60 / US,
            "verdict": {"causes": [{"cause": "routing_withdrawal", "confidence": 0.9, "evidence": [evidence]}]},
        }
        for kind, code in (("country", "KP"), ("asn", "131279"))
    ]
    store = open_store(db)
    store.upsert({"outages": outages, "signals": pa.concat_tables(rows)})
    store.close()


def build(path: Path) -> str:
    """Fill a new store file at path; returns its path."""
    db = str(path)
    replay_attacks(db)
    add_kp_outage(db)
    return db


_BUILT: dict[str, str] = {}


def shared(factory: pytest.TempPathFactory) -> str:
    """One store per test session for the API and dashboard tests (tests that change it copy it)."""
    if "db" not in _BUILT:
        _BUILT["db"] = build(factory.mktemp("serve") / "store.duckdb")
    return _BUILT["db"]

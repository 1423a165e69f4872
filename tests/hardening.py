"""Helpers of the hardening tests: run the real `blackout` command, read its store as canonical JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import DATA

BLACKOUT = str(Path(sys.executable).with_name("blackout"))
ENV = {**os.environ, "CI": "1"}  # no progress bar
STOPDDOS = sorted(str(p) for p in (DATA / "pcap/stopddos").iterdir())
MIX = [
    str(DATA / "mrt/ris.rrc06.updates.1401488100.gz"),
    str(DATA / "mrt/routeviews.route-views.jinx.updates.1401493500.bz2"),
    str(DATA / "pcap/cicddos2019/CIC-DDoS-2019-SynFlood.pcap"),
]
SETS = ["--set", "ddos.threshold_pps=500"]


def replay_cmd(db: Path, files: list[str]) -> list[str]:
    return [BLACKOUT, "replay", "--db", str(db), *SETS, *files]


def replay(db: Path, files: list[str]) -> float:
    """An uninterrupted replay; its wall time."""
    started = time.monotonic()
    subprocess.run(replay_cmd(db, files), check=True, capture_output=True, env=ENV, timeout=300)
    return time.monotonic() - started


def stored_events(db: Path) -> str:
    """Attacks and outages of a store as canonical JSON (what `blackout attacks/outages --json` print)."""
    out = {}
    for table in ("attacks", "outages"):
        proc = subprocess.run(
            [BLACKOUT, table, "--db", str(db), "--json"], capture_output=True, text=True, env=ENV, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        out[table] = json.loads(proc.stdout)
    return json.dumps(out, sort_keys=True)


def wait_for_file(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)

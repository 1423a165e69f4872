"""kill -9 of `blackout replay` and `blackout collect` at random moments, then a restart on the same input.

Replay: the store must end with exactly the events (canonical JSON of
`blackout attacks/outages --json`) of an uninterrupted run, whatever was
written before each kill (events are upserted by deterministic id, each
table in one transaction, so a kill leaves either the old or the new version).
After every kill the store must open again (DuckDB replays its WAL).
Collect: flow records stored before the kill are still there after it, and a
restarted collector adds to them (nfdump on the same export is the reference).
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest

from conftest import need_tool
from hardening import ENV, MIX, STOPDDOS, replay, replay_cmd, stored_events
from test_collect import SYN, free_port, nfdump_totals, softflowd, start_collect, stop_collect

SEED = 20261125


def killed_replays(db: Path, files: list[str], moments: list[float]) -> int:
    """Replay, SIGKILLed after each moment (seconds from start); the kills that hit a running process."""
    hits = 0
    for moment in moments:
        proc = subprocess.Popen(replay_cmd(db, files), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        try:
            proc.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            hits += 1
        if db.exists():
            stored_events(db)  # the store opens after the kill (WAL replayed) and reads
    return hits


@pytest.mark.slow
@pytest.mark.parametrize("name,files", [("stopddos", STOPDDOS), ("mrt+flows", MIX)])
def test_replay_killed_at_random_moments_ends_with_the_uninterrupted_events(
    tmp_path: Path, name: str, files: list[str]
) -> None:
    reference_db = tmp_path / "reference.duckdb"
    took = replay(reference_db, files)
    reference = stored_events(reference_db)
    assert '"attacks": [{' in reference  # the threshold finds attacks in both inputs: a comparison with content
    rng = random.Random(SEED)
    moments = sorted(rng.uniform(0.15, 0.95) * took for _ in range(5))
    db = tmp_path / "killed.duckdb"
    hits = killed_replays(db, files, moments)
    print(f"{name}: uninterrupted {took:.1f} s; kill -9 at {[round(m, 2) for m in moments]} s: {hits} hit")
    assert hits >= 3
    replay(db, files)  # the restart with the same input, to its end
    assert stored_events(db) == reference


@pytest.mark.slow
def test_collect_killed_keeps_what_it_stored_and_a_restart_adds_to_it(tmp_path: Path) -> None:
    need_tool("softflowd")
    reference = nfdump_totals(tmp_path, SYN, 9)
    port = free_port()
    proc = start_collect(tmp_path, port)
    softflowd(SYN, port, 9)
    time.sleep(3.0)  # received, decoded and inserted (each batch is one committed INSERT)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    db = tmp_path / "live.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:  # opens: the WAL is replayed
        row = con.execute("SELECT count(*), sum(packets), sum(bytes) FROM flows").fetchone()
    assert row is not None
    assert {"flows": row[0], "packets": row[1], "bytes": row[2]} == reference
    port = free_port()
    proc = start_collect(tmp_path, port)  # the same store
    softflowd(SYN, port, 9)
    report = stop_collect(proc)
    assert report["flows_in_store"] == {k: 2 * v for k, v in reference.items()}

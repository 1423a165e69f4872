"""SIGTERM and Ctrl-C (SIGINT) stop `replay`, `collect` and `serve` cleanly — flush, store closed, exit 0 —
and a second signal exits at once.  Real subprocesses; the store is then read by the real CLI.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from hardening import BLACKOUT, ENV, STOPDDOS, replay, replay_cmd, stored_events, wait_for_file
from test_collect import SYN, free_port, softflowd, start_collect


def started_replay(db: Path, delay: float) -> subprocess.Popen[str]:
    """A replay that has opened its store (handlers installed right after) and run `delay` s more."""
    proc = subprocess.Popen(
        replay_cmd(db, STOPDDOS), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    wait_for_file(db)
    time.sleep(delay)
    assert proc.poll() is None, "the replay ended before the signal: nothing was tested"
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_replay_stops_cleanly_and_a_second_replay_completes_it(tmp_path: Path, sig: signal.Signals) -> None:
    reference_db = tmp_path / "reference.duckdb"
    replay(reference_db, STOPDDOS)
    reference = json.loads(stored_events(reference_db))
    db = tmp_path / "stopped.duckdb"
    proc = started_replay(db, 1.0)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped by signal" in err
    partial = json.loads(stored_events(db))  # the store was closed: it opens and reads
    full_ids = {e["id"] for e in reference["attacks"]}
    assert {e["id"] for e in partial["attacks"]} <= full_ids  # nothing invented...
    assert all(e["end"] is None or e in reference["attacks"] for e in partial["attacks"])  # ...no invented end
    replay(db, STOPDDOS)
    assert json.loads(stored_events(db)) == reference


@pytest.mark.slow
def test_replay_second_signal_exits_at_once(tmp_path: Path) -> None:
    db = tmp_path / "twice.duckdb"
    proc = started_replay(db, 0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    # POSIX merges a signal still pending into one: the second goes only once the first was handled.
    while "stopping after the current batch" not in (line := proc.stderr.readline()):
        assert line, "the replay ended without handling the first signal"
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM  # os._exit: no flush, no summary
    assert time.monotonic() - started < 2.0
    stored_events(db)  # even so the store opens (WAL)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_collect_stops_cleanly_on_either_signal(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    proc = start_collect(tmp_path, port)
    softflowd(SYN, port, 9)
    time.sleep(1.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["flows_in_store"]["packets"] == 37841  # every packet of the capture (nfdump agrees: test_collect)


@pytest.mark.slow
def test_collect_second_signal_exits_at_once(tmp_path: Path) -> None:
    """A second Ctrl-C while the collector stores what it received exits at once, without the report.
    (It accepted a clean exit too: two signals sent back to back may merge into one, so it tested nothing.)"""
    port = free_port()
    proc = start_collect(tmp_path, port)
    softflowd(SYN, port, 9)  # a capture's flows to store on the way out: the stop takes a while
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    while "stopping, storing what was received" not in (line := proc.stderr.readline()):
        assert line, "the collector ended without handling the first signal"
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    out, _err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGINT, out  # os._exit: no final report
    assert time.monotonic() - started < 2.0 and "flows_in_store" not in out


def start_serve(db: Path) -> tuple[subprocess.Popen[str], int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [BLACKOUT, "serve", "--db", str(db), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/attacks", timeout=5) as resp:
                assert resp.status == 200
                return proc, port
        except OSError:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "serve never answered"
            time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    db = tmp_path / "serve.duckdb"
    replay(db, STOPDDOS[:1])
    proc, _port = start_serve(db)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    stored_events(db)  # closed: the CLI reads it


@pytest.mark.slow
def test_serve_second_signal_exits_at_once_with_a_client_connected(tmp_path: Path) -> None:
    db = tmp_path / "serve.duckdb"
    replay(db, STOPDDOS[:1])
    proc, port = start_serve(db)
    with socket.create_connection(("127.0.0.1", port)) as idle:  # a keep-alive client uvicorn would wait for
        idle.sendall(b"GET /attacks HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.communicate(timeout=30)
    assert time.monotonic() - started < 5.0
    # uvicorn restores the default disposition once it is shutting down: the second SIGTERM ends it there
    assert proc.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM)

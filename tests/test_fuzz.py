"""The short fuzz run of `make test`: every target of fuzz/harness.py for ~20 s, two at a time.

libFuzzer fails a target on any exception other than BlackoutError, on one
input taking over a second, or on memory over 2 GiB; `make fuzz` is the long run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("atheris")


@pytest.mark.slow
def test_short_fuzz_run_of_every_target(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "fuzz/run.py"), "--seconds", "18", "--jobs", "2", "--artifacts", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "BLACKOUT_FUZZ_DIR": str(tmp_path / "corpus")},
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert "total " in proc.stdout


def test_an_interrupted_target_is_not_ok(tmp_path: Path) -> None:
    """A target someone stopped with SIGTERM is reported INTERRUPTED and fails the run.  libFuzzer exits
    72 then (its -interrupt_exitcode), so the old runner already failed it, but as "FAILED []": a crash
    without an artifact; what the test pins is the label (the exit code 1 holds either way)."""
    run = subprocess.Popen(
        [sys.executable, str(ROOT / "fuzz/run.py"), "config", "--seconds", "60", "--artifacts", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "BLACKOUT_FUZZ_DIR": str(tmp_path / "corpus")},
    )
    harness = None
    for _ in range(300):  # the harness process appears once run.py has started it
        found = subprocess.run(["pgrep", "-P", str(run.pid)], capture_output=True, text=True).stdout.split()
        if found:
            harness = int(found[0])
            break
        time.sleep(0.1)
    assert harness is not None
    corpus = tmp_path / "corpus" / "config"  # written after the warm-up, just before libFuzzer starts
    for _ in range(600):
        if corpus.is_dir() and any(corpus.iterdir()):
            break
        time.sleep(0.1)
    time.sleep(3)  # into fuzzing: libFuzzer's own signal handler is in place
    os.kill(harness, signal.SIGTERM)  # what `kill` sends; libFuzzer prints 'run interrupted', exits 72
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1, out + err[-2000:]
    assert "INTERRUPTED" in out


def test_a_target_that_exits_short_of_its_inputs_is_not_finished() -> None:
    """Two `make fuzz` targets once exited 0 well short of -runs and of the time cap, and read "ok"."""
    sys.path.insert(0, str(ROOT / "fuzz"))
    from run import finished

    assert finished(1_000_000, 1_000_000, 3600, 900.0)  # all its inputs
    assert finished(20_000, 0, 18, 18.4)  # the time cap, no input count asked
    assert finished(400_000, 1_000_000, 3600, 3600.2)  # the time cap before the inputs
    assert not finished(331_990, 1_000_000, 3600, 391.3)  # neither: the Atlas run
    assert not finished(5_000, 0, 18, 6.0)  # a short run that ended before its cap

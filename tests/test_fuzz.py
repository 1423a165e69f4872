"""The short fuzz run of `make test`: every target of fuzz/harness.py for ~20 s, two at a time.

libFuzzer fails a target on any exception other than BlackoutError, on one
input taking over a second, or on memory over 2 GiB; `make fuzz` is the long run.
"""

from __future__ import annotations

import os
import subprocess
import sys
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

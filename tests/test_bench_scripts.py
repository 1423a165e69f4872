"""Every script in bench/ still imports: `make bench` runs them in turn and stops at the first that breaks.

The benches are minutes long and some need root, so `make test` does not run
them; a name moved in src/ (as the Trinocular constants once moved out of
detect/signals into probe/trinocular) would otherwise surface only at the next
`make bench`.  Importing a script runs its imports and module-level code, not
its ``main()`` (each is guarded by ``if __name__ == "__main__"``), so this takes
about a second per script.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))  # bench_*.py, which `make bench` runs, and soak.py (`make soak`)


def test_bench_scripts_found() -> None:
    """The glob sees the benches (an empty parametrisation would pass vacuously)."""
    assert "bench_probe" in {p.stem for p in SCRIPTS}
    assert len(SCRIPTS) >= 10


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_bench_script_imports(script: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Import the script as `python bench/X.py` would find it: bench/ first on sys.path (bench_ddos
    imports bench_pcap), a fresh module rather than one another test left in sys.modules.  sys.path,
    which some scripts extend with tests/, is restored afterwards."""
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.delitem(sys.modules, script.stem, raising=False)
    module = importlib.import_module(script.stem)
    assert module.__file__ is not None and Path(module.__file__).resolve() == script
    assert callable(module.main)

"""Bench: the jinx RIB (503,590 rows) into Arrow with blackout, vs `bgpdump -m > /dev/null`, vs pybgpkit.

All three start from the .bz2 file, so decompression is inside every timing.
pybgpkit is the rival only: it is not a dependency.  It is used when importable
(``pybgpkit_parser``, e.g. ``pip install pybgpkit-parser`` in a scratch venv
given as BENCH_PYBGPKIT_PYTHON, or in this interpreter); otherwise it is skipped.

    python bench/bench_mrt.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

JINX = Path(__file__).resolve().parent.parent / "tests/data/mrt/routeviews.route-views.jinx.ribs.1401487200.bz2"
_BGPKIT = (
    "import time, pybgpkit_parser as m\n"
    "t = time.perf_counter(); n = sum(1 for _ in m.Parser(url={path!r}))\n"
    "print(n, time.perf_counter() - t)\n"
)


def best_of(fn, runs: int = 3) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    best, rows = float("inf"), 0
    for _ in range(runs):
        t = time.perf_counter()
        rows = fn()
        best = min(best, time.perf_counter() - t)
    return best, rows


def blackout_rows() -> int:
    from blackout.sources import FILE_DECODERS, DecodeContext, read_input

    data = read_input(str(JINX))
    return sum(b.num_rows for b in FILE_DECODERS["mrt"].read(str(JINX), data, DecodeContext()))


def bgpdump_rows() -> int:
    exe = shutil.which("bgpdump")
    assert exe, "bgpdump is not installed (apt-get install bgpdump)"
    with open(os.devnull, "wb") as null:
        subprocess.run([exe, "-m", str(JINX)], stdout=null, stderr=subprocess.DEVNULL, check=True)
    return 503_590


def pybgpkit() -> tuple[float, int] | None:
    python = os.environ.get("BENCH_PYBGPKIT_PYTHON", sys.executable)
    proc = subprocess.run([python, "-c", _BGPKIT.format(path=str(JINX))], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    rows, secs = proc.stdout.split()
    return float(secs), int(rows)


def main() -> None:
    blackout_rows()  # load the numba cache once (compiles on a fresh checkout)
    ours, rows = best_of(blackout_rows)
    dump, _ = best_of(bgpdump_rows, runs=2)
    kit = pybgpkit()
    print(f"blackout  {ours:6.2f} s  {rows / ours:12,.0f} rows/s  ({rows:,} rows)")
    print(f"bgpdump   {dump:6.2f} s  {rows / dump:12,.0f} rows/s  ratio {dump / ours:.2f}x")
    result = {"rows": rows, "blackout_s": ours, "bgpdump_s": dump, "vs_bgpdump": dump / ours}
    if kit is None:
        print("pybgpkit  not importable here (set BENCH_PYBGPKIT_PYTHON to a venv with pybgpkit-parser)")
    else:
        print(f"pybgpkit  {kit[0]:6.2f} s  {kit[1] / kit[0]:12,.0f} rows/s  ratio {kit[0] / ours:.2f}x")
        result |= {"pybgpkit_s": kit[0], "vs_pybgpkit": kit[0] / ours}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

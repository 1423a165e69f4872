"""Benchmark: blackout's Atlas reader against RIPE's own parser (ripe.atlas.sagan) on the same results.

N ping results in the documented format (firmware >= 4400, 3 packets each,
some lost) are written two ways: as JSON lines (the Atlas API's
``format=txt`` downloads and streaming) and as one JSON array (the API's
default).  blackout reads each file into probe rows; the rival parses the same
file with ``json.loads`` (per line, or the whole array) and ``PingResult`` (what
a user of RIPE's tools would write) and collects the same fields.  The JSON
lines with one line cut are timed too: Arrow refuses them, so blackout halves
the file until the 64 KB around the cut are walked value by value (the rival
skips the line json.loads refuses).  The runs are
interleaved over several rounds and the medians (and the best
rounds) compared: a single ~10 ms shot on the shared machine once printed
"0.2x on a JSON array" where the steady ratio was 3-5x.

Run: python bench/bench_atlas.py [N] [ROUNDS]
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ripe.atlas.sagan import PingResult

from blackout.sources import FILE_DECODERS, DecodeContext


def results(n: int) -> list[dict[str, Any]]:
    rnd = random.Random(1)
    out = []
    for i in range(n):
        rtts = [None if rnd.random() < 0.1 else round(rnd.uniform(5, 300), 3) for _ in range(3)]
        got = [r for r in rtts if r is not None]
        out.append(
            {
                "af": 4,
                "avg": round(sum(got) / len(got), 3) if got else -1,
                "dst_addr": f"175.45.{176 + i % 4}.{i % 250 + 1}",
                "dst_name": "target",
                "dup": 0,
                "from": "193.0.0.78",
                "fw": 5020,
                "lts": 12,
                "max": max(got) if got else -1,
                "min": min(got) if got else -1,
                "msm_id": 1000000 + i % 50,
                "msm_name": "Ping",
                "prb_id": 1000 + i % 3000,
                "proto": "ICMP",
                "rcvd": len(got),
                "result": [{"rtt": r} if r is not None else {"x": "*"} for r in rtts],
                "sent": 3,
                "size": 48,
                "src_addr": "10.0.2.15",
                "step": 240,
                "timestamp": 1419264000 + i,
                "ttl": 52,
                "type": "ping",
            }
        )
    return out


def ours(data: bytes) -> tuple[float, int]:
    ctx = DecodeContext()
    start = time.perf_counter()
    rows = sum(b.num_rows for b in FILE_DECODERS["atlas"].read("bench.json", data, ctx))
    return time.perf_counter() - start, rows


def sagan(objs: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for obj in objs:
        r = PingResult(obj)
        out.append((r.created, r.probe_id, r.destination_address, r.packets_sent, r.packets_received, r.rtt_average))
    return out


def decodable(lines: list[bytes]) -> Iterator[dict[str, Any]]:
    """The lines json.loads accepts: what a sagan user reading a damaged download would keep."""
    for line in lines:
        with contextlib.suppress(ValueError):
            yield json.loads(line)


def sagan_lines(lines: list[bytes]) -> tuple[float, int]:
    start = time.perf_counter()
    rows = sagan(decodable(lines))
    return time.perf_counter() - start, len(rows)


def sagan_array(array: bytes) -> tuple[float, int]:
    start = time.perf_counter()
    rows = sagan(json.loads(array))
    return time.perf_counter() - start, len(rows)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    objs = results(n)
    lines = [json.dumps(o).encode() for o in objs]
    jsonl = b"\n".join(lines)
    array = json.dumps(objs).encode()
    damaged = list(lines)
    damaged[n // 2] = damaged[n // 2][:100]  # one line cut: Arrow refuses the file
    ours(jsonl[: len(jsonl) // 100])  # warm up Arrow's reader and the numba array walk
    ours(json.dumps(objs[:100]).encode())
    runs: dict[str, Callable[[], tuple[float, int]]] = {
        "ours_s": lambda: ours(jsonl),
        "ours_array_s": lambda: ours(array),
        "sagan_s": lambda: sagan_lines(lines),
        "sagan_array_s": lambda: sagan_array(array),
        "ours_damaged_s": lambda: ours(b"\n".join(damaged)),
        "sagan_damaged_s": lambda: sagan_lines(damaged),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):  # interleaved, so a burst of load on the shared machine hits every side alike
        for key, run in runs.items():
            seconds, rows = run()
            assert rows == n - ("damaged" in key), (key, rows)
            times[key].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{n} ping results, {len(jsonl) / 1e6:.1f} MB of JSON lines, {len(array) / 1e6:.1f} MB as an array")
    print(f"median (min) of {rounds} interleaved rounds:")
    labels = {
        "ours_s": "blackout atlas (JSON lines)",
        "ours_array_s": "blackout atlas (JSON array)",
        "sagan_s": "json.loads per line + ripe.atlas.sagan PingResult",
        "sagan_array_s": "json.loads of the array + ripe.atlas.sagan PingResult",
        "ours_damaged_s": "blackout atlas (JSON lines, one line cut)",
        "sagan_damaged_s": "json.loads per line + sagan (JSON lines, one line cut)",
    }
    for key, label in labels.items():
        print(f"  {label}: {med[key]:.3f} s ({min(times[key]):.3f}) {n / med[key]:,.0f} results/s")
    ratio = med["sagan_s"] / med["ours_s"]
    array_ratio = med["sagan_array_s"] / med["ours_array_s"]
    print(f"ratio: blackout is {ratio:.1f}x faster on JSON lines, {array_ratio:.1f}x on a JSON array")
    damaged_ratio = med["sagan_damaged_s"] / med["ours_damaged_s"]
    print(f"with one line cut: blackout is {damaged_ratio:.1f}x faster")
    print(f"blackout's array path takes {med['ours_array_s'] / med['ours_s']:.2f}x its JSON-lines time")
    best = {k: min(v) for k, v in times.items()}  # the least disturbed round: steadier on a busy machine
    print(
        f"best rounds: {best['sagan_s'] / best['ours_s']:.1f}x on JSON lines, "
        f"{best['sagan_array_s'] / best['ours_array_s']:.1f}x on a JSON array, "
        f"array {best['ours_array_s'] / best['ours_s']:.2f}x lines"
    )
    print(
        json.dumps(
            {
                "bench": "atlas",
                "results": n,
                "rounds": rounds,
                **med,
                "ratio": ratio,
                "array_ratio": array_ratio,
                "damaged_ratio": damaged_ratio,
            }
        )
    )


if __name__ == "__main__":
    main()

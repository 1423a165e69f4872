"""Benchmark: blackout's Atlas reader against RIPE's own parser (ripe.atlas.sagan) on the same results.

N ping results in the documented format (firmware >= 4400, 3 packets each,
some lost) are written as JSON lines, the layout of the Atlas API's
``format=txt`` downloads and of streaming.  blackout reads the file into probe
rows; the rival parses each line with ``json.loads`` and ``PingResult`` (what a
user of RIPE's tools would write) and collects the same fields.  A JSON array
(the API's default) is timed too: blackout parses it with the standard library.

Run: python bench/bench_atlas.py [N]
"""

from __future__ import annotations

import json
import random
import sys
import time
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


def sagan(lines: list[bytes]) -> tuple[float, int]:
    start = time.perf_counter()
    rows = []
    for line in lines:
        r = PingResult(json.loads(line))
        rows.append((r.created, r.probe_id, r.destination_address, r.packets_sent, r.packets_received, r.rtt_average))
    return time.perf_counter() - start, len(rows)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    objs = results(n)
    lines = [json.dumps(o).encode() for o in objs]
    jsonl = b"\n".join(lines)
    array = json.dumps(objs).encode()
    ours(jsonl[: len(jsonl) // 100])  # warm up Arrow's reader and the numba array walk
    ours(json.dumps(objs[:100]).encode())
    t_lines, rows = ours(jsonl)
    t_array, rows_a = ours(array)
    t_rival, rows_r = sagan(lines)
    assert rows == rows_a == rows_r == n
    ratio = t_rival / t_lines
    print(f"{n} ping results, {len(jsonl) / 1e6:.1f} MB of JSON lines")
    print(f"blackout atlas (JSON lines): {t_lines:.3f} s ({n / t_lines:,.0f} results/s)")
    print(f"blackout atlas (JSON array): {t_array:.3f} s ({n / t_array:,.0f} results/s)")
    print(f"json.loads + ripe.atlas.sagan PingResult: {t_rival:.3f} s ({n / t_rival:,.0f} results/s)")
    print(f"ratio: blackout is {ratio:.1f}x faster on JSON lines, {t_rival / t_array:.1f}x on a JSON array")
    out = {"bench": "atlas", "results": n, "ours_s": t_lines, "ours_array_s": t_array, "sagan_s": t_rival}
    print(json.dumps({**out, "ratio": ratio}))


if __name__ == "__main__":
    main()

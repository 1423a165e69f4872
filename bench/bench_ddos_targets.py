"""Benchmark: memory of the DDoS detector with a million distinct targets tracked (issue 5: < 512 MB).

Ticks of one-packet flows, each toward ``per_tick`` new destinations (dense in
10.0.0.0/8, so the /24 prefix targets add ~0.4 %), are fed straight into the
detector until ``targets`` hosts are held, then the same hosts once more (all
found, none new).  Printed: the bytes per target held in the detector's
per-target arrays (counted from the arrays), the process's RSS growth
(/proc/self/status, the tick tables themselves freed before measuring) and
the peak RSS growth, and the time per tick.  The rival, in the same run: the
same state as a dict of Python objects per target (what a detector without
columnar state holds), measured by RSS on a tenth of the targets and scaled.

Run: python bench/bench_ddos_targets.py [targets] [per_tick]
"""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any

import numpy as np
import pyarrow as pa

from blackout import addr
from blackout.detect.base import Tick
from blackout.detect.ddos import DdosDetector
from blackout.detect.ddos_config import DdosConfig
from blackout.model import FLOW_SCHEMA

US = 1_000_000
LIMIT_MB = 512


def rss_kb(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def tick_table(first: int, n: int, t_us: int) -> pa.Table:
    """n one-packet SYN rows toward hosts 10.0.0.0 + first .. + first + n - 1."""
    dst = (np.uint32(0x0A000000) + np.arange(first, first + n, dtype=np.uint32)).astype(np.uint32)
    ones = np.ones(n, np.uint64)
    return pa.table(
        {
            "ts": pa.array(np.full(n, t_us, np.int64), pa.int64()).cast(FLOW_SCHEMA.field("ts").type),
            "exporter": pa.array(np.full(n, "bench")),
            "src_addr": addr.from_v4_u32(np.full(n, 0xC0000201, np.uint32)),
            "dst_addr": addr.from_v4_u32(dst),
            "src_port": pa.array(np.full(n, 40000, np.uint16)),
            "dst_port": pa.array(np.full(n, 443, np.uint16)),
            "protocol": pa.array(np.full(n, 6, np.uint8)),
            "tcp_flags": pa.array(np.full(n, 0x02, np.uint8)),
            "fragment": pa.array(np.zeros(n, bool)),
            "ttl": pa.array(np.full(n, 60, np.uint8)),
            "bytes": pa.array(ones * np.uint64(60)),
            "packets": pa.array(ones),
            "sampling_rate": pa.array(np.ones(n, np.uint32)),
            "in_if": pa.array(np.zeros(n, np.uint32)),
            "out_if": pa.array(np.zeros(n, np.uint32)),
        },
        schema=FLOW_SCHEMA,
    )


def state_bytes(det: DdosDetector) -> int:
    """Bytes held in the per-target arrays of the detector's TargetState."""
    return sum(v.nbytes for v in vars(det.state).values() if isinstance(v, np.ndarray))


def feed(det: DdosDetector, targets: int, per_tick: int, t0: int) -> tuple[int, float, int]:
    """All targets in ticks of per_tick, then all of them again; (ticks, seconds, peak RSS kB seen)."""
    empty = tick_table(0, 0, 0)
    ticks, elapsed, peak = 0, 0.0, 0
    for _ in range(2):
        for first in range(0, targets, per_tick):
            table = tick_table(first, min(per_tick, targets - first), (t0 + ticks) * US)
            start = time.perf_counter()
            det.on_tick(Tick((t0 + ticks) * US, (t0 + ticks + 1) * US, table, empty, empty))
            elapsed += time.perf_counter() - start
            peak = max(peak, rss_kb())
            ticks += 1
            del table
    return ticks, elapsed, peak


def rival_bytes(targets: int) -> float:
    """Bytes per target of dict-of-objects state: per target a dict of the same fields (floats, ints, lists)."""
    gc.collect()
    before = rss_kb()
    state: dict[int, dict[str, Any]] = {}
    for i in range(targets):
        state[0x0A000000 + i] = {
            "hi": 0, "lo": 0xFFFF0A000000 + i, "tag": 128, "last_us": i, "ewma": [0.0, 0.0], "m1": [0.0, 0.0],
            "m2": [0.0, 0.0], "base_us": i, "ewma_us": -1, "inpaint_since": -1, "live": False,
            "served": [0.0] * 5, "asked": [0.0] * 5,
        }  # fmt: skip
    grown = (rss_kb() - before) * 1024
    del state
    return grown / targets


def main() -> None:
    targets = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    per_tick = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    cfg = DdosConfig(max_targets=targets + targets // 10 + 1024, threshold_pps=1e12, ban_for_bandwidth=False)
    gc.collect()
    before = rss_kb()
    det = DdosDetector(cfg)
    ticks, seconds, peak = feed(det, targets, per_tick, 1_700_000_000)
    gc.collect()
    after = rss_kb()
    held = len(det.state)
    hosts = int(np.count_nonzero(det.state.tag[det.state.index_slots] == 128))
    exact = state_bytes(det)
    growth_mb = (after - before) / 1024
    rival = rival_bytes(targets // 10)
    print(f"targets held {held:,} ({hosts:,} hosts, {held - hosts:,} /24 prefixes), {ticks} ticks of {per_tick:,}")
    print(f"state arrays      {exact / 2**20:8.1f} MB  {exact / held:6.1f} bytes per target (allocated slots included)")
    print(f"RSS growth        {growth_mb:8.1f} MB  {(after - before) * 1024 / held:6.1f} bytes per target")
    print(f"peak RSS growth   {(peak - before) / 1024:8.1f} MB  (limit {LIMIT_MB} MB)")
    sample = f"{targets // 10:,}"
    print(f"rival dict state  {rival * held / 2**20:8.1f} MB  {rival:6.1f} bytes per target (measured on {sample})")
    print(f"ratio rival / ours {rival * held / max(exact, 1):.1f}x;  {seconds / ticks * 1000:.0f} ms per tick")
    print(
        json.dumps(
            {
                "bench": "ddos_targets",
                "targets": held,
                "state_bytes_per_target": round(exact / held, 1),
                "rss_growth_mb": round(growth_mb, 1),
                "peak_rss_growth_mb": round((peak - before) / 1024, 1),
                "rival_bytes_per_target": round(rival, 1),
                "ms_per_tick": round(seconds / ticks * 1000, 1),
                "under_limit": growth_mb < LIMIT_MB and (peak - before) / 1024 < LIMIT_MB,
            }
        )
    )


if __name__ == "__main__":
    main()

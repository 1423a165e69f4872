"""Benchmark: routing state and longest-prefix match over the full jinx RIB (2014-05-30, 503,590 entries).

Measures, on the same table and the same addresses:
- applying the RIB to a RoutingState (vectorised) vs a Python dict fed one element at a time;
- blackout's LPM (numba kernel with a jump table) vs np.searchsorted over the same intervals,
  pytricia and pyasn (C tries from PyPI, if installed: `pip install pytricia pyasn`), and a
  Python ipaddress loop;
- the memory of the full-table routing state and of the LPM arrays.
Prints timings, ratios and a final JSON line.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute

from blackout import addr
from blackout.enrich.lpm import LpmTable
from blackout.enrich.routing import RoutingState
from blackout.sources import FILE_DECODERS, DecodeContext, read_input

RIB = Path(__file__).parent.parent / "tests" / "data" / "mrt" / "routeviews.route-views.jinx.ribs.1401487200.bz2"
N_ADDR = 5_000_000
N_RIVAL = 200_000  # per-address rivals are timed on fewer addresses, rate extrapolated


def load_rib() -> pa.Table:
    """The RIB as route elements, through blackout's MRT decoder."""
    return pa.Table.from_batches(list(FILE_DECODERS["mrt"].read(str(RIB), read_input(str(RIB)), DecodeContext())))


def dict_state(table: pa.Table) -> dict[tuple[bytes, bytes, int], tuple[int, str]]:
    """The rival way: one dict entry per element, Python loop."""
    state: dict[tuple[bytes, bytes, int], tuple[int, str]] = {}
    cols = [table.column(c).to_pylist() for c in ("peer_addr", "prefix", "prefix_len", "origin_asn", "as_path")]
    for peer, pfx, n, origin, path in zip(*cols, strict=True):
        state[(peer, pfx, n)] = (origin, path)
    return state


def best(fn: Callable[[], object], repeat: int = 3) -> float:
    """Best CPU time of a few runs (process time: all measured code is single-threaded, and CPU time
    stays meaningful on a shared, loaded machine)."""
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main() -> None:
    table = load_rib()
    state = RoutingState()
    t_apply = best(lambda: RoutingState().apply(table))
    state.apply(table)
    t_dict = best(lambda: dict_state(table), repeat=1)
    print(f"RIB apply: blackout {t_apply:.3f} s, python dict {t_dict:.3f} s, ratio {t_dict / t_apply:.1f}x")

    snap = state.snapshot()
    snap = snap.filter(pa.compute.greater(snap.column("prefix_len"), 0))  # default route: pyasn refuses it
    t_build = best(lambda: LpmTable.from_snapshot(snap), repeat=1)
    lpm = LpmTable.from_snapshot(snap)
    mem_state, mem_lpm = state.nbytes(), lpm.nbytes
    print(
        f"routes {len(state):,}, prefixes {snap.num_rows:,}: state {mem_state / 1e6:.1f} MB, LPM {mem_lpm / 1e6:.1f} MB"
    )
    print(f"LPM build {t_build:.3f} s")

    rng = np.random.default_rng(42)
    v4 = snap.column("prefix_len").to_numpy() <= 32
    starts = addr.v4_to_u32(snap.column("prefix"))[v4]
    inside = starts[rng.integers(0, len(starts), N_ADDR // 2)] + rng.integers(0, 256, N_ADDR // 2).astype(np.uint32)
    values = np.concatenate([inside, rng.integers(0, 2**32, N_ADDR - N_ADDR // 2, dtype=np.uint64).astype(np.uint32)])
    rng.shuffle(values)
    column = addr.from_v4_u32(values)
    lpm.lookup(column[:10])  # compile
    t_ours = best(lambda: lpm.lookup(column))
    rate = N_ADDR / t_ours
    print(f"LPM blackout: {N_ADDR:,} IPv4 addresses in {t_ours:.3f} s = {rate / 1e6:.1f} M/s")

    idx = lpm.v4
    t_np = best(lambda: idx.owner[np.searchsorted(idx.points, values.astype(np.uint64), side="right") - 1])
    print(f"LPM np.searchsorted: {t_np:.3f} s, ratio {t_np / t_ours:.1f}x")

    texts = addr.to_strings(column[:N_RIVAL])
    prefixes = [p for p in lpm.prefix_texts(np.arange(len(lpm))) if p is not None]  # rows >= 0: none is None
    origins = snap.column("origin_asn").to_pylist()
    results: dict[str, float] = {"lpm_mps": rate / 1e6, "apply_rib_s": t_apply, "dict_rib_s": t_dict}
    results["numpy_searchsorted_ratio"] = t_np / t_ours
    try:
        import pytricia

        trie = pytricia.PyTricia(128)
        for p, o in zip(prefixes, origins, strict=True):
            trie[p] = o
        t = best(lambda: [trie.get(a) for a in texts], repeat=1) * N_ADDR / N_RIVAL
        print(f"LPM pytricia (per address, extrapolated): {t:.3f} s, ratio {t / t_ours:.1f}x")
        results["pytricia_ratio"] = t / t_ours
    except ImportError:
        print("pytricia not installed: pip install pytricia")
    try:
        import pyasn

        with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as fh:
            fh.write("; IP-ASN32-DAT\n")
            rows = zip(prefixes, origins, strict=True)  # pyasn refuses origin 0 (AS_SET origins): left out
            fh.writelines(f"{p}\t{o}\n" for p, o in rows if ":" not in str(p) and o)
        asndb = pyasn.pyasn(fh.name)
        os.unlink(fh.name)
        t = best(lambda: [asndb.lookup(a) for a in texts], repeat=1) * N_ADDR / N_RIVAL
        print(f"LPM pyasn (per address, extrapolated): {t:.3f} s, ratio {t / t_ours:.1f}x")
        results["pyasn_ratio"] = t / t_ours
    except ImportError:
        print("pyasn not installed: pip install pyasn")
    table_full: dict[int, dict[int, int]] = {}
    for p, o in zip(prefixes, origins, strict=True):
        net = ipaddress.ip_network(p)
        if net.version == 4:
            table_full.setdefault(net.prefixlen, {})[int(net.network_address)] = o
    lengths = sorted(table_full, reverse=True)

    def ipaddress_loop() -> None:
        for a in texts[: N_RIVAL // 4]:
            v = int(ipaddress.IPv4Address(a))
            for n in lengths:
                if (v >> (32 - n) << (32 - n) if n else 0) in table_full[n]:
                    break

    t = best(ipaddress_loop, repeat=1) * N_ADDR / (N_RIVAL // 4)
    print(f"LPM python ipaddress loop (extrapolated): {t:.3f} s, ratio {t / t_ours:.1f}x")
    results["ipaddress_ratio"] = t / t_ours
    results.update({"state_mb": mem_state / 1e6, "lpm_mb": mem_lpm / 1e6, "lpm_build_s": t_build})
    print(json.dumps({"bench": "lpm", **{k: round(v, 3) for k, v in results.items()}}))


if __name__ == "__main__":
    main()

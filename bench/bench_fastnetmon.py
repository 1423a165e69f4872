"""Benchmark: detection delay and attack vector, blackout against FastNetMon 1.2.4 on the same live replay.

Every attack capture of tests/data/pcap/stopddos and cicddos2019 is played
by tcpreplay into a fresh veth pair (inside a network namespace this script
makes and removes) while FastNetMon (AF_PACKET mirror) and ``blackout collect
--interface`` watch the namespace's end with the same thresholds
(``threshold_pps`` 500, ``ban_for_pps`` on, 5 s average); each one's notify
script stamps its ban.  Delay = ban wall clock − replay start.  Each capture
is played at its recorded speed and at a fixed 2,000 packets/s (bounded in
packets and seconds).  A last run replays the SYN flood 8 times over at
tcpreplay's top speed (~300k frames) to show the capture keeps up (frames
received vs. kernel drops).

Run as root: python bench/bench_fastnetmon.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
from fnm_side import Run, side_by_side  # noqa: E402  (the harness tests/test_fastnetmon.py uses)

CAPTURES = sorted((TESTS / "data/pcap/stopddos").glob("*.pcap*")) + sorted(
    (TESTS / "data/pcap/cicddos2019").glob("*.pcap*")
)
NETWORKS = ("10.10.10.0/24", "192.168.50.0/24")  # StopDDoS victims, CIC-DDoS2019 victims


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def row(run: Run, mode: str) -> dict[str, Any]:
    """One table row: both delays, FNM's type, blackout's vector and FNM delay / blackout delay."""
    fnm, bo = run.fnm, run.blackout
    ratio = fnm.delay_s / bo.delay_s if fnm and bo and bo.delay_s > 0 else None
    iface: dict[str, Any] = next(iter(run.report.get("interfaces", {}).values()), {})  # the replay's veth end
    return {
        "capture": run.capture,
        "mode": mode,
        "crossing_s": run.crossing_s,
        "fnm_delay_s": fnm.delay_s if fnm else None,
        "fnm_target": fnm.target if fnm else None,
        "fnm_type": fnm.kind if fnm else None,
        "blackout_delay_s": bo.delay_s if bo else None,
        "blackout_target": bo.target if bo else None,
        "blackout_vector": bo.kind if bo else None,
        "fnm_over_blackout": ratio,
        "replayed": run.replayed,
        "replay_pps": run.replay_pps,
        "captured": iface.get("packets"),
        "kernel_drops": iface.get("kernel_drops"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="recorded speed only, no top-speed run")
    parser.add_argument("--tick-s", type=float, default=1.0, help="blackout's engine.tick_s (default 1, the default)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fnm-") as tmp:
        modes: list[tuple[str, float | None]] = [("recorded", None)] + ([] if args.quick else [("2000pps", 2000.0)])
        for mode, pps in modes:
            for pcap in CAPTURES:
                work = Path(tmp) / f"{pcap.stem}-{mode}"
                run = side_by_side(pcap, work, networks=NETWORKS, pps=pps, limit=40000, tick_s=args.tick_s)
                rows.append(row(run, mode))
                r = rows[-1]
                print(
                    f"{r['capture'][:44]:44} {mode:8} FNM {_fmt(r['fnm_delay_s']):>5} s {r['fnm_type']!s:10}"
                    f" blackout {_fmt(r['blackout_delay_s']):>5} s {r['blackout_vector']!s:22}"
                    f" ratio {_fmt(r['fnm_over_blackout']):>5}  victim {r['fnm_target']} / {r['blackout_target']}",
                    flush=True,
                )
        top = None
        if not args.quick:
            syn = TESTS / "data/pcap/stopddos/pkt.TCP.synflood.spoofed.pcap"
            run = side_by_side(
                syn,
                Path(tmp) / "top",
                networks=NETWORKS,
                topspeed=True,
                loops=8,
                limit=300000,
                max_s=20,
                after_s=20,
                tick_s=args.tick_s,
            )
            top = row(run, "top")
            print(
                f"top speed: tcpreplay {top['replay_pps']:,.0f} pps, {top['replayed']:,} sent; blackout captured"
                f" {top['captured']:,}, kernel drops {top['kernel_drops']:,}; FNM {_fmt(top['fnm_delay_s'])} s,"
                f" blackout {_fmt(top['blackout_delay_s'])} s"
            )
    both = [r for r in rows if r["fnm_over_blackout"] is not None]
    summary = {
        "bench": "fastnetmon",
        "tick_s": args.tick_s,
        "runs": rows,
        "top_speed": top,
        "both_detected": len(both),
        "blackout_not_later": sum(r["blackout_delay_s"] <= r["fnm_delay_s"] for r in both),
        "median_fnm_over_blackout": statistics.median(r["fnm_over_blackout"] for r in both) if both else None,
        "median_fnm_delay_s": statistics.median(r["fnm_delay_s"] for r in both) if both else None,
        "median_blackout_delay_s": statistics.median(r["blackout_delay_s"] for r in both) if both else None,
    }
    print(
        f"tick {args.tick_s:g} s: both detected {summary['both_detected']}/{len(rows)};"
        f" blackout not later in {summary['blackout_not_later']};"
        f" median delay FNM {_fmt(summary['median_fnm_delay_s'])} s, blackout"
        f" {_fmt(summary['median_blackout_delay_s'])} s, ratio {_fmt(summary['median_fnm_over_blackout'])}"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

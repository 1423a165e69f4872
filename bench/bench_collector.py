"""Benchmark: the live collector's zero-loss datagram rate on loopback against nfcapd's, same sender.

A real export is captured once: softflowd turns the StopDDoS SYN flood pcap
into NetFlow v9 and IPFIX datagrams, received by a plain UDP socket.  One
sender (this script run with ``--send``, a paced ``sendto`` loop in its own
process) replays whole passes of those exports — v9 from 127.0.0.9, IPFIX from
127.0.0.10, so each pass starts with its templates — at stepped rates to
(a) ``blackout collect`` and (b) ``nfcapd``, each started fresh per step on
127.0.0.1, each asking for a 64 MB receive buffer (blackout forces it past
net.core.rmem_max with SO_RCVBUFFORCE; nfcapd's -B uses SO_RCVBUF, capped there).  What each kept is compared with what
was sent: blackout's report (datagrams decoded, records, kernel drops), and
nfcapd's flows as ``nfdump -I`` totals them plus its socket's kernel drops.
The highest rate with zero loss for each, and their ratio, end the run.

Run: python bench/bench_collector.py [--rates 10000,20000,...] [--seconds S] [--keep-flows]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from blackout.collect.udp import RCVBUF, kernel_drops, record_export
from blackout.sources.base import DecodeContext
from blackout.sources.netflow import NetflowDecoder

ROOT = Path(__file__).resolve().parent.parent
PCAP = ROOT / "tests/data/pcap/stopddos/pkt.TCP.synflood.spoofed.pcap"
RATES = [10_000, 20_000, 40_000, 60_000, 80_000, 100_000, 150_000, 200_000]
SOURCES = {9: "127.0.0.9", 10: "127.0.0.10"}  # one exporter address per version, apart from other local traffic


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def capture(version: int) -> list[bytes]:
    """Every datagram softflowd exports for the pcap."""
    exe = shutil.which("softflowd") or sys.exit("softflowd is not installed")
    return record_export(
        lambda port: [exe, "-r", str(PCAP), "-n", f"127.0.0.1:{port}", "-v", str(version), "-A", "milli"]
    )


def write_passes(path: Path, exports: dict[int, list[bytes]]) -> None:
    """The exports as one length-prefixed file: version, count, then (length, payload) each."""
    with open(path, "wb") as fh:
        for version, datagrams in exports.items():
            fh.write(struct.pack("!HI", version, len(datagrams)))
            for d in datagrams:
                fh.write(struct.pack("!H", len(d)) + d)


def send(path: str, port: int, rate: int, passes: int) -> None:
    """The sender: whole passes (v9 then IPFIX, alternating) at rate datagrams/s; prints sent count and seconds."""
    exports: list[tuple[str, list[bytes]]] = []
    with open(path, "rb") as fh:
        while head := fh.read(6):
            version, n = struct.unpack("!HI", head)
            items = []
            for _ in range(n):
                (length,) = struct.unpack("!H", fh.read(2))
                items.append(fh.read(length))
            exports.append((SOURCES[version], items))
    socks = []
    for src, _ in exports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        socks.append(s)
    dst = ("127.0.0.1", port)
    tick = 0.001  # pace every 64 datagrams to the schedule, sleeping when ahead, catching up when late
    sent = 0
    start = time.perf_counter()
    for p in range(passes):
        k = p % len(exports)
        sendto = socks[k].sendto
        for d in exports[k][1]:
            sendto(d, dst)
            sent += 1
            if sent % 64 == 0:
                due = start + sent / rate
                while (now := time.perf_counter()) < due - tick:
                    time.sleep(min(tick, due - now))
    elapsed = time.perf_counter() - start
    print(json.dumps({"sent": sent, "seconds": elapsed}), flush=True)


def run_sender(data: Path, port: int, rate: int, passes: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--send", str(data), str(port), str(rate), str(passes)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def step_blackout(tmp: Path, data: Path, rate: int, passes: int, keep_flows: bool) -> dict:
    """One step against `blackout collect`: what it decoded and what the kernel dropped."""
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("blackout")), "collect", "--netflow", str(port), "--bind", "127.0.0.1"]
    cmd += ["--json", "--stats-interval", "3600", "--db", str(tmp / f"b{rate}.duckdb")]
    cmd += ["--set", f"store.keep_flows={'true' if keep_flows else 'false'}"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CI": "1"}
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "listening" not in line:
        sys.exit(f"blackout collect did not start: {line}")
    sent = run_sender(data, port, rate, passes)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    report = json.loads(out.strip().splitlines()[-1])
    exporters = [report["exporters"].get(src, {}) for src in SOURCES.values()]
    return {
        **sent,
        "datagrams": sum(e.get("datagrams", 0) for e in exporters),
        "records": sum(e.get("records", 0) for e in exporters),
        "drops": sum(report["kernel_drops"].values()),
    }


def step_nfcapd(tmp: Path, data: Path, rate: int, passes: int) -> dict:
    """One step against nfcapd: the flows nfdump finds in its files, and its socket's kernel drops."""
    port = free_port()
    out = tmp / f"nfcapd{rate}"
    out.mkdir()
    exe = shutil.which("nfcapd") or sys.exit("nfcapd is not installed")
    cmd = [exe, "-b", "127.0.0.1", "-p", str(port), "-w", str(out), "-B", str(RCVBUF), "-t", "3600"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    sent = run_sender(data, port, rate, passes)
    time.sleep(1.5)
    drops = kernel_drops([port])[port]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    flows = 0
    for f in sorted(p for p in out.rglob("nfcapd.*") if "current" not in p.name):
        info = subprocess.run(["nfdump", "-r", str(f), "-I"], capture_output=True, text=True, check=True)
        for row in info.stdout.splitlines():
            key, _, value = row.partition(":")
            if key.strip() == "Flows":
                flows += int(value)
    return {**sent, "records": flows, "drops": drops}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--send":
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default=",".join(map(str, RATES)), help="datagrams/s per step, comma separated")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds per step (rounded to whole passes)")
    ap.add_argument("--keep-flows", action="store_true", help="blackout also stores every flow (store.keep_flows)")
    args = ap.parse_args()
    exports = {v: capture(v) for v in SOURCES}
    per_pass = {}
    for v, datagrams in exports.items():
        ctx = DecodeContext()
        per_pass[v] = (
            NetflowDecoder()
            .decode(datagrams, [SOURCES[v]] * len(datagrams), np.zeros(len(datagrams), "i8"), ctx)
            .num_rows
        )
    sizes = {v: len(d) for v, d in exports.items()}
    print(f"export: datagrams per pass {sizes}, records per pass {per_pass}")
    rates = [int(r) for r in args.rates.split(",")]
    results: dict[str, dict[int, dict]] = {"blackout": {}, "nfcapd": {}}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        data = tmp / "export.bin"
        write_passes(data, exports)
        versions = list(exports)
        print(
            f"{'rate/s':>8} {'who':>8} {'sent':>8} {'sent/s':>8} {'kept dgr':>9} {'records':>9}"
            f" {'expected':>9} {'drops':>7} loss"
        )
        for rate in rates:
            passes = max(2, round(rate * args.seconds / (sum(sizes.values()) / 2)))
            expected_d = sum(sizes[versions[p % 2]] for p in range(passes))
            expected_r = sum(per_pass[versions[p % 2]] for p in range(passes))
            for who in ("blackout", "nfcapd"):
                if who == "blackout":
                    r = step_blackout(tmp, data, rate, passes, args.keep_flows)
                else:
                    r = step_nfcapd(tmp, data, rate, passes)
                assert r["sent"] == expected_d
                r["expected"] = expected_r
                r["lossless"] = (
                    r["records"] == expected_r and r["drops"] == 0 and r.get("datagrams", expected_d) == expected_d
                )
                results[who][rate] = r
                kept = str(r.get("datagrams", "-"))
                print(
                    f"{rate:>8} {who:>8} {r['sent']:>8} {r['sent'] / r['seconds']:>8.0f} {kept:>9} {r['records']:>9}"
                    f" {expected_r:>9} {r['drops']:>7} {'none' if r['lossless'] else 'LOSS'}",
                    flush=True,
                )
    best = {}
    for who, steps in results.items():
        ok = 0.0
        for rate in rates:  # the highest step with zero loss below the first lossy one
            if not steps[rate]["lossless"]:
                break
            ok = steps[rate]["sent"] / steps[rate]["seconds"]
        best[who] = ok
    ratio = best["blackout"] / best["nfcapd"] if best["nfcapd"] else float("inf")
    print(f"zero-loss rate: blackout {best['blackout']:,.0f}/s, nfcapd {best['nfcapd']:,.0f}/s, ratio {ratio:.2f}")
    print(
        json.dumps(
            {
                "bench": "collector",
                "blackout_zero_loss_dps": round(best["blackout"]),
                "nfcapd_zero_loss_dps": round(best["nfcapd"]),
                "ratio": round(ratio, 2),
                "keep_flows": args.keep_flows,
                "steps": {w: {str(k): v for k, v in s.items()} for w, s in results.items()},
            }
        )
    )


if __name__ == "__main__":
    main()

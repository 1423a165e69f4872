"""Benchmark: blackout's sFlow decoder against tshark on the same datagrams.

The real sFlow datagrams bundled in tests/data are replicated to N datagrams
and written to one pcap (UDP to port 6343).  The rival, tshark, reads that pcap
and prints the per-sample fields (`-T fields`), timed by wall clock.  blackout
decodes the same UDP payloads, in chunks of CHUNK datagrams as the collector
would hand them over.  No pure-Python sFlow decoder on PyPI installs and runs
(`sflow` is a TensorFlow helper; `pysflow` 0.1.2 ships without its flow and
counter modules), so tshark is the rival.

Run: python bench/bench_sflow.py [N]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dpkt
import numpy as np

from blackout.sources.base import DecodeContext
from blackout.sources.sflow import DATAGRAMS, looks_like_sflow

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "flow"
CHUNK = 4096


def real_datagrams() -> list[bytes]:
    """Every sFlow UDP payload of the bundled captures."""
    paths = sorted((DATA / "akvorado" / "sflow").glob("*.pcap")) + sorted((DATA / "pcap").glob("sflow*.pcap"))
    out = []
    for path in paths:
        with open(path, "rb") as fh:
            for _, frame in dpkt.pcap.Reader(fh):
                ip = dpkt.ethernet.Ethernet(frame).data
                if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(ip.data, dpkt.udp.UDP):
                    payload = bytes(ip.data.data)[: max(0, ip.data.ulen - 8)]
                    if looks_like_sflow(payload):
                        out.append(payload)
    return out


def write_pcap(path: Path, payloads: list[bytes]) -> None:
    """The payloads as UDP datagrams from 127.0.0.2 to 127.0.0.1:6343."""
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for i, payload in enumerate(payloads):
            udp = dpkt.udp.UDP(sport=40000, dport=6343, data=payload)
            udp.ulen = 8 + len(payload)
            ip = dpkt.ip.IP(src=b"\x7f\0\0\x02", dst=b"\x7f\0\0\x01", p=17, data=udp)
            ip.len = 20 + udp.ulen
            writer.writepkt(bytes(dpkt.ethernet.Ethernet(type=0x0800, data=ip)), ts=1.7e9 + i * 1e-3)


def ours(payloads: list[bytes]) -> tuple[float, int]:
    """Seconds to decode all payloads in collector-sized chunks, and the flow records made."""
    exporters = ["127.0.0.2:40000"] * CHUNK
    arrival = np.arange(CHUNK, dtype=np.int64)
    DATAGRAMS.decode(
        payloads[:CHUNK], exporters[: len(payloads[:CHUNK])], arrival[: len(payloads[:CHUNK])], DecodeContext()
    )
    ctx = DecodeContext()
    rows = 0
    start = time.perf_counter()
    for at in range(0, len(payloads), CHUNK):
        part = payloads[at : at + CHUNK]
        rows += DATAGRAMS.decode(part, exporters[: len(part)], arrival[: len(part)], ctx).num_rows
    return time.perf_counter() - start, rows


def tshark(pcap: Path) -> tuple[float, int]:
    """Seconds for tshark to print the per-sample fields of the pcap, and the number of IP sources it printed."""
    exe = shutil.which("tshark")
    if exe is None:
        raise SystemExit("tshark is not installed (apt-get install tshark)")
    fields = ["sflow_245.sampletype", "sflow.flow_sample.sampling_rate", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst"]
    fields += ["tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "sflow.flow_sample.input_interface"]
    cmd = [exe, "-r", str(pcap), "-n", "-T", "fields", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, check=True, text=True).stdout
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(line.split("\t")[2].split(",")) for line in out.splitlines() if line.split("\t")[2])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    real = real_datagrams()
    payloads = (real * (n // len(real) + 1))[:n]
    size = sum(map(len, payloads))
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "sflow-bench.pcap"
        write_pcap(pcap, payloads)
        t_ours, rows = ours(payloads)
        t_rival, _ = tshark(pcap)
    ratio = t_rival / t_ours
    print(f"{n} datagrams ({len(real)} real ones replicated), {size / 1e6:.1f} MB, {rows} flow records")
    print(f"blackout sflow: {t_ours:.3f} s ({n / t_ours:,.0f} datagrams/s, {rows / t_ours:,.0f} records/s)")
    print(f"tshark -T fields: {t_rival:.3f} s ({n / t_rival:,.0f} datagrams/s)")
    print(f"ratio: blackout is {ratio:.1f}x faster")
    print(json.dumps({"bench": "sflow", "datagrams": n, "ours_s": t_ours, "tshark_s": t_rival, "ratio": ratio}))


if __name__ == "__main__":
    main()

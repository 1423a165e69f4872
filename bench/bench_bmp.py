"""Benchmark: blackout's BMP stream parser against tshark's bmp dissector on the same stream.

Input: real BGP UPDATEs — every BGP4MP message of a bundled RouteViews updates
archive — each wrapped in a BMP Route Monitoring message (per-peer header from
the MRT record's peer, AS and time), replicated to about N messages.  blackout
feeds the byte stream to :class:`BmpStream` in 64 KiB pieces, as the listener
receives it.  The rival, tshark, reads the same stream as TCP segments in a
pcap (decoded as BMP) and prints message types and prefixes (``-T fields``).
No maintained pure-Python BMP parser installs on PyPI (ryu's was last released
in 2020), so tshark is the rival.

Run: python bench/bench_bmp.py [N]
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

from blackout.sources.base import DecodeContext, read_input
from blackout.sources.bmp import BmpStream

TESTS = Path(__file__).resolve().parent.parent / "tests"
MRT = TESTS / "data" / "mrt" / "routeviews.updates.20131201.0000.bz2"
sys.path.insert(0, str(TESTS))
from bmp_writers import mrt_to_bmp  # noqa: E402  (test scaffolding shared with tests/test_bmp.py)

PIECE = 1 << 16
SEGMENT = 16000  # TCP payload per captured segment


def bmp_messages() -> list[bytes]:
    """Each BGP4MP(_ET) MESSAGE(_AS4) of the archive as a BMP Route Monitoring message."""
    return mrt_to_bmp(read_input(str(MRT)))


def write_pcap(path: Path, stream: bytes) -> None:
    """The stream as TCP segments from 127.0.0.2 to 127.0.0.1:11019 (tshark reassembles the messages)."""
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        seq = 1000
        for i, at in enumerate(range(0, len(stream), SEGMENT)):
            seg = stream[at : at + SEGMENT]
            tcp = dpkt.tcp.TCP(sport=40000, dport=11019, seq=seq, ack=1, flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH)
            tcp.data = seg
            seq += len(seg)
            ip = dpkt.ip.IP(src=b"\x7f\0\0\x02", dst=b"\x7f\0\0\x01", p=6, data=tcp)
            ip.len = 20 + len(bytes(tcp))
            writer.writepkt(bytes(dpkt.ethernet.Ethernet(type=0x0800, data=ip)), ts=1.7e9 + i * 1e-3)


def ours(stream: bytes) -> tuple[float, int]:
    """Seconds to parse the stream fed in listener-sized pieces, and the route elements made."""
    list(BmpStream("warm", DecodeContext()).feed(stream[: 1 << 20]))  # compile / load the numba cache
    parser = BmpStream("bench", DecodeContext())
    rows = 0
    start = time.perf_counter()
    for at in range(0, len(stream), PIECE):
        rows += sum(b.num_rows for b in parser.feed(stream[at : at + PIECE], 0))
    return time.perf_counter() - start, rows


def tshark(pcap: Path) -> tuple[float, int]:
    """Seconds for tshark to print each message's type and prefixes, and the number of messages it printed."""
    exe = shutil.which("tshark")
    if exe is None:
        raise SystemExit("tshark is not installed (apt-get install tshark)")
    cmd = [exe, "-r", str(pcap), "-n", "-d", "tcp.port==11019,bmp", "-T", "fields", "-E", "occurrence=a"]
    for f in ("bmp.type", "bgp.nlri_prefix", "bgp.withdrawn_prefix", "bgp.mp_reach_nlri_ipv6_prefix"):
        cmd += ["-e", f]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, check=True, text=True).stdout
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(line.split("\t")[0].split(",")) for line in out.splitlines() if line.strip())


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    real = bmp_messages()
    msgs = (real * (n // len(real) + 1))[:n]
    stream = b"".join(msgs)
    with tempfile.TemporaryDirectory() as tmp:
        pcap = Path(tmp) / "bmp-bench.pcap"
        write_pcap(pcap, stream)
        t_ours, rows = ours(stream)
        t_rival, seen = tshark(pcap)
    if seen != n:
        print(f"warning: tshark dissected {seen} of {n} messages")
    ratio = t_rival / t_ours
    print(f"{n} BMP messages ({len(real)} real UPDATEs replicated), {len(stream) / 1e6:.1f} MB, {rows} route elements")
    print(f"blackout BmpStream: {t_ours:.3f} s ({n / t_ours:,.0f} messages/s, {rows / t_ours:,.0f} elements/s)")
    print(f"tshark -T fields: {t_rival:.3f} s ({seen:,} messages dissected, {seen / t_rival:,.0f} messages/s)")
    print(f"ratio: blackout is {ratio:.1f}x faster")
    print(json.dumps({"bench": "bmp", "messages": n, "elements": rows, "ours_s": t_ours, "tshark_s": t_rival,
                      "ratio": ratio}))  # fmt: skip


if __name__ == "__main__":
    main()

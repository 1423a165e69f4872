"""pcap → flow batches: blackout's decoder against a dpkt loop, on the biggest bundled attack captures.

The rival is what a Python tool usually does: ``dpkt.pcap.Reader`` and one
``dpkt.ethernet.Ethernet`` per packet, the same fields (addresses, ports,
protocol, TCP flags, IP length, TTL, fragment flag, time) appended to lists.
Each capture is also run repeated ten times in memory, for a longer run.

    python bench/bench_pcap.py
"""

from __future__ import annotations

import io
import json
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import dpkt

from blackout.sources import FILE_DECODERS, DecodeContext

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "pcap"
FILES = [
    DATA / "stopddos/pkt.TCP.synflood.spoofed.pcap",
    DATA / "stopddos/amp.dns.RRSIG.fragmented.pcap",
    DATA / "cicddos2019/CIC-DDoS-2019-SynFlood.pcap",
]


class Result(TypedDict):
    """One capture's line of the JSON summary."""

    input: str
    rows: int
    blackout_s: float
    dpkt_s: float
    ratio: float


def ours(name: str, data: bytes) -> int:
    """Rows decoded by blackout's pcap decoder."""
    ctx = DecodeContext()
    return sum(batch.num_rows for batch in FILE_DECODERS["pcap"].read(name, data, ctx))


def dpkt_loop(name: str, data: bytes) -> int:
    """Rows a dpkt loop extracts into lists."""
    cols: dict[str, list] = {k: [] for k in ("ts", "src", "dst", "sport", "dport", "proto", "flags", "len", "ttl")}
    cols["frag"] = []
    for ts, frame in dpkt.pcap.Reader(io.BytesIO(data)):
        ip = dpkt.ethernet.Ethernet(frame).data
        if isinstance(ip, dpkt.ip.IP):
            cols["len"].append(ip.len)
            cols["ttl"].append(ip.ttl)
            cols["frag"].append(bool(ip.mf or ip.offset))
        elif isinstance(ip, dpkt.ip6.IP6):
            cols["len"].append(ip.plen + 40)
            cols["ttl"].append(ip.hlim)
            cols["frag"].append(44 in ip.extension_hdrs and ip.extension_hdrs[44] is not None)
        else:
            continue
        cols["ts"].append(ts)
        cols["src"].append(ip.src)
        cols["dst"].append(ip.dst)
        cols["proto"].append(ip.p)
        l4 = ip.data
        tcp_udp = isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP)
        cols["sport"].append(l4.sport if tcp_udp else 0)
        cols["dport"].append(l4.dport if tcp_udp else (l4.type << 8 | l4.code if isinstance(l4, dpkt.icmp.ICMP) else 0))
        cols["flags"].append(l4.flags if isinstance(l4, dpkt.tcp.TCP) else 0)
    return len(cols["ts"])


def repeated(data: bytes, times: int) -> bytes:
    """The capture's records repeated after its one file header."""
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4
    return data[:24] + data[24:] * times


def best(fn: Callable[[str, bytes], int], name: str, data: bytes, runs: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(runs):
        t0 = time.perf_counter()
        rows = fn(name, data)
        times.append(time.perf_counter() - t0)
    return min(times), rows


def main() -> None:
    t0 = time.perf_counter()
    ours("warm-up", FILES[0].read_bytes()[:4096])
    print(f"first call (numba JIT or cache load): {time.perf_counter() - t0:.2f} s")
    results: list[Result] = []
    for path in FILES:
        for times in (1, 10):
            data = path.read_bytes() if times == 1 else repeated(path.read_bytes(), times)
            mine, rows = best(ours, path.name, data, 5)
            rival, rival_rows = best(dpkt_loop, path.name, data, 1 if times > 1 else 2)
            ratio = rival / mine
            label = f"{path.name} x{times}"
            print(
                f"{label:50s} {rows:8d} rows  blackout {mine * 1000:8.1f} ms ({rows / mine / 1e6:5.2f} Mpps)"
                f"  dpkt {rival * 1000:8.1f} ms ({rival_rows} rows)  ratio {ratio:6.1f}x"
            )
            results.append({"input": label, "rows": rows, "blackout_s": mine, "dpkt_s": rival, "ratio": ratio})
    worst = min(r["ratio"] for r in results)
    print(f"worst ratio {worst:.1f}x (target >= 20x)")
    print(json.dumps({"bench": "pcap", "target_ratio": 20, "worst_ratio": round(worst, 1), "results": results}))


if __name__ == "__main__":
    main()

"""Benchmark: blackout's NetFlow v9 / IPFIX decoder against the PyPI `netflow` package.

Both decode the same datagrams: softflowd's v9 and IPFIX export of the StopDDoS SYN
flood (37,669 flows), captured to memory from a local UDP socket.  Prints both
timings, the ratio, and a final JSON line.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import netflow.ipfix
import netflow.v9
import numpy as np

from blackout.sources.base import DecodeContext
from blackout.sources.netflow import DATAGRAM

SYNFLOOD = Path(__file__).parent.parent / "tests" / "data" / "pcap" / "stopddos" / "pkt.TCP.synflood.spoofed.pcap"


def capture(version: int) -> list[bytes]:
    """softflowd's export of the SYN flood, received on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.bind(("127.0.0.1", 0))
    cmd = ["timeout", "60", "softflowd", "-r", str(SYNFLOOD), "-n", f"127.0.0.1:{sock.getsockname()[1]}"]
    proc = subprocess.Popen([*cmd, "-v", str(version)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: list[bytes] = []
    sock.settimeout(1.0)
    while True:
        try:
            out.append(sock.recv(65535))
        except TimeoutError:
            if proc.poll() is not None:
                break
    sock.close()
    return out


def ours(datagrams: list[bytes]) -> int:
    ctx = DecodeContext()
    batch = DATAGRAM.decode(datagrams, ["127.0.0.1"] * len(datagrams), np.zeros(len(datagrams), np.int64), ctx)
    return batch.num_rows


def theirs(datagrams: list[bytes], version: int) -> int:
    templates: dict = {"netflow": {}, "ipfix": {}}
    n = 0
    for d in datagrams:
        if version == 9:
            n += len(netflow.v9.V9ExportPacket(d, templates["netflow"]).flows)
        else:
            n += len(netflow.ipfix.IPFIXExportPacket(d, templates["ipfix"]).flows)
    return n


def best(fn: object, repeat: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times), n


def main() -> None:
    results = {}
    for version in (9, 10):
        datagrams = capture(version)
        ours(datagrams[:50])  # warm the numba/dtype caches
        t_ours, n_ours = best(lambda d=datagrams: ours(d), 5)
        t_theirs, n_theirs = best(lambda d=datagrams, v=version: theirs(d, v), 2)
        ratio = t_theirs / t_ours
        name = "v9" if version == 9 else "ipfix"
        print(
            f"{name}: {len(datagrams)} datagrams, {n_ours} flows (netflow pkg {n_theirs}); "
            f"blackout {t_ours * 1e3:.1f} ms ({n_ours / t_ours / 1e6:.2f} M flows/s), "
            f"netflow {t_theirs * 1e3:.1f} ms; ratio {ratio:.1f}x"
        )
        results[name] = {"datagrams": len(datagrams), "flows": n_ours, "ours_s": t_ours, "theirs_s": t_theirs}
        results[name]["ratio"] = ratio
    print(json.dumps({"bench": "netflow", **results}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""The live collector keeps every datagram of a real export replayed at a modest steady rate (loopback, bounded)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from blackout.collect.udp import record_export
from conftest import need_tool
from test_collect import SYN, free_port, nfdump_totals, start_collect, stop_collect

RATE = 5000  # datagrams/s
SECONDS = 2.0


def captured_export() -> list[bytes]:
    """softflowd's NetFlow v9 export of the SYN flood, as the datagrams it sent."""
    exe = need_tool("softflowd")
    return record_export(lambda port: [exe, "-r", str(SYN), "-n", f"127.0.0.1:{port}", "-v", "9", "-A", "milli"])


def test_collector_keeps_every_datagram_at_5k_per_second(tmp_path: Path) -> None:
    reference = nfdump_totals(tmp_path, SYN, 9)  # flows nfcapd stores from one pass of the export
    export = captured_export()
    passes = max(1, round(RATE * SECONDS / len(export)))
    port = free_port()
    proc = start_collect(tmp_path, port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.11", 0))  # an exporter address of its own, apart from any other local traffic
        sent = 0
        start = time.perf_counter()
        for _ in range(passes):  # whole passes: each starts with its templates
            for d in export:
                s.sendto(d, ("127.0.0.1", port))
                sent += 1
                if sent % 50 == 0 and (ahead := start + sent / RATE - time.perf_counter()) > 0:
                    time.sleep(ahead)
        elapsed = time.perf_counter() - start
    report = stop_collect(proc)
    assert sent / elapsed <= RATE * 1.05  # the pacing held: this really was the modest rate
    exporter = report["exporters"]["127.0.0.11"]
    assert exporter["datagrams"] == sent
    assert exporter["records"] == passes * reference["flows"]
    assert exporter.get("decode_errors", 0) == 0
    assert sum(report["kernel_drops"].values()) == 0

"""The live collector against real exporters: softflowd sends, nfcapd/nfdump is the reference collector."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, need_tool

SYN = DATA / "pcap/stopddos/pkt.TCP.synflood.spoofed.pcap"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def softflowd(pcap: Path, port: int, version: int) -> None:
    """Export a capture as NetFlow/IPFIX to 127.0.0.1:port (softflowd flushes at end of file and exits)."""
    subprocess.run(
        [need_tool("softflowd"), "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-v", str(version), "-A", "milli"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def nfdump_totals(tmp: Path, pcap: Path, version: int) -> dict[str, int]:
    """What nfcapd stores from the same export, totalled by nfdump -I."""
    port = free_port()
    out = tmp / f"nfcapd{version}"
    out.mkdir()
    collector = subprocess.Popen(
        [need_tool("nfcapd"), "-b", "127.0.0.1", "-p", str(port), "-w", str(out), "-B", "8388608", "-t", "3600"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        softflowd(pcap, port, version)
        time.sleep(1.0)
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=30)
    files = sorted(p for p in out.rglob("nfcapd.*") if "current" not in p.name)
    assert files, "nfcapd wrote no file"
    totals = {"flows": 0, "packets": 0, "bytes": 0}
    for f in files:
        info = subprocess.run([need_tool("nfdump"), "-r", str(f), "-I"], capture_output=True, text=True, check=True)
        for line in info.stdout.splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in totals:
                totals[key.strip().lower()] += int(value.strip())
    return totals


def start_collect(tmp: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    """`blackout collect` on 127.0.0.1:port, returned once its socket is bound."""
    exe = Path(sys.executable).with_name("blackout")
    args = ["collect", "--netflow", str(port), "--bind", "127.0.0.1", "--json", "--db", str(tmp / "live.duckdb")]
    args += ["--set", "store.keep_flows=true", "--set", "engine.lateness_s=5"]
    args += list(extra) or ["--stats-interval", "3600"]
    proc = subprocess.Popen(
        [str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CI": "1"}
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # "listening on ..." once the socket is bound
    assert "listening" in line, line
    return proc


def stop_collect(proc: subprocess.Popen[str]) -> dict:
    time.sleep(1.5)  # the receiver hands over chunks every 0.2 s
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("version", [5, 9, 10])
def test_collector_stores_what_nfdump_stores(tmp_path: Path, version: int) -> None:
    reference = nfdump_totals(tmp_path, SYN, version)
    assert reference["packets"] == 37841  # every packet of the capture, as softflowd reports
    port = free_port()
    proc = start_collect(tmp_path, port)
    softflowd(SYN, port, version)
    report = stop_collect(proc)
    assert report["flows_in_store"] == reference
    exporter = report["exporters"]["127.0.0.1"]
    assert exporter.get("decode_errors", 0) == 0 and exporter["records"] == reference["flows"]
    assert sum(report["kernel_drops"].values()) == 0


def test_stats_file_is_the_final_report(tmp_path: Path) -> None:
    """--stats-file leaves the same JSON the collector prints, for `serve --stats-file` to export."""
    port = free_port()
    stats = tmp_path / "collect.json"
    proc = start_collect(tmp_path, port, "--stats-file", str(stats), "--stats-interval", "0.5")
    softflowd(SYN, port, 9)
    report = stop_collect(proc)
    assert json.loads(stats.read_text()) == report
    assert report["exporters"]["127.0.0.1"]["records"] > 0


def test_garbage_interleaved_with_a_real_export_is_counted_and_the_export_kept(tmp_path: Path) -> None:
    reference = nfdump_totals(tmp_path, SYN, 9)
    port = free_port()
    proc = start_collect(tmp_path, port)
    rng = random.Random(1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", 0))  # another exporter: its junk must not touch softflowd's templates
        garbage = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 1400))) for _ in range(300)]
        garbage += [b"\x00\x09" + bytes(rng.getrandbits(8) for _ in range(60)) for _ in range(100)]  # v9-looking
        garbage += [b"\x00\x0a\x00\x20" + bytes(28) for _ in range(100)]  # IPFIX header, lying set
        for g in garbage[:250]:
            s.sendto(g, ("127.0.0.1", port))
        softflowd(SYN, port, 9)
        for g in garbage[250:]:
            s.sendto(g, ("127.0.0.1", port))
    report = stop_collect(proc)
    assert report["flows_in_store"] == reference
    assert report["exporters"]["127.0.0.1"].get("decode_errors", 0) == 0
    assert report["exporters"]["127.0.0.2"]["decode_errors"] > 0

"""sFlow from a real exporter: pmacct's sfprobe turns a bundled capture into sFlow sent to 127.0.0.1.

pmacctd reads the pcap offline (``pcap_savefile``) with sampling 1/1, so every
IP packet becomes one flow sample carrying its header.  What blackout decodes
from the received datagrams must be, in order, what tshark reads from the
original packets.  pmacct keeps the last, partly filled datagram when it stops
at the end of the file, so up to one datagram's worth of trailing packets may
be missing; datagram sequence numbers prove no datagram was lost on the way.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from blackout.addr import to_strings
from blackout.sources.base import DecodeContext
from blackout.sources.sflow import DATAGRAMS
from conftest import DATA, need_tool

CAPTURES = ["misc/synscan.pcap", "stopddos/amp.dns.RRSIG.fragmented.pcap"]
FIELDS = ["ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.len", "ip.flags.mf", "ip.frag_offset"]
FIELDS += ["ipv6.src", "ipv6.dst", "ipv6.nxt", "ipv6.hlim", "ipv6.plen", "ipv6.fraghdr.nxt"]
FIELDS += ["tcp.srcport", "tcp.dstport", "tcp.flags", "udp.srcport", "udp.dstport"]
FIELDS += ["icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code"]


def export_with_pmacct(pcap: Path, tmp_path: Path) -> list[bytes]:
    """Run pmacctd's sfprobe over the capture and collect what it sends to a local UDP socket."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    port = sock.getsockname()[1]
    conf = tmp_path / "pmacctd.conf"
    conf.write_text(
        f"daemonize: false\npcap_savefile: {pcap}\nplugins: sfprobe\n"
        f"sfprobe_receiver: 127.0.0.1:{port}\nsfprobe_agentip: 127.0.0.1\nsampling_rate: 1\n"
    )
    proc = subprocess.Popen(
        [need_tool("pmacctd"), "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                got.append(sock.recv(65535))
            except TimeoutError:
                if proc.poll() is not None:
                    break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        sock.close()
    return got


def tshark_packets(pcap: Path) -> list[dict]:
    """The original packets' flow fields as tshark reads them (outer layers, no reassembly)."""
    cmd = [need_tool("tshark"), "-r", str(pcap), "-n", "-o", "ip.defragment:FALSE", "-T", "fields"]
    cmd += ["-E", "occurrence=f", "-Y", "ip or ipv6"]
    for f in FIELDS:
        cmd += ["-e", f]
    rows = []
    for line in subprocess.run(cmd, capture_output=True, check=True, text=True).stdout.splitlines():
        v = dict(zip(FIELDS, line.split("\t"), strict=True))
        if v["ip.src"]:
            proto = int(v["ip.proto"])
            row = {
                "src_addr": v["ip.src"],
                "dst_addr": v["ip.dst"],
                "protocol": proto,
                "ttl": int(v["ip.ttl"]),
                "bytes": int(v["ip.len"]),
                "fragment": v["ip.flags.mf"] == "1" or v["ip.frag_offset"] != "0",
            }
        else:
            proto = int(v["ipv6.fraghdr.nxt"] or v["ipv6.nxt"])
            row = {
                "src_addr": v["ipv6.src"],
                "dst_addr": v["ipv6.dst"],
                "protocol": proto,
                "ttl": int(v["ipv6.hlim"]),
                "bytes": int(v["ipv6.plen"]) + 40,
                "fragment": bool(v["ipv6.fraghdr.nxt"]),
            }
        row.update(src_port=0, dst_port=0, tcp_flags=0)
        l4 = {6: "tcp", 17: "udp"}.get(proto)
        if l4 and v[f"{l4}.srcport"]:
            row["src_port"], row["dst_port"] = int(v[f"{l4}.srcport"]), int(v[f"{l4}.dstport"])
            row["tcp_flags"] = int(v["tcp.flags"], 16) & 0xFF if l4 == "tcp" else 0
        icmp = {1: "icmp", 58: "icmpv6"}.get(proto)
        if icmp and v[f"{icmp}.type"]:
            row["dst_port"] = int(v[f"{icmp}.type"]) << 8 | int(v[f"{icmp}.code"])
        rows.append(row)
    return rows


@pytest.mark.parametrize("name", CAPTURES)
def test_pmacct_sfprobe(name: str, tmp_path: Path) -> None:
    pcap = DATA / "pcap" / name
    datagrams = export_with_pmacct(pcap, tmp_path)
    assert datagrams, "pmacctd sent nothing"
    sequences = [int.from_bytes(d[16:20], "big") for d in datagrams]  # IPv4 agent: sequence at offset 16
    assert sequences == list(range(sequences[0], sequences[0] + len(datagrams)))
    ctx = DecodeContext()
    batch = DATAGRAMS.decode(datagrams, ["pmacctd"] * len(datagrams), np.zeros(len(datagrams), dtype=np.int64), ctx)
    assert ctx.errors.total == 0
    expected = tshark_packets(pcap)
    per_datagram = -(-batch.num_rows // len(datagrams))
    assert len(expected) - per_datagram <= batch.num_rows <= len(expected)
    rows = batch.to_pylist()
    for row, src, dst in zip(rows, to_strings(batch["src_addr"]), to_strings(batch["dst_addr"]), strict=True):
        row["src_addr"], row["dst_addr"] = src, dst
    got = [{k: row[k] for k in expected[0]} for row in rows]
    assert got == expected[: len(got)]
    assert {row["exporter"] for row in rows} == {"127.0.0.1"}
    assert {row["sampling_rate"] for row in rows} == {1}

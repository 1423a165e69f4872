"""Every flow record the kp-2014 scenario writes is one an exporter could send, as tshark decodes the pcap:
at least one packet, and bytes a real packet size allows (a record of 0 packets is an impossible counter that
the DDoS detector leaves out and counts as a bad row)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from conftest import need_tool

MIN_PACKET, MAX_PACKET = 20, 1500  # an IPv4 header alone; an Ethernet MTU
FIELDS = ["-T", "fields", "-e", "cflow.packets", "-e", "cflow.octets"]


def test_no_record_of_zero_packets_and_bytes_a_packet_size_allows(kp_scenario: Path) -> None:
    fields = subprocess.run(
        [need_tool("tshark"), "-r", str(kp_scenario / "flows.ipfix.pcap"), "-d", "udp.port==4739,cflow", *FIELDS],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    packets, octets = (
        np.array([int(v) for line in fields for v in line.split("\t")[col].split(",") if v], dtype=np.int64)
        for col in (0, 1)
    )
    assert len(packets) == len(octets) > 100_000
    assert packets.min() >= 1
    per_packet = octets / packets
    assert per_packet.min() >= MIN_PACKET and per_packet.max() <= MAX_PACKET

"""The kp-2014 scenario writes real formats: bgpdump, tshark and blackout's decoders read what it planned."""

from __future__ import annotations

import collections
import datetime as dt
import json
import subprocess
from pathlib import Path

import numpy as np

from blackout.scenario.facts import KP2014
from blackout.scenario.kp2014 import plan
from blackout.sources import DecodeContext, read_input
from blackout.sources.base import FILE_DECODERS
from conftest import need_tool


def test_the_plan_follows_the_published_record() -> None:
    p = plan()
    days = collections.Counter(dt.datetime.fromtimestamp(a.start, dt.UTC).date().isoformat() for a in p.attacks)
    assert dict(days) == KP2014.attacks_per_day
    assert max(a.peak_bps for a in p.attacks) == KP2014.peak_bps
    assert sum(a.main_country == "US" for a in p.attacks) == KP2014.us_main_source_attacks
    assert {a.target for a in p.attacks} == set(KP2014.targets)
    outage = next(d for d in p.route_downs if d.kind == "outage")
    assert (outage.start, outage.end) == tuple(int(t.timestamp()) for t in KP2014.outage_1)
    assert plan().truth() == p.truth()  # seeded: the same plan every time


def test_bgpdump_reads_the_withdrawals_and_returns(kp_scenario: Path) -> None:
    start, end = (int(t.timestamp()) for t in KP2014.outage_1)
    lines = []
    for f in sorted(kp_scenario.glob("*.updates.*.mrt.gz")):
        out = subprocess.run([need_tool("bgpdump"), "-m", str(f)], capture_output=True, text=True, check=True)
        lines += [line.split("|") for line in out.stdout.splitlines()]
    kp = [row for row in lines if row[5] in KP2014.prefixes]
    withdrawn_at_start = {(row[3], row[5]) for row in kp if row[2] == "W" and start <= int(row[1]) < start + 60}
    back_at_end = [row for row in kp if row[2] == "A" and end <= int(row[1]) < end + 60]
    rib = subprocess.run(
        [need_tool("bgpdump"), "-m", str(next(kp_scenario.glob("*.ribs.*")))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    carried = {(row[3], row[5]) for row in (line.split("|") for line in rib) if row[5] in KP2014.prefixes}
    assert len(carried) >= 4 and withdrawn_at_start == carried  # every /24 at every peer that carried it
    assert {(row[3], row[5]) for row in back_at_end} == withdrawn_at_start
    assert all(row[6].split()[-2:] == [str(KP2014.upstream_asn), str(KP2014.origin_asn)] for row in back_at_end)
    # blackout's MRT reader sees the same elements
    ours = 0
    for f in sorted(kp_scenario.glob("*.updates.*.mrt.gz")):
        for batch in FILE_DECODERS["mrt"].read(str(f), read_input(str(f)), DecodeContext()):
            ours += batch.num_rows
    assert ours == len(lines)


def test_tshark_reads_the_ipfix_export_as_blackout_does(kp_scenario: Path) -> None:
    pcap = kp_scenario / "flows.ipfix.pcap"
    out = subprocess.run(
        [
            need_tool("tshark"),
            "-r",
            str(pcap),
            "-d",
            "udp.port==4739,cflow",
            "-T",
            "fields",
            "-e",
            "cflow.octets",
            "-e",
            "cflow.packets",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    octets = sum(int(v) for line in out.stdout.splitlines() for v in line.split("\t")[0].split(",") if v)
    ctx = DecodeContext()
    batches = list(FILE_DECODERS["pcap"].read(str(pcap), read_input(str(pcap)), ctx))
    ours = sum(int(np.sum(b.column("bytes").to_numpy())) for b in batches)
    assert ours == octets and ctx.errors.total == 0
    assert {int(b.column("sampling_rate").to_numpy().max()) for b in batches} == {1000}


def test_truth_and_probes(kp_scenario: Path) -> None:
    truth = json.loads((kp_scenario / "truth.json").read_text())
    assert len(truth["attacks"]) == sum(KP2014.attacks_per_day.values())
    ctx = DecodeContext()
    path = str(kp_scenario / "atlas-ping.jsonl")
    probes = next(iter(FILE_DECODERS["atlas"].read(path, read_input(path), ctx)))
    assert probes.num_rows > 0 and ctx.errors.total == 0

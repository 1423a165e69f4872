"""Telescope mode on the real StopDDoS captures, with tshark as the oracle.

Configured as a telescope whose dark prefix is the victim's /24 (or /32), a
reflection capture is backscatter: each reflector answered SYNs spoofed with
the victim's address, so each reflector is the victim of a spoofed flood.
Who is named, with how many packets of which kind, is computed from tshark's
fields at test time; the rates must be those counts × 2^32 / dark addresses.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import socket
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import netflow
import numpy as np
import pyarrow as pa
import pytest

from blackout import addr
from blackout.config import Config
from blackout.detect.telescope import TelescopeConfig, TelescopeDetector, telescope_detectors, victim_view
from blackout.engine import Engine, EngineConfig, Source
from blackout.enrich.base import NoEnrichment
from blackout.errors import ConfigError
from blackout.model import FLOW_SCHEMA, Kind
from blackout.pipeline import build_detectors
from blackout.sources import FILE_DECODERS, DecodeContext, detect_format, read_input
from blackout.sources.netflow import DATAGRAM
from conftest import DATA, need_tool
from test_cli import blackout
from test_collect import softflowd

STOPDDOS = DATA / "pcap/stopddos"
SYNACK = STOPDDOS / "amp.TCP.reflection.SYNACK.pcap"  # 0.15 s of reflected SYN-ACK, RST, ICMP to 10.10.10.10
SLOW = STOPDDOS / "amp.TCP.syn.optionallyACK.optionallysamePort.pcapng"  # 818 s of SYN-ACKs and SYNs
SYNFLOOD = STOPDDOS / "pkt.TCP.synflood.spoofed.pcap"  # plain spoofed SYNs to one host
DARK24 = "10.10.10.0/24"
EVERY_FLOW = ["telescope.min_pps=0", "telescope.min_packets=0", "telescope.min_duration_s=0"]
US = 1_000_000


class Packet(NamedTuple):
    t: float
    kind: str
    port: int | None  # TCP source port (the port the victim answered from)


@functools.cache
def tshark_backscatter(path: Path, dark: str) -> dict[str, list[Packet]]:
    """Per source: (time, kind) of each packet it sent into the dark prefix that is backscatter, per tshark.

    Outer headers only (an ICMP error quotes an inner IP and TCP header). Kinds:
    syn (SYN-ACK or RST-ACK), ack (bare RST), echo (ICMP echo reply), error (ICMP 3/4/11/12), other.
    """
    out = subprocess.run(
        [need_tool("tshark"), "-n", "-r", str(path), "-Y", "ip", "-T", "fields", "-E", "separator=|",
         "-E", "occurrence=f", "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ip.dst", "-e", "ip.proto",
         "-e", "tcp.flags", "-e", "icmp.type", "-e", "tcp.srcport"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    net = ipaddress.ip_network(dark)
    found: dict[str, list[Packet]] = defaultdict(list)
    for line in out.splitlines():
        t, src, dst, proto, flags_hex, icmp_type, sport = line.split("|")
        if ipaddress.ip_address(dst) not in net:
            continue
        kind = "other"
        if proto == "6":
            flags = int(flags_hex, 16)
            if flags & 0x10 and flags & 0x06:
                kind = "syn"
            elif flags & 0x04:
                kind = "ack"
        elif proto == "1":
            kind = {"0": "echo", "3": "error", "4": "error", "11": "error", "12": "error"}.get(icmp_type, "other")
        found[src].append(Packet(float(t), kind, int(sport) if proto == "6" else None))
    return dict(found)


def backscatter_sources(path: Path, dark: str) -> dict[str, list[Packet]]:
    return {s: [p for p in pk if p.kind != "other"] for s, pk in tshark_backscatter(path, dark).items() if any(
        p.kind != "other" for p in pk)}  # fmt: skip


def run(path: Path, overrides: list[str]) -> list[dict[str, Any]]:
    """The final attack records of a TelescopeDetector over blackout's decoding of the capture (1 s ticks)."""
    data = read_input(str(path))
    return run_flows(FILE_DECODERS[detect_format(str(path), data)].read(str(path), data, DecodeContext()), overrides)


def run_flows(batches: Iterable[pa.RecordBatch], overrides: list[str], lateness_s: float = 5.0) -> list[dict[str, Any]]:
    det = TelescopeDetector(Config.load(overrides=overrides).section("telescope", TelescopeConfig), NoEnrichment())
    latest: dict[str, dict[str, Any]] = {}

    def sink(events: dict[str, list[dict[str, Any]]]) -> None:
        for rec in events.get("attacks", []):
            latest[rec["id"]] = rec

    Engine([det], sink=sink, config=EngineConfig(tick_s=1.0, lateness_s=lateness_s)).run(
        [Source("flows", Kind.FLOW, batches)], close_open=True
    )
    return sorted(latest.values(), key=lambda r: (r["start"], r["target"]))


def softflowd_v5(pcap: Path) -> list[bytes]:
    """softflowd's NetFlow v5 export of the capture, received on 127.0.0.1 (it has exited when softflowd returns)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind(("127.0.0.1", 0))
        softflowd(pcap, sock.getsockname()[1], 5)
        sock.setblocking(False)
        out: list[bytes] = []
        while True:
            try:
                out.append(sock.recv(65535))
            except BlockingIOError:
                return out


def window_rate(times: list[float], window_s: float = 60.0) -> float:
    """The highest packet rate over any window_s of the packets (a one-minute rate, as Moore et al. count)."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while t - times[j] >= window_s:
            j += 1
        best = max(best, i - j + 1)
    return best / window_s


# --------------------------------------------------------------------- tests
def episodes(packets: list[Packet], timeout_s: int = 300) -> list[list[Packet]]:
    """A source's packets split where it was quiet for timeout_s whole ticks (1 s) or more: one attack each."""
    out: list[list[Packet]] = []
    for p in sorted(packets):
        if out and int(p[0]) - (int(out[-1][-1][0]) + 1) < timeout_s:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def named_as_tshark_says(path: Path, dark: str) -> dict[str, list[Packet]]:
    """Run with every flow counted; check each attack against tshark's packets; return tshark's backscatter."""
    expected = backscatter_sources(path, dark)
    scale = 2**32 / ipaddress.ip_network(dark).num_addresses
    records = run(path, [f'telescope.prefixes=["{dark}"]', *EVERY_FLOW])
    by_key = {(r["target"], r["start"]): r for r in records}
    want_keys = {(s, int(ep[0][0]) * US): ep for s, pk in expected.items() for ep in episodes(pk)}
    assert len(by_key) == len(records) and set(by_key) == set(want_keys)
    names = {"syn": "spoofed_syn_flood", "ack": "spoofed_ack_flood", "echo": "spoofed_icmp_flood",
             "error": "spoofed_ip_flood"}  # fmt: skip
    for key, packets in want_keys.items():
        rec = by_key[key]
        assert rec["end"] == (int(packets[-1][0]) + 1) * US
        assert rec["total_packets"] == len(packets) * scale
        per_second = Counter(int(p.t) for p in packets)
        assert rec["peak_pps"] == max(per_second.values()) * scale
        kinds = Counter(p.kind for p in packets)
        shares = {v["name"]: v["share"] for v in rec["vectors"]}
        want = {names[k]: n / len(packets) for k, n in kinds.items() if n / len(packets) >= 0.05}
        assert shares == pytest.approx(want)
        assert rec["spoofing"] == 1.0 and rec["rule"] == "telescope"
        assert rec["unique_sources"] == 1 and rec["top_sources"][0]["address"] == "10.10.10.10"
        if {p.port for p in packets} <= {80, 443}:  # answering only from web ports: a web server
            assert rec["target_role"] == "web"
    # hosts that sent only non-backscatter (UDP, plain SYNs) into the dark prefix are not victims
    others = set(tshark_backscatter(path, dark)) - set(expected)
    assert others and not others & {r["target"] for r in records}
    return expected


def test_reflectors_are_named_with_tsharks_counts_scaled() -> None:
    expected = named_as_tshark_says(SYNACK, DARK24)  # scale 2^24
    assert len(expected) > 7000
    seen = Counter(p.kind for pk in expected.values() for p in pk)
    # the brief's oracle: > 6,000 SYN-ACK senders; bare RSTs and ICMP errors were in the capture too
    assert len({s for s, pk in expected.items() if any(p.kind == "syn" for p in pk)}) > 6000
    assert seen["ack"] > 500 and seen["error"] > 10


def test_a_slash_32_telescope_scales_by_2_to_the_32() -> None:
    expected = named_as_tshark_says(SLOW, "10.10.10.10/32")
    assert len(expected) > 5
    assert any(len(episodes(pk)) > 1 for pk in expected.values())  # the 300 s timeout split some victims' attacks


def test_moore_thresholds_on_a_slow_reflection() -> None:
    """Default thresholds: ≥ 100 packets, ≥ 60 s, > 0.5 pps at the telescope; only one reflector passes all three."""
    expected = backscatter_sources(SLOW, DARK24)
    times = {s: [p.t for p in pk] for s, pk in expected.items()}
    long_enough = {s for s, ts in times.items() if len(ts) >= 100 and max(ts) - min(ts) >= 60}
    fast_enough = {s for s in long_enough if window_rate(times[s]) > 0.5}
    assert len(long_enough) == 2 and len(fast_enough) == 1  # the rate rule matters here
    # plain SYNs (not backscatter) from a host sending more than 100 of them over minutes
    syn_senders = {s for s, pk in tshark_backscatter(SLOW, DARK24).items() if len(pk) >= 100} - set(expected)
    assert syn_senders
    records = run(SLOW, [f'telescope.prefixes=["{DARK24}"]'])
    assert [r["target"] for r in records] == sorted(fast_enough)
    (rec,) = records
    ts = times[rec["target"]]
    assert rec["start"] == int(min(ts)) * US and rec["end"] == (int(max(ts)) + 1) * US
    assert rec["total_packets"] == len(ts) * 2**24
    assert rec["vectors"] == [{"name": "spoofed_syn_flood", "share": 1.0}]


def test_netflow_from_softflowd_with_the_netflow_package_as_oracle() -> None:
    """Flow records (flags OR-ed over each flow, packets counted at its start) into the dark /24."""
    datagrams = softflowd_v5(SLOW)
    want: Counter[str] = Counter()
    net = ipaddress.ip_network(DARK24)
    for d in datagrams:
        for flow in netflow.v5.V5ExportPacket(d).flows:
            f = flow.data
            flags, tcp = f["TCP_FLAGS"], f["PROTO"] == 6
            backscatter = tcp and ((flags & 0x10 and flags & 0x06) or (flags & 0x04 and not flags & 0x10))
            if backscatter and ipaddress.ip_address(f["IPV4_DST_ADDR"]) in net:
                want[str(ipaddress.ip_address(f["IPV4_SRC_ADDR"]))] += f["IN_PACKETS"]
    ctx = DecodeContext()
    batch = DATAGRAM.decode(datagrams, ["127.0.0.1"] * len(datagrams), np.zeros(len(datagrams), np.int64), ctx)
    assert ctx.errors.total == 0 and batch.num_rows > 300
    flows = pa.Table.from_batches([batch]).sort_by("ts")  # exports come in flow-end order
    records = run_flows(flows.to_batches(), [f'telescope.prefixes=["{DARK24}"]', *EVERY_FLOW], lateness_s=900.0)
    got: Counter[str] = Counter()
    for rec in records:
        got[rec["target"]] += rec["total_packets"] / 2**24
    assert got == want and len(want) > 5


def test_a_plain_syn_flood_into_dark_space_names_nobody() -> None:
    to_victim = tshark_backscatter(SYNFLOOD, DARK24)
    kinds = Counter(p.kind for pk in to_victim.values() for p in pk)
    assert kinds["other"] > 30000 and set(kinds) == {"other"}
    assert run(SYNFLOOD, [f'telescope.prefixes=["{DARK24}"]', *EVERY_FLOW]) == []


def test_off_without_dark_prefixes_and_bad_prefixes_are_named() -> None:
    assert telescope_detectors(Config.load(), NoEnrichment(), 1.0) == []
    assert "telescope" not in [d.name for d in build_detectors(Config.load())]
    on = Config.load(overrides=[f'telescope.prefixes=["{DARK24}"]'])
    assert [d.name for d in build_detectors(on)][-1] == "telescope"
    for bad in ('["2001:db8::/32"]', '["10.10.10.300/24"]'):
        with pytest.raises(ConfigError, match=r"telescope\.prefixes"):
            telescope_detectors(Config.load(overrides=[f"telescope.prefixes={bad}"]), NoEnrichment(), 1.0)


def test_reversed_rows_keep_the_flow_schema() -> None:
    det = TelescopeDetector(TelescopeConfig(prefixes=[DARK24]))
    data = read_input(str(SYNACK))
    table = pa.Table.from_batches(list(FILE_DECODERS["pcap"].read(str(SYNACK), data, DecodeContext())), FLOW_SCHEMA)
    view = victim_view(table, det.dark)
    assert view.schema == FLOW_SCHEMA
    assert view.num_rows == sum(len(pk) for pk in backscatter_sources(SYNACK, DARK24).values())


def test_cli_replay_then_attacks_json(tmp_path: Path) -> None:
    db = str(tmp_path / "t.duckdb")
    result = blackout("replay", "--db", db, "--set", f'telescope.prefixes=["{DARK24}"]', str(SLOW))
    assert result.returncode == 0, result.stderr
    listed = json.loads(blackout("attacks", "--db", db, "--json").stdout)
    telescope = [r for r in listed if r["rule"] == "telescope"]
    assert [r["target"] for r in telescope] == ["75.136.225.254"]  # as test_moore_thresholds finds from tshark
    assert telescope[0]["total_packets"] == len(backscatter_sources(SLOW, DARK24)["75.136.225.254"]) * 2**24


def test_counters_pass_the_inner_detectors_drops_to_the_engine() -> None:
    """Backscatter rows with an impossible counter (0 packets) are left out by the inner DDoS detector and
    counted; the engine's per-detector counters show them under "telescope", the rest still names victims."""
    data = read_input(str(SYNACK))
    table = pa.Table.from_batches(list(FILE_DECODERS["pcap"].read(str(SYNACK), data, DecodeContext())), FLOW_SCHEMA)
    dark = ipaddress.ip_network(DARK24)
    into_dark = np.array([ipaddress.ip_address(a) in dark for a in addr.to_strings(table.column("dst_addr"))])
    synack = (table.column("protocol").to_numpy() == 6) & (table.column("tcp_flags").to_numpy() & 0x12 == 0x12)
    broken = np.flatnonzero(into_dark & synack)[::7]  # SYN-ACKs into dark space: backscatter (Moore et al.)
    packets = table.column("packets").to_numpy().copy()
    packets[broken] = 0
    table = table.set_column(table.schema.get_field_index("packets"), "packets", pa.array(packets, pa.uint64()))
    cfg = Config.load(overrides=[f'telescope.prefixes=["{DARK24}"]', *EVERY_FLOW]).section("telescope", TelescopeConfig)
    det = TelescopeDetector(cfg, NoEnrichment())
    named: set[str] = set()
    engine = Engine(
        [det], sink=lambda ev: named.update(r["target"] for r in ev.get("attacks", [])), config=EngineConfig(tick_s=1.0)
    )
    stats = engine.run([Source("flows", Kind.FLOW, table.to_batches())], close_open=True)
    assert stats.detectors["telescope"]["bad_rows"] == len(broken) > 0
    assert named  # the other rows still name the reflectors

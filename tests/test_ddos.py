"""The DDoS detector through the real engine, on the real StopDDoS captures, with tshark as the oracle.

Flows come from blackout's pcap decoder (one row per packet), streamed into
the engine; one test also builds them independently with dpkt and checks the
detector says the same.  Every expected figure (victim, per-second packet
counts, distinct sources, fragment counts) is computed from tshark's output
at test time.
"""

from __future__ import annotations

import functools
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from blackout import addr
from blackout.config import Config
from blackout.detect.ddos import DdosDetector, attacks_summary
from blackout.detect.ddos_config import DdosConfig
from blackout.engine import Engine, EngineConfig, Source
from blackout.enrich.base import Enrichment
from blackout.errors import ConfigError
from blackout.events import dumps, to_arrow
from blackout.model import FLOW_SCHEMA, Kind
from blackout.sources import FILE_DECODERS, DecodeContext, read_input
from conftest import DATA, need_tool

STOPDDOS = DATA / "pcap/stopddos"
SYNFLOOD = STOPDDOS / "pkt.TCP.synflood.spoofed.pcap"
SYNACK = STOPDDOS / "amp.TCP.reflection.SYNACK.pcap"
DNSFRAG = STOPDDOS / "amp.dns.RRSIG.fragmented.pcap"
US = 1_000_000


# ------------------------------------------------------------------ helpers
@functools.cache
def pcap_flows(path: Path) -> pa.Table:
    """The capture through blackout's pcap decoder, as the replay command reads it."""
    ctx = DecodeContext()
    return pa.Table.from_batches(list(FILE_DECODERS["pcap"].read(str(path), read_input(str(path)), ctx)), FLOW_SCHEMA)


@functools.cache
def dpkt_flows(path: Path) -> pa.Table:
    """One FLOW_SCHEMA row per IPv4 packet, decoded with dpkt (not blackout): an independent path."""
    rows: dict[str, list[Any]] = {
        k: [] for k in ("ts", "src", "dst", "sp", "dp", "proto", "flags", "frag", "ttl", "len")
    }
    with open(path, "rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            sp = dp = flags = 0
            if ip.offset == 0:
                if isinstance(ip.data, dpkt.tcp.TCP):
                    sp, dp, flags = ip.data.sport, ip.data.dport, ip.data.flags
                elif isinstance(ip.data, dpkt.udp.UDP):
                    sp, dp = ip.data.sport, ip.data.dport
                elif isinstance(ip.data, dpkt.icmp.ICMP):
                    dp = ip.data.type << 8 | ip.data.code
            for key, value in zip(
                rows,
                (round(ts * US), addr.parse(socket_ntoa(ip.src)), addr.parse(socket_ntoa(ip.dst)), sp, dp, ip.p, flags,
                 bool(ip.mf or ip.offset), ip.ttl, ip.len),
                strict=True,
            ):  # fmt: skip
                rows[key].append(value)
    n = len(rows["ts"])
    zeros = pa.array(np.zeros(n, np.uint32))
    return pa.table(
        [
            pa.array(rows["ts"], pa.int64()).cast(FLOW_SCHEMA.field("ts").type),
            pa.array([path.name] * n),
            pa.array(rows["src"], addr.ADDR),
            pa.array(rows["dst"], addr.ADDR),
            pa.array(rows["sp"], pa.uint16()),
            pa.array(rows["dp"], pa.uint16()),
            pa.array(rows["proto"], pa.uint8()),
            pa.array(rows["flags"], pa.uint8()),
            pa.array(rows["frag"], pa.bool_()),
            pa.array(rows["ttl"], pa.uint8()),
            pa.array(rows["len"], pa.uint64()),
            pa.array(np.ones(n, np.uint64)),
            pa.array(np.ones(n, np.uint32)),
            zeros,
            zeros,
        ],
        schema=FLOW_SCHEMA,
    )


def socket_ntoa(raw: bytes) -> str:
    return ".".join(str(b) for b in raw)


@functools.cache
def tshark_packets(path: Path) -> list[tuple[int, str, str, int, int, int, str, int]]:
    """(second, src, dst, ip.len, frag offset, MF, UDP source port or "", µs) of every IPv4 packet, from tshark.

    Outer headers only (occurrence=f: ICMP errors quote an inner IP header), fragments as they came.
    """
    out = subprocess.run(
        [need_tool("tshark"), "-n", "-o", "ip.defragment:FALSE", "-r", str(path), "-Y", "ip", "-T", "fields",
         "-E", "separator=|", "-E", "occurrence=f", "-e", "frame.time_epoch", "-e", "ip.src", "-e", "ip.dst",
         "-e", "ip.len", "-e", "ip.frag_offset", "-e", "ip.flags.mf", "-e", "ip.proto", "-e", "udp.srcport"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    packets = []
    for line in out.splitlines():
        t, src, dst, length, off, mf, proto, sport = line.split("|")
        sport = sport if proto == "17" else ""
        sec, frac = t.split(".")
        us = int(sec) * US + int(frac[:6].ljust(6, "0"))
        packets.append((int(sec), src, dst, int(length), int(off or 0), int(mf in ("1", "True")), sport, us))
    return packets


@functools.cache
def victim(path: Path) -> str:
    """The most frequent destination, per tshark."""
    return Counter(p[2] for p in tshark_packets(path)).most_common(1)[0][0]


def toward(path: Path, target: str, start_us: int, end_us: int) -> list[tuple[int, str, str, int, int, int, str, int]]:
    """tshark's packets to the target inside [start, end)."""
    return [p for p in tshark_packets(path) if p[2] == target and start_us <= p[0] * US < end_us]


def run(
    table: pa.Table | Iterator[pa.RecordBatch],
    overrides: list[str] = (),  # type: ignore[assignment]
    batch: int = 8192,
    enricher: Any = None,
    detector: DdosDetector | None = None,
    close_open: bool = True,
) -> list[dict[str, Any]]:
    """The final version of every attack record, through the real engine (1 s ticks)."""
    det = detector or DdosDetector(Config.load(overrides=list(overrides)).section("ddos", DdosConfig), enricher)
    latest: dict[str, dict[str, Any]] = {}

    def sink(events: dict[str, list[dict[str, Any]]]) -> None:
        for rec in events.get("attacks", []):
            latest[rec["id"]] = rec

    Engine([det], sink=sink, config=EngineConfig(tick_s=1.0, lateness_s=5.0)).run(
        [Source("pcap", Kind.FLOW, table.to_batches(batch) if isinstance(table, pa.Table) else table)],
        close_open=close_open,
    )
    return sorted(latest.values(), key=lambda r: (r["start"], r["target"]))


LOW = ["ddos.threshold_pps=500", "ddos.ban_for_bandwidth=off", "ddos.baseline=false"]


def hot_spans(path: Path, target: str, threshold: float, end_ticks: int) -> list[tuple[int, int]]:
    """[start, end) in µs of the runs of seconds above the threshold (gaps shorter than end_ticks joined)."""
    per_s = Counter(p[0] for p in tshark_packets(path) if p[2] == target)
    hot = sorted(s for s, n in per_s.items() if n > threshold)
    spans: list[list[int]] = []
    for s in hot:
        if spans and s - spans[-1][1] < end_ticks:
            spans[-1][1] = s + 1
        else:
            spans.append([s, s + 1])
    return [(a * US, b * US) for a, b in spans]


# ------------------------------------------------------------ real attacks
def test_synflood_against_tshark() -> None:
    target = victim(SYNFLOOD)
    batches = FILE_DECODERS["pcap"].read(str(SYNFLOOD), read_input(str(SYNFLOOD)), DecodeContext(batch_size=4096))
    (rec,) = run(batches, LOW)  # streamed from the decoder, as `blackout replay` does
    assert rec["target"] == target
    (span,) = hot_spans(SYNFLOOD, target, 500, DdosConfig.end_ticks)
    assert (rec["start"], rec["end"]) == span
    window = toward(SYNFLOOD, target, *span)
    per_s = Counter(p[0] for p in window)
    second, count = max(per_s.items(), key=lambda kv: (kv[1], -kv[0]))
    assert rec["peak_pps"] == count and rec["peak_pps_at"] == second * US
    assert rec["unique_sources"] == len({p[1] for p in window})
    assert rec["total_packets"] == len(window)
    assert rec["total_bytes"] == sum(p[3] for p in window)
    assert rec["vectors"][0]["name"] == "syn_flood" and rec["vectors"][0]["share"] > 0.95
    assert rec["rule"] == "threshold_pps>500"
    assert rec["spoofing"] > 0.9  # the capture is a randomly spoofed flood
    assert rec["target_role"] == "other"  # port 25565 is no known service
    assert rec["id"].startswith("a-")
    to_arrow("attacks", [rec])  # the record fits the store's schema


def test_rates_are_per_second_whatever_the_tick() -> None:
    """Half-second ticks: the peak is tshark's busiest half second, counted twice over (per second)."""
    target = victim(SYNFLOOD)
    latest: dict[str, dict[str, Any]] = {}
    det = DdosDetector(Config.load(overrides=LOW).section("ddos", DdosConfig))
    sink = lambda ev: latest.update({r["id"]: r for r in ev["attacks"]})  # noqa: E731
    Engine([det], sink=sink, config=EngineConfig(tick_s=0.5)).run(
        [Source("p", Kind.FLOW, [*pcap_flows(SYNFLOOD).to_batches()])]
    )
    rec = next(iter(latest.values()))
    halves = Counter(p[7] // (US // 2) for p in toward(SYNFLOOD, target, rec["start"], rec["end"]))
    half, count = max(halves.items(), key=lambda kv: (kv[1], -kv[0]))
    assert (rec["peak_pps"], rec["peak_pps_at"]) == (2 * count, half * (US // 2))


def test_synack_reflection() -> None:
    target = victim(SYNACK)
    (rec,) = run(
        pcap_flows(SYNACK), ["ddos.threshold_pps=500", "ddos.start_ticks=1", "ddos.average_calculation_time=0"]
    )
    assert rec["target"] == target
    assert rec["vectors"][0]["name"] == "synack_reflection"
    window = toward(SYNACK, target, rec["start"], rec["end"])
    assert rec["unique_sources"] == len({p[1] for p in window})
    assert rec["spoofing"] < 0.5  # reflectors are real hosts


def test_dns_amplification_with_fragments() -> None:
    target = victim(DNSFRAG)
    (rec,) = run(
        pcap_flows(DNSFRAG), ["ddos.threshold_pps=100", "ddos.start_ticks=1", "ddos.average_calculation_time=0"]
    )
    shares = {v["name"]: v["share"] for v in rec["vectors"]}
    assert "dns_amplification" in shares and "ip_fragmentation" in shares
    window = toward(DNSFRAG, target, rec["start"], rec["end"])
    non_first = sum(1 for p in window if p[4] > 0)
    assert shares["ip_fragmentation"] == pytest.approx(non_first / len(window))
    from_53 = [p for p in window if p[6] == "53" and p[4] == 0]
    assert len({p[1] for p in from_53}) >= DdosConfig.amplification_min_sources
    assert shares["dns_amplification"] == pytest.approx(len(from_53) / len(window))


# ------------------------------------------------------------------ config
def test_thresholds_from_set_change_the_outcome() -> None:
    flows = pcap_flows(SYNFLOOD)
    target = victim(SYNFLOOD)
    peak = max(Counter(p[0] for p in tshark_packets(SYNFLOOD) if p[2] == target).values())
    assert run(flows, ["ddos.threshold_pps=" + str(peak), "ddos.ban_for_bandwidth=off", "ddos.baseline=false"]) == []
    assert len(run(flows, LOW)) == 1
    assert run(flows, [*LOW, "ddos.ban_for_pps=off"]) == []
    syn = ["ddos.ban_for_pps=off", "ddos.ban_for_bandwidth=off", "ddos.baseline=false", "ddos.ban_for_tcp_syn_pps=on"]
    (rec,) = run(flows, [*syn, "ddos.threshold_tcp_syn_pps=500"])
    assert rec["rule"] == "threshold_tcp_syn_pps>500"
    assert run(flows, [*syn[:3], "ddos.ban_for_udp_pps=on", "ddos.threshold_udp_pps=1"]) == []
    with pytest.raises(ConfigError):
        Config.load(overrides=["ddos.threshold_ppps=5"]).section("ddos", DdosConfig)


def test_flows_rule_counts_distinct_5_tuples() -> None:
    """threshold_flows against tshark's busiest second in distinct (src, sport, dport) toward the victim."""
    target = victim(SYNFLOOD)
    out = subprocess.run(
        [need_tool("tshark"), "-n", "-r", str(SYNFLOOD), "-Y", f"ip.dst=={target} && tcp", "-T", "fields",
         "-E", "separator=|", "-e", "frame.time_epoch", "-e", "ip.src", "-e", "tcp.srcport", "-e", "tcp.dstport"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    per_s: dict[str, set[str]] = {}
    for line in out.splitlines():
        t, rest = line.split("|", 1)
        per_s.setdefault(t.split(".")[0], set()).add(rest)
    busiest = max(len(v) for v in per_s.values())
    conf = ["ddos.ban_for_pps=off", "ddos.ban_for_bandwidth=off", "ddos.baseline=false", "ddos.ban_for_flows=on"]
    conf.append("ddos.average_calculation_time=0")
    (rec,) = run(pcap_flows(SYNFLOOD), [*conf, f"ddos.threshold_flows={busiest - 1}"])
    assert rec["rule"] == f"threshold_flows>{busiest - 1}"
    assert run(pcap_flows(SYNFLOOD), [*conf, f"ddos.threshold_flows={busiest}"]) == []


def test_start_and_end_ticks() -> None:
    """The flood has a silent second inside: end_ticks decides whether it splits, start_ticks whether runs count."""
    flows, target = pcap_flows(SYNFLOOD), victim(SYNFLOOD)
    raw = ["ddos.average_calculation_time=0", *LOW]
    for end_ticks in (1, 2, 30):
        spans = hot_spans(SYNFLOOD, target, 500, end_ticks)
        got = run(flows, [*raw, f"ddos.end_ticks={end_ticks}", "ddos.start_ticks=1"])
        assert [(r["start"], r["end"]) for r in got] == spans
    assert len(hot_spans(SYNFLOOD, target, 500, 1)) == 2  # the data really has a gap
    assert len(run(flows, [*raw, "ddos.end_ticks=1", "ddos.start_ticks=2"])) == 2
    assert run(flows, [*raw, "ddos.end_ticks=1", "ddos.start_ticks=3"]) == []
    assert run(flows, [*raw, "ddos.end_ticks=30", "ddos.start_ticks=3"]) == []  # the silent second breaks the run


def test_networks_hostgroups_and_prefixes() -> None:
    flows, target = pcap_flows(SYNFLOOD), victim(SYNFLOOD)
    assert run(flows, [*LOW, 'ddos.networks=["192.0.2.0/24"]']) == []
    assert [r["target"] for r in run(flows, [*LOW, 'ddos.networks=["10.0.0.0/8"]'])] == [target]
    high = ["ddos.threshold_pps=1e9", "ddos.ban_for_bandwidth=off", "ddos.baseline=false"]
    group = (  # FNM writes switches on/off
        'ddos.hostgroups={v = {networks = ["10.10.10.0/24"], threshold_pps = 500, ban_for_pps = "on", '
        'calculation = "%s"}}'
    )
    assert [r["target"] for r in run(flows, [*high, group % "total"])] == ["hostgroup:v"]
    (rec,) = run(flows, [*high, group % "per_host"])
    assert rec["target"] == target and rec["rule"] == "threshold_pps>500"
    prefix = str(addr.format_prefix(addr.parse(target)[:15] + b"\0", 24))
    assert sorted(r["target"] for r in run(flows, [*LOW, "ddos.prefix_threshold_pps=500"])) == sorted([target, prefix])
    with pytest.raises(ConfigError):
        DdosDetector(Config.load(overrides=['ddos.hostgroups={v = {networks = ["x"]}}']).section("ddos", DdosConfig))


def test_live_shutdown_leaves_attacks_open() -> None:
    """Without close_open (a collector stopping) a running attack keeps end = None, same id as when closed."""
    flows = pcap_flows(SYNFLOOD)
    conf = [*LOW, "ddos.end_ticks=100"]
    (still,) = run(flows, conf, close_open=False)
    (closed,) = run(flows, conf)
    assert still["end"] is None and closed["end"] is not None and still["id"] == closed["id"]
    versions: list[dict[str, Any]] = []
    det = DdosDetector(Config.load(overrides=[*LOW, "ddos.update_every_s=1"]).section("ddos", DdosConfig))
    sink = lambda ev: versions.extend(ev["attacks"])  # noqa: E731
    Engine([det], sink=sink, config=EngineConfig(lateness_s=0)).run([Source("p", Kind.FLOW, flows.to_batches(2048))])
    assert len({v["id"] for v in versions}) == 1 and len(versions) >= 3  # updated while it runs
    assert versions[0]["end"] is None and versions[-1]["end"] == closed["end"]
    assert [v["total_packets"] for v in versions] == sorted(v["total_packets"] for v in versions)


def test_dpkt_rows_give_the_same_attacks() -> None:
    """Independently decoded rows (dpkt) lead to the very same records."""
    for path, conf in ((SYNFLOOD, LOW), (SYNACK, [*LOW, "ddos.start_ticks=1", "ddos.average_calculation_time=0"])):
        assert dumps(run(dpkt_flows(path), conf)) == dumps(run(pcap_flows(path), conf))


def test_replay_is_identical_whatever_the_batching() -> None:
    flows = pcap_flows(SYNFLOOD)
    first = run(flows, LOW, batch=1000)
    assert first and dumps(first) == dumps(run(flows, LOW, batch=65536)) == dumps(run(flows, LOW, batch=1000))


def test_hyperloglog_past_the_cap() -> None:
    target = victim(SYNFLOOD)
    (rec,) = run(pcap_flows(SYNFLOOD), [*LOW, "ddos.max_sources_exact=1000"])
    exact = len({p[1] for p in toward(SYNFLOOD, target, rec["start"], rec["end"])})
    assert rec["unique_sources"] == pytest.approx(exact, rel=0.03)


class FirstOctet:
    """A test enricher: AS = first octet, country "LO"/"HI" by first octet, 10/8 unrouted."""

    def lookup(self, addrs: pa.Array, at_us: int) -> Enrichment:
        first = addr.v4_to_u32(addrs) >> np.uint32(24)
        return Enrichment(
            prefix=["0.0.0.0/1" if f < 128 else "128.0.0.0/1" for f in first.tolist()],
            origin_asn=first.astype(np.uint32),
            country=np.where(first < 128, "LO", "HI").astype(object),
            routed=first != 10,
        )


def test_source_countries_and_asns_from_the_enricher() -> None:
    target = victim(SYNFLOOD)
    (rec,) = run(pcap_flows(SYNFLOOD), LOW, enricher=FirstOctet())
    window = toward(SYNFLOOD, target, rec["start"], rec["end"])
    octets = Counter(int(p[1].split(".")[0]) for p in window)
    lo = sum(n for o, n in octets.items() if o < 128) / len(window)
    assert {c["country"]: c["share"] for c in rec["source_countries"]} == pytest.approx({"LO": lo, "HI": 1 - lo})
    top_asn, top_n = max(octets.items(), key=lambda kv: (kv[1], -kv[0]))
    assert rec["source_asns"][0] == {"asn": top_asn, "share": pytest.approx(top_n / len(window))}
    assert rec["target_asn"] == 10 and rec["target_country"] == "LO" and rec["target_prefix"] is None  # 10/8 unrouted


# ------------------------------------------------------------ the baseline
def flow_table(
    ts_us: np.ndarray, src: pa.Array, dst: pa.Array, packets: np.ndarray, rng: np.random.Generator
) -> pa.Table:
    """Synthetic TCP/443 flow rows (PSH-ACK, TTL 57) for the baseline and memory tests."""
    n = len(ts_us)
    order = np.argsort(ts_us, kind="stable")
    cols = {
        "ts": pa.array(ts_us, pa.int64()).cast(FLOW_SCHEMA.field("ts").type),
        "exporter": pa.array(["synthetic"] * n),
        "src_addr": src,
        "dst_addr": dst,
        "src_port": pa.array(rng.integers(1024, 65535, n).astype(np.uint16)),
        "dst_port": pa.array(np.full(n, 443, np.uint16)),
        "protocol": pa.array(np.full(n, 6, np.uint8)),
        "tcp_flags": pa.array(np.full(n, 0x18, np.uint8)),
        "fragment": pa.array(np.zeros(n, bool)),
        "ttl": pa.array(np.full(n, 57, np.uint8)),
        "bytes": pa.array(packets.astype(np.uint64) * np.uint64(800)),
        "packets": pa.array(packets.astype(np.uint64)),
        "sampling_rate": pa.array(np.ones(n, np.uint32)),
        "in_if": pa.array(np.zeros(n, np.uint32)),
        "out_if": pa.array(np.zeros(n, np.uint32)),
    }
    return pa.table(cols, schema=FLOW_SCHEMA).take(pa.array(order))


def steady(rng: np.random.Generator, dst: str, pps: np.ndarray, t0: int, sources: int = 20) -> pa.Table:
    """One row per second and source toward dst, the second's packets spread over the sources."""
    secs = np.repeat(np.arange(len(pps)), sources)
    per = np.maximum(np.repeat(pps / sources, sources).round(), 1)
    src = addr.from_v4_u32(np.tile(np.arange(sources, dtype=np.uint32) + 0x0B000001, len(pps)))
    ts = (t0 + secs) * US + rng.integers(0, US, len(secs))
    return flow_table(ts, src, pa.array([addr.parse(dst)] * len(secs), addr.ADDR), per, rng)


def test_baseline_fires_on_jumps_not_on_busy_hosts() -> None:
    rng = np.random.default_rng(7)
    t0, n = 1_700_000_000, 900
    busy = 3000 * rng.uniform(0.7, 1.3, n)
    busy[::45] *= 3  # a normally busy, bursty host
    quiet = 200 * rng.uniform(0.8, 1.2, n)
    attacks = [(400, 460), (560, 620)]
    for a, b in attacks:
        quiet[a:b] = 20000
    table = pa.concat_tables([steady(rng, "192.0.2.10", busy, t0), steady(rng, "192.0.2.20", quiet, t0)])
    table = table.sort_by("ts")
    conf = ["ddos.ban_for_pps=off", "ddos.ban_for_bandwidth=off", "ddos.baseline_min_pps=1000",
            "ddos.baseline_min_mbps=1e6", "ddos.baseline_warmup_s=120", "ddos.baseline_window_s=300"]  # fmt: skip
    got = run(table, conf)
    assert [(r["target"], r["start"], r["end"], r["rule"]) for r in got] == [
        ("192.0.2.20", (t0 + a) * US, (t0 + b) * US, "baseline_pps>10x") for a, b in attacks
    ]
    assert {r["target_role"] for r in got} == {"web"}  # all of it toward port 443
    # the counterfactual: a smaller jump (under 10x normal, so not flagged) *is* fed to the baseline,
    # and then the same second attack goes unseen; above it was seen because attack ticks are inpainted
    poisoned = quiet.copy()
    poisoned[400:460] = 1999
    assert run(steady(rng, "192.0.2.20", poisoned, t0), conf) == []


def test_state_is_bounded() -> None:
    rng = np.random.default_rng(3)
    t0, n, per_s = 1_700_000_000, 40, 2000
    secs = np.repeat(np.arange(n), per_s)
    dst = addr.from_v4_u32(rng.integers(0x0A000000, 0x0AFFFFFF, len(secs)).astype(np.uint32))
    src = addr.from_v4_u32(np.full(len(secs), 0x0B000001, np.uint32))
    noise = flow_table((t0 + secs) * US + rng.integers(0, US, len(secs)), src, dst, np.ones(len(secs)), rng)
    flood = steady(rng, "192.0.2.99", np.full(n, 50000.0), t0)
    table = pa.concat_tables([noise, flood]).sort_by("ts")
    det = DdosDetector(Config.load(overrides=[*LOW, "ddos.max_targets=500"]).section("ddos", DdosConfig))
    got = run(table, detector=det)
    assert [r["target"] for r in got] == ["192.0.2.99"]
    assert len(det.state) <= 500 and det.state.size <= 500
    assert det.state.untracked > 0  # what could not be watched is counted


# ------------------------------------------------------------------- misc
def test_attacks_summary() -> None:
    recs = run(pcap_flows(SYNFLOOD), [*LOW, "ddos.end_ticks=1", "ddos.average_calculation_time=0"])
    summary = attacks_summary(recs)
    assert summary["count"] == len(recs) == 2
    assert summary["by_vector"] == {"syn_flood": 2} and summary["by_rule"] == {"threshold_pps": 2}
    assert summary["top_targets"][0]["attacks"] == 2
    assert summary["top_targets"][0]["peak_pps"] == max(r["peak_pps"] for r in recs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=hs.integers(0, 2**32 - 1), rows=hs.integers(0, 3000))
def test_random_flow_tables_never_crash(seed: int, rows: int) -> None:
    """Random column values (also IPv6, fragments, sampling, zero counts) through the detector."""
    rng = np.random.default_rng(seed)
    base = pcap_flows(DNSFRAG)
    t = base.take(pa.array(rng.integers(0, base.num_rows, rows)))
    mat = addr.as_matrix(t.column("dst_addr")).copy()
    v6 = rng.random(rows) < 0.3
    mat[v6] = rng.integers(0, 256, (int(v6.sum()), 16), dtype=np.uint8)
    for name, values in (
        ("dst_addr", addr.from_matrix(mat)),
        ("protocol", pa.array(rng.integers(0, 256, rows).astype(np.uint8))),
        ("tcp_flags", pa.array(rng.integers(0, 256, rows).astype(np.uint8))),
        ("src_port", pa.array(rng.integers(0, 65536, rows).astype(np.uint16))),
        ("packets", pa.array(rng.integers(0, 1000, rows).astype(np.uint64))),
        ("sampling_rate", pa.array(rng.integers(0, 4096, rows).astype(np.uint32))),
    ):
        t = t.set_column(t.schema.get_field_index(name), FLOW_SCHEMA.field(name), values)
    recs = run(t, ["ddos.threshold_pps=10", "ddos.start_ticks=1", "ddos.prefix_threshold_pps=10", "ddos.end_ticks=2"])
    to_arrow("attacks", recs)
    assert all(r["end"] is not None and r["end"] > r["start"] for r in recs)

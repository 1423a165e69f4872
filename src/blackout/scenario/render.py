"""Write a planned timeline as the telemetry collectors would have recorded it.

* BGP: the bundled real RouteViews jinx RIB as the starting table, then one
  MRT BGP4MP update file per day: the four /24s withdrawn and re-announced by
  every peer that carried them (real peers, real paths), and normal churn
  (real RIB routes re-announced unchanged) everywhere else.
* Flows: one pcap of IPFIX export datagrams (sampled 1:SAMPLING, records of at
  most one second) of what an observing network saw toward and from
  175.45.176.0/22: light normal traffic, the attacks, nothing while the
  routes are gone.
* Probes: RIPE Atlas ping results toward the five published hosts.

Sources are drawn from address space that the same RIB (prefix → origin AS)
and the AS registry lines (AS → country) place in the attack's countries.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import addr
from ..enrich.asnames import AsNames
from ..sources import FILE_DECODERS, DecodeContext, read_input
from .facts import KP2014 as KP
from .kp2014 import Plan
from .writers import (
    IPFIX_DTYPE,
    atlas_ping,
    bgp_update,
    ipfix_messages,
    mrt_bgp4mp,
    write_json_lines,
    write_pcap_udp,
)

SAMPLING = 1000  # the observing network samples 1 packet in 1,000 (assumption)
RECORDS_PER_SECOND = 5  # flow records per attack-second (many sources aggregate into each)
NORMAL_PER_MINUTE = 6  # sampled flow records per minute of normal traffic
CHURN_PER_HOUR = 120  # re-announcements of other routes per hour
ATLAS_INTERVAL_S = 240
HEAVY_BPS = 2e9  # pings are lost (60 %) during attacks this strong: the probes' path is congested too
HEAVY_LOSS = 0.6
PEAK_HOLD_S = 120  # the planned peak rate lasts this long: a whole aligned minute lies inside it
RENDER_VERSION = 3  # bump when the files written for the same plan change (the demo rewrites them)
COLLECTOR = ("192.0.2.2", 6447)  # the route collector's side of each BGP4MP record (a value in the file)
EXPORTER = ("192.0.2.1", "192.0.2.2")  # IPFIX exporter and collector addresses written in the pcap
COLLECTOR_NAME = "routeviews.route-views.jinx"  # the bundled RIB's collector


class World:
    """What the RIB and the AS registry say: the KP routes, other routes, and address space per country."""

    def __init__(self, rib_path: str, asnames_path: str) -> None:
        ctx = DecodeContext(batch_size=1 << 20)
        rib = pa.Table.from_batches(list(FILE_DECODERS["mrt"].read(rib_path, read_input(rib_path), ctx)))
        keep = pc.and_(pa.array(addr.is_v4(rib.column("prefix"))), pc.is_valid(rib.column("origin_asn")))
        rib = rib.filter(pc.and_(keep, pc.invert(pc.match_substring(rib.column("as_path"), "{"))))
        nets = addr.v4_to_u32(rib.column("prefix"))
        kp_nets = [int(ipaddress.ip_network(p).network_address) for p in KP.prefixes]
        kp = pa.array(np.isin(nets, kp_nets) & (rib.column("prefix_len").to_numpy() == 24))
        self.kp = rib.filter(kp)
        self.others = rib.filter(pc.invert(kp))
        self.names = AsNames.load(asnames_path)
        self._space = self._country_space()

    def _country_space(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        table = self.others.group_by(["prefix", "prefix_len"]).aggregate([("origin_asn", "min")])
        asns = table.column("origin_asn_min").to_numpy()
        countries = self.names.countries(asns).astype(str)
        nets = addr.v4_to_u32(table.column("prefix")).astype(np.uint64)
        lens = table.column("prefix_len").to_numpy().astype(np.int64)
        space: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for cc in np.unique(countries):
            keep = (countries == cc) & (lens >= 8) & (lens <= 24)
            if keep.any():
                space[str(cc)] = (nets[keep], lens[keep])
        return space

    def addresses(self, rng: np.random.Generator, country: str, n: int) -> np.ndarray:
        """n IPv4 addresses (uint32) inside prefixes whose origin AS is registered in `country`."""
        nets, lens = self._space[country]
        weight = 2.0 ** (32 - lens)
        pick = rng.choice(len(nets), size=n, p=weight / weight.sum())
        offsets = (rng.random(n) * (2.0 ** (32 - lens[pick]))).astype(np.uint64)
        return (nets[pick] + offsets).astype(np.uint32)


def render(plan: Plan, out: Path, rib_path: str, asnames_path: str, seed: int) -> dict[str, Any]:
    """Write every file of the scenario into `out`; return a listing of what was written."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    world = World(rib_path, asnames_path)
    rib_name = f"{COLLECTOR_NAME}.ribs.{plan.start}.mrt.gz"  # the 2014-05-30 table, dated at the start
    with gzip.open(out / rib_name, "wb", compresslevel=3) as fh:
        fh.write(retime_mrt(read_input(rib_path), plan.start))
    files: dict[str, Any] = {"rib": rib_name}
    files["updates"] = _write_updates(plan, world, rng, out)
    files["flows"] = _write_flows(plan, world, rng, out)
    files["probes"] = _write_probes(plan, rng, out)
    (out / "truth.json").write_text(json.dumps(plan.truth(), indent=2) + "\n")
    files["truth"] = "truth.json"
    return files


def retime_mrt(data: bytes, ts: int) -> bytes:
    """The same MRT records with every header timestamp set to ts.

    The bundled RIB is of 2014-05-30; as the scenario's starting table it must
    be dated at the scenario's start, or the replay would spend six empty months
    between the table and the first update.  Routes, peers and paths are untouched.
    """
    buf = bytearray(data)
    offset, stamp = 0, struct.pack("!I", ts)
    while offset + 12 <= len(buf):
        buf[offset : offset + 4] = stamp
        offset += 12 + struct.unpack_from("!I", buf, offset + 8)[0]
    return bytes(buf)


def _write_updates(plan: Plan, world: World, rng: np.random.Generator, out: Path) -> list[str]:
    """One gzipped MRT update file per day, records in time order."""
    records: list[tuple[int, bytes]] = []
    kp = world.kp.to_pylist()
    for down in plan.route_downs:
        peers = sorted({(r["peer_addr"], r["peer_asn"]) for r in kp})
        chosen = {p for p in peers if rng.random() < down.share} if down.share < 1 else set(peers)
        for row in kp:
            if (row["peer_addr"], row["peer_asn"]) not in chosen:
                continue
            jitter_down, jitter_up = (int(j) for j in rng.integers(0, 30, size=2))
            records.append(_update(row, down.start + jitter_down, withdraw=True))
            records.append(_update(row, down.end + jitter_up, withdraw=False))
    hours = (plan.end - plan.start) // 3600
    churn = world.others.take(rng.integers(0, world.others.num_rows, size=hours * CHURN_PER_HOUR)).to_pylist()
    times = np.sort(rng.integers(plan.start, plan.end, size=len(churn)))
    records += [_update(row, int(t), withdraw=False) for t, row in zip(times, churn, strict=True)]
    records.sort(key=lambda r: r[0])
    by_day: dict[int, list[bytes]] = defaultdict(list)
    for t, rec in records:
        by_day[t - t % 86400].append(rec)
    names = []
    for day, recs in sorted(by_day.items()):
        # named as the bundled archives are, so RIB and updates are one collector with the same peers
        name = f"{COLLECTOR_NAME}.updates.{day}.mrt.gz"
        with gzip.open(out / name, "wb", compresslevel=5) as fh:
            fh.write(b"".join(recs))
        names.append(name)
    return names


def _update(row: dict[str, Any], t: int, withdraw: bool) -> tuple[int, bytes]:
    """The MRT record of one peer announcing (unchanged) or withdrawing one route at time t."""
    peer_ip = addr.format_one(row["peer_addr"]) or "0.0.0.0"
    prefix = addr.format_prefix(row["prefix"], row["prefix_len"]) or ""
    if withdraw:
        message = bgp_update([], [prefix], [], "0.0.0.0")
    else:
        path = [int(a) for a in row["as_path"].split()]
        message = bgp_update([prefix], [], path, addr.format_one(row["next_hop"]) or peer_ip)
    return t, mrt_bgp4mp(t, row["peer_asn"], peer_ip, COLLECTOR[1], COLLECTOR[0], message)


# ------------------------------------------------------------------- flows
def _write_flows(plan: Plan, world: World, rng: np.random.Generator, out: Path) -> str:
    """Normal traffic plus every attack, as IPFIX datagrams in one pcap."""
    parts = [_normal_traffic(plan, world, rng)]
    parts += [_attack_traffic(a, world, rng) for a in plan.attacks]
    records = np.concatenate(parts)
    records = records[~plan.dark(records["start_ms"] // 1000)]
    records = records[np.argsort(records["end_ms"], kind="stable")]
    name = "flows.ipfix.pcap"
    with open(out / name, "wb") as fh:
        write_pcap_udp(fh, ipfix_messages(records, SAMPLING), EXPORTER[0], EXPORTER[1], 4739)
    return name


def _kp_hosts() -> np.ndarray:
    return np.array([int(ipaddress.ip_address(ip)) for ip in KP.targets], dtype=np.uint32)


def _normal_traffic(plan: Plan, world: World, rng: np.random.Generator) -> np.ndarray:
    """Light two-way traffic of the KP hosts with the rest of the world (sampled)."""
    minutes = (plan.end - plan.start) // 60
    n = int(rng.poisson(NORMAL_PER_MINUTE, size=minutes).sum())
    rec = np.zeros(n, dtype=IPFIX_DTYPE)
    # exported as a router with a 60 s active timeout does: each minute's records start on its boundary
    # (so the background costs one tick a minute, not one per record)
    start_ms = np.sort(rng.integers(plan.start // 60, plan.end // 60, size=n)) * 60_000
    rec["start_ms"] = start_ms
    rec["end_ms"] = start_ms + rng.integers(0, 1000, size=n)
    hosts = _kp_hosts()
    roles = [role for role, _ in KP.targets.values()]
    port_of = {"dns": 53, "mail": 25, "web": 80}
    which = rng.integers(0, len(hosts), n)
    to_host = rng.random(n) < 0.8
    other = np.uint32(int(ipaddress.ip_address("175.45.176.0"))) + rng.integers(1, 1023, n).astype(np.uint32)
    kp = np.where(to_host, hosts[which], other)
    host_port = np.array([port_of[r] for r in roles], dtype=np.uint16)[which]
    web = np.where(rng.random(n) < 0.5, 80, 443).astype(np.uint16)
    service = np.where(to_host & (host_port != 80), host_port, web)
    peers = np.concatenate(
        [world.addresses(rng, cc, n // 2) for cc in ("CN", "RU")] + [world.addresses(rng, "US", n - 2 * (n // 2))]
    )
    peers = peers[rng.permutation(n)]
    inbound = rng.random(n) < 0.6
    rec["src"] = np.where(inbound, peers, kp)
    rec["dst"] = np.where(inbound, kp, peers)
    ephemeral = rng.integers(1024, 65535, n).astype(np.uint16)
    rec["sport"] = np.where(inbound, ephemeral, service)
    rec["dport"] = np.where(inbound, service, ephemeral)
    rec["proto"] = np.where(service == 53, 17, 6)
    rec["flags"] = np.where(service == 53, 0, 0x18)
    rec["ttl"] = rng.integers(40, 64, n)
    rec["packets"] = rng.integers(1, 4, n)
    rec["bytes"] = rec["packets"] * rng.integers(200, 1400, n)
    return rec


def _attack_traffic(attack: Any, world: World, rng: np.random.Generator) -> np.ndarray:
    """One attack's sampled records: a ramp, a noisy plateau, the planned peak held for one minute
    (so a detector measuring over any tick up to a minute, aligned or not, sees all of it)."""
    seconds = np.arange(attack.start, attack.end)
    level = rng.uniform(0.85, 0.98, len(seconds))
    ramp = np.minimum(1.0, np.minimum(np.arange(len(seconds)) + 1, len(seconds) - np.arange(len(seconds))) / 60)
    level *= ramp
    peak = len(seconds) // 3 + int(rng.integers(0, max(1, len(seconds) // 3)))
    level[peak : peak + PEAK_HOLD_S] = 1.0
    k = RECORDS_PER_SECOND
    n = len(seconds) * k
    per_second_bytes = attack.peak_bps * level / 8 / SAMPLING
    per_second_packets = np.maximum(1.0, attack.peak_pps * level / SAMPLING)
    rec = np.zeros(n, dtype=IPFIX_DTYPE)
    start_ms = np.repeat(seconds * 1000, k) + rng.integers(0, 500, n)
    rec["start_ms"] = start_ms
    rec["end_ms"] = np.minimum(start_ms + rng.integers(0, 500, n), np.repeat(seconds * 1000 + 999, k))
    rec["packets"], rec["bytes"] = _split(per_second_packets, per_second_bytes, k)
    main = world.addresses(rng, attack.main_country, max(1, attack.sources * 55 // 100))
    others = np.concatenate(
        [
            world.addresses(rng, cc, max(1, attack.sources * 45 // 100 // 4))
            for cc in ("CN", "DE", "BR", "IN")
            if cc != attack.main_country
        ]
    )
    pool = np.concatenate([main, others])
    share = len(main) / len(pool)
    pick = (
        np.where(rng.random(n) < 0.55, rng.integers(0, len(main), n), len(main) + rng.integers(0, len(others), n))
        if share < 1
        else rng.integers(0, len(pool), n)
    )
    rec["src"] = pool[pick]
    rec["dst"] = int(ipaddress.ip_address(attack.target))
    rec["dport"] = attack.dst_port
    rec["sport"] = attack.src_port if attack.src_port else rng.integers(1024, 65535, n)
    rec["proto"] = 6 if attack.vector == "syn_flood" else 17
    rec["flags"] = 0x02 if attack.vector == "syn_flood" else 0
    rec["ttl"] = rng.integers(30, 120, n)
    return rec[rec["packets"] > 0]  # dropped after every draw, so the later attacks' draws stay the same


def _split(per_second_packets: np.ndarray, per_second_bytes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each second's rounded packet total spread over k records as evenly as integers go, and its bytes in
    proportion (a record's bytes per packet is its second's).  A second with fewer than k sampled packets
    leaves some records at 0 packets and 0 bytes: no exporter sends those, so the caller drops them."""
    packets = np.round(per_second_packets).astype(np.int64)[:, None]
    total_bytes = np.round(per_second_bytes).astype(np.int64)[:, None]
    packet_parts = packets // k + (np.arange(k) < packets % k)
    byte_parts = total_bytes * packet_parts // np.maximum(packets, 1)
    byte_parts[:, 0] += total_bytes[:, 0] - byte_parts.sum(axis=1)  # the rounding; part 0 has the most packets
    return packet_parts.ravel(), byte_parts.ravel()


# ------------------------------------------------------------------ probes
def _write_probes(plan: Plan, rng: np.random.Generator, out: Path) -> str:
    """RIPE Atlas pings from three probes toward the five hosts; lost while dark, partly under heavy attack."""
    probes = [(6001, "193.0.0.10"), (6002, "129.250.0.10"), (6003, "202.12.27.10")]
    targets = list(KP.targets)
    times = np.arange(plan.start, plan.end, ATLAS_INTERVAL_S)
    heavy = np.zeros(len(times), dtype=bool)
    for a in plan.attacks:
        if a.peak_bps >= HEAVY_BPS:
            heavy |= (times >= a.start) & (times < a.end)
    per_round = len(probes) * len(targets)
    n = len(times) * per_round
    when = np.repeat(times, per_round) + rng.integers(0, 60, n)
    loss = np.where(np.repeat(heavy, per_round), HEAVY_LOSS, 0.01)
    lost = (rng.random((n, 3)) < loss[:, None]) | plan.dark(when)[:, None]
    rtt = np.round(rng.normal(280, 15, (n, 3)), 3)
    results = []
    for i in range(n):
        prb_id, src = probes[(i // len(targets)) % len(probes)]
        rtts = [None if lost[i, j] else float(rtt[i, j]) for j in range(3)]
        results.append(atlas_ping(int(when[i]), prb_id, 5001, src, targets[i % len(targets)], rtts))
    name = "atlas-ping.jsonl"
    with open(out / name, "w") as fh:
        write_json_lines(fh, results)
    return name

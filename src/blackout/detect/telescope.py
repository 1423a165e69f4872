"""Telescope mode: victims of spoofed floods, named from the backscatter they send into dark address space.

An attacker who spoofs source addresses uniformly at random makes the victim
answer (SYN-ACK, RST, ICMP echo reply or error) to random addresses; a dark
prefix — announced or not, but holding no hosts — receives its share of those
answers.  Every backscatter source is then a victim, and its rate at the
telescope × 2^32 / (dark addresses) estimates the rate of the answers it sent
to the whole IPv4 space (Moore, Voelker, Savage, "Inferring Internet
Denial-of-Service Activity", USENIX Security 2001; extended in ACM TOCS 24(2),
2006).

The rows into the dark space are turned around into the flood the victim
received — from the dark address (a spoofed source) to the victim, with the
packet that elicits that answer: SYN for SYN-ACK and RST-ACK, ACK for a bare
RST (RFC 793 answers a segment carrying ACK with a RST without it), echo
request for echo reply; ICMP errors (unreachable, source quench, time
exceeded, parameter problem) quote a packet the flow record does not carry,
so their flood's protocol is unknown.  The DDoS detector then runs its own
lifecycle on those rows (:class:`.ddos.DdosDetector`: candidate on the first
hot tick, confirmation on the smoothed rate, end after quiet ticks) with the
thresholds below, and its records are renamed, rescaled and filtered here.

Defaults follow Moore et al.'s flow-based classification (flows keyed on the
victim, ended by a timeout; CAIDA's USENIX Security 2001 slides): an attack
needs at least 100 backscatter packets, 60 s, and a rate at the telescope of
0.5 pps, with a flow timeout of 300 s.  The rate is FastNetMon's exponential
average with a 60 s time constant (`average_s`).  The numbers are those
commonly quoted from the paper; its text could not be re-read where this was
written, so they are options.  Unlike the paper, flows are keyed on the victim
alone (not victim and protocol): one attack record per victim, with vectors.

Flow exports count a flow's packets at its start, so rates at the telescope
from NetFlow/IPFIX are burstier than from packets and pass the 0.5 pps rule
more easily (StopDDoS' slow SYN-ACK reflection: one victim from the pcap, two
from softflowd's NetFlow v5 of it).

Peaks are per tick × the scale, so their resolution is the scale: one packet
in a 1 s tick at a /24 telescope is 2^24 pps.  Moore et al. used /8 (scale
256); with a small telescope, total_packets / (end − start) is the better rate.

Only IPv4: uniform spoofing over 2^128 addresses would leave any IPv6 telescope
dark.  Rates, bytes and packets in the records are scaled; bytes are the
victim's answers, not the flood's.  ``unique_sources`` and ``top_sources`` are
the dark addresses that received backscatter (spoofed sources, unscaled).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from .. import addr
from ..config import Config, register_section
from ..enrich.base import Enricher
from ..errors import ConfigError
from ..events import event_id
from .base import Detector, Tick
from .ddos import DdosDetector
from .ddos_config import DdosConfig
from .rates import PrefixMatcher
from .vectors import ACK, ICMP, RST, SYN, TCP

RULE = "telescope"
IPV4_SPACE = 2**32
ICMP_ECHO_REPLY = 0
ICMP_ERRORS = (3, 4, 11, 12)  # destination unreachable, source quench, time exceeded, parameter problem
UNKNOWN_PROTOCOL = 0  # the reversed row of an ICMP error: the DDoS vectors call it ip_flood
# the DDoS vector of a reversed row -> the telescope's name for the flood (docs/EVENTS.md)
VECTOR_NAMES = {
    "syn_flood": "spoofed_syn_flood",
    "ack_flood": "spoofed_ack_flood",
    "icmp_flood": "spoofed_icmp_flood",
    "ip_flood": "spoofed_ip_flood",
}


@dataclasses.dataclass
class TelescopeConfig:
    """[telescope] section: the dark prefixes (empty = off) and Moore et al.'s attack thresholds."""

    prefixes: list[str] = dataclasses.field(default_factory=list)  # dark IPv4 prefixes, e.g. ["44.0.0.0/8"]
    min_pps: float = 0.5  # rate at the telescope (not scaled), averaged over average_s, must go above this
    average_s: float = 60.0
    min_packets: float = 100.0  # backscatter packets at the telescope (sampling-corrected, not scaled)
    min_duration_s: float = 60.0
    timeout_s: float = 300.0  # this long without backscatter from a victim ends its attack
    update_every_s: float = 10.0  # re-emit a running attack's record at most this often (event time)
    max_targets: int = 200000


register_section("telescope", TelescopeConfig)


def dark_networks(prefixes: list[str]) -> list[ipaddress.IPv4Network]:
    """The configured dark prefixes, overlaps merged; errors name the option."""
    nets = []
    for text in prefixes:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise ConfigError(f"telescope.prefixes: {exc}") from exc
        if not isinstance(net, ipaddress.IPv4Network):
            raise ConfigError(f"telescope.prefixes: {text} is IPv6; backscatter analysis needs IPv4 dark space")
        nets.append(net)
    return list(ipaddress.collapse_addresses(nets))


def inner_config(cfg: TelescopeConfig, tick_s: float) -> DdosConfig:
    """The DDoS detector's settings that make its lifecycle Moore's flow rule (only the pps rule, no baseline)."""
    if cfg.min_pps < 0 or cfg.average_s < 0 or cfg.timeout_s <= 0 or tick_s <= 0:
        raise ConfigError("telescope.min_pps and telescope.average_s must be >= 0, telescope.timeout_s > 0")
    return DdosConfig(
        ban_for_pps=True,
        ban_for_bandwidth=False,
        threshold_pps=cfg.min_pps,
        average_calculation_time=cfg.average_s,
        baseline=False,
        start_ticks=1,
        end_ticks=max(1, math.ceil(cfg.timeout_s / tick_s)),
        max_targets=cfg.max_targets,
        update_every_s=cfg.update_every_s,
    )


def victim_view(flows: pa.Table, dark: PrefixMatcher) -> pa.Table:
    """The backscatter rows into the dark space, turned into the flood their source received (see module doc)."""
    hi, lo = addr.words(flows.column("dst_addr"))
    proto = flows.column("protocol").to_numpy()
    flags = flows.column("tcp_flags").to_numpy()
    icmp_type = flows.column("dst_port").to_numpy() >> 8  # ICMP rows: type << 8 | code
    tcp = proto == TCP
    ack = (flags & ACK) != 0
    answers_syn = tcp & ack & ((flags & (SYN | RST)) != 0)
    answers_ack = tcp & ~ack & ((flags & RST) != 0)
    icmp = proto == ICMP
    echo = icmp & (icmp_type == ICMP_ECHO_REPLY)
    error = icmp & np.isin(icmp_type, ICMP_ERRORS)
    keep = (answers_syn | answers_ack | echo | error) & (dark.match(hi, lo) >= 0)
    if not keep.any():
        return flows.slice(0, 0)
    rows = flows.filter(pa.array(keep))
    k = np.flatnonzero(keep)
    flood_flags = np.where(answers_syn[k], SYN, np.where(answers_ack[k], ACK, 0)).astype(np.uint8)
    flood_proto = np.where(error[k], UNKNOWN_PROTOCOL, proto[k]).astype(np.uint8)
    ports_kept = tcp[k]  # ICMP rows carry type/code, not ports: the reversed row has none
    src_port, dst_port = (np.where(ports_kept, rows.column(c).to_numpy(), 0) for c in ("dst_port", "src_port"))
    replaced = {
        "src_addr": rows.column("dst_addr"),
        "dst_addr": rows.column("src_addr"),
        "src_port": pa.array(src_port.astype(np.uint16)),
        "dst_port": pa.array(dst_port.astype(np.uint16)),
        "protocol": pa.array(flood_proto),
        "tcp_flags": pa.array(flood_flags),
        "fragment": pa.array(np.zeros(len(k), dtype=bool)),  # whether the flood was fragmented is unknown
    }
    return pa.table([replaced.get(f.name, rows.column(f.name)) for f in rows.schema], schema=rows.schema)


class TelescopeDetector:
    """Names the hosts whose backscatter reaches the dark prefixes as victims; emits "attacks" records."""

    name: ClassVar[str] = "telescope"

    def __init__(self, cfg: TelescopeConfig, enricher: Enricher | None = None, tick_s: float = 1.0) -> None:
        self.cfg = cfg
        nets = dark_networks(cfg.prefixes)
        if not nets:
            raise ConfigError("telescope.prefixes: give at least one dark IPv4 prefix, e.g. ['44.0.0.0/8']")
        self.dark_addresses = sum(net.num_addresses for net in nets)
        self.scale = IPV4_SPACE / self.dark_addresses
        self.dark = PrefixMatcher([(str(net), 0) for net in nets])
        self.inner = DdosDetector(inner_config(cfg, tick_s), enricher)
        self.passed: set[str] = set()  # ids of running attacks that met min_packets and min_duration_s
        self.now_us = 0

    def advance(self, now_us: int) -> None:
        """Quiet time: the DDoS lifecycle ends attacks after timeout_s."""
        self.now_us = max(self.now_us, now_us)
        self.inner.advance(now_us)

    def on_tick(self, tick: Tick) -> None:
        """Pass the tick's backscatter, turned around, to the DDoS lifecycle."""
        self.now_us = max(self.now_us, tick.end_us)
        flows = victim_view(tick.flows, self.dark) if tick.flows.num_rows else tick.flows
        self.inner.on_tick(dataclasses.replace(tick, flows=flows))

    def finish(self, end_us: int, close_open: bool) -> None:
        """Delegated: close (replay) or leave open (live shutdown) the running attacks."""
        self.now_us = max(self.now_us, end_us)
        self.inner.finish(end_us, close_open)

    def counters(self) -> dict[str, int]:
        """The inner DDoS detector's counted drops (impossible rows, stale ticks, untracked targets,
        evictions): the engine reports them under this detector's name."""
        return self.inner.counters()

    def drain(self) -> dict[str, list[dict[str, Any]]]:
        """The attacks that met Moore's packet and duration minimums, as telescope records."""
        out = []
        min_us = self.cfg.min_duration_s * 1e6
        for rec in self.inner.drain()["attacks"]:
            if rec["id"] not in self.passed:
                until = rec["end"] if rec["end"] is not None else self.now_us
                if rec["total_packets"] < self.cfg.min_packets or until - rec["start"] < min_us:
                    continue
                self.passed.add(rec["id"])
            if rec["end"] is not None:
                self.passed.discard(rec["id"])
            out.append(self.record(rec))
        return {"attacks": out}

    def record(self, rec: dict[str, Any]) -> dict[str, Any]:
        """A DDoS record of the reversed rows as the telescope's: own id, vector names, scaled rates, rule."""
        out = dict(rec)
        out["id"] = event_id("attack", f"{RULE}:{rec['target']}", rec["start"])
        for key in ("peak_bps", "peak_pps", "total_bytes", "total_packets"):
            out[key] = rec[key] * self.scale
        out["vectors"] = [{"name": telescope_vector(v["name"]), "share": v["share"]} for v in rec["vectors"]]
        out["spoofing"] = 1.0  # backscatter exists because the sources were spoofed
        out["rule"] = RULE
        return out


def telescope_vector(ddos_name: str) -> str:
    """The telescope's name for the flood a reversed row's DDoS vector describes."""
    return VECTOR_NAMES.get(ddos_name, f"spoofed_{ddos_name}")


def telescope_detectors(config: Config, enricher: Enricher, tick_s: float) -> list[Detector]:
    """[TelescopeDetector] when [telescope] prefixes names dark space, else none (the default)."""
    cfg = config.section("telescope", TelescopeConfig)
    return [TelescopeDetector(cfg, enricher, tick_s)] if cfg.prefixes else []

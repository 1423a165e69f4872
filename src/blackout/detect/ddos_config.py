"""The [ddos] configuration section, named as FastNetMon names its options, and the rule tables built from it.

An FNM configuration translates line by line: ``threshold_pps = 20000`` and
``ban_for_pps = on`` mean the same here (``on``/``off`` are accepted).  FNM's
per-host thresholds apply to every host address; host groups (FNM's
``hostgroup``) override them for their networks (``calculation = "per_host"``)
or, as FNM Advanced's "total" hostgroups, watch the group's summed traffic as
one target.  Prefix targets (/24, /64) catch carpet bombing — many hosts of
one prefix each under the per-host thresholds — with their own
``prefix_threshold_*`` (0 = off).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..config import register_section
from ..errors import ConfigError
from .rates import METRICS


@dataclasses.dataclass
class DdosConfig:
    """[ddos] section: FastNetMon's option names and defaults where FNM has them."""

    # thresholds per host, as FastNetMon: a rule fires when its ban_for_* switch is on and the rate is above it
    ban_for_pps: bool = True
    ban_for_bandwidth: bool = True
    ban_for_flows: bool = False
    threshold_pps: float = 20000.0  # packets/s (FNM default)
    threshold_mbps: float = 1000.0  # megabits/s (FNM default)
    threshold_flows: float = 3500.0  # distinct 5-tuples/s (FNM default)
    ban_for_tcp_pps: bool = False
    ban_for_tcp_bandwidth: bool = False
    ban_for_tcp_syn_pps: bool = False
    ban_for_tcp_syn_bandwidth: bool = False
    ban_for_udp_pps: bool = False
    ban_for_udp_bandwidth: bool = False
    ban_for_icmp_pps: bool = False
    ban_for_icmp_bandwidth: bool = False
    threshold_tcp_pps: float = 100000.0
    threshold_tcp_mbps: float = 100000.0
    threshold_tcp_syn_pps: float = 100000.0  # TCP packets with SYN set (SYN-ACK included, as FNM counts)
    threshold_tcp_syn_mbps: float = 100000.0
    threshold_udp_pps: float = 100000.0
    threshold_udp_mbps: float = 100000.0
    threshold_icmp_pps: float = 100000.0
    threshold_icmp_mbps: float = 100000.0
    # FNM smooths rates with an exponential moving average over this many seconds before comparing
    # them with thresholds; 0 compares each tick's raw rate
    average_calculation_time: float = 5.0
    # only destinations inside these networks are watched (FNM's networks_list); empty = every destination
    networks: list[str] = dataclasses.field(default_factory=list)
    # name -> {networks = [...], calculation = "per_host" | "total", threshold_pps = ..., ban_for_pps = ...}
    hostgroups: dict[str, Any] = dataclasses.field(default_factory=dict)
    # prefix targets: every destination's covering prefix is also watched, with its own thresholds (0 = off)
    prefix_v4: int = 24
    prefix_v6: int = 64
    prefix_threshold_pps: float = 0.0
    prefix_threshold_mbps: float = 0.0
    prefix_threshold_flows: float = 0.0
    # adaptive rule (hosts): fire when the rate is baseline_factor x normal AND above the floor;
    # normal = EWMA mean + 3 standard deviations of the host's per-tick rate over baseline_window_s,
    # so a normally busy or bursty host needs a much larger jump
    baseline: bool = True
    baseline_factor: float = 10.0
    baseline_min_pps: float = 5000.0  # floor: never fire below this rate
    baseline_min_mbps: float = 100.0
    baseline_window_s: float = 600.0  # time constant of the EWMA baseline
    baseline_warmup_s: float = 300.0  # no baseline rule before the detector has seen this much event time
    baseline_max_inpaint_s: float = 3600.0  # a level held this long becomes the new normal (IODA's rule)
    # lifecycle: a rule must hold start_ticks consecutive ticks (on smoothed rates) to open an attack.
    # 1 = FastNetMon's behaviour (it bans on the first smoothed value over the threshold); the average
    # already damps spikes: with 5 s, a lone 1 s tick must exceed ~5.5x the threshold to fire.
    # end_ticks ticks without any rule holding on raw rates end it (30 s: pulsed attacks stay one attack);
    # the attack spans its first to last hot tick
    start_ticks: int = 1
    end_ticks: int = 30
    # bounded memory: state for at most this many targets (least recently seen quiet ones are evicted)
    max_targets: int = 200000
    max_sources_exact: int = 1000000  # past this many sources an attack counts them with HyperLogLog
    amplification_min_sources: int = 10  # fewer distinct sources: not a reflection
    # UDP from a source port outside the amplifier table is udp_reflection:<port> with enough sources
    # and at least this many bytes per packet (reflectors amplify; see detect/reflection.py)
    reflection_min_bytes: float = 200.0
    update_every_s: float = 10.0  # re-emit a running attack's record at most this often (event time)


register_section("ddos", DdosConfig)

# rule name -> (metric, threshold option, switch option, scale of the threshold to the metric's unit)
RULES: list[tuple[str, str, str, str, float]] = [
    ("threshold_pps", "pps", "threshold_pps", "ban_for_pps", 1.0),
    ("threshold_mbps", "bps", "threshold_mbps", "ban_for_bandwidth", 1e6),
    ("threshold_flows", "flows", "threshold_flows", "ban_for_flows", 1.0),
]
for _proto in ("tcp", "tcp_syn", "udp", "icmp"):
    RULES.append((f"threshold_{_proto}_pps", f"{_proto}_pps", f"threshold_{_proto}_pps", f"ban_for_{_proto}_pps", 1.0))
    RULES.append(
        (f"threshold_{_proto}_mbps", f"{_proto}_bps", f"threshold_{_proto}_mbps", f"ban_for_{_proto}_bandwidth", 1e6)
    )
RULE_METRIC = np.array([METRICS.index(r[1]) for r in RULES], dtype=np.int64)
_GROUP_KEYS = {r[2] for r in RULES} | {r[3] for r in RULES} | {"networks", "calculation"}


@dataclasses.dataclass
class HostGroup:
    """One configured host group."""

    name: str
    networks: list[str]
    total: bool  # watch the group's summed traffic as one target (else: per-host thresholds)
    thresholds: np.ndarray  # per rule, inf when off


def thresholds(values: dict[str, Any]) -> np.ndarray:
    """Per-rule thresholds in metric units, inf where the rule's switch is off."""
    out = np.full(len(RULES), math.inf)
    for i, (_, _, limit, switch, scale) in enumerate(RULES):
        if values[switch]:
            out[i] = float(values[limit]) * scale
    return out


def prefix_thresholds(cfg: DdosConfig) -> np.ndarray:
    """Thresholds of prefix targets: total pps / Mbps / flows, 0 = off."""
    out = np.full(len(RULES), math.inf)
    for i, value in enumerate((cfg.prefix_threshold_pps, cfg.prefix_threshold_mbps * 1e6, cfg.prefix_threshold_flows)):
        if value > 0:
            out[i] = value
    return out


def host_groups(cfg: DdosConfig) -> list[HostGroup]:
    """Validate [ddos] hostgroups; each group's missing thresholds fall back to the global ones."""
    base = dataclasses.asdict(cfg)
    out = []
    for name in sorted(cfg.hostgroups):
        body = cfg.hostgroups[name]
        if not isinstance(body, dict):
            raise ConfigError(f"ddos.hostgroups.{name}: expected a table with networks = [...]")
        unknown = sorted(set(body) - _GROUP_KEYS)
        if unknown:
            raise ConfigError(
                f"ddos.hostgroups.{name} has no option {unknown}; options: {', '.join(sorted(_GROUP_KEYS))}"
            )
        nets = body.get("networks")
        if not isinstance(nets, list) or not nets or not all(isinstance(n, str) for n in nets):
            raise ConfigError(f"ddos.hostgroups.{name}.networks: give a list of networks, e.g. ['10.10.10.0/24']")
        calc = body.get("calculation", "per_host")
        if calc not in ("per_host", "total"):
            raise ConfigError(f"ddos.hostgroups.{name}.calculation: 'per_host' or 'total', not {calc!r}")
        values = {**base, **{k: _onoff(v) for k, v in body.items() if k not in ("networks", "calculation")}}
        for _, _, limit, switch, _ in RULES:
            if not isinstance(values[switch], bool) or isinstance(values[limit], bool):
                raise ConfigError(f"ddos.hostgroups.{name}: {switch} must be true/false, {limit} a number")
            if not isinstance(values[limit], int | float):
                raise ConfigError(f"ddos.hostgroups.{name}.{limit}: expected a number, got {values[limit]!r}")
        out.append(HostGroup(name, list(nets), calc == "total", thresholds(values)))
    return out


def _onoff(value: Any) -> Any:
    """FastNetMon writes switches as on/off."""
    if isinstance(value, str) and value.lower() in ("on", "off", "true", "false", "yes", "no"):
        return value.lower() in ("on", "true", "yes")
    return value


def check(cfg: DdosConfig) -> None:
    """Reject values that cannot work, naming the option."""
    if not 0 <= cfg.prefix_v4 <= 32 or not 0 <= cfg.prefix_v6 <= 128:
        raise ConfigError("ddos.prefix_v4 must be 0..32 and ddos.prefix_v6 0..128")
    for name in ("start_ticks", "end_ticks", "max_targets", "max_sources_exact", "amplification_min_sources"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"ddos.{name} must be at least 1")
    if cfg.average_calculation_time < 0 or cfg.baseline_window_s <= 0:
        raise ConfigError("ddos.average_calculation_time must be >= 0 and ddos.baseline_window_s > 0")

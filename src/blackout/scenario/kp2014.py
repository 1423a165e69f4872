"""The December 2014 North Korea timeline, planned from the published facts.

:func:`plan` turns :mod:`.facts` into a concrete, seeded timeline — which attack
hits which target when, with what vector and from where; when the four /24s
flap, vanish and return — and :mod:`.render` writes it as real telemetry.

Where the published record is silent, the assumptions are here, named:
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import numpy as np

from .facts import KP2014 as KP
from .facts import PERIOD

SEED = 20141222

# --- assumptions where the record is silent (each is ours, not published) -------------------
ATTACK_MINUTES = (15, 60)  # how long an attack lasts (uniform), except the published long one
ATTACK_GBPS = (0.4, 3.0)  # peak of an ordinary attack; the published peak is 5.97 Gbps
OTHER_MAIN_COUNTRIES = ["CN", "RU", "BR", "DE", "KR", "FR", "JP", "GB"]  # main source of non-US attacks
FLAP_EVERY_MIN = (50, 110)  # routing instability: a flap every so often...
FLAP_DOWN_MIN = (2, 9)  # ...withdrawn at most peers for this long
PACKET_BYTES = {"syn_flood": 60, "udp_flood": 439, "ntp": 468, "ssdp": 318}  # 439 = 5.97 Gbps / 1.70 Mpps


@dataclasses.dataclass
class AttackPlan:
    """One attack as the scenario puts it in."""

    index: int
    target: str
    role: str
    start: int  # unix seconds
    end: int
    vector: str  # syn_flood | udp_flood | ntp_amplification | ssdp_amplification
    dst_port: int
    src_port: int | None  # reflection source port, None for floods
    peak_bps: float
    peak_pps: float
    main_country: str
    sources: int  # distinct sources


@dataclasses.dataclass
class RouteDown:
    """A period in which the four /24s are withdrawn (at `share` of the peers)."""

    start: int
    end: int
    share: float
    kind: str  # flap | outage


@dataclasses.dataclass
class Plan:
    """The whole timeline."""

    start: int
    end: int
    attacks: list[AttackPlan]
    route_downs: list[RouteDown]

    def dark(self, t: np.ndarray) -> np.ndarray:
        """True where the /24s are withdrawn at (nearly) all peers: no traffic reaches them."""
        out = np.zeros(len(t), dtype=bool)
        for down in self.route_downs:
            if down.share >= 0.99:
                out |= (t >= down.start) & (t < down.end)
        return out

    def truth(self) -> dict[str, Any]:
        """What the scenario put in, for tests (detectors never read it)."""

        def iso(s: int) -> str:
            return dt.datetime.fromtimestamp(s, dt.UTC).isoformat().replace("+00:00", "Z")

        return {
            "attacks": [{**dataclasses.asdict(a), "start": iso(a.start), "end": iso(a.end)} for a in self.attacks],
            "route_downs": [
                {**dataclasses.asdict(d), "start": iso(d.start), "end": iso(d.end)} for d in self.route_downs
            ],
            "prefixes": list(KP.prefixes),
            "origin_asn": KP.origin_asn,
            "upstream_asn": KP.upstream_asn,
            "targets": {ip: {"role": role, "name": name} for ip, (role, name) in KP.targets.items()},
        }


def _day_start(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp())


def plan(seed: int = SEED) -> Plan:
    """The seeded timeline: same seed, same scenario, byte for byte."""
    rng = np.random.default_rng(seed)
    route_downs = _routing(rng)
    attacks = _attacks(rng, route_downs)
    start, end = (int(t.timestamp()) for t in PERIOD)
    return Plan(start, end, attacks, route_downs)


def _routing(rng: np.random.Generator) -> list[RouteDown]:
    out1_start, out1_end = (int(t.timestamp()) for t in KP.outage_1)
    downs: list[RouteDown] = []
    t = int(KP.instability_from.timestamp())
    while True:
        t += int(rng.integers(*FLAP_EVERY_MIN)) * 60
        length = int(rng.integers(*FLAP_DOWN_MIN)) * 60
        if t + length >= out1_start - 600:
            break
        downs.append(RouteDown(t, t + length, round(float(rng.uniform(0.6, 1.0)), 2), "flap"))
    downs.append(RouteDown(out1_start, out1_end, 1.0, "outage"))
    for begin, seconds in (KP.outage_2, KP.outage_3):
        s = int(begin.timestamp())
        downs.append(RouteDown(s, s + int(seconds), 1.0, "outage"))
    return downs


def _attacks(rng: np.random.Generator, downs: list[RouteDown]) -> list[AttackPlan]:
    per_day, targets = KP.attacks_per_day, KP.targets
    late_from = _day_start(KP.late_vectors_from)
    total = sum(per_day.values())
    us_attacks = set(rng.choice(total, size=KP.us_main_source_attacks, replace=False).tolist())
    web = [ip for ip, (role, _) in targets.items() if role == "web"]
    dns = [ip for ip, (role, _) in targets.items() if role == "dns"]
    attacks: list[AttackPlan] = []
    index = 0
    for day, count in sorted(per_day.items()):
        day0 = _day_start(day)
        starts = np.sort(rng.choice(np.arange(0, 22 * 60), size=count, replace=False)) * 60 + day0
        for k, start in enumerate(starts.tolist()):
            minutes = int(rng.integers(*ATTACK_MINUTES))
            reflection = start >= late_from
            if reflection:
                name, sport, dport = KP.late_vectors[k % len(KP.late_vectors)]
                vector = f"{name}_amplification"
                target = dns[k % len(dns)]
                size = PACKET_BYTES[name]
            else:
                vector = "syn_flood" if k % 2 == 0 else "udp_flood"
                dport, sport = KP.early_dst_port, None
                target = (web + [t for t in targets if t not in web])[k % len(targets)]
                size = PACKET_BYTES[vector]
            gbps = float(rng.uniform(*ATTACK_GBPS))
            if vector == "syn_flood":
                gbps = min(gbps, 0.8)  # small packets: keep pps plausible
            if day == KP.peak_day and k == count // 2:
                gbps, size, vector = KP.peak_bps / 1e9, PACKET_BYTES["udp_flood"], "udp_flood"
                minutes = max(minutes, 40)
            if day == "2014-12-22" and k == count - 1:
                minutes = KP.long_attack_s // 60 + 15
            for d in downs:  # an attack cannot start while the routes are gone: move it before
                if d.share >= 0.99 and d.start <= start < d.end:
                    start = d.start - minutes * 60 - 600
            end = start + minutes * 60
            for d in downs:  # no traffic reaches a withdrawn network: the attack ends with the routes
                if d.share >= 0.99 and start < d.start < end:
                    end = d.start
            peak_bps = gbps * 1e9
            pps = KP.peak_pps if peak_bps == KP.peak_bps else peak_bps / 8 / size
            country = "US" if index in us_attacks else OTHER_MAIN_COUNTRIES[index % len(OTHER_MAIN_COUNTRIES)]
            attacks.append(
                AttackPlan(
                    index,
                    target,
                    targets[target][0],
                    start,
                    end,
                    vector,
                    dport,
                    sport,
                    peak_bps,
                    pps,
                    country,
                    int(rng.integers(300, 3000)),
                )
            )
            index += 1
    return attacks

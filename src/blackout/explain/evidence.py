"""The facts a verdict is built from: an entity's route history, its attacks, its flaps, its upstream.

Each function answers one question over the history the attributor kept
(:mod:`.attributor`), for a window of event time, and nothing here decides a
cause: :mod:`.verdict` weighs the answers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from collections import Counter
from typing import Any

import numpy as np

US = 1_000_000
DAY_US = 86_400 * US


@dataclasses.dataclass(frozen=True)
class RouteChange:
    """One tick in which the entity's routes changed."""

    time_us: int
    withdrawals: int  # withdrawals of known prefixes (one per peer and prefix)
    announcements: int
    withdrawn: frozenset[str]  # which prefixes
    peers: int  # distinct peers that withdrew
    upstream: int  # the upstream AS of the entity's paths then (0: unknown)
    upstream_visible: int  # its visible prefixes then (-1: unknown)


@dataclasses.dataclass
class EntityHistory:
    """What the attributor keeps about one watched entity."""

    paths: dict[str, str] = dataclasses.field(default_factory=dict)  # prefix -> last announced AS path
    origins: dict[str, int] = dataclasses.field(default_factory=dict)  # prefix -> origin AS
    changes: list[RouteChange] = dataclasses.field(default_factory=list)
    series: dict[str, list[tuple[int, float]]] = dataclasses.field(default_factory=dict)  # signal -> (bin, value)
    _keys: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    _new_keys: list[int] = dataclasses.field(default_factory=list)  # learnt since the last merge
    # upstream AS -> prefixes whose last path reaches the origin through it, kept as paths change: a vote
    # over every path per route change cost 75 ms for AU's 13.9k prefixes
    _votes: Counter[int] = dataclasses.field(default_factory=Counter)

    def learn(self, prefix: str, net: int, plen: int, path: str, origin: int) -> None:
        """A route of the entity was announced with this path."""
        old = self.paths.get(prefix)
        if old is None:
            # merged into the sorted keys once, on the next lookup: a union per prefix made a
            # country's RIB load quadratic (AU over the jinx RIB: 3.2 s -> 35.6 s)
            self._new_keys.append((net << 6) | plen)
        if old != path:
            if old is not None:
                self._votes.subtract([upstream_of(old)])
            self._votes[upstream_of(path)] += 1
        self.paths[prefix] = path
        if origin:
            self.origins[prefix] = origin

    def known_mask(self, net: np.ndarray, plen: np.ndarray) -> np.ndarray:
        """Which (net, length) rows are prefixes of this entity (withdrawals carry no origin)."""
        if self._new_keys:
            self._keys = np.union1d(self._keys, np.array(self._new_keys, dtype=np.uint64))
            self._new_keys = []
        if len(self._keys) == 0:
            return np.zeros(len(net), dtype=bool)
        keys = (net.astype(np.uint64) << np.uint64(6)) | plen.astype(np.uint64)
        return np.isin(keys, self._keys)

    def upstream(self) -> int:
        """The AS most of the entity's paths reach it through (prepending skipped; ties: the lowest), 0 if none."""
        votes = [(-n, asn) for asn, n in self._votes.items() if asn and n > 0]
        return min(votes)[1] if votes else 0


def upstream_of(path: str) -> int:
    """The AS before the origin on an AS path (prepending skipped), 0 if none."""
    hops = [int(h) for h in path.split() if h.isdigit()]
    before = [h for h in hops if h != hops[-1]] if hops else []
    return before[-1] if before else 0


def flaps(changes: list[RouteChange], lo_us: int, hi_us: int) -> tuple[int, int | None]:
    """Withdraw → announce cycles of the entity's routes in [lo, hi), and when the first began."""
    count, down, first = 0, False, None
    for ch in changes:
        if ch.time_us < lo_us or ch.time_us >= hi_us:
            continue
        if ch.withdrawals > ch.announcements:
            if not down and first is None:
                first = ch.time_us
            down = True
        elif ch.announcements and down:
            count += 1
            down = False
    return count, first if count else None


def withdrawal_at(changes: list[RouteChange], lo_us: int, hi_us: int) -> dict[str, Any] | None:
    """The withdrawals of the entity's routes in [lo, hi): prefixes, peers, upstream then."""
    hits = [c for c in changes if lo_us <= c.time_us < hi_us and c.withdrawals]
    if not hits:
        return None
    prefixes = sorted(set().union(*(c.withdrawn for c in hits)))
    known = [c for c in hits if c.upstream_visible >= 0]
    return {
        "time": hits[0].time_us,
        "withdrawals": sum(c.withdrawals for c in hits),
        "prefixes": prefixes,
        "peers": max(c.peers for c in hits),
        "upstream": hits[-1].upstream,
        "upstream_visible": min((c.upstream_visible for c in known), default=-1),
    }


def upstream_before(changes: list[RouteChange], upstream: int, before_us: int) -> int:
    """The upstream's visible prefix count at the entity's last route change before `before_us`, -1 unknown."""
    seen = [c.upstream_visible for c in changes if c.time_us < before_us and c.upstream == upstream]
    return next((s for s in reversed(seen) if s >= 0), -1)


def matches(attack: dict[str, Any], etype: str, entity: str) -> bool:
    """Whether an attack's target belongs to the entity (country, origin AS or inside the prefix)."""
    if etype == "country":
        return attack.get("target_country") == entity
    if etype == "asn":
        return str(attack.get("target_asn")) == entity
    try:
        return ipaddress.ip_address(attack["target"]) in ipaddress.ip_network(entity, strict=False)
    except ValueError:
        return False


def entity_attacks(attacks: list[dict[str, Any]], etype: str, entity: str) -> list[dict[str, Any]]:
    """The entity's attacks (:func:`matches`), by start."""
    return sorted((a for a in attacks if matches(a, etype, entity)), key=lambda a: (a["start"], a["target"]))


def campaign(attacks: list[dict[str, Any]], start_us: int, recent_us: int, gap_us: int) -> list[dict[str, Any]]:
    """The attacks of the campaign leading to `start_us`: the last must have started before it and run
    until at most `recent_us` before it; earlier ones join while each began at most `gap_us` after the
    previous one ended.  Attacks are given by start."""
    before = [a for a in attacks if a["start"] < start_us]
    if not before or attack_end(before[-1], start_us) < start_us - recent_us:
        return []
    chain = [before[-1]]
    horizon = before[-1]["start"]
    for a in reversed(before[:-1]):
        if attack_end(a, start_us) < horizon - gap_us:
            break
        chain.append(a)
        horizon = min(horizon, a["start"])
    return sorted(chain, key=lambda a: (a["start"], a["target"]))


def overlapping(attacks: list[dict[str, Any]], lo_us: int, hi_us: int) -> list[dict[str, Any]]:
    """Attacks that ran at some time in [lo, hi): started before hi, ended (or still running) at lo or later."""
    return [a for a in attacks if a["start"] < hi_us and attack_end(a, hi_us) >= lo_us]


def attack_end(attack: dict[str, Any], now_us: int) -> int:
    """When an attack ended, or now while it runs."""
    return int(attack["end"]) if attack.get("end") is not None else now_us


def span(first_us: int, last_us: int) -> str:
    """How long before the loss something began: calendar days (UTC) when the dates differ — 18 Dec -> 22 Dec
    is "4 days" — else the time between, "3 h", "12 min", "15 s" (a lab's seconds are not "1 day")."""
    days = (last_us // DAY_US) - (first_us // DAY_US)
    if days >= 1:
        return plural(days, "day")
    secs = max(0, (last_us - first_us) // US)
    if secs >= 3600:
        return f"{secs // 3600} h"
    return f"{secs // 60} min" if secs >= 60 else f"{secs} s"


def surge(series: list[tuple[int, float]], at_us: int, before_us: int, factor: float) -> tuple[float, float] | None:
    """The highest value in [at - 1 h, at] and the median of the day before it, if the first is factor x more."""
    if not series:
        return None
    t = np.array([s[0] for s in series], dtype=np.int64)
    v = np.array([s[1] for s in series])
    recent = v[(t >= at_us - 3600 * US) & (t <= at_us)]
    base = v[(t >= at_us - before_us) & (t < at_us - 3600 * US)]
    if len(recent) == 0 or len(base) == 0:
        return None
    peak, med = float(recent.max()), float(np.median(base))
    return (peak, med) if peak > factor * max(med, 1.0) else None


def day(us: int) -> str:
    """The UTC date of a time, e.g. 20 Dec."""
    return dt.datetime.fromtimestamp(us // US, dt.UTC).strftime("%-d %b")


def gbps(bps: float) -> str:
    """5.97 Gbps / 800 Mbps / 64 kbps."""
    if bps >= 1e9:
        return f"{bps / 1e9:.2f} Gbps"
    return f"{bps / 1e6:.0f} Mbps" if bps >= 1e6 else f"{bps / 1e3:.0f} kbps"


def plural(n: int, word: str) -> str:
    """1 day, 4 days, 2 prefixes."""
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith(("s", "x")) else "s")

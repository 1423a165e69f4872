"""Mitigation: announce RTBH or FlowSpec rules when an attack starts, withdraw them after it ends plus a hold time.

Opt-in per prefix group (``[mitigation]``, off by default)::

    [mitigation]
    enabled = true
    backend = "exabgp"            # or "gobgp"
    [mitigation.groups.customers]
    networks = ["203.0.113.0/24"]
    action = "rtbh"               # or "flowspec"
    hold_s = 300

Only attacks on a single host address inside a group's networks are
mitigated (blackholing a whole prefix or host group is a decision for a
person).  ``rtbh`` announces the host route (/32 or /128) with the BLACKHOLE
community 65535:666 (RFC 7999) and NO_EXPORT toward a discard next hop.
``flowspec`` (RFC 8955) announces one rule per attack vector carrying at least
``flowspec_min_share`` of the packets, matching what the vector is made of
(:data:`FLOWSPEC_MATCH`: e.g. UDP from source port 123 to the victim for
``ntp_amplification`` and ``udp_reflection:<port>``, TCP with SYN and not ACK
for ``syn_flood``; none for the telescope's ``spoofed_*``), with action
discard or a rate limit.

Rules are shared: two attacks needing the same rule hold it together, and it
is withdrawn ``hold_s`` after the last of them ends (a new attack inside the
hold keeps it).  The :class:`Mitigator` keeps the wanted rules and a worker
thread applies them through a backend (:mod:`.mitigation_bgp`), retrying
failures every ``retry_s``, so the engine never waits on a BGP speaker.
Closing withdraws rules whose attacks have ended (their hold is cut short)
and leaves rules of running attacks announced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..config import Config, register_section
from ..detect.vectors import AMPLIFIERS
from ..errors import BlackoutError, ConfigError
from .worker import Alert, Worker

ACTIONS = ("rtbh", "flowspec")


class MitigationError(BlackoutError):
    """A backend could not apply a rule (the mitigator counts it and retries)."""


@dataclasses.dataclass
class MitigationConfig:
    """[mitigation] section: which prefixes may be mitigated, how, and through which BGP speaker."""

    enabled: bool = False
    backend: str = "exabgp"  # exabgp (lines to a FIFO read by `blackout mitigate --exabgp`) | gobgp (its CLI)
    groups: dict[str, Any] = dataclasses.field(default_factory=dict)  # name -> {networks, action, hold_s}
    hold_s: float = 300.0  # default hold after the attack ends, per group overridable
    min_peak_pps: float = 0.0  # smaller attacks are not mitigated (until their peak grows past it)
    next_hop: str = "192.0.2.1"  # RTBH next hop (routers map it to a discard route)
    next_hop_v6: str = "100::1"  # RFC 6666 discard-only prefix
    communities: list[str] = dataclasses.field(default_factory=lambda: ["65535:666", "65535:65281"])  # + NO_EXPORT
    flowspec_min_share: float = 0.1  # vectors below this share of the attack's packets get no rule
    flowspec_rate_limit: float | None = None  # bytes/s (RFC 8955 traffic-rate-bytes); unset: discard
    exabgp_fifo: str = "var/exabgp.fifo"
    gobgp_cli: str = "gobgp"
    gobgp_args: list[str] = dataclasses.field(default_factory=lambda: ["-u", "127.0.0.1", "-p", "50051"])
    command_timeout_s: float = 5.0
    retry_s: float = 5.0  # a failed announce or withdraw is tried again after this long
    max_rules: int = 1000  # safety cap on rules announced at once


register_section("mitigation", MitigationConfig)


@dataclasses.dataclass(frozen=True)
class Group:
    """A prefix group that opted in."""

    name: str
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    action: str
    hold_s: float


@dataclasses.dataclass(frozen=True)
class Rule:
    """One BGP announcement: an RTBH host route or a FlowSpec rule toward one victim."""

    kind: str  # rtbh | flowspec
    prefix: str  # the victim's host prefix, e.g. "203.0.113.7/32"
    v6: bool
    protocol: int | None = None
    tcp_flags: tuple[str, ...] = ()  # e.g. ("syn", "!ack"): SYN set and ACK not set
    source_port: int | None = None
    fragment: bool = False
    rate_limit: float | None = None  # bytes/s; None: discard

    @property
    def key(self) -> str:
        """What makes two rules the same announcement."""
        if self.kind == "rtbh":
            return f"rtbh {self.prefix}"
        parts = [f"flow {self.prefix}"]
        if self.protocol is not None:
            parts.append(f"proto={self.protocol}")
        if self.tcp_flags:
            parts.append("flags=" + "&".join(self.tcp_flags))
        if self.source_port is not None:
            parts.append(f"sport={self.source_port}")
        if self.fragment:
            parts.append("fragment")
        return " ".join(parts)


TCP, UDP = 6, 17
# vector -> what its packets look like (besides going to the victim); see detect.vectors for the definitions
FLOWSPEC_MATCH: dict[str, dict[str, Any]] = {
    "syn_flood": {"protocol": TCP, "tcp_flags": ("syn", "!ack")},
    "synack_reflection": {"protocol": TCP, "tcp_flags": ("syn", "ack")},
    "ack_flood": {"protocol": TCP, "tcp_flags": ("ack", "!syn", "!rst", "!fin")},
    "rst_flood": {"protocol": TCP, "tcp_flags": ("rst",)},
    "tcp_flood": {"protocol": TCP},
    "udp_flood": {"protocol": UDP},
    "icmp_flood": {"protocol": "icmp"},  # 1, or 58 toward an IPv6 victim
    "ip_fragmentation": {"fragment": True},
    "ip_flood": {},
    **{f"{service}_amplification": {"protocol": UDP, "source_port": port} for port, service in AMPLIFIERS.items()},
}
# Not here on purpose: the telescope's spoofed_* vectors.  Their target is a host elsewhere whose
# backscatter reached our dark space; the flood itself never crosses our routers, so a rule toward
# that host would match nothing of ours (and RTBH would cut off someone else).  A flood on one of our
# own hosts is seen directly and named syn_flood, ... by the DDoS detector, which has rules.
REFLECTION = "udp_reflection:"  # + source port outside the amplifier table (detect/reflection.py)


def flowspec_match(vector: str) -> dict[str, Any] | None:
    """What a vector's packets look like, or None when no FlowSpec rule fits it."""
    if vector.startswith(REFLECTION):
        port = vector.removeprefix(REFLECTION)
        if port.isdigit() and 0 < int(port) < 65536:
            return {"protocol": UDP, "source_port": int(port)}
        return None
    return FLOWSPEC_MATCH.get(vector)


def parse_groups(cfg: MitigationConfig) -> list[Group]:
    """The [mitigation.groups.*] tables, checked (errors name the key and what is allowed)."""
    out = []
    for name, body in cfg.groups.items():
        where = f"mitigation.groups.{name}"
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: expected a table with networks, action, hold_s")
        unknown = sorted(set(body) - {"networks", "action", "hold_s"})
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {unknown}; options: networks, action, hold_s")
        action = body.get("action", "rtbh")
        if action not in ACTIONS:
            raise ConfigError(f"{where}.action: {action!r}; allowed: {', '.join(ACTIONS)}")
        networks = body.get("networks")
        if not isinstance(networks, list) or not networks:
            raise ConfigError(f'{where}.networks: give a list of prefixes, e.g. ["203.0.113.0/24"]')
        try:
            nets = tuple(ipaddress.ip_network(str(n), strict=False) for n in networks)
        except ValueError as exc:
            raise ConfigError(f"{where}.networks: {exc}") from exc
        hold = body.get("hold_s", cfg.hold_s)
        if not isinstance(hold, int | float) or isinstance(hold, bool) or hold < 0:
            raise ConfigError(f"{where}.hold_s: expected a number of seconds >= 0, got {hold!r}")
        out.append(Group(name, nets, action, float(hold)))
    return out


def group_of(groups: list[Group], target: str) -> tuple[Group, ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
    """The first group whose networks hold the target host (None for prefixes, host groups, others)."""
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        return None
    for group in groups:
        if any(address.version == net.version and address in net for net in group.networks):
            return group, address
    return None


def build_rules(record: dict[str, Any], group: Group, address: Any, cfg: MitigationConfig) -> list[Rule]:
    """The rules an attack record asks for under its group's action."""
    v6 = address.version == 6
    prefix = f"{address}/{128 if v6 else 32}"
    if group.action == "rtbh":
        return [Rule("rtbh", prefix, v6)]
    rules = []
    for vector in record.get("vectors") or []:
        match = flowspec_match(str(vector.get("name")))
        if match is None or (vector.get("share") or 0.0) < cfg.flowspec_min_share:
            continue
        fields = dict(match)
        if fields.get("protocol") == "icmp":
            fields["protocol"] = 58 if v6 else 1
        rules.append(Rule("flowspec", prefix, v6, rate_limit=cfg.flowspec_rate_limit, **fields))
    return rules


class Backend:
    """Applies rules to a BGP speaker; raises MitigationError when it cannot."""

    def announce(self, rule: Rule) -> None:
        raise NotImplementedError

    def withdraw(self, rule: Rule) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds open."""


@dataclasses.dataclass
class _Active:
    rule: Rule
    hold_s: float
    attacks: set[str] = dataclasses.field(default_factory=set)
    applied: bool = False
    release_at: float | None = None  # set when its last attack ended
    retry_at: float = 0.0


class Mitigator(Worker):
    """Keeps the rules running attacks need and applies them through a backend in a worker thread."""

    def __init__(
        self,
        cfg: MitigationConfig,
        groups: list[Group],
        backend: Backend,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.groups = groups
        self.backend = backend
        self.clock = clock
        super().__init__("mitigation", 10_000)
        self.active: dict[str, _Active] = {}
        self.by_attack: dict[str, set[str]] = {}
        self.last_error: str | None = None
        self.lock = threading.Lock()

    def on_alert(self, alert: Alert) -> None:
        """The router's subscriber hook: queue attack transitions, never block."""
        if alert.kind == "attack":
            self.offer(alert)

    def close(self, timeout: float = 10.0) -> None:
        """Apply what is queued, withdraw rules of ended attacks, stop the worker."""
        if self.started:
            with contextlib.suppress(queue.Full):
                self.queue.put(None, timeout=timeout)
            self.thread.join(timeout)
        self.backend.close()

    def rules(self) -> list[dict[str, Any]]:
        """The rules held now (for the API and the tests)."""
        now = self.clock()
        with self.lock:
            return [
                {
                    "key": key,
                    "kind": act.rule.kind,
                    "prefix": act.rule.prefix,
                    "attacks": sorted(act.attacks),
                    "announced": act.applied,
                    "withdraw_in_s": None if act.release_at is None else max(0.0, act.release_at - now),
                }
                for key, act in self.active.items()
            ]

    def stats(self) -> dict[str, Any]:
        """Counters (announced, withdrawn, failed, skipped...) and the last error."""
        out: dict[str, Any] = {k: self.counters[k] for k in ("announced", "withdrawn", "failed", "dropped")}
        return out | dict(self.counters) | {"active": len(self.active), "last_error": self.last_error}

    # ---------------------------------------------------------------- worker
    def _work(self) -> None:
        while True:
            try:
                alert = self.queue.get(timeout=self._wait())
            except queue.Empty:
                alert = None
                stop = False
            else:
                stop = alert is None
            if alert is not None:
                self._handle(alert)
            self._reconcile(final=stop)
            if stop:
                return

    def _wait(self) -> float:
        """Seconds until the next release or retry is due (at most 1 s, so the clock is never far off)."""
        now = self.clock()
        with self.lock:
            due = [a.release_at for a in self.active.values() if a.release_at is not None]
            due += [a.retry_at for a in self.active.values() if not a.applied]
        return min([1.0] + [max(0.01, t - now) for t in due])

    def _handle(self, alert: Alert) -> None:
        rec = alert.record
        eid = rec["id"]
        if alert.event == "ended":
            with self.lock:
                for key in self.by_attack.pop(eid, set()):
                    act = self.active[key]
                    act.attacks.discard(eid)
                    if not act.attacks:
                        act.release_at = self.clock() + act.hold_s
            return
        if (rec.get("peak_pps") or 0.0) < self.cfg.min_peak_pps:
            if alert.event == "started":
                self.counters["skipped_small"] += 1
            return
        found = group_of(self.groups, str(rec.get("target")))
        if found is None:
            if alert.event == "started":
                self.counters["skipped_no_group"] += 1
            return
        group, address = found
        with self.lock:
            for rule in build_rules(rec, group, address, self.cfg):
                held = self.active.get(rule.key)
                if held is None:
                    if len(self.active) >= self.cfg.max_rules:
                        self.counters["skipped_max_rules"] += 1
                        continue
                    held = self.active[rule.key] = _Active(rule, group.hold_s)
                held.attacks.add(eid)
                held.release_at = None
                self.by_attack.setdefault(eid, set()).add(rule.key)

    def _reconcile(self, final: bool = False) -> None:
        """Announce what is wanted and not yet applied; withdraw what is due (all ended ones when final)."""
        now = self.clock()
        with self.lock:
            items = list(self.active.items())
        for key, act in items:
            due = act.release_at is not None and (final or now >= act.release_at)
            if due:
                if act.applied and not final and now < act.retry_at:
                    continue
                if act.applied and not self._apply(self.backend.withdraw, act, now, "withdrawn"):
                    continue
                with self.lock:
                    if act.release_at is not None:
                        self.active.pop(key, None)
            elif not act.applied and now >= act.retry_at:
                act.applied = self._apply(self.backend.announce, act, now, "announced")

    def _apply(self, step: Callable[[Rule], None], act: _Active, now: float, what: str) -> bool:
        try:
            step(act.rule)
        except MitigationError as exc:
            self.counters["failed"] += 1
            self.last_error = str(exc)
            act.retry_at = now + self.cfg.retry_s
            return False
        self.counters[what] += 1
        return True


def mitigator_for(config: Config) -> Mitigator | None:
    """The mitigator a run uses, or None when [mitigation] is not enabled."""
    cfg = config.section("mitigation", MitigationConfig)
    if not cfg.enabled:
        return None
    from .mitigation_bgp import BACKENDS

    if cfg.backend not in BACKENDS:
        raise ConfigError(f"mitigation.backend: {cfg.backend!r}; allowed: {', '.join(sorted(BACKENDS))}")
    groups = parse_groups(cfg)
    if not groups:
        raise ConfigError("[mitigation] is enabled but has no groups: add [mitigation.groups.NAME] with networks")
    return Mitigator(cfg, groups, BACKENDS[cfg.backend](cfg))

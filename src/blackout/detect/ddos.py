"""The DDoS detector: per-target rates each tick, FastNetMon's threshold rules plus an adaptive baseline, attacks.

Each tick (see :mod:`blackout.engine`) the whole flow table is aggregated per
host, per prefix and per host group (:mod:`.rates`).  Two sets of rules are
checked on every target at once:

* **thresholds**, named and switched as in FastNetMon (``threshold_pps`` with
  ``ban_for_pps`` ...), on rates smoothed as FNM smooths them;
* the **baseline** (hosts): ``baseline_factor`` × the host's normal rate and
  above a floor (:mod:`.baseline`).

Lifecycle of an attack on one target:

* a tick where some rule holds on the tick's *raw* rate is *hot*; the first
  hot tick opens a candidate and starts accumulating its traffic;
* the candidate becomes an attack once a rule holds on the *smoothed* rates
  for ``start_ticks`` consecutive ticks (ticks with traffic toward the target);
  the attack starts at the candidate's first hot tick and names that rule;
* ``end_ticks`` ticks in a row that are not hot end it (a candidate that was
  never confirmed is dropped); it ends at the end of its last hot tick, and
  traffic of the quiet ticks in between counts only if it went on.

Raw rates open and close (precise times), smoothed rates confirm (no firing
on one-tick spikes), which is why FNM's 5 s average keeps its meaning.
Records are emitted when an attack is confirmed, every ``update_every_s``
while it runs, and when it ends (event ids: ``events.event_id("attack",
target, start)``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from numba import njit

from .. import addr
from ..enrich.base import Enricher, NoEnrichment
from ..events import event_id
from .attack import AttackRows, AttackStats, Shares, fold_tick
from .attack_fold import attack_rows
from .base import Tick
from .baseline import TargetState, TickRules
from .ddos_config import RULE_METRIC, RULES, DdosConfig, check, host_groups, prefix_thresholds, thresholds
from .rates import GROUP, HOST, M, PrefixMatcher, TickRates, aggregate, target_text
from .roles import add_evidence, evidence_role, service_rows
from .sketch import address_keys
from .tick_columns import TickColumns

BASE_METRICS = [M["pps"], M["bps"]]
assert BASE_METRICS == [0, 1]  # TargetState.step reads the baseline's pps and bps as raw columns 0, 1
RULE_NAMES = [r[0] for r in RULES] + ["baseline_pps", "baseline_mbps"]
MIN_PACKET_BYTES, MAX_PACKET_BYTES = 20, 65535  # an IPv4 header alone; the largest IP packet (no jumbograms)


@dataclasses.dataclass
class Episode:
    """A candidate or confirmed attack on one target."""

    slot: int
    target: str
    tag: int
    address: bytes  # the target address (network address of a prefix)
    start_us: int
    stats: AttackStats
    last_hot_end: int
    pending: AttackStats | None = None
    fire_run: int = 0
    fire_end: int = -1
    rule: str | None = None  # set when confirmed
    emitted_us: int = -1


class DdosDetector:
    """Detects volumetric attacks on hosts, prefixes and host groups; emits "attacks" records."""

    name: ClassVar[str] = "ddos"

    def __init__(self, config: DdosConfig | None = None, enricher: Enricher | None = None) -> None:
        self.cfg = cfg = config or DdosConfig()
        check(cfg)
        self.enricher: Enricher = enricher or NoEnrichment()
        self.groups = host_groups(cfg)
        self.group_matcher = PrefixMatcher([(n, i) for i, g in enumerate(self.groups) for n in g.networks])
        self.networks = PrefixMatcher([(n, 0) for n in cfg.networks])
        off = np.full(len(RULES), np.inf)
        # profiles: 0 hosts, 1 prefixes, 2 off, 3+g host group g
        self.profiles = np.stack(
            [thresholds(dataclasses.asdict(cfg)), prefix_thresholds(cfg), off] + [g.thresholds for g in self.groups]
        )
        # only the rules some profile switches on are checked, only their metrics smoothed
        self.active = np.flatnonzero(np.isfinite(self.profiles).any(axis=0))
        used = {int(m) for m in RULE_METRIC[self.active]} | (set(BASE_METRICS) if cfg.baseline else set())
        smoothed = np.array(sorted(used), dtype=np.int64)
        self.rule_col = np.searchsorted(smoothed, RULE_METRIC[self.active])
        self.base_cols = np.minimum(np.searchsorted(smoothed, BASE_METRICS), len(smoothed) - 1)
        # the tick's rates hold only these metrics (pps and bps always: admission weight, attack stats)
        self.metrics = np.array(sorted(used | set(BASE_METRICS)), dtype=np.int64)
        self.smoothed_raw = np.searchsorted(self.metrics, smoothed)  # their columns in the tick's rates
        self.rule_raw = np.zeros(len(RULES), dtype=np.int64)
        self.rule_raw[self.active] = np.searchsorted(self.metrics, RULE_METRIC[self.active])
        self.state = TargetState(len(smoothed), cfg.max_targets)
        self.episodes: dict[int, Episode] = {}
        self.out: dict[str, dict[str, Any]] = {}
        self.first_us: int | None = None
        self.tick_us: int | None = None
        self.bad_rows = 0  # rows with impossible counters (wrapped, zero packets), left out
        self.stale_ticks = 0  # ticks older than one already seen (the engine never sends them), ignored
        self.last_end_us: int | None = None
        self.expect_hosts = self.expect_sources = 0  # distinct hosts, attack sources last tick

    def counters(self) -> dict[str, int]:
        """What was left out or dropped: impossible rows, unwatched target-ticks, evicted targets."""
        st = self.state
        return {
            "bad_rows": self.bad_rows,
            "stale_ticks": self.stale_ticks,
            "untracked": st.untracked,
            "evictions": st.evictions,
        }

    # ---------------------------------------------------------- protocol
    def advance(self, now_us: int) -> None:
        """Quiet time: end attacks that have been quiet for end_ticks."""
        self._age(now_us)

    def on_tick(self, tick: Tick) -> None:
        """Aggregate the tick's flows, check the rules, move attacks along.

        A tick older than one already seen is ignored and counted: replayed, it
        would reopen a closed attack under the same id and overwrite its record.
        """
        if self.last_end_us is not None and tick.start_us < self.last_end_us:
            self.stale_ticks += 1
            return
        self.last_end_us = tick.end_us
        self.tick_us = tick_us = tick.end_us - tick.start_us
        if self.first_us is None:
            self.first_us = tick.start_us
        cols = self._sane(tick.flows)
        if cols is not None:
            self._learn_served(cols)
            if self.networks:
                cols = cols.select(self.networks.match(cols.dst_hi, cols.dst_lo) >= 0)
            if len(cols):
                self._tick(tick, cols, tick_us)
        self._age(tick.end_us)

    def finish(self, end_us: int, close_open: bool) -> None:
        """Close (replay) or leave open (live shutdown) the running attacks, emit them."""
        self._age(end_us)
        for slot in list(self.episodes):
            ep = self.episodes[slot]
            if close_open:
                self._close(slot)
            elif ep.rule is not None:
                self._emit(ep, None, end_us)

    def drain(self) -> dict[str, list[dict[str, Any]]]:
        """Attack records created or changed since the last drain, by start then target."""
        rows = sorted(self.out.values(), key=lambda r: (r["start"], r["target"]))
        self.out = {}
        return {"attacks": rows}

    # -------------------------------------------------------------- tick
    def _tick(self, tick: Tick, cols: TickColumns, tick_us: int) -> None:
        cfg = self.cfg
        start = tick.start_us
        agg = aggregate(
            cols, tick_us / 1e6, cfg.prefix_v4, cfg.prefix_v6, self.group_matcher, self.metrics, self.expect_hosts
        )
        self.expect_hosts = len(agg.host_prefix)  # sizes the next tick's grouping (see grouping.py)
        slots = self.state.lookup(agg.keys, agg.hi, agg.lo, agg.tag, start, agg.rates[:, M["pps"]])
        if (slots >= 0).all():  # the usual tick: every target has a slot, no copies
            tracked, tag, group = np.arange(len(slots)), agg.tag, agg.group
        else:
            tracked = np.flatnonzero(slots >= 0)
            slots, tag, group = slots[tracked], agg.tag[tracked], agg.group[tracked]
        profile = self._profiles(tag, group)
        rules = self._rules(tag, profile, tick)
        hot_any, fire_any, first_rule = self.state.step(slots, tracked, agg.rates, rules, agg.asked)
        for j in np.flatnonzero(hot_any & ~self.state.live[slots]).tolist():
            self._open(int(slots[j]), agg, int(tracked[j]), start)
        live = np.flatnonzero(self.state.live[slots])
        present: dict[int, int] = dict(zip(slots[live].tolist(), live.tolist(), strict=True))
        if present:
            self._accumulate(tick, cols, agg, tracked, present, hot_any)
        for slot, ep in self.episodes.items():
            i = present.get(slot)
            if i is None or not fire_any[i]:
                ep.fire_run = 0
            else:
                ep.fire_run = ep.fire_run + 1 if ep.fire_end == start else 1
                ep.fire_end = tick.end_us
                if ep.rule is None and ep.fire_run >= cfg.start_ticks:
                    ep.rule = self._rule_text(int(first_rule[i]), self.profiles[profile[i]])
                    self._emit(ep, None, tick.end_us)
            if ep.rule is not None and tick.end_us - ep.emitted_us >= cfg.update_every_s * 1e6:
                self._emit(ep, None, tick.end_us)

    def _rules(self, tag: np.ndarray, profile: np.ndarray, tick: Tick) -> TickRules:
        """What the state checks this tick: every rule on, the baseline on hosts once warmed up."""
        cfg = self.cfg
        first = self.first_us if self.first_us is not None else tick.start_us
        return TickRules(
            start_us=tick.start_us,
            tick_us=tick.end_us - tick.start_us,
            is_host=tag == HOST,
            profile=profile,
            profiles=self.profiles,
            active=self.active,
            rule_metric=self.rule_raw,
            rule_col=self.rule_col,
            smoothed=self.smoothed_raw,
            average_s=cfg.average_calculation_time,
            baseline=cfg.baseline,
            warm=tick.start_us - first >= cfg.baseline_warmup_s * 1e6,
            window_s=cfg.baseline_window_s,
            watched_us=tick.start_us - first,
            factor=cfg.baseline_factor,
            floor=np.array([cfg.baseline_min_pps, cfg.baseline_min_mbps * 1e6]),
            base_cols=self.base_cols,
            max_inpaint_us=cfg.baseline_max_inpaint_s * 1e6,
        )

    def _sane(self, flows: pa.Table) -> TickColumns | None:
        """The tick's columns without the rows whose counters cannot be real: no packets, or not
        20..65,535 bytes per packet (a wrapped 32-bit octet counter, or a 64-bit delta taken across a
        wrap), which are counted; None for an empty tick."""
        if not flows.num_rows:
            return None
        cols = TickColumns.of(flows)
        if not _impossible(cols.packets, cols.bytes):  # one compiled pass; the mask only when some row is bad
            return cols
        size = cols.bytes / np.maximum(cols.packets, 1.0)
        ok = (cols.packets > 0) & (size >= MIN_PACKET_BYTES) & (size <= MAX_PACKET_BYTES)
        self.bad_rows += int(len(ok) - ok.sum())
        return cols.select(ok)

    def _learn_served(self, cols: TickColumns) -> None:
        """Role evidence: tracked hosts answering from a service port (wherever the answer goes)."""
        if not len(cols) or not len(self.state):
            return
        rows, roles = service_rows(cols.src_port, cols.protocol, cols.tcp_flags)
        if len(rows):
            hi, lo = addr.words(cols.table.column("src_addr").take(pa.array(rows)).combine_chunks())
            slots = self.state.find(address_keys(hi, lo), hi, lo, HOST)
            add_evidence(self.state.served, slots, roles, cols.packets[rows] * cols.rate[rows])

    def _profiles(self, tag: np.ndarray, group: np.ndarray) -> np.ndarray:
        """Threshold profile of each target (see __init__)."""
        out = np.where(tag == HOST, 0, 1)
        if not self.groups:
            return out
        total = np.array([g.total for g in self.groups] + [False], dtype=bool)
        in_group = group >= 0
        per_host = in_group & (tag == HOST) & ~total[group]
        out[per_host] = 3 + group[per_host]
        grp = tag == GROUP
        out[grp] = np.where(total[group[grp]], 3 + group[grp], 2)
        return out

    def _rule_text(self, rule: int, limits: np.ndarray) -> str:
        name = RULE_NAMES[rule]
        if rule >= len(RULES):
            return f"{name}>{self.cfg.baseline_factor:g}x"
        value = limits[rule] / RULES[rule][4]
        return f"{name}>{value:g}"

    # ---------------------------------------------------------- episodes
    def _open(self, slot: int, agg: Any, t: int, start: int) -> None:
        hi, lo, tag = int(agg.hi[t]), int(agg.lo[t]), int(agg.tag[t])
        text = target_text(hi, lo, tag, [g.name for g in self.groups])
        stats = self._new_stats()
        address = hi.to_bytes(8, "big") + lo.to_bytes(8, "big")
        self.episodes[slot] = Episode(slot, text, tag, address, start, stats, last_hot_end=start)
        self.state.live[slot] = True

    def _accumulate(
        self,
        tick: Tick,
        cols: TickColumns,
        agg: TickRates,
        tracked: np.ndarray,
        present: dict[int, int],
        hot: np.ndarray,
    ) -> None:
        """Fold the tick's rows toward each live target into its attack (or its pending quiet span)."""
        targets = tracked[np.array(list(present.values()), dtype=np.int64)]
        ordinal = np.full(len(agg.keys), -1, dtype=np.int64)
        ordinal[targets] = np.arange(len(targets))
        route = (agg.row_host, agg.host_prefix, agg.host_group, ordinal)
        share = Shares(attack_rows(*route), route, len(targets))
        bundle = AttackRows.build(cols, share.rows, self.enricher, tick.start_us, self.expect_sources)
        self.expect_sources = len(bundle.src_uniq)
        stats: list[AttackStats] = []
        for slot, i in present.items():
            ep = self.episodes[slot]
            if hot[i]:
                if ep.pending is not None:
                    ep.stats.merge(ep.pending)
                    ep.pending = None
                stats.append(ep.stats)
                ep.last_hot_end = tick.end_us
            else:
                if ep.pending is None:
                    ep.pending = self._new_stats()
                stats.append(ep.pending)
        rates = agg.rates[targets]
        pps, bps = rates[:, M["pps"]].tolist(), rates[:, M["bps"]].tolist()
        fold_tick(bundle, stats, share, tick.start_us, pps, bps)

    def _new_stats(self) -> AttackStats:
        cfg = self.cfg
        return AttackStats(cfg.max_sources_exact, cfg.amplification_min_sources, cfg.reflection_min_bytes)

    def _age(self, now_us: int) -> None:
        if self.tick_us is None:
            return
        limit = self.cfg.end_ticks * self.tick_us
        for slot in [s for s, ep in self.episodes.items() if now_us - ep.last_hot_end >= limit]:
            self._close(slot)

    def _close(self, slot: int) -> None:
        ep = self.episodes.pop(slot)
        self.state.live[slot] = False
        if ep.rule is not None:
            self._emit(ep, ep.last_hot_end, ep.last_hot_end)

    def _emit(self, ep: Episode, end_us: int | None, now_us: int) -> None:
        info = self.enricher.lookup(pa.array([ep.address], type=addr.ADDR), ep.start_us)
        routed = ep.tag != GROUP and bool(info.routed[0])
        record: dict[str, Any] = {
            "id": event_id("attack", ep.target, ep.start_us),
            "target": ep.target,
            "target_prefix": info.prefix[0] if routed else None,
            "target_asn": (int(info.origin_asn[0]) or None) if ep.tag != GROUP else None,
            "target_country": (str(info.country[0]) or None) if ep.tag != GROUP else None,
            "start": ep.start_us,
            "end": end_us,
            "rule": ep.rule,
        }
        record.update(ep.stats.fields())
        if ep.tag == HOST:  # what the host serves outranks what the attack aimed at
            served = evidence_role(self.state.served[ep.slot], self.state.asked[ep.slot])
            record["target_role"] = served or record["target_role"]
        self.out[record["id"]] = record
        ep.emitted_us = now_us


def attacks_summary(records: list[dict[str, Any]], top: int = 10) -> dict[str, Any]:
    """What the CLI prints after a run: how many attacks, by main vector and rule, and the most hit targets."""
    by_vector: Counter[str] = Counter()
    by_rule: Counter[str] = Counter()
    targets: dict[str, dict[str, Any]] = {}
    for rec in records:
        vectors = rec.get("vectors") or []
        by_vector[vectors[0]["name"] if vectors else "unknown"] += 1
        by_rule[str(rec.get("rule") or "").split(">")[0]] += 1
        t = targets.setdefault(rec["target"], {"target": rec["target"], "attacks": 0, "peak_pps": 0.0, "peak_bps": 0.0})
        t["attacks"] += 1
        t["peak_pps"] = max(t["peak_pps"], rec.get("peak_pps") or 0.0)
        t["peak_bps"] = max(t["peak_bps"], rec.get("peak_bps") or 0.0)
    ranked = sorted(targets.values(), key=lambda t: (-t["attacks"], -t["peak_pps"], t["target"]))
    return {
        "count": len(records),
        "by_vector": dict(sorted(by_vector.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by_rule": dict(sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0]))),
        "top_targets": ranked[:top],
    }


@njit(cache=True)
def _impossible(packets: np.ndarray, nbytes: np.ndarray) -> bool:  # pragma: no cover - compiled
    """Whether some row has no packets or not MIN..MAX_PACKET_BYTES bytes per packet (see _sane)."""
    for r in range(len(packets)):
        size = nbytes[r] / max(packets[r], 1.0)
        if not (packets[r] > 0 and size >= MIN_PACKET_BYTES and size <= MAX_PACKET_BYTES):
            return True
    return False

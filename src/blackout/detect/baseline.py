"""Per-target state of the DDoS detector: smoothed rates and the adaptive baseline, in fixed numpy slots.

Every target seen gets a slot (found through a sorted array of 64-bit keys,
checked against the exact address words).  A slot holds:

* the FastNetMon-style smoothed rates: ``s ← r + e·(s − r)`` with
  ``e = exp(−tick / average_calculation_time)``, starting from 0 as FNM does;
  ticks without traffic decay ``s`` by ``e`` each;
* the baseline: exponentially weighted first and second moments of the
  per-tick pps and bps over ``baseline_window_s`` (ticks without traffic count
  as zeros).  ``normal = mean + 3·std``.  While the target is under attack or
  its rate is flagged, ticks are *inpainted* (left out, so an attack does not
  poison its own baseline); after ``baseline_max_inpaint_s`` of that the new
  level is accepted as normal, as IODA does;
* the role evidence of :mod:`.roles` (packets served from / asked on each
  service port; float32, N_ROLES each).

Memory is bounded by ``max_targets`` slots: when full, the least recently seen
targets that are not under attack are evicted; targets that find no slot are
counted in ``untracked`` and not watched that tick.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numba import njit

from .roles import N_ROLES

BASE = 2  # baseline metrics: pps, bps


class TargetState:
    """Slots of per-target state, addressed by target key."""

    def __init__(self, metrics: int, max_targets: int) -> None:
        self.max_targets = max_targets
        self.metrics = metrics
        self.index_keys = np.zeros(0, dtype=np.uint64)
        self.index_slots = np.zeros(0, dtype=np.int64)
        self.free = np.zeros(0, dtype=np.int64)  # free slots, taken from the end
        self.size = 0  # slots allocated
        self._alloc(0)
        self.untracked = 0  # target-ticks left unwatched because every slot was in use
        self.evictions = 0  # quiet targets whose state was dropped to make room
        self.collisions = 0  # 64-bit key collisions between different targets (expected: never)

    def _alloc(self, n: int) -> None:
        def grow(a: np.ndarray, fill: float | int) -> np.ndarray:
            extra = np.full((n, *a.shape[1:]), fill, dtype=a.dtype)
            return np.concatenate([a, extra])

        if n == 0:
            self.hi = np.zeros(0, np.uint64)
            self.lo = np.zeros(0, np.uint64)
            self.tag = np.zeros(0, np.uint8)
            self.last_us = np.zeros(0, np.int64)
            self.ewma = np.zeros((0, self.metrics), np.float64)
            self.m1 = np.zeros((0, BASE), np.float64)
            self.m2 = np.zeros((0, BASE), np.float64)
            self.base_us = np.zeros(0, np.int64)
            self.ewma_us = np.zeros(0, np.int64)
            self.inpaint_since = np.zeros(0, np.int64)
            self.live = np.zeros(0, bool)
            self.served = np.zeros((0, N_ROLES), np.float32)
            self.asked = np.zeros((0, N_ROLES), np.float32)
            return
        self.free = np.concatenate([np.arange(self.size + n - 1, self.size - 1, -1, dtype=np.int64), self.free])
        self.size += n
        self.hi, self.lo, self.tag = grow(self.hi, 0), grow(self.lo, 0), grow(self.tag, 0)
        self.last_us, self.base_us, self.ewma_us = grow(self.last_us, 0), grow(self.base_us, 0), grow(self.ewma_us, -1)
        self.ewma, self.m1, self.m2 = grow(self.ewma, 0.0), grow(self.m1, 0.0), grow(self.m2, 0.0)
        self.inpaint_since, self.live = grow(self.inpaint_since, -1), grow(self.live, False)
        self.served, self.asked = grow(self.served, 0.0), grow(self.asked, 0.0)

    def __len__(self) -> int:
        return len(self.index_keys)

    # ------------------------------------------------------------ slots
    def lookup(
        self, keys: np.ndarray, hi: np.ndarray, lo: np.ndarray, tag: np.ndarray, start_us: int, weight: np.ndarray
    ) -> np.ndarray:
        """Slot of each (distinct) target, creating fresh state for new ones; -1 where none could be given.

        When slots run short, new targets are admitted heaviest first (by ``weight``,
        e.g. pps): a flood's target must not lose its slot to one-packet noise.
        """
        slots = index_find(self.index_keys, self.index_slots, keys)
        found = slots >= 0
        new = np.flatnonzero(~found)
        if len(new):
            new = new[np.lexsort((keys[new], -weight[new]))]
            got = np.sort(self._take(len(new), protect=slots[found]))
            fresh = np.sort(new[: len(got)])  # slots in target order: each tick's pass walks memory in order
            self.untracked += len(new) - len(got)
            self._reset(got, hi[fresh], lo[fresh], tag[fresh], start_us)
            slots[fresh] = got
            order = np.argsort(keys[fresh])
            at = np.searchsorted(self.index_keys, keys[fresh][order])
            self.index_keys = np.insert(self.index_keys, at, keys[fresh][order])
            self.index_slots = np.insert(self.index_slots, at, got[order])
        self.collisions += _check(slots, hi, lo, tag, self.hi, self.lo, self.tag, self.last_us, start_us)
        return slots

    def find(self, keys: np.ndarray, hi: np.ndarray, lo: np.ndarray, tag: int) -> np.ndarray:
        """Slot of each target that already has one (-1 for the others); creates nothing."""
        slots = np.full(len(keys), -1, dtype=np.int64)
        if not len(self.index_keys) or not len(keys):
            return slots
        pos = np.minimum(np.searchsorted(self.index_keys, keys), len(self.index_keys) - 1)
        hit = self.index_keys[pos] == keys
        cand = self.index_slots[pos[hit]]
        exact = (self.hi[cand] == hi[hit]) & (self.lo[cand] == lo[hit]) & (self.tag[cand] == tag)
        slots[np.flatnonzero(hit)[exact]] = cand[exact]
        return slots

    def _take(self, n: int, protect: np.ndarray) -> np.ndarray:
        if len(self.free) < n and self.size < self.max_targets:
            self._alloc(min(self.max_targets - self.size, max(n - len(self.free), self.size, 1024)))
        if len(self.free) < n:
            self._evict(n - len(self.free) + self.max_targets // 10, protect)
        k = min(n, len(self.free))
        taken = self.free[len(self.free) - k :][::-1].copy()
        self.free = self.free[: len(self.free) - k]
        return taken

    def _evict(self, want: int, protect: np.ndarray) -> None:
        """Free the least recently seen slots that are not live and not in this tick."""
        used = self.index_slots
        keep = self.live[used].copy()
        keep |= np.isin(used, protect)
        cand = np.flatnonzero(~keep)
        if not len(cand):
            return
        order = np.lexsort((used[cand], self.last_us[used[cand]]))
        gone = cand[order[:want]]
        self.evictions += len(gone)
        self.free = np.concatenate([used[gone], self.free])
        mask = np.ones(len(used), dtype=bool)
        mask[gone] = False
        self.index_keys, self.index_slots = self.index_keys[mask], self.index_slots[mask]

    def _reset(self, slots: np.ndarray, hi: np.ndarray, lo: np.ndarray, tag: np.ndarray, start_us: int) -> None:
        self.hi[slots], self.lo[slots], self.tag[slots] = hi, lo, tag
        self.ewma[slots] = 0.0
        self.m1[slots] = 0.0
        self.m2[slots] = 0.0
        self.base_us[slots] = start_us
        self.ewma_us[slots] = -1
        self.inpaint_since[slots] = -1
        self.live[slots] = False
        self.served[slots] = 0.0
        self.asked[slots] = 0.0

    # ------------------------------------------------- one tick's targets
    def step(
        self, slots: np.ndarray, targets: np.ndarray, rates: np.ndarray, rules: TickRules, asked: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Smooth the rates of these slots, check every rule, feed the baselines and the role evidence:
        (hot, fire, first rule).

        ``slots[t]`` holds target ``targets[t]`` (an index into the tick's
        targets, hosts first), ``rates`` the tick's (targets, METRICS); ``asked``:
        (hosts, N_ROLES) packets of exchanges on service ports toward each host,
        added to its evidence unless it is under attack or hot (a flood never
        teaches a role, see :mod:`.roles`).  A target is *hot* when a
        rule holds on its raw rate, *fires* when one holds on its smoothed rate;
        the first rule is the index (in the detector's rule names) of the first
        that fires, -1 for none.  The transcendental factors are computed here
        with numpy (bit for bit the former per-array formulas); the compiled
        kernel does the rest in one pass over the targets.
        """
        start_us, tick_us = rules.start_us, rules.tick_us
        skipped, zeros = _gaps(slots, self.ewma_us, self.base_us, start_us, tick_us)
        e, decay = 1.0, np.ones(len(slots))
        if rules.average_s > 0:  # s decays by e per tick without traffic
            e = float(np.exp(-tick_us / 1e6 / rules.average_s))
            some = np.flatnonzero(skipped)
            decay[some] = np.power(e, skipped[some].astype(np.float64))
        keep = np.ones(len(slots))  # the moments decay over the ticks without traffic (zeros)
        some = np.flatnonzero(zeros)
        keep[some] = np.exp(-(tick_us / 1e6) / rules.window_s * zeros[some].astype(np.float64))
        weight = 1.0 - float(np.exp(-(rules.watched_us / 1e6) / rules.window_s))
        alpha = 1.0 - float(np.exp(-(tick_us / 1e6) / rules.window_s))
        hot = np.zeros(len(slots), dtype=bool)
        fire = np.zeros(len(slots), dtype=bool)
        first = np.full(len(slots), -1, dtype=np.int64)
        _step(
            slots, targets, rates, rules.is_host, rules.profile, rules.profiles, rules.active, rules.rule_metric,
            rules.rule_col, rules.smoothed, rules.average_s > 0, e, decay, self.ewma, self.ewma_us,
            rules.baseline, rules.warm, keep, weight, alpha, rules.factor, rules.floor, rules.base_cols,
            rules.max_inpaint_us,
            self.m1, self.m2, self.base_us, self.inpaint_since, self.live, start_us, tick_us, hot, fire, first,
            asked, self.asked,
        )  # fmt: skip
        return hot, fire, first


@dataclasses.dataclass
class TickRules:
    """What :meth:`TargetState.step` checks this tick (per target: host or not, threshold profile)."""

    start_us: int
    tick_us: int
    is_host: np.ndarray  # bool per target: the baseline rule applies
    profile: np.ndarray  # int64 per target: row of ``profiles``
    profiles: np.ndarray  # (profiles, rules) thresholds, inf when off
    active: np.ndarray  # int64 rules some profile switches on, ascending
    rule_metric: np.ndarray  # int64 per rule: its metric's column in the tick's rates (active rules only)
    rule_col: np.ndarray  # int64 per active rule: its metric's column among ``smoothed``
    smoothed: np.ndarray  # int64 columns in the tick's rates of the metrics whose smoothed rate is kept
    average_s: float  # smoothing time (0: raw rates)
    baseline: bool
    warm: bool  # the baseline rule may fire (warm-up over)
    window_s: float
    watched_us: int  # event time the detector has watched
    factor: float
    floor: np.ndarray  # (2,) pps and bps floors
    base_cols: np.ndarray  # (2,) columns of pps and bps among ``smoothed``
    max_inpaint_us: float


@njit(cache=True)
def index_find(index_keys: np.ndarray, index_slots: np.ndarray, keys: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Slot of each key in the sorted index, -1 for none: a binary search that starts where the last one
    ended while the keys ascend (a tick's targets are sorted runs), so it walks the index once."""
    n = len(index_keys)
    slots = np.full(len(keys), -1, dtype=np.int64)
    lo = 0
    for i in range(len(keys)):
        k = keys[i]
        if i == 0 or k < keys[i - 1]:
            lo = 0
        step = 1  # gallop from lo, then bisect
        hi = lo
        while hi < n and index_keys[hi] < k:
            lo = hi + 1
            hi = lo + step
            step *= 2
        hi = min(hi, n)
        while lo < hi:
            mid = (lo + hi) // 2
            if index_keys[mid] < k:
                lo = mid + 1
            else:
                hi = mid
        if lo < n and index_keys[lo] == k:
            slots[i] = index_slots[lo]
    return slots


@njit(cache=True)
def _check(
    slots: np.ndarray,
    hi: np.ndarray,
    lo: np.ndarray,
    tag: np.ndarray,
    slot_hi: np.ndarray,
    slot_lo: np.ndarray,
    slot_tag: np.ndarray,
    last_us: np.ndarray,
    start_us: int,
) -> int:  # pragma: no cover - compiled
    """Drop the slots whose target is another one with the same key (counted), mark the rest seen now."""
    clashes = 0
    for i in range(len(slots)):
        s = slots[i]
        if s < 0:
            continue
        if slot_hi[s] != hi[i] or slot_lo[s] != lo[i] or slot_tag[s] != tag[i]:
            slots[i] = -1
            clashes += 1
        else:
            last_us[s] = start_us
    return clashes


@njit(cache=True)
def _gaps(
    slots: np.ndarray, ewma_us: np.ndarray, base_us: np.ndarray, start_us: int, tick_us: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Ticks without traffic of each slot: since its smoothed rate's last update, and since its baseline's."""
    skipped = np.zeros(len(slots), dtype=np.int64)
    zeros = np.zeros(len(slots), dtype=np.int64)
    for t in range(len(slots)):
        last = ewma_us[slots[t]]
        if last >= 0:
            skipped[t] = max((start_us - last) // tick_us - 1, 0)
        zeros[t] = max((start_us - base_us[slots[t]]) // tick_us, 0)
    return skipped, zeros


@njit(cache=True)
def _step(
    slots: np.ndarray,
    targets: np.ndarray,
    raw: np.ndarray,
    is_host: np.ndarray,
    profile: np.ndarray,
    profiles: np.ndarray,
    active: np.ndarray,
    rule_metric: np.ndarray,
    rule_col: np.ndarray,
    smoothed: np.ndarray,
    averaged: bool,
    e: float,
    decay: np.ndarray,
    ewma: np.ndarray,
    ewma_us: np.ndarray,
    baseline: bool,
    warm: bool,
    keep: np.ndarray,
    weight: float,
    alpha: float,
    factor: float,
    floor: np.ndarray,
    base_cols: np.ndarray,
    max_inpaint_us: float,
    m1: np.ndarray,
    m2: np.ndarray,
    base_us: np.ndarray,
    inpaint_since: np.ndarray,
    live: np.ndarray,
    start_us: int,
    tick_us: int,
    hot: np.ndarray,
    fire: np.ndarray,
    first: np.ndarray,
    asked: np.ndarray,
    asked_table: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The per-target body of :meth:`TargetState.step`: FNM's average, the threshold rules, the baseline."""
    n_rules = profiles.shape[1]
    for t in range(len(slots)):
        s, i = slots[t], targets[t]
        for j in range(len(smoothed)):
            x = raw[i, smoothed[j]]
            ewma[s, j] = x + e * (ewma[s, j] * decay[t] - x) if averaged else x
        ewma_us[s] = start_us
        p = profile[t]
        for k in range(len(active)):
            r = active[k]
            limit = profiles[p, r]
            if raw[i, rule_metric[r]] > limit:
                hot[t] = True
            if ewma[s, rule_col[k]] > limit:
                fire[t] = True
                if first[t] < 0:
                    first[t] = r
        if not is_host[t]:
            continue
        if baseline:
            for b in range(BASE):
                m1[s, b] *= keep[t]
                m2[s, b] *= keep[t]
            base_us[s] = max(base_us[s], start_us)
            flagged = False
            for b in range(BASE):  # metrics 0, 1: pps, bps
                normal = np.inf
                if weight > 0:
                    mean, square = m1[s, b] / weight, m2[s, b] / weight
                    normal = mean + 3.0 * np.sqrt(max(square - mean * mean, 0.0))
                over = raw[i, b] > factor * normal and raw[i, b] > floor[b]
                flagged = flagged or over
                smooth = ewma[s, base_cols[b]]
                if warm and over:
                    hot[t] = True
                if warm and smooth > factor * normal and smooth > floor[b]:
                    fire[t] = True
                    if first[t] < 0:
                        first[t] = n_rules + b
            since = inpaint_since[s]
            inpaint = live[s] or flagged
            if inpaint and since < 0:
                since = start_us
            feed = not inpaint or start_us - since >= max_inpaint_us
            inpaint_since[s] = -1 if feed else since
            if feed:
                for b in range(BASE):
                    x = raw[i, b]
                    m1[s, b] += alpha * (x - m1[s, b])
                    m2[s, b] += alpha * (x * x - m2[s, b])
            base_us[s] = start_us + tick_us
        if not (hot[t] or live[s]):  # adding the zeros too: a branch per role mispredicts (sums are >= 0: no -0.0)
            for k in range(asked.shape[1]):
                asked_table[s, k] += np.float32(asked[i, k])

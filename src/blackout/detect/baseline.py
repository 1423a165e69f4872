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

import numpy as np

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
        pos = np.searchsorted(self.index_keys, keys)
        found = pos < len(self.index_keys)
        found[found] = self.index_keys[pos[found]] == keys[found]
        slots = np.full(len(keys), -1, dtype=np.int64)
        slots[found] = self.index_slots[pos[found]]
        new = np.flatnonzero(~found)
        if len(new):
            new = new[np.lexsort((keys[new], -weight[new]))]
            got = self._take(len(new), protect=slots[found])
            fresh = new[: len(got)]
            self.untracked += len(new) - len(got)
            self._reset(got, hi[fresh], lo[fresh], tag[fresh], start_us)
            slots[fresh] = got
            order = np.argsort(keys[fresh])
            at = np.searchsorted(self.index_keys, keys[fresh][order])
            self.index_keys = np.insert(self.index_keys, at, keys[fresh][order])
            self.index_slots = np.insert(self.index_slots, at, got[order])
        ok = slots >= 0
        clash = np.zeros(len(keys), dtype=bool)
        clash[ok] = (self.hi[slots[ok]] != hi[ok]) | (self.lo[slots[ok]] != lo[ok]) | (self.tag[slots[ok]] != tag[ok])
        if clash.any():
            self.collisions += int(clash.sum())
            slots[clash] = -1
        self.last_us[slots[slots >= 0]] = start_us
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

    # --------------------------------------------------------- smoothing
    def smooth(self, slots: np.ndarray, raw: np.ndarray, start_us: int, tick_us: int, average_s: float) -> np.ndarray:
        """Update and return the smoothed rates of these slots with this tick's raw rates."""
        if average_s <= 0:
            new = raw.copy()
        else:
            e = float(np.exp(-tick_us / 1e6 / average_s))
            last = self.ewma_us[slots]
            skipped = np.where(last < 0, 0, np.maximum((start_us - last) // tick_us - 1, 0))
            old = self.ewma[slots] * np.power(e, skipped.astype(np.float64))[:, None]
            new = raw + e * (old - raw)
        self.ewma[slots] = new
        self.ewma_us[slots] = start_us
        return new

    # ---------------------------------------------------------- baseline
    def normal(self, slots: np.ndarray, start_us: int, tick_us: int, window_s: float, watched_us: int) -> np.ndarray:
        """Normal pps and bps (mean + 3 std, decayed over the ticks without traffic), before this tick.

        The moments start at 0 when the detector starts (a target not seen yet
        had no traffic), so they are divided by 1 − exp(−watched / window) to
        undo that start, as Adam's bias correction does.
        """
        zeros = np.maximum((start_us - self.base_us[slots]) // tick_us, 0).astype(np.float64)
        keep = np.exp(-(tick_us / 1e6) / window_s * zeros)[:, None]
        self.m1[slots] *= keep
        self.m2[slots] *= keep
        self.base_us[slots] = np.maximum(self.base_us[slots], start_us)
        weight = 1.0 - float(np.exp(-(watched_us / 1e6) / window_s))
        if weight <= 0:
            return np.full((len(slots), BASE), np.inf)
        m1, m2 = self.m1[slots] / weight, self.m2[slots] / weight
        return m1 + 3.0 * np.sqrt(np.maximum(m2 - m1 * m1, 0.0))

    def update(
        self,
        slots: np.ndarray,
        values: np.ndarray,
        inpaint: np.ndarray,
        start_us: int,
        tick_us: int,
        window_s: float,
        max_inpaint_s: float,
    ) -> None:
        """Feed this tick's pps and bps to the baselines (after normal()), except the ticks to inpaint."""
        since = self.inpaint_since[slots]
        since = np.where(inpaint & (since < 0), start_us, since)
        expired = inpaint & (start_us - since >= max_inpaint_s * 1e6)
        feed = ~inpaint | expired
        self.inpaint_since[slots] = np.where(feed, -1, since)
        s = slots[feed]
        a = 1.0 - float(np.exp(-(tick_us / 1e6) / window_s))
        x = values[feed]
        self.m1[s] += a * (x - self.m1[s])
        self.m2[s] += a * (x * x - self.m2[s])
        self.base_us[slots] = start_us + tick_us

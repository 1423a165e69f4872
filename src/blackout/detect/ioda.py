"""IODA's alert rule, stepped over many time series at once.

IODA (CAIDA / Georgia Tech) compares each new value of a signal with the
median of a sliding window of its history: ratio = value ÷ median.  Windows
and thresholds per datasource (published): BGP 24 h, warning below 99 %,
critical below 50 %; active probing 7 days, 80 % / 50 %; traffic (telescope)
7 days, 25 % / 10 %.  No alert during the first 3,600 s of a series (warm-up).
Inpainting: while the ratio is below 0.8 or above 2, the *predicted* value (the
median) goes into the history instead of the real one, for at most 7 days;
after that the real values go in and the change becomes the new normal.
Alerts are squashed to transitions, an event runs from the first non-normal
alert to the next normal one, and its score is the "alert area":
Σ drop × minutes with drop = |history − value| / max(history, value) × 100
(:mod:`.outage` keeps the transitions, events and areas; a drop here is the
fall below the history, 0 for a rise).

:class:`Tracker` runs that rule for every row (entity) of one signal in one
step per bin: ring buffers of shape (rows, window bins) beside the same windows
kept sorted, so the median is read, not computed; a value entering or leaving
a window moves only its own row (a numba memmove, nothing for a BGP count that
did not change), so all ASes of a full table stay feasible.  Memory: rows x
window bins x 8 bytes (24 h of 60 s bins: 11.5 kB per entity and signal).  The "fast"
method of :mod:`.outage` uses the same class with a short window, an inclusive
threshold and, for traffic, a seasonal baseline (the same time of day on the
previous days).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from numba import njit

NORMAL, WARNING, CRITICAL = 0, 1, 2
LEVEL_NAMES = ("normal", "warning", "critical")
DAY_S = 86_400


@dataclasses.dataclass(frozen=True)
class Rule:
    """One datasource's window and thresholds (ratios of value to history)."""

    window_s: float
    warning: float
    critical: float


# IODA's published windows and thresholds, per datasource.
RULES: dict[str, Rule] = {
    "bgp": Rule(DAY_S, 0.99, 0.50),
    "probing": Rule(7 * DAY_S, 0.80, 0.50),
    "traffic": Rule(7 * DAY_S, 0.25, 0.10),
}
WARMUP_S = 3600.0
INPAINT_LOW, INPAINT_HIGH = 0.8, 2.0
INPAINT_MAX_S = 7 * DAY_S


@dataclasses.dataclass
class Step:
    """One bin's verdict for every row of a tracker."""

    history: np.ndarray  # float64, NaN where no history yet
    ratio: np.ndarray  # float64, NaN where undefined
    level: np.ndarray  # int8
    drop: np.ndarray  # float64 percent, 0 unless value < history


class Tracker:
    """IODA's moving-median rule for many series (rows) of one signal, stepped once per bin.

    Rows are added with :meth:`grow`.  A missing value (NaN) adds nothing to the
    window and keeps the row's previous level: no data is not evidence.
    """

    def __init__(
        self,
        rule: Rule,
        bin_s: float,
        warmup_s: float = WARMUP_S,
        inpaint_max_s: float = INPAINT_MAX_S,
        inclusive: bool = False,
        seasonal: bool = False,
        fallback_s: float = 3600.0,
    ) -> None:
        self.rule = rule
        self.bin_s = bin_s
        self.width = max(1, round(rule.window_s / bin_s))
        self.warmup_bins = int(np.ceil(warmup_s / bin_s))
        self.inpaint_max = int(np.ceil(inpaint_max_s / bin_s))
        self.inclusive = inclusive
        self.seasonal = seasonal
        self.day_bins = max(1, round(DAY_S / bin_s))
        self.fallback_bins = max(1, min(self.width, round(fallback_s / bin_s)))
        self.ring = np.full((0, self.width), np.nan, dtype=np.float32)
        self.pos = 0  # ring slot the next value goes to (all rows step together)
        self.first = np.zeros(0, dtype=np.int64)  # bin of each row's first value (-1: none yet)
        self.run = np.zeros(0, dtype=np.int64)  # consecutive inpainted bins
        self.level = np.zeros(0, dtype=np.int8)
        self.sorted = np.full((0, 0 if seasonal else self.width), np.nan, dtype=np.float32)  # per row, ascending
        self.count = np.zeros(0, dtype=np.int64)  # finite values in each row's window
        self.median = np.full(0, np.nan)  # of each row's window, updated where it changed

    def __len__(self) -> int:
        return len(self.first)

    def grow(self, rows: int) -> None:
        """Make room for `rows` rows in total (new rows start empty)."""
        extra = rows - len(self)
        if extra <= 0:
            return
        self.ring = np.vstack([self.ring, np.full((extra, self.width), np.nan, dtype=np.float32)])
        self.first = np.append(self.first, np.full(extra, -1, dtype=np.int64))
        self.run = np.append(self.run, np.zeros(extra, dtype=np.int64))
        self.level = np.append(self.level, np.zeros(extra, dtype=np.int8))
        self.sorted = np.vstack([self.sorted, np.full((extra, self.sorted.shape[1]), np.nan, dtype=np.float32)])
        self.count = np.append(self.count, np.zeros(extra, dtype=np.int64))
        self.median = np.append(self.median, np.full(extra, np.nan))

    def baseline(self) -> np.ndarray:
        """The history value of every row: window median (or seasonal median) of what went in."""
        if self.seasonal:
            return self._seasonal()
        return self.median.copy()

    def _seasonal(self) -> np.ndarray:
        """Median of the same time of day (±2 bins) on each of the previous days the window holds;
        where fewer than 3 such values exist, the median of the last ``fallback_s``."""
        days = max(1, self.width // self.day_bins)
        offs = (np.arange(1, days + 1)[:, None] * self.day_bins - np.arange(-2, 3)[None, :]).ravel()
        offs = offs[(offs >= 1) & (offs <= self.width)]
        cols = (self.pos - offs) % self.width
        recent = (self.pos - np.arange(1, self.fallback_bins + 1)) % self.width
        season = self.ring[:, cols]
        enough = np.sum(np.isfinite(season), axis=1) >= 3
        out = nanmedian_rows(self.ring[:, recent])
        if enough.any():
            out[enough] = nanmedian_rows(season[enough])
        return out

    def step(self, index: int, values: np.ndarray) -> Step:
        """Judge one bin (bin number ``index``) of every row, then push it into the history."""
        v = np.ascontiguousarray(values, dtype=np.float64)
        hist = self.baseline()
        ratio, drop = np.empty(len(v)), np.empty(len(v))
        _step_rows(
            v,
            hist,
            index,
            self.warmup_bins,
            self.inpaint_max,
            self.rule.warning,
            self.rule.critical,
            self.inclusive,
            not self.seasonal,
            self.ring,
            self.pos,
            self.first,
            self.run,
            self.level,
            self.sorted,
            self.count,
            self.median,
            ratio,
            drop,
        )
        self.pos = (self.pos + 1) % self.width
        return Step(history=hist, ratio=ratio, level=self.level.copy(), drop=drop)


@njit(cache=True)
def _step_rows(
    v: np.ndarray,
    hist: np.ndarray,
    index: int,
    warmup_bins: int,
    inpaint_max: int,
    warning: float,
    critical: float,
    inclusive: bool,
    keep_sorted: bool,
    ring: np.ndarray,
    pos: int,
    first: np.ndarray,
    run: np.ndarray,
    level: np.ndarray,
    srt: np.ndarray,
    count: np.ndarray,
    median: np.ndarray,
    ratio: np.ndarray,
    drop: np.ndarray,
) -> None:
    """The rule for every row in one pass (a bin of a dozen series was ~25 numpy calls each): ratio
    to the history, level (kept where the value is missing), inpainting, the push into the ring and
    the sorted window, the drop."""
    for r in range(len(v)):
        x, h = v[r], hist[r]
        have = x == x
        if have and first[r] < 0:
            first[r] = index
        warm = first[r] >= 0 and index - first[r] >= warmup_bins and np.isfinite(h)
        q = np.nan
        if have and warm:
            q = x / h if h > 0 else (np.inf if x > 0 else np.nan)
        if have:
            lvl = NORMAL
            if inclusive:
                lvl = CRITICAL if q <= critical else (WARNING if q <= warning else NORMAL)
            else:
                lvl = CRITICAL if q < critical else (WARNING if q < warning else NORMAL)
            level[r] = lvl
        ratio[r] = q
        odd = have and warm and (q < INPAINT_LOW or q > INPAINT_HIGH)
        pushed = np.float32(h) if (odd and run[r] < inpaint_max) else np.float32(x)
        run[r] = run[r] + 1 if odd else 0
        old = ring[r, pos]
        if keep_sorted and not (old == pushed or (old != old and pushed != pushed)):
            _move(srt, count, r, old, pushed)
            n = count[r]
            median[r] = (np.float64(srt[r, max((n - 1) // 2, 0)]) + np.float64(srt[r, n // 2])) / 2.0 if n else np.nan
        ring[r, pos] = pushed
        drop[r] = (h - x) / h * 100.0 if (have and x < h and h > 0) else 0.0  # IODA's drop where value < history


@njit(cache=True)
def _move(srt: np.ndarray, count: np.ndarray, r: int, o: np.float32, v: np.float32) -> None:
    """Keep row r's window sorted: take out the value leaving (``o``), put in the one entering
    (``v``); NaN means none.  O(window) memmove instead of a sort."""
    n = count[r]
    if o == o:  # not NaN: remove one copy
        i = np.searchsorted(srt[r, :n], o)
        srt[r, i : n - 1] = srt[r, i + 1 : n].copy()
        n -= 1
        srt[r, n] = np.nan
    if v == v:
        i = np.searchsorted(srt[r, :n], v)
        srt[r, i + 1 : n + 1] = srt[r, i:n].copy()
        srt[r, i] = v
        n += 1
    count[r] = n


def nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN (NaN for an all-NaN row): one sort, no per-row Python
    (numpy's nanmedian falls back to a Python loop over rows when NaNs are present)."""
    s = np.sort(values, axis=1)  # NaN sort last
    n = np.sum(np.isfinite(values), axis=1)
    r = np.arange(len(values))
    lo, hi = np.maximum((n - 1) // 2, 0), np.maximum(n // 2, 0)
    med = (s[r, lo].astype(np.float64) + s[r, hi].astype(np.float64)) / 2.0
    return np.where(n > 0, med, np.nan)

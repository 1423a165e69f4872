"""Signals as IODA serves them (raw or normalised, on a regular step), alerts recomputed from them, metrics.

``/signals/raw`` answers with IODA's shape: ``from``, ``until``, ``step``,
``nativeStep`` and ``values`` on that grid (``null`` where nothing was
measured); long ranges are averaged down to ``maxPoints``.  ``normalised``
divides by the median of the returned values, as IODA's dashboard does so that
signals of very different sizes share one axis.

Alerts are not stored, so ``/outages/alerts`` replays an entity's stored
signals through the very tracker the outage detector uses
(:class:`blackout.detect.ioda.Tracker`, IODA's windows and thresholds) and
reports its level transitions: the same alerts the detector saw, from the data.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..detect.ioda import INPAINT_MAX_S, LEVEL_NAMES, NORMAL, RULES, WARMUP_S, Tracker
from ..detect.outage import DETECTED, family
from .params import US, QueryError, Window, to_datetime
from .query import DATASOURCE, Names
from .reader import ReadOnlyStore, StoreReader

MAX_ALERT_BINS = 50_000


def _load(
    store: ReadOnlyStore, kind: str, code: str, window: Window, signal: str | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per signal: (ts µs, value) arrays, ordered by time."""
    if "signals" not in store.tables():
        return {}
    sql = "SELECT signal, epoch_us(ts) AS t, value FROM signals WHERE entity_type = ? AND entity = ?"
    params: list[Any] = [kind, code]
    if signal:
        sql += " AND signal = ?"
        params.append(signal)
    if window.from_us is not None:
        sql += " AND ts >= ?"
        params.append(to_datetime(window.from_us))
    if window.until_us is not None:
        sql += " AND ts < ?"
        params.append(to_datetime(window.until_us))
    table = store.con.sql(sql + " ORDER BY signal, ts", params=params).to_arrow_table()
    names = np.asarray(table.column("signal").to_pylist(), dtype=object)
    ts = table.column("t").to_numpy()
    vals = table.column("value").to_numpy()
    out = {}
    for name in sorted(set(names.tolist())):
        sel = names == name
        out[name] = (ts[sel].astype(np.int64), vals[sel].astype(np.float64))
    return out


def native_step(ts: np.ndarray) -> int:
    """The series' bin width in µs: its smallest gap between points (60 s when only one)."""
    gaps = np.diff(ts)
    gaps = gaps[gaps > 0]
    return int(gaps.min()) if len(gaps) else 60 * US


def signals_raw(
    store: ReadOnlyStore,
    names: Names,
    kind: str,
    code: str,
    window: Window,
    signal: str | None = None,
    normalised: bool = False,
    max_points: int = 2000,
    datasource: str | None = None,
) -> list[dict[str, Any]]:
    """One entry per signal of the entity (IODA's /signals/raw), optionally of one IODA datasource."""
    out = []
    entity = names.entity(kind, code)
    for name, (ts, vals) in _load(store, kind, code, window, signal).items():
        if datasource and DATASOURCE.get(family(name), name) != datasource:
            continue
        native = native_step(ts)
        start = window.from_us if window.from_us is not None else int(ts[0])
        start -= start % native
        stop = window.until_us if window.until_us is not None else int(ts[-1]) + native
        n = max(1, -(-(stop - start) // native))
        factor = max(1, math.ceil(n / max_points))
        step = native * factor
        bins = -(-(stop - start) // step)
        slot = (ts - start) // step
        keep = (slot >= 0) & (slot < bins)
        sums = np.bincount(slot[keep], weights=vals[keep], minlength=bins)
        counts = np.bincount(slot[keep], minlength=bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            series = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        median = float(np.nanmedian(series)) if np.isfinite(series).any() else None
        if normalised:
            series = series / median if median else np.full_like(series, np.nan)
        out.append(
            {
                "entityType": kind,
                "entityCode": code,
                "entityName": entity["name"],
                "datasource": DATASOURCE.get(family(name), name),
                "signal": name,
                "from": start // US,
                "until": (start + bins * step) // US,
                "step": step // US,
                "nativeStep": native // US,
                "normalised": normalised,
                "median": median,
                "values": [None if not np.isfinite(v) else round(float(v), 6) for v in series],
            }
        )
    return out


def alerts(
    store: ReadOnlyStore,
    names: Names,
    kind: str,
    code: str,
    window: Window,
    signal: str | None = None,
    datasource: str | None = None,
) -> list[dict[str, Any]]:
    """IODA alerts (level transitions) of one entity, recomputed from its stored signals."""
    longest = max(r.window_s for r in RULES.values())
    history = Window(None if window.from_us is None else window.from_us - int(longest * US), window.until_us)
    out = []
    for name, (ts, vals) in _load(store, kind, code, history, signal).items():
        if (signal is None and name not in DETECTED) or (datasource and DATASOURCE[family(name)] != datasource):
            continue
        rule = RULES[family(name)]
        step = native_step(ts)
        slot = (ts - ts[0]) // step
        bins = int(slot[-1]) + 1
        if bins > MAX_ALERT_BINS:
            raise QueryError(f"{bins} bins of {name} to judge: narrow the range with from/until (at most 34 days)")
        grid = np.full(bins, np.nan)
        grid[slot] = vals
        tracker = Tracker(rule, step / US, WARMUP_S, INPAINT_MAX_S)
        tracker.grow(1)
        level = NORMAL
        for i in range(bins):
            st = tracker.step(i, grid[i : i + 1])
            new = int(st.level[0])
            at = int(ts[0]) + i * step
            if new != level and (window.from_us is None or at >= window.from_us):
                threshold = rule.critical if new == 2 else rule.warning
                out.append(
                    {
                        "datasource": DATASOURCE.get(family(name), name),
                        "signal": name,
                        "entity": names.entity(kind, code),
                        "time": at // US,
                        "level": LEVEL_NAMES[new],
                        "condition": f"ratio >= {rule.warning}" if new == NORMAL else f"ratio < {threshold}",
                        "value": None if not np.isfinite(grid[i]) else float(grid[i]),
                        "historyValue": None if not np.isfinite(st.history[0]) else float(st.history[0]),
                    }
                )
            level = new
    return sorted(out, key=lambda a: (a["time"], a["signal"]))


def _gauge(lines: list[str], name: str, help_text: str, samples: Sequence[tuple[str, float]]) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} gauge")
    lines += [f"{name}{labels} {value:g}" for labels, value in samples]


def metrics(store: ReadOnlyStore, reader: StoreReader, served: dict[str, int], stats_file: str | None) -> str:
    """Prometheus text exposition: store-derived gauges, serve's own counters, a collector's stats file."""
    lines: list[str] = []
    counts, ongoing, latest = [], [], []
    for table in ("attacks", "outages"):
        counts.append((f'{{table="{table}"}}', store.count(table)))
        row = store.rows(f'SELECT count(*) FILTER (WHERE "end" IS NULL), epoch(max(start)) FROM {table}')[0]
        ongoing.append((f'{{table="{table}"}}', int(row[0] or 0)))
        latest.append((f'{{table="{table}"}}', float(row[1] or 0)))
    _gauge(lines, "blackout_store_events", "events in the store", counts)
    _gauge(lines, "blackout_store_events_ongoing", "events without an end (still running)", ongoing)
    _gauge(lines, "blackout_store_latest_start_seconds", "start of the newest event (epoch s)", latest)
    _gauge(lines, "blackout_store_signal_points", "signal values in the store", [("", store.count("signals"))])
    size = os.path.getsize(reader.path) if os.path.exists(reader.path) else 0
    _gauge(lines, "blackout_store_bytes", "size of the store file", [("", size)])
    _gauge(lines, "blackout_serve_snapshots", "store snapshots copied by serve", [("", reader.snapshots)])
    lines.append("# HELP blackout_serve_requests_total requests answered, by status class")
    lines.append("# TYPE blackout_serve_requests_total counter")
    lines += [f'blackout_serve_requests_total{{code="{k}"}} {v}' for k, v in sorted(served.items())]
    if stats_file:
        lines += collector_metrics(stats_file)
    return "\n".join(lines) + "\n"


def collector_metrics(path: str) -> list[str]:
    """Every number of a running collector's JSON status file, as blackout_collect_<path> gauges."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return ["# blackout_collect: stats file unreadable"]
    out: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in sorted(value.items()):
                walk(f"{prefix}_{k}", v)
        elif isinstance(value, bool):
            return
        elif isinstance(value, int | float):
            name = re.sub(r"[^a-zA-Z0-9_]", "_", f"blackout_collect{prefix}")
            out.append(f"{name} {value:g}")

    walk("", data)
    return out

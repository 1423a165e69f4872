"""Outage detection per country, AS and prefix, at event time (IODA's job).

Each bin (``[outage] bin_s``, 60 s) the signals of :mod:`.signals` are
computed for the watched entities (or all), then judged per signal by one of
two methods:

* ``ioda``: IODA's published rule (:mod:`.ioda`): value ÷ moving median, BGP
  24 h window (< 99 % warning, < 50 % critical), probing 7 days (80 % / 50 %),
  traffic 7 days (25 % / 10 %), 3,600 s warm-up, inpainting;
* ``fast``: flags the very bin in which BGP visibility or probe belief falls
  to half or less of its level over the last hour (after 300 s of history,
  no 1 h warm-up), and traffic that falls below a quarter of its seasonal
  baseline (same time of day on previous days, else the last hour).

An outage event per entity runs from the first bin in which any of its signals
is non-normal to the first bin in which all are normal again; alerts of
several signals that overlap are one event.  A signal without new input in a
bin (no probe round: Atlas measures every 240 s) keeps its level but cannot
outlast newer evidence: once an alerting signal returns to normal on this
bin's input, alerts whose last input is older end with it (the routes are
back at 01:46, the next ping at 01:48 would say so two minutes late); such a
carried-over level never opens or joins an event.  ``severity`` is the largest
fraction lost (drop ÷ 100) in any bin, ``score`` IODA's overall score: per
datasource (bgp, probing, traffic) the alert area Σ drop × minutes of its
worst signal, multiplied over the datasources that saw the event.  An event
still going when the data ends stays open (``end`` None): at the end of a
replay the outage IS ongoing as far as the data can tell, so
``finish(close_open=True)`` does not invent an end.  The per-signal alert
details (transitions, worst bin, area) are kept in :attr:`OutageDetector.alerts`
by event id for attribution.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..config import Config, register_section
from ..enrich.base import Enricher
from ..enrich.enricher import EnrichConfig, RoutingEnricher
from ..enrich.routing import RoutingConfig, RoutingState
from ..enrich.visibility import V4Ranges
from ..errors import ConfigError
from ..events import event_id
from ..model import SIGNAL_SCHEMA, TIME
from .base import Detector, Tick
from .entities import Registry
from .ioda import LEVEL_NAMES, NORMAL, RULES, Rule, Step, Tracker
from .routing_tracker import RoutingTracker
from .signals import Series, SignalComputer, Watch

US = 1_000_000
FAMILY = {"bgp": "bgp", "bgp_peers": "bgp", "probing_up": "probing", "probing_share": "probing"}
SIGNALS = [
    "bgp",
    "bgp_peers",
    "probing_up",
    "probing_share",
    *(f"traffic_{side}_{what}" for side in ("in", "out") for what in ("bytes", "packets", "addrs")),
]
DETECTED = ["bgp", "bgp_peers", "probing_up", "probing_share", "traffic_out_packets", "traffic_out_addrs"]


def _same(countries: V4Ranges, at_us: int) -> V4Ranges:
    return countries


def family(signal: str) -> str:
    """The IODA datasource a signal belongs to."""
    return FAMILY.get(signal, "traffic")


@dataclasses.dataclass
class OutageConfig:
    """[outage] section."""

    bin_s: float = 60.0  # width of a signal bin (engine tick_s should divide it)
    watch: list[str] = dataclasses.field(default_factory=list)  # "country:KP", "asn:131279", "prefix:A/L"
    all_entities: bool = False  # also every AS and country seen (vectorised; memory: rows x window)
    method: str = "ioda"  # ioda | fast, for every detected signal ...
    methods: dict[str, str] = dataclasses.field(default_factory=dict)  # ... unless named here: {bgp = "fast"}
    detect: list[str] = dataclasses.field(default_factory=lambda: list(DETECTED))  # signals that raise alerts
    warmup_s: float = 3600.0  # ioda: no alert before a series has this much history
    inpaint_max_s: float = 7 * 86400.0  # ioda and fast: longest a drop is kept out of the history
    fast_window_s: float = 3600.0  # fast: BGP / probing level = median of this much recent history
    fast_warmup_s: float = 300.0  # fast: history needed before the first alert
    fast_drop: float = 0.5  # fast: BGP / probing alert at value <= this x level
    fast_traffic_drop: float = 0.25  # fast: traffic alert below this x seasonal baseline
    emit_signals: bool = True  # hand the signal values to the store
    traffic_min_s: float = 300.0  # a traffic drop alone opens an outage only after lasting this long (IODA
    # judges traffic on 300 s bins): thin sampled traffic has empty minutes by chance, not outages; a drop
    # during an outage another signal already opened joins it at once
    traffic_min_expected: float = 20.0  # ... and only on the distinct-address signal (IODA's telescope
    # signal: unique addresses), when its baseline promises this many address-bins over traffic_min_s:
    # then a fall below a quarter (<= 5) has Poisson probability < 1e-4; thinner traffic only joins
    max_quiet_s: float = 86400.0  # a stretch with no input longer than this is a gap in the data, not
    # an outage: bins are judged up to it, then the clock jumps to the next input (archives months apart
    # would otherwise cost a bin each)


register_section("outage", OutageConfig)


@dataclasses.dataclass
class SignalAlert:
    """What one signal said during one event: for attribution (which signal, when, how deep)."""

    signal: str
    first_us: int
    last_us: int
    transitions: list[dict[str, Any]]  # squashed alerts: time, level, value, history
    worst_drop: float = 0.0  # percent
    worst_us: int = 0
    worst_value: float = 0.0
    worst_history: float = 0.0
    area: float = 0.0  # Σ drop × minutes
    fresh_us: int = 0  # last bin in which new input of this signal said non-normal


@dataclasses.dataclass
class _Event:
    entity_type: str
    entity: str
    start_us: int
    end_us: int | None = None
    signals: dict[str, SignalAlert] = dataclasses.field(default_factory=dict)
    active: set[str] = dataclasses.field(default_factory=set)
    recovered_us: int = -1  # last bin in which one of its alerting signals returned to normal on new input

    def outlived(self) -> bool:
        """True when a signal's recovery is newer than every alert still open: those rest on older
        input (a probe round minutes before the routes came back) and cannot hold the event open."""
        return self.recovered_us >= 0 and all(self.signals[s].fresh_us < self.recovered_us for s in self.active)

    @property
    def id(self) -> str:
        return event_id("outage", f"{self.entity_type}:{self.entity}", self.start_us)

    def record(self) -> dict[str, Any]:
        scores: dict[str, float] = {}
        for alert in self.signals.values():
            fam = family(alert.signal)
            scores[fam] = max(scores.get(fam, 0.0), alert.area)
        return {
            "id": self.id,
            "entity_type": self.entity_type,
            "entity": self.entity,
            "start": self.start_us,
            "end": self.end_us,
            "signals": sorted(self.signals),
            "severity": max((a.worst_drop for a in self.signals.values()), default=0.0) / 100.0,
            "score": float(np.prod(list(scores.values()))) if scores else 0.0,
            "verdict": {"causes": []},
        }


def outage_detectors(config: Config, enricher: RoutingEnricher | None = None) -> list[Detector]:
    """The routing tracker (first: it keeps the shared routing state current) and the outage detector,
    configured from the [outage], [routing] and [enrich] sections; pass the run's enricher to share it."""
    if enricher is None:
        state = RoutingState(config.section("routing", RoutingConfig))
        enricher = RoutingEnricher.from_config(config.section("enrich", EnrichConfig), state)
    outage = OutageDetector(config.section("outage", OutageConfig), enricher.routing, enricher)
    return [RoutingTracker(enricher.routing), outage]


class OutageDetector:
    """Detector of outages per country, AS and prefix (see the module docstring)."""

    name: ClassVar[str] = "outage"

    def __init__(
        self,
        config: OutageConfig | None = None,
        routing: RoutingState | None = None,
        enricher: Enricher | None = None,
        countries: V4Ranges | None = None,
    ) -> None:
        self.config = cfg = config or OutageConfig()
        if cfg.bin_s <= 0:
            raise ConfigError("outage.bin_s must be positive")
        for sig, m in {"*": cfg.method, **cfg.methods}.items():
            if m not in ("ioda", "fast"):
                raise ConfigError(f"outage.methods: {sig} = {m!r}; choose ioda or fast")
        try:
            watch = Watch.parse(cfg.watch)
        except ValueError as exc:
            raise ConfigError(f"outage.watch: {exc}") from exc
        unknown = sorted(set(cfg.detect) - set(SIGNALS))
        if unknown:
            raise ConfigError(f"outage.detect: unknown signal(s) {unknown}; signals: {', '.join(SIGNALS)}")
        countries_at: Callable[[int], V4Ranges | None] | None = None
        if countries is not None:
            countries_at = functools.partial(_same, countries)
        elif isinstance(enricher, RoutingEnricher):
            countries_at = enricher.delegations  # the RIR files of the day being judged
        self.bin_us = round(cfg.bin_s * US)
        self.signals = SignalComputer(watch, cfg.all_entities, routing, enricher, countries_at)
        self.trackers: dict[tuple[str, str], Tracker] = {}  # (signal, entity type) → rows = registry rows
        self.events: dict[str, _Event] = {}  # every event found, by id
        self.open: dict[tuple[str, str], _Event] = {}
        self.alerts: dict[str, dict[str, SignalAlert]] = {}  # event id → signal → details
        self.bin_start: int | None = None
        self.last_input_us = -(2**62)  # start of the last tick with input
        # traffic alerts waiting to last traffic_min_s: (entity key, signal) -> [first bin, bins, area]
        self._pending: dict[tuple[tuple[str, str], str], list[float]] = {}
        self._traffic_bins = max(1, round(self.config.traffic_min_s / self.config.bin_s))
        self._changed: dict[str, _Event] = {}
        # (signal, entity type) -> (registry, [(bin start, rows, values)]) since the last drain
        self._signal_parts: dict[tuple[str, str], tuple[Registry, list[tuple[int, np.ndarray, np.ndarray]]]] = {}

    # ------------------------------------------------------------ detector API
    def advance(self, now_us: int) -> None:
        """Close every bin that ended at or before now_us (a data gap past max_quiet_s is skipped)."""
        quiet_us = int(self.config.max_quiet_s * 1_000_000)
        while self.bin_start is not None and self.bin_start + self.bin_us <= now_us:
            if self.bin_start - self.last_input_us >= quiet_us:
                self.bin_start = max(self.bin_start, (now_us // self.bin_us) * self.bin_us)
                break
            self._close(self.bin_start)
            self.bin_start += self.bin_us

    def on_tick(self, tick: Tick) -> None:
        """Keep the tick's flows and probes for its bin (routes are applied by the routing tracker)."""
        start = (tick.start_us // self.bin_us) * self.bin_us
        if self.bin_start is None:
            self.bin_start = start
        self.advance(start)
        self.last_input_us = tick.start_us
        self.signals.add(tick.flows, tick.probes)

    def finish(self, end_us: int, close_open: bool) -> None:
        """Close the remaining bins; a partial last bin is judged on BGP and probing only (its traffic
        would look like a drop).  Events still going stay open: see the module docstring."""
        self.advance(end_us)
        if self.bin_start is not None and self.bin_start < end_us:
            self._close(self.bin_start, with_traffic=False)
            self.bin_start += self.bin_us
        for ev in self.open.values():
            self._changed[ev.id] = ev

    def drain(self) -> dict[str, Any]:
        """Outage records created or changed since the last drain, and the new signal values."""
        out: dict[str, Any] = {"outages": [ev.record() for ev in self._changed.values()]}
        self._changed = {}
        table = self._signal_table()
        if table is not None:
            out["signals"] = table
        return out

    # ----------------------------------------------------------------- bins
    def method(self, signal: str) -> str:
        """ioda or fast for this signal."""
        return self.config.methods.get(signal, self.config.method)

    def _tracker(self, signal: str, etype: str) -> Tracker:
        tr = self.trackers.get((signal, etype))
        if tr is None:
            cfg, fam = self.config, family(signal)
            if self.method(signal) == "ioda":
                tr = Tracker(RULES[fam], cfg.bin_s, cfg.warmup_s, cfg.inpaint_max_s)
            elif fam == "traffic":
                rule = Rule(RULES["traffic"].window_s, cfg.fast_traffic_drop, cfg.fast_traffic_drop)
                tr = Tracker(rule, cfg.bin_s, cfg.fast_warmup_s, cfg.inpaint_max_s, seasonal=True)
            else:
                rule = Rule(cfg.fast_window_s, cfg.fast_drop, cfg.fast_drop)
                tr = Tracker(rule, cfg.bin_s, cfg.fast_warmup_s, cfg.inpaint_max_s, inclusive=True)
            self.trackers[(signal, etype)] = tr
        return tr

    def _close(self, start_us: int, with_traffic: bool = True) -> None:
        series = self.signals.close(start_us + self.bin_us, with_traffic)
        if self.config.emit_signals:
            self._keep_signals(start_us, series)
        index = start_us // self.bin_us
        for sr in series:
            if sr.signal not in self.config.detect:
                continue
            tr = self._tracker(sr.signal, sr.entity_type)
            tr.grow(len(sr.registry))
            before = tr.level.copy()
            step = tr.step(index, sr.values)
            self._judge(sr, start_us, before, step)
        for key in [k for k, ev in self.open.items() if not ev.active or ev.outlived()]:
            ev = self.open.pop(key)
            ev.end_us = start_us
            self._changed[ev.id] = ev

    def _judge(self, sr: Series, start_us: int, before: np.ndarray, step: Step) -> None:
        """Open, extend or end the events of the entities whose level for this signal is or was non-normal."""
        minutes = self.config.bin_s / 60.0
        signal, values = sr.signal, sr.values
        for row in np.flatnonzero((step.level != NORMAL) | (before != NORMAL)).tolist():
            key = (sr.entity_type, sr.registry.label(row))
            lvl, was = int(step.level[row]), int(before[row])
            ev = self.open.get(key)
            fresh = sr.is_fresh(row)
            if lvl == NORMAL:
                self._pending.pop((key, signal), None)
                if ev is not None:
                    if signal in ev.active and fresh:
                        ev.recovered_us = start_us
                    ev.active.discard(signal)
                    alert = ev.signals.get(signal)
                    if alert is not None:
                        alert.transitions.append(self._transition(start_us, lvl, values[row], step.history[row]))
                continue
            if not fresh and (ev is None or signal not in ev.active):
                continue  # a level carried over from older input opens nothing and joins nothing
            first_us, carried = start_us, 0.0
            if ev is None and family(signal) == "traffic" and self._traffic_bins > 1:
                held = self._pending.setdefault((key, signal), [start_us, 0, 0.0])
                held[1] += 1
                held[2] += float(step.drop[row]) * minutes
                if held[1] < self._traffic_bins or not self._traffic_may_open(signal, float(step.history[row])):
                    continue  # not yet long enough, or too thin, to be more than chance
            waited = self._pending.pop((key, signal), None)
            if waited is not None:  # the drop began bins ago: the alert starts there, with its area
                this_bin = float(step.drop[row]) * minutes if ev is None else 0.0  # counted in waited already
                first_us, carried = int(waited[0]), float(waited[2]) - this_bin
            if ev is None:
                ev = self.open[key] = _Event(key[0], key[1], first_us)
                self.alerts[ev.id] = ev.signals
                self.events[ev.id] = ev
            alert = ev.signals.get(signal)
            if alert is None:
                alert = ev.signals[signal] = SignalAlert(signal, first_us, start_us, [])
                alert.area += carried
            if lvl != was or not alert.transitions:
                alert.transitions.append(self._transition(start_us, lvl, values[row], step.history[row]))
            ev.active.add(signal)
            alert.last_us = start_us
            if fresh:
                alert.fresh_us = start_us
            drop = float(step.drop[row])
            alert.area += drop * minutes
            if drop > alert.worst_drop or not alert.worst_us:
                alert.worst_drop, alert.worst_us = drop, start_us
                alert.worst_value, alert.worst_history = float(values[row]), float(step.history[row])
            self._changed[ev.id] = ev  # its score grew

    def _traffic_may_open(self, signal: str, history: float) -> bool:
        """Whether a lasting traffic drop may open an event by itself (see traffic_min_expected)."""
        opener = signal.endswith("_addrs") or not any(s.endswith("_addrs") for s in self.config.detect)
        return opener and history * self._traffic_bins >= self.config.traffic_min_expected

    @staticmethod
    def _transition(at_us: int, level: int, value: float, history: float) -> dict[str, Any]:
        return {"time": at_us, "level": LEVEL_NAMES[level], "value": float(value), "history": float(history)}

    def _keep_signals(self, start_us: int, series: list[Series]) -> None:
        """Note the bin's finite values; the Arrow table is built once per drain, not once per bin."""
        for sr in series:
            rows = np.flatnonzero(np.isfinite(sr.values))
            if len(rows):
                _, parts = self._signal_parts.setdefault((sr.signal, sr.entity_type), (sr.registry, []))
                parts.append((start_us, rows, sr.values[rows]))

    def _signal_table(self) -> pa.Table | None:
        """The values noted since the last drain, by time (then signal, entity type, row)."""
        tables = []
        for (signal, etype), (registry, parts) in self._signal_parts.items():
            rows = np.concatenate([p[1] for p in parts])
            ts = np.repeat(np.array([p[0] for p in parts], dtype=np.int64), [len(p[1]) for p in parts])
            n = len(rows)
            tables.append(
                pa.table(
                    [
                        pa.array(ts).cast(TIME),
                        pa.repeat(pa.scalar(etype, pa.string()), n),
                        registry.labels(rows),
                        pa.repeat(pa.scalar(signal, pa.string()), n),
                        pa.array(np.concatenate([p[2] for p in parts])),
                    ],
                    schema=SIGNAL_SCHEMA,
                )
            )
        self._signal_parts = {}
        if not tables:
            return None
        table = pa.concat_tables(tables)
        return table.take(pc.sort_indices(table.column("ts")))  # a stable sort

    def records(self) -> list[dict[str, Any]]:
        """Every outage found so far (open or ended) in record form, by start."""
        return sorted((ev.record() for ev in self.events.values()), key=lambda r: (r["start"], r["id"]))

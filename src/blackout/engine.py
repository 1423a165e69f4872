"""The event-time engine: merges sources by timestamp, advances a watermark in ticks, drives detectors.

Replaying a 2014 archive and listening live run this same code.  Sources are
iterators of Arrow batches of one kind (flows, route elements, probe results).
The engine always pulls from the source that is furthest behind in event time,
so sources stay aligned however they are batched or split into files.

Watermark: the smallest "furthest timestamp seen, less that source's allowed
lateness" over sources still running (records may arrive out of order inside
that bound — flow exports do; a live AF_PACKET capture does not, so its
lateness defaults to 0).  A live source's furthest time is also its heartbeat
(the clock), read at every pull, busy or idle: its records' own dates lag the
clock (a flow is exported up to the active timeout after it began), so for a
live export lateness_s bounds how long after its date a record may arrive, and
what is late does not depend on whether a chunk happened to be empty.

Every tick that ends before the watermark is released: its records (sorted by
time, ties kept in source order) are handed to each detector, which returns
events; the engine hands those to the sink (the store).

Determinism: what a tick contains depends only on the records' timestamps, not
on batch sizes or on when the watermark happened to move, so the events are the
same whatever the batching.  A record later than the allowed lateness joins the
first tick not yet released and is counted in ``late``.

Future guard: one record dated far ahead (a broken clock, a corrupt header)
would drag its source's frontier, hence the watermark, with it, release every
tick up to that date and make every later record late.  Such a record is
dropped before it moves anything and counted per source in ``future`` (and in
the run's ErrorLog when one is given).  On replay a record is such an outlier
when it lies more than ``max_future_s`` past the latest record its source kept
*and the record after it falls back* below that horizon; when the next record
lies beyond too, the source really jumped (a collector down for days, archives
months apart) and both are kept.  The decision is sequential within the source
and a batch's last suspect waits for the next batch, so batching cannot change
it; a last record of all is kept.  A live source (one with a heartbeat) drops
records more than ``max_future_live_s`` past the wall clock.  0 turns either off.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from numba import njit

from .config import register_section
from .detect.base import Detector, Tick
from .errors import ErrorLog
from .model import SCHEMAS, Kind

US = 1_000_000
_UNSEEN = -(2**62)  # frontier of a source that has yielded nothing yet
EventSink = Callable[[dict[str, Any]], None]


@dataclasses.dataclass
class EngineConfig:
    """[engine] section of the configuration."""

    tick_s: float = 1.0  # width of a tick of event time, in seconds
    lateness_s: float = 120.0  # how far out of order records may arrive (flow exports: active timeout)
    # Per-origin lateness over the source's own default and lateness_s, e.g. {afpacket = 0, udp = 30};
    # an origin is a file format (pcap, mrt, netflow, ...) or a listener (afpacket, udp, bmp, probe).
    lateness_by_origin: dict[str, float] = dataclasses.field(default_factory=dict)
    max_future_s: float = 86400.0  # replay: drop a record this far past its source's latest one (0: off)
    max_future_live_s: float = 300.0  # live sources: drop a record this far past the wall clock (0: off)
    batch_size: int = 65536  # rows per decoded batch


register_section("engine", EngineConfig)

# A source's own lateness when it names none, by origin.  AF_PACKET frames leave the ring in kernel
# timestamp order and its heartbeat only passes what was yielded (collect/afpacket.py): nothing can
# arrive late, so each tick is released as soon as it ends.  Everything else: engine.lateness_s.
ORIGIN_LATENESS_S: dict[str, float] = {"afpacket": 0.0}


@dataclasses.dataclass
class Source:
    """One input stream: a name for messages, its kind, and its batches in arrival order."""

    name: str
    kind: Kind
    batches: Iterable[pa.RecordBatch]
    # Live sources yield empty batches while idle; heartbeat() gives the event time (µs) they have
    # certainly reached (the wall clock), read at every pull, so the watermark moves and quiet ticks count.
    heartbeat: Callable[[], int] | None = None
    # What produced it: a file format (pcap, mrt, ...) or a listener (afpacket, udp, bmp, probe);
    # empty: the name up to its first ':' (the collectors name their sources "afpacket", "bmp:PORT", ...).
    origin: str = ""
    # How far out of order its records may arrive; None: ORIGIN_LATENESS_S, else engine.lateness_s.
    lateness_s: float | None = None

    def __post_init__(self) -> None:
        if not self.origin:
            self.origin = self.name.partition(":")[0]
        if self.lateness_s is None:
            self.lateness_s = ORIGIN_LATENESS_S.get(self.origin)


@dataclasses.dataclass
class RunStats:
    """What one run consumed and produced."""

    records: dict[str, int] = dataclasses.field(default_factory=lambda: {k.value: 0 for k in Kind})
    ticks: int = 0
    late: int = 0
    future: dict[str, int] = dataclasses.field(default_factory=dict)  # dropped, per source name
    # Each detector's own counted drops at the end of the run (DdosDetector.counters()), by detector name
    detectors: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    events: dict[str, int] = dataclasses.field(default_factory=dict)
    first_us: int | None = None
    last_us: int | None = None


class _Stream:
    """Engine-side state of one source."""

    def __init__(self, index: int, source: Source, lateness_us: int) -> None:
        self.index = index
        self.source = source
        self.lateness_us = lateness_us
        self.it: Iterator[pa.RecordBatch] = iter(source.batches)
        self.frontier = _UNSEEN  # furthest event time seen, µs
        self.done = False
        # kept batches not yet released, each sorted by time (a run), with its times in µs
        self.pending: list[tuple[pa.RecordBatch, np.ndarray]] = []
        self.suspect: pa.RecordBatch | None = None  # a last row far ahead, judged by the next batch


class Engine:
    """Merges sources, releases ticks in event-time order to detectors, and sinks their events."""

    def __init__(
        self,
        detectors: list[Detector],
        sink: EventSink | None = None,
        config: EngineConfig | None = None,
        on_batch: Callable[[Source, pa.RecordBatch], None] | None = None,
        errors: ErrorLog | None = None,
    ) -> None:
        self.detectors = detectors
        self.sink = sink
        self.config = config or EngineConfig()
        self.on_batch = on_batch
        self.tick_us = max(1, round(self.config.tick_s * US))
        self.errors = errors  # where dropped future records are reported beside the decoders' skips
        self.released_us: int | None = None  # every tick before this was handed out
        self.stats = RunStats()

    # ------------------------------------------------------------------ run
    def run(self, sources: list[Source], close_open: bool = True) -> RunStats:
        """Consume every source to its end, then finish the detectors."""
        streams = [_Stream(i, s, self._lateness_us(s)) for i, s in enumerate(sources)]
        while True:
            active = [s for s in streams if not s.done]
            if not active:
                break
            stream = min(active, key=lambda s: (s.frontier, s.index))
            self._pull(stream)
            self._release(streams, self._watermark(streams))
        self._release(streams, None)
        end = self.released_us if self.released_us is not None else 0
        for det in self.detectors:
            det.finish(end, close_open)
        self._drain()
        for det in self.detectors:
            counted = getattr(det, "counters", None)  # a wrapper (explain.AttackTap) reports its inner one's
            if callable(counted):
                self.stats.detectors[det.name] = dict(counted())
        return self.stats

    def _lateness_us(self, source: Source) -> int:
        """Config per origin, else the source's own, else engine.lateness_s."""
        lateness = self.config.lateness_by_origin.get(source.origin, source.lateness_s)
        return max(0, round((self.config.lateness_s if lateness is None else lateness) * US))

    def _pull(self, stream: _Stream) -> None:
        batch = next(stream.it, None)
        if batch is not None and stream.source.heartbeat is not None:
            # Every pull, not only idle ones: a busy source's event time must not fall back to its
            # records' dates, which lag the clock (a flow is exported up to the active timeout after it
            # began); else one quiet moment jumps the frontier to the clock and no tick is released
            # until the records' dates catch up (the soak's 15-33 s stalls, #10).
            stream.frontier = max(stream.frontier, stream.source.heartbeat())
        if batch is None:
            if stream.suspect is not None:  # nothing came after it: a jump, not an outlier
                batch, stream.suspect = stream.suspect, None
                self._keep(stream, batch, _times_us(batch))
            stream.done = True
            return
        if batch.num_rows == 0:
            return
        if stream.suspect is not None:
            batch = pa.concat_batches([stream.suspect, batch])
            stream.suspect = None
        ts = _times_us(batch)
        future = self._future(stream, ts)
        if future is not None:
            if future[-1] == _SUSPECT:
                stream.suspect = batch.slice(batch.num_rows - 1)
            keep = future == 0
            batch, ts = batch.filter(pa.array(keep)), ts[keep]
            if batch.num_rows == 0:
                return
        self._keep(stream, batch, ts)

    def _keep(self, stream: _Stream, batch: pa.RecordBatch, ts: np.ndarray) -> None:
        if self.on_batch is not None:
            self.on_batch(stream.source, batch)
        if not _in_order(ts):  # sorted once here, so each release cuts every run at one searchsorted
            order = np.argsort(ts, kind="stable")
            batch, ts = batch.take(pa.array(order)), ts[order]
        stream.frontier = max(stream.frontier, int(ts[-1]))
        stream.pending.append((batch, ts))
        self.stats.records[stream.source.kind.value] += batch.num_rows

    def _future(self, stream: _Stream, ts: np.ndarray) -> np.ndarray | None:
        """Per record 0 (keep), _DROP (far ahead, counted) or _SUSPECT (last row, judged later); None: all kept."""
        live = stream.source.heartbeat is not None
        horizon_s = self.config.max_future_live_s if live else self.config.max_future_s
        if horizon_s <= 0:
            return None
        horizon = round(horizon_s * US)
        if live:
            future = np.where(ts > time.time_ns() // 1000 + horizon, _DROP, 0).astype(np.int8)
        else:
            future = _outliers_ahead(ts, stream.frontier, horizon, _UNSEEN)
        if not future.any():
            return None
        n = int((future == _DROP).sum())
        if n:
            name = stream.source.name
            self.stats.future[name] = self.stats.future.get(name, 0) + n
            if self.errors is not None:
                since = "the wall clock" if live else "the source's latest record, with the next record back"
                self.errors.add(name, f"record dated more than {horizon_s:g} s after {since} (dropped)", n=n)
        return future

    def _watermark(self, streams: list[_Stream]) -> int | None:
        """None when every source has ended (release all); _UNSEEN while one has not yet started."""
        active = [s for s in streams if not s.done]
        if not active:
            return None
        if any(s.frontier == _UNSEEN for s in active):
            return _UNSEEN
        return min(s.frontier - s.lateness_us for s in active)

    # -------------------------------------------------------------- release
    def _release(self, streams: list[_Stream], watermark: int | None) -> None:
        """Hand every complete tick before the watermark (all ticks when None) to the detectors."""
        if watermark == _UNSEEN:
            return
        if watermark is None:
            until = None
        else:
            until = (watermark // self.tick_us) * self.tick_us
            if self.released_us is not None and until <= self.released_us:
                return
        tables = {kind: self._take(streams, kind, until) for kind in Kind}
        tick_ids = [self._tick_ids(t) for t in tables.values()]
        all_ids = np.unique(np.concatenate([_distinct_sorted(t) for t in tick_ids]))
        bounds = {kind: np.searchsorted(ids, all_ids, side="left") for kind, ids in zip(Kind, tick_ids, strict=True)}
        ends = {kind: np.searchsorted(ids, all_ids, side="right") for kind, ids in zip(Kind, tick_ids, strict=True)}
        for j, tick_id in enumerate(all_ids.tolist()):
            start = tick_id * self.tick_us
            for det in self.detectors:
                det.advance(start)
            sliced = {kind: tables[kind].slice(bounds[kind][j], ends[kind][j] - bounds[kind][j]) for kind in Kind}
            tick = Tick(start, start + self.tick_us, sliced[Kind.FLOW], sliced[Kind.ROUTE], sliced[Kind.PROBE])
            for det in self.detectors:
                det.on_tick(tick)
            self.stats.ticks += 1
            self._note_time(start)
            self.released_us = start + self.tick_us
        if until is not None:
            if self.released_us is None or until > self.released_us:
                self.released_us = until
            for det in self.detectors:
                det.advance(until)
        self._drain()

    def _take(self, streams: list[_Stream], kind: Kind, until: int | None) -> pa.Table:
        """Remove and return the records of one kind before `until`, sorted by time (stable).

        Every pending batch is a sorted run (_keep), so the cut is one searchsorted and zero-copy
        slices per run, and only the released rows are sorted, not the whole lateness window: a
        filter over all pending rows had copied the window's remainder at every tick (a 60 s
        lateness over a live export: ~2.7M rows a second, RSS swinging 0.5-1 GB in the soak), and
        the stable sort of in-order sources cost as much as the whole DDoS detector (bench_ddos.py).
        """
        parts: list[pa.RecordBatch] = []
        times: list[np.ndarray] = []
        for s in streams:
            if s.source.kind is not kind:
                continue
            rest = []
            for batch, ts in s.pending:
                cut = len(ts) if until is None else int(np.searchsorted(ts, until, side="left"))
                if not cut:  # the common case over a long lateness: the whole run waits, kept as it is
                    rest.append((batch, ts))
                    continue
                parts.append(batch.slice(0, cut))
                times.append(ts[:cut])
                if cut < len(ts):
                    rest.append((batch.slice(cut), ts[cut:]))
            s.pending = rest
        if not parts:
            return SCHEMAS[kind].empty_table()
        table = pa.Table.from_batches(parts)
        ts = np.concatenate(times)
        if not _in_order(ts):  # runs of several batches or sources interleave: ties keep arrival order
            table = table.take(pa.array(np.argsort(ts, kind="stable")))
        return table.combine_chunks()

    def _tick_ids(self, table: pa.Table) -> np.ndarray:
        """Tick number of each row; rows later than the lateness bound join the first open tick."""
        ts = _times_us(table)
        ids = ts // self.tick_us
        if self.released_us is not None and len(ids):
            floor = self.released_us // self.tick_us
            late = ids < floor
            n_late = int(late.sum())
            if n_late:
                self.stats.late += n_late
                ids = np.maximum(ids, floor)
        return ids

    def _note_time(self, start: int) -> None:
        if self.stats.first_us is None:
            self.stats.first_us = start
        self.stats.last_us = start + self.tick_us

    def _drain(self) -> None:
        for det in self.detectors:
            events = det.drain()
            if not any(len(v) for v in events.values()):
                continue
            for table, rows in events.items():
                self.stats.events[table] = self.stats.events.get(table, 0) + len(rows)
            if self.sink is not None:
                self.sink(events)


def _distinct_sorted(ids: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array (a tick's rows are in time order: no hashing of 1M ids)."""
    return ids[np.flatnonzero(np.diff(ids, prepend=ids[:1] - 1))] if len(ids) else ids


def _times_us(rows: pa.RecordBatch | pa.Table) -> np.ndarray:
    """The rows' timestamps as int64 µs."""
    return rows.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False)


def _in_order(ts: np.ndarray) -> bool:
    return bool(len(ts) < 2 or (ts[1:] >= ts[:-1]).all())


_DROP, _SUSPECT = 1, 2


@njit(cache=True)
def _outliers_ahead(ts: np.ndarray, start: int, horizon: int, unseen: int) -> np.ndarray:
    """_DROP for a record more than `horizon` past the latest record kept before it whose next record
    falls back below that horizon; a next record beyond too means the source jumped (both kept).  The
    last row, when ahead, is _SUSPECT: the caller holds it for the next batch (batching-independent)."""
    out = np.zeros(len(ts), np.int8)
    top = start
    for i in range(len(ts)):
        if top != unseen and ts[i] > top + horizon:
            if i + 1 == len(ts):
                out[i] = _SUSPECT
            elif ts[i + 1] > top + horizon:
                top = ts[i]
            else:
                out[i] = _DROP
        elif ts[i] > top:
            top = ts[i]
    return out

"""What a detector is: the contract between the engine and every detector.

The engine slices merged telemetry into ticks of event time and calls each
detector in tick order.  A detector keeps its own state (baselines, open
attacks), computes its aggregates over the tick's whole Arrow tables, and hands
back the events it created or changed; the engine stores them.  A detector
never touches the store, the network or the clock: the same ticks always give
the same events, which is what makes replay and live collection one code path.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol

import pyarrow as pa


@dataclasses.dataclass(frozen=True)
class Tick:
    """One tick of event time: [start_us, end_us) and the records whose timestamps fall in it.

    Tables are sorted by ``ts`` (stable, sources in the order given), so any
    order-sensitive detector is still deterministic.  A kind with no records
    in the tick has an empty table, never None.
    """

    start_us: int
    end_us: int
    flows: pa.Table
    routes: pa.Table
    probes: pa.Table


class Detector(Protocol):
    """The engine calls advance(), on_tick(), advance()... then finish(), and drain() after each."""

    name: ClassVar[str]

    def advance(self, now_us: int) -> None:
        """Event time has reached now_us with no more data before it (quiet time counts here)."""
        ...

    def on_tick(self, tick: Tick) -> None:
        """Consume one tick that has data; ticks come in increasing start_us order."""
        ...

    def finish(self, end_us: int, close_open: bool) -> None:
        """No more input.  With close_open (replay) events still running end at their last
        active tick; without (a live collector shutting down) they stay open."""
        ...

    def drain(self) -> dict[str, Any]:
        """Events created or changed since the last drain, by table name ("attacks", "outages").

        Each event is a dict in the store's record form (see blackout.events); an
        event drained twice is upserted by id.  "signals" may carry an Arrow table
        of SIGNAL_SCHEMA rows (per-entity time series), upserted by (entity, signal, ts).
        """
        ...

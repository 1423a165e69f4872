"""What alert channels and mitigation share: the Alert (one transition of one event) and a worker thread.

Kept apart from :mod:`.alerts` so :mod:`.mitigation` can use them while
``alerts`` imports ``mitigation`` (both configuration sections then register
whenever the router is importable, before any configuration file is read).
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
from typing import Any

from ..events import to_arrow, to_json


@dataclasses.dataclass(frozen=True)
class Alert:
    """One transition of one event: what happened, to what, and the event as its stable JSON."""

    event: str  # started | changed | ended
    kind: str  # attack | outage
    table: str  # attacks | outages
    record: dict[str, Any]  # the detector's record (times as µs ints)

    @property
    def data(self) -> dict[str, Any]:
        """The event as the API and ``--json`` print it (events.to_json of the stored row)."""
        return event_json(self.table, self.record)

    def payload(self) -> dict[str, Any]:
        """The webhook body."""
        return {"event": self.event, "kind": self.kind, "data": self.data}


def event_json(table: str, record: dict[str, Any]) -> dict[str, Any]:
    """A record as stored and read back, then as JSON: the same text the store's readers give."""
    row = to_arrow(table, [record]).to_pylist()[0]
    return to_json(table, row)


class Worker:
    """A bounded inbox feeding one thread, started with the first item: an unused one costs no thread."""

    def __init__(self, name: str, size: int) -> None:
        self.queue: queue.Queue[Alert | None] = queue.Queue(maxsize=max(1, size))
        self.counters: collections.Counter[str] = collections.Counter()
        self.thread = threading.Thread(target=self._work, name=name, daemon=True)
        self.started = False

    def offer(self, item: Alert) -> None:
        """Queue without blocking; a full queue drops the item (counted)."""
        if not self.started:
            self.started = True
            self.thread.start()
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.counters["dropped"] += 1

    def _work(self) -> None:
        raise NotImplementedError

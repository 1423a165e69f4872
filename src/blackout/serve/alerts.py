"""Alerts: turn the engine's event stream into started / changed / ended transitions and send them out.

The engine drains every event again each time a detector creates or changes
it, and the store upserts by id.  :class:`EventRouter` sits between the two:
it hands every batch to the store unchanged, then compares each record with
what it saw before under the same id:

* **started** — first time an id is seen (and it passes the alert filter;
  an event below the filter that later crosses it starts then);
* **changed** — something an operator cares about moved (peak rates, vectors,
  rule; severity, signals, verdict), at most once per event per
  ``changed_every_s`` (wall clock: this protects receivers, not the data);
* **ended** — the record's ``end`` is set.

Channels (webhook, syslog, FastNetMon-style notify script, see
:mod:`.notify`) each run in their own worker thread behind a bounded queue, so
a slow receiver never holds the engine: a full queue drops the alert and
counts it.  Mitigation (:mod:`.mitigation`) subscribes to the unfiltered
transitions of attacks.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from ..config import Config, register_section
from ..errors import ConfigError
from .mitigation import mitigator_for
from .worker import Alert, Worker

Sink = Callable[[dict[str, Any]], None]
KINDS = {"attacks": "attack", "outages": "outage"}
_ENDED_MEMORY = 100_000  # ended ids remembered, so a late re-drain of an ended event is not a new start


@dataclasses.dataclass
class AlertsConfig:
    """[alerts] section: where alerts go and which events deserve one."""

    webhooks: list[str] = dataclasses.field(default_factory=list)  # URLs that get a JSON POST per alert
    webhook_timeout_s: float = 5.0
    webhook_retries: int = 3  # retries after the first attempt (connection errors, 5xx, 408, 429)
    webhook_backoff_s: float = 1.0  # first retry delay, doubled each retry, capped at 30 s
    syslog: str | None = None  # "HOST:PORT" (UDP, RFC 5424) or a unix socket path such as "/dev/log"
    syslog_facility: str = "daemon"
    notify_script: str | None = None  # FastNetMon-compatible: SCRIPT IP incoming PPS ban|attack_details|unban
    notify_timeout_s: float = 10.0
    kinds: list[str] = dataclasses.field(default_factory=lambda: ["attack", "outage"])
    min_peak_pps: float = 0.0  # attacks below both minimums are not alerted
    min_peak_bps: float = 0.0
    min_severity: float = 0.0  # outages below this fraction lost are not alerted
    changed_every_s: float = 60.0  # at most one "changed" per event per this many seconds
    queue_size: int = 1000  # per channel; a full queue drops (counted)
    close_timeout_s: float = 10.0  # how long close() waits for queued alerts to go out


register_section("alerts", AlertsConfig)


class Channel(Worker):
    """An alert destination with its own worker thread and bounded queue; subclasses implement deliver()."""

    name: ClassVar[str] = "channel"

    def __init__(self, queue_size: int = 1000) -> None:
        super().__init__(f"alerts-{self.name}", queue_size)
        self.label = self.name  # how stats name this channel (several webhooks: one label each)
        self.last_error: str | None = None
        self.stopping = threading.Event()

    def wants(self, alert: Alert) -> bool:
        """Whether this channel sends this kind of alert (all by default)."""
        return True

    def submit(self, alert: Alert) -> None:
        """Queue an alert without blocking; a full queue drops it (counted)."""
        if self.wants(alert):
            self.offer(alert)

    def deliver(self, alert: Alert) -> None:
        """Send one alert; raise on failure (counted by the worker)."""
        raise NotImplementedError

    def close(self, timeout: float) -> None:
        """Let queued alerts go out for up to `timeout` seconds, then stop; what is left counts as dropped."""
        if not self.started:
            return
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=max(0.0, timeout))
        self.thread.join(max(0.0, deadline - time.monotonic()))
        self.stopping.set()
        self.thread.join(1.0)
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.counters["dropped"] += 1

    def stats(self) -> dict[str, Any]:
        """Counters (sent, failed, dropped, retries...) and the last error."""
        out: dict[str, Any] = {k: self.counters[k] for k in ("sent", "failed", "dropped")}
        out.update(self.counters)
        out["last_error"] = self.last_error
        return out

    def _work(self) -> None:
        while not self.stopping.is_set():
            alert = self.queue.get()
            if alert is None:
                return
            try:
                self.deliver(alert)
                self.counters["sent"] += 1
            except Exception as exc:  # a channel failure is counted, never fatal to the engine
                self.counters["failed"] += 1
                self.last_error = f"{type(exc).__name__}: {exc}"


# channel name -> factory from the [alerts] section (zero, one or more channels); see .notify
CHANNELS: dict[str, Callable[[AlertsConfig], list[Channel]]] = {}


def register_channel(name: str, factory: Callable[[AlertsConfig], list[Channel]]) -> None:
    """Declare an alert channel: a new channel is one module that registers itself here."""
    CHANNELS[name] = factory


def build_channels(cfg: AlertsConfig) -> list[Channel]:
    """Every channel the configuration asks for."""
    from . import notify  # noqa: F401  (registers the built-in channels)

    unknown = sorted(set(cfg.kinds) - set(KINDS.values()))
    if unknown:
        raise ConfigError(f"alerts.kinds: unknown {unknown}; allowed: {sorted(KINDS.values())}")
    return [ch for factory in CHANNELS.values() for ch in factory(cfg)]


@dataclasses.dataclass
class _Seen:
    fingerprint: tuple[Any, ...]
    alerted: bool
    ended: bool = False
    changed_at: float = -1e18


class EventRouter:
    """The engine's sink: forwards to the store, detects transitions, feeds channels and subscribers."""

    def __init__(
        self,
        sink: Sink | None,
        channels: list[Channel] | None = None,
        config: AlertsConfig | None = None,
        subscribers: list[Callable[[Alert], None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.channels = channels or []
        self.cfg = config or AlertsConfig()
        self.subscribers = subscribers or []
        self.clock = clock
        self.seen: collections.OrderedDict[str, _Seen] = collections.OrderedDict()
        self.counters: collections.Counter[str] = collections.Counter()
        self.closers: list[Callable[[], None]] = []
        self.reporters: dict[str, Callable[[], dict[str, Any]]] = {}  # more stats, e.g. "mitigation"

    def __call__(self, batch: dict[str, Any]) -> None:
        if self.sink is not None:
            self.sink(batch)
        for table, kind in KINDS.items():
            for record in batch.get(table) or []:
                self._route(table, kind, record)

    # ------------------------------------------------------------ transitions
    def _route(self, table: str, kind: str, record: dict[str, Any]) -> None:
        eid = record["id"]
        ended = record.get("end") is not None
        fingerprint = _fingerprint(table, record)
        passes = kind in self.cfg.kinds and self._passes(table, record)
        state = self.seen.get(eid)
        raw: list[str] = []
        if state is None:
            state = self.seen[eid] = _Seen(fingerprint, alerted=False)
            raw.append("started")
            if passes:
                self._send("started", kind, table, record, state)
        elif state.ended:
            return  # already over; a re-drain of an ended event says nothing new
        elif fingerprint != state.fingerprint and not ended:
            raw.append("changed")
            state.fingerprint = fingerprint
            if not state.alerted and passes:
                self._send("started", kind, table, record, state)
            elif state.alerted:
                now = self.clock()
                if now - state.changed_at >= self.cfg.changed_every_s:
                    state.changed_at = now
                    self._send("changed", kind, table, record, state)
                else:
                    self.counters["debounced"] += 1
        if ended:
            raw.append("ended")
            state.ended = True
            if not state.alerted and passes:
                self._send("started", kind, table, record, state)
            if state.alerted:
                self._send("ended", kind, table, record, state)
            self.seen.move_to_end(eid)
            while len(self.seen) > _ENDED_MEMORY and next(iter(self.seen.values())).ended:
                self.seen.popitem(last=False)
        for event in raw:
            alert = Alert(event, kind, table, record)
            for subscriber in self.subscribers:
                subscriber(alert)

    def _passes(self, table: str, record: dict[str, Any]) -> bool:
        cfg = self.cfg
        if table == "attacks":
            if cfg.min_peak_pps <= 0 and cfg.min_peak_bps <= 0:
                return True
            pps, bps = record.get("peak_pps") or 0.0, record.get("peak_bps") or 0.0
            return (cfg.min_peak_pps > 0 and pps >= cfg.min_peak_pps) or (
                cfg.min_peak_bps > 0 and bps >= cfg.min_peak_bps
            )
        return (record.get("severity") or 0.0) >= cfg.min_severity

    def _send(self, event: str, kind: str, table: str, record: dict[str, Any], state: _Seen) -> None:
        if event == "started":
            state.alerted = True
            state.changed_at = self.clock()
        self.counters[event] += 1
        alert = Alert(event, kind, table, record)
        for channel in self.channels:
            channel.submit(alert)

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Flush the channels (bounded by close_timeout_s) and stop the subscribers' workers."""
        deadline = time.monotonic() + self.cfg.close_timeout_s
        for channel in self.channels:
            channel.close(max(0.0, deadline - time.monotonic()))
        for closer in self.closers:
            closer()

    def stats(self) -> dict[str, Any]:
        """Transitions sent, debounced changes, and each channel's counters."""
        out = {"alerts": dict(self.counters), "channels": {ch.label: ch.stats() for ch in self.channels}}
        return out | {name: report() for name, report in self.reporters.items()}


def _fingerprint(table: str, record: dict[str, Any]) -> tuple[Any, ...]:
    """What a "changed" alert is about: operator-visible facts, not counters that grow every update."""
    if table == "attacks":
        vectors = tuple(v.get("name") for v in record.get("vectors") or [])
        return (record.get("peak_pps"), record.get("peak_bps"), vectors, record.get("rule"), record.get("target_role"))
    verdict = record.get("verdict") or {}
    causes = tuple((c.get("cause"), round(c.get("confidence") or 0.0, 2)) for c in verdict.get("causes") or [])
    severity = record.get("severity")
    return (round(severity, 2) if severity is not None else None, tuple(record.get("signals") or []), causes)


def router_for(config: Config, sink: Sink | None) -> EventRouter:
    """The router a run uses: channels from [alerts], mitigation from [mitigation] when enabled."""
    cfg = config.section("alerts", AlertsConfig)
    router = EventRouter(sink, build_channels(cfg), cfg)
    mitigator = mitigator_for(config)
    if mitigator is not None:
        router.subscribers.append(mitigator.on_alert)
        router.closers.append(mitigator.close)
        router.reporters["mitigation"] = mitigator.stats
    return router

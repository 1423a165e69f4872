"""The attributor: the outage detector wrapped so every outage record leaves with its verdict.

Why a wrapper and not a detector of its own: a verdict belongs *in* the outage
record (docs/EVENTS.md), and the engine stores what each detector drains, so
the one place to fill it without a second, conflicting version of the record is
the outage detector's own drain.  :func:`blackout.pipeline.build_detectors`
places ``[tracker, AttackTap(ddos), Attributor(outage, tap)]``: the tap passes
the DDoS detector's attack records through unchanged and keeps the latest
version of each (the engine drains detectors in list order, so an outage sees
every attack drained up to its own tick).

What the attributor keeps that the detectors do not (all small: the watched
entities' own prefixes only):

* per entity, every route change of its prefixes (time, withdrawals,
  announcements, prefixes withdrawn, peers) — RIB entries teach the prefixes
  and paths but are not changes;
* the last announced AS path and origin of each of its prefixes (so at the
  outage the upstream is known even though the routes are gone);
* the upstream AS's visible prefix count from the shared routing state,
  sampled at every tick where the entity's routes changed (cached per
  ``reach_version``);
* the entity's traffic-in signal per bin (from the outage detector's own
  signal rows), for surges.

Verdicts are recomputed whenever the outage detector re-emits an event, from
this history only: the same input gives the same verdict.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..addr import is_v4, v4_to_u32
from ..detect.base import Detector, Tick
from ..detect.outage import OutageDetector
from ..enrich.enricher import RoutingEnricher
from ..enrich.routing import RoutingState
from ..model import ElemType
from .evidence import EntityHistory, RouteChange
from .verdict import VerdictConfig, judge


class AttackTap:
    """A DDoS detector passed through, keeping the latest version of every attack record it drains."""

    name: ClassVar[str] = "ddos"

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.records: dict[str, dict[str, Any]] = {}

    def advance(self, now_us: int) -> None:
        """Delegated."""
        self.inner.advance(now_us)

    def on_tick(self, tick: Tick) -> None:
        """Delegated."""
        self.inner.on_tick(tick)

    def finish(self, end_us: int, close_open: bool) -> None:
        """Delegated."""
        self.inner.finish(end_us, close_open)

    def counters(self) -> dict[str, int]:
        """The inner detector's counted drops ({} when it counts none), so callers need not reach into `.inner`."""
        counted = getattr(self.inner, "counters", None)
        return dict(counted()) if callable(counted) else {}

    def drain(self) -> dict[str, Any]:
        """The inner detector's events, unchanged; attack records remembered by id."""
        out = self.inner.drain()
        for rec in out.get("attacks", []):
            self.records[rec["id"]] = rec
        return out


@dataclasses.dataclass
class _Member:
    """Which watched entities a route element belongs to."""

    label: str  # "asn:131279"
    kind: str
    value: str


class Attributor:
    """The outage detector with verdicts (see the module docstring)."""

    name: ClassVar[str] = "outage"

    def __init__(
        self,
        outage: OutageDetector,
        attacks: AttackTap | None = None,
        enricher: RoutingEnricher | None = None,
        config: VerdictConfig | None = None,
    ) -> None:
        self.outage = outage
        self.attacks = attacks
        self.enricher = enricher
        # the rules compare alert times at the outage detector's own bin width
        self.config = dataclasses.replace(config or VerdictConfig(), bin_s=outage.config.bin_s)
        self.routing: RoutingState | None = outage.signals.routing
        watch = outage.signals.watch
        self.countries = list(watch.countries)
        self.asns = [int(a) for a in watch.asns]
        self.prefixes = list(watch.prefixes)
        self.pfx_lo, self.pfx_hi = watch.pfx_lo, watch.pfx_hi
        labels = [f"country:{c}" for c in self.countries] + [f"asn:{a}" for a in self.asns]
        labels += [f"prefix:{p}" for p in self.prefixes]
        self.history: dict[str, EntityHistory] = {label: EntityHistory() for label in labels}
        self._upstream_cache: dict[tuple[int, int], int] = {}

    # ------------------------------------------------------------ detector API
    def advance(self, now_us: int) -> None:
        """Delegated."""
        self.outage.advance(now_us)

    def on_tick(self, tick: Tick) -> None:
        """Note the watched entities' route changes (the tracker already applied them), then delegate."""
        if tick.routes.num_rows:
            self._observe(tick.routes, tick.start_us)
        self.outage.on_tick(tick)

    def finish(self, end_us: int, close_open: bool) -> None:
        """Delegated."""
        self.outage.finish(end_us, close_open)

    def drain(self) -> dict[str, Any]:
        """The outage detector's records, each with its verdict filled."""
        out = self.outage.drain()
        signals = out.get("signals")
        if signals is not None:
            self._keep_signals(signals)
        attacks = list(self.attacks.records.values()) if self.attacks is not None else []
        for rec in out.get("outages", []):
            label = f"{rec['entity_type']}:{rec['entity']}"
            hist = self.history.get(label) or EntityHistory()
            alerts = self.outage.alerts.get(rec["id"], {})
            rec["verdict"] = judge(rec, alerts, hist, attacks, self.config)
        return out

    # ------------------------------------------------------------ routes
    def _observe(self, routes: pa.Table, tick_us: int) -> None:
        v4 = is_v4(routes.column("prefix"))
        if not v4.any():
            return
        table = routes if v4.all() else routes.take(pa.array(np.flatnonzero(v4)))
        net = v4_to_u32(table.column("prefix")).astype(np.uint64)
        plen = table.column("prefix_len").to_numpy(zero_copy_only=False).astype(np.int64)
        origin = pc.fill_null(table.column("origin_asn"), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        ends = net + (np.uint64(1) << (32 - np.clip(plen, 0, 32)).astype(np.uint64))
        members: list[tuple[str, np.ndarray]] = []
        for i, label in enumerate(f"prefix:{p}" for p in self.prefixes):
            lo, hi = np.uint64(self.pfx_lo[i]), np.uint64(self.pfx_hi[i])
            members.append((label, (net >= lo) & (ends <= hi)))
        for a in self.asns:
            members.append((f"asn:{a}", origin == a))
        if self.countries and self.enricher is not None:
            cc = self.enricher.countries(table.column("prefix"), origin.astype(np.uint32), tick_us).astype(str)
            for c in self.countries:
                members.append((f"country:{c}", cc == c))
        etype = table.column("elem_type").to_numpy(zero_copy_only=False)
        key = (net << np.uint64(6)) | plen.astype(np.uint64)
        announced = np.isin(etype, [ElemType.RIB, ElemType.ANNOUNCE])
        for label, mask in members:
            hist = self.history[label]
            known = hist.known_mask(net, plen)
            # withdrawals carry no origin: a prefix's are the entity's once it is known, before this tick
            # or by an announcement in it
            fresh = key[mask & announced & ~known]
            sel = np.flatnonzero(mask | known | (np.isin(key, fresh) if len(fresh) else False))
            if len(sel):
                rows = table.select(["as_path", "peer_addr"]).take(pa.array(sel))
                self._note(hist, rows, known[sel], net[sel], plen[sel], origin[sel], etype[sel], tick_us)

    def _note(
        self,
        hist: EntityHistory,
        rows: pa.Table,
        known: np.ndarray,
        net: np.ndarray,
        plen: np.ndarray,
        origin: np.ndarray,
        etype: np.ndarray,
        tick_us: int,
    ) -> None:
        """Remember paths of announced routes; log the tick's withdrawals and re-announcements.

        As a pass in row order would (the last path and last origin of a prefix win; a withdrawal
        counts when its prefix was known before it), with Python once per distinct prefix, not per
        route: a RIB holds each prefix once per peer."""
        key = (net << np.uint64(6)) | plen.astype(np.uint64)
        paths = rows.column("as_path")
        has_path = pc.fill_null(pc.greater(pc.utf8_length(paths), 0), False).to_numpy(zero_copy_only=False)
        learn = np.isin(etype, [ElemType.RIB, ElemType.ANNOUNCE]) & has_path
        withdraw = etype == ElemType.WITHDRAW
        pos = np.arange(len(key))
        learnt, first_pos, last_pos = _runs(key[learn], pos[learn])
        counted = withdraw & known
        if len(learnt) and (withdraw & ~known).any():  # or learnt by an earlier row of this tick
            at = np.minimum(np.searchsorted(learnt, key), len(learnt) - 1)
            counted |= withdraw & (learnt[at] == key) & (first_pos[at] < pos)
        named, _, last_named = _runs(key[learn & (origin != 0)], pos[learn & (origin != 0)])
        last_origin = np.zeros(len(learnt), dtype=np.int64)  # 0: no row of the tick named one
        if len(named):
            at = np.minimum(np.searchsorted(named, learnt), len(named) - 1)
            hit = named[at] == learnt
            last_origin[hit] = origin[last_named[at[hit]]]
        texts = paths.take(pa.array(last_pos)).to_pylist()
        for j, row in enumerate(last_pos.tolist()):
            n, length = int(net[row]), int(plen[row])
            hist.learn(_text(n, length), n, length, str(texts[j]), int(last_origin[j]))
        n_w = int(np.count_nonzero(counted))
        if n_w or len(learnt):  # a RIB load counts too: the upstream's visibility before any change
            _, w_rows, _ = _runs(key[counted], pos[counted])
            withdrawn = frozenset(_text(int(net[r]), int(plen[r])) for r in w_rows.tolist())
            w_peers = len(pc.unique(rows.column("peer_addr").take(pa.array(np.flatnonzero(counted))))) if n_w else 0
            n_a = int(np.count_nonzero(learn & (etype == ElemType.ANNOUNCE)))
            upstream = hist.upstream()
            seen = self._upstream_visible(upstream) if upstream else -1
            hist.changes.append(RouteChange(tick_us, n_w, n_a, withdrawn, w_peers, upstream, seen))

    def _upstream_visible(self, asn: int) -> int:
        """Prefixes originated by `asn` that most full-feed peers see now (cached per reach version)."""
        if self.routing is None:
            return -1
        key = (asn, self.routing.reach_version)
        hit = self._upstream_cache.get(key)
        if hit is None:
            view = self.routing.view()
            hit = int(np.count_nonzero(view.visible & (view.origin == asn)))
            self._upstream_cache = {key: hit}
        return hit

    def _keep_signals(self, signals: pa.Table) -> None:
        """The watched entities' traffic-in and BGP values (with all_entities the table holds every AS:
        the others are filtered out before any per-row Python)."""
        label = pc.binary_join_element_wise(signals.column("entity_type"), signals.column("entity"), ":")
        want = pc.and_(
            pc.is_in(signals.column("signal"), pa.array(["traffic_in_bytes", "bgp"])),
            pc.is_in(label, pa.array(list(self.history), pa.string())),
        )
        keys = label.filter(want).to_pylist()
        if not keys:
            return
        part = signals.filter(want)
        ts = part.column("ts").cast(pa.int64()).to_numpy()
        vals = part.column("value").to_numpy()
        for i, (key, sig) in enumerate(zip(keys, part.column("signal").to_pylist(), strict=True)):
            self.history[key].series.setdefault(sig, []).append((int(ts[i]), float(vals[i])))


def _runs(keys: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct keys (ascending) and, for each, the first and last of its positions (positions ascending)."""
    order = np.lexsort((pos, keys))
    k, p = keys[order], pos[order]
    head = np.ones(len(k), dtype=bool)
    head[1:] = k[1:] != k[:-1]
    tail = np.append(head[1:], True) if len(k) else head
    return k[head], p[head], p[tail]


def _text(net: int, plen: int) -> str:
    return f"{ipaddress.IPv4Address(net)}/{plen}"

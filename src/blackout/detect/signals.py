"""Per-entity signals for one bin of event time: BGP visibility, traffic, active probing.

Entities are countries (``KP``), origin ASes (``131279``) and prefixes
(``175.45.176.0/22``).  Each signal is computed for all entities of a kind at
once over the bin's whole tables (``bincount`` / ``unique`` over entity codes),
so every AS of a full table per bin is feasible.

* ``bgp``: visible /24s (IODA: a prefix counts when more than half of the
  full-feed peers see it), from the shared routing state
  (:mod:`blackout.enrich.visibility`); ``bgp_peers`` (prefixes only): the most
  full-feed peers that see any one route inside or covering the prefix.
* ``traffic_{in,out}_{bytes,packets,addrs}``: sampling-corrected bytes and
  packets toward (in) and from (out) the entity, and its distinct addresses
  seen as destination (in) or source (out).
* ``probing_up``: /24 blocks believed up (Trinocular-style Bayesian belief per
  block, kept across bins), ``probing_share``: share of the probed addresses
  that answered in the bin.

Addresses are placed with the enricher (longest-prefix match → origin AS; RIR →
country).  Once an address's /24 was seen routed, its origin AS is remembered
(:class:`Homes`): during an outage the prefix is withdrawn and the address is
unrouted, yet its traffic and probes still belong to the AS that went dark.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..addr import from_matrix, from_v4_u32, is_v4, v4_to_u32, words
from ..enrich.base import Enricher
from ..enrich.routing import RoutingState
from ..enrich.visibility import V4Ranges, in_ranges
from ..model import PROBE_SCHEMA
from ..probe import trinocular
from ..probe.trinocular import BELIEF_START, BELIEF_UP
from .entities import Groups, Homes, Registry, group_distinct, group_sum
from .flow_sums import AddressSums, merge_sums, sum_by_address

TRAFFIC = ("bytes", "packets", "addrs")
# Trinocular's belief model (IODA's build): start 0.99, clamp [0.01, 0.99], up > 0.9, 1 % false answers.


@dataclasses.dataclass
class Watch:
    """The entities named in the configuration, parsed."""

    countries: list[str]
    asns: list[int]
    prefixes: list[str]  # normalised text
    pfx_lo: np.ndarray  # uint64 first IPv4 address
    pfx_hi: np.ndarray  # uint64 end address (exclusive)

    @classmethod
    def parse(cls, items: list[str]) -> Watch:
        """ "country:KP", "asn:131279", "prefix:175.45.176.0/22" (IPv4 prefixes)."""
        countries, asns, prefixes, lo, hi = [], [], [], [], []
        for item in items:
            kind, _, value = item.partition(":")
            if kind == "country":
                countries.append(value.upper())
            elif kind == "asn":
                asns.append(int(value.upper().removeprefix("AS")))
            elif kind == "prefix":
                net = ipaddress.ip_network(value, strict=False)
                if net.version != 4:
                    raise ValueError(f"{item}: only IPv4 prefixes can be watched")
                prefixes.append(str(net))
                lo.append(int(net.network_address))
                hi.append(int(net.network_address) + net.num_addresses)
            else:
                raise ValueError(f"{item}: write country:CC, asn:N or prefix:A.B.C.D/L")
        return cls(countries, asns, prefixes, np.array(lo, np.uint64), np.array(hi, np.uint64))


SIDES = (("in", "dst_addr"), ("out", "src_addr"))

# One signal's raw values for one kind of entity: (signal, entity_type, keys, values); keys are uint32
# AS numbers or object arrays of strings (country codes, prefix texts).
Raw = tuple[str, str, np.ndarray, np.ndarray]


@dataclasses.dataclass
class Series:
    """One signal of one entity type for one bin, aligned with its registry's rows (NaN: no value).

    ``fresh`` marks the rows whose value rests on input of this very bin.  A probe belief is carried
    between probing rounds (Atlas measures every 240 s), so ``probing_up`` has a value every bin but
    new evidence only in a round; None means every finite value is fresh.
    """

    signal: str
    entity_type: str
    registry: Registry
    values: np.ndarray
    fresh: np.ndarray | None = None

    def is_fresh(self, row: int) -> bool:
        """Whether this row's value rests on this bin's input."""
        if self.fresh is not None:
            return bool(self.fresh[row])
        return bool(np.isfinite(self.values[row]))


class SignalComputer:
    """Accumulates one bin's flows and probes; computes every signal of every entity when the bin closes."""

    def __init__(
        self,
        watch: Watch,
        all_entities: bool,
        routing: RoutingState | None,
        enricher: Enricher | None,
        countries: Callable[[int], V4Ranges | None] | None = None,
    ) -> None:
        self.watch = watch
        self.all = all_entities
        self.routing = routing
        self.enricher = enricher
        self.countries = countries  # event time → the RIR country table in force (BGP per country)
        self.homes = Homes()
        # per side ("in": destinations, "out": sources), the bin's flows so far as distinct addresses with
        # their summed bytes and packets: a bin of raw flow tables grew by ~100 B per flow at collector
        # rates and its close stalled the engine (README, Reliability)
        self.traffic: dict[str, list[AddressSums]] = {side: [] for side, _ in SIDES}
        self._folded = {side: 0 for side, _ in SIDES}  # rows of the side's first part, merged last
        self.probes: list[pa.Table] = []
        self.registries: dict[tuple[str, str], Registry] = {}
        self._bgp_series_cache: tuple[tuple[int, int], list[Series]] | None = None
        self._probed: dict[str, np.ndarray] = {}  # entity type -> keys whose blocks had results this bin
        # probing state per /24 block (sorted by block)
        self.blocks = np.zeros(0, dtype=np.uint32)
        self.belief = np.zeros(0)
        self.answers = np.zeros(0)  # answered results while up (for the availability estimate)
        self.results = np.zeros(0)
        self.block_asn = np.zeros(0, dtype=np.uint32)
        self.block_cc = np.zeros(0, dtype=object)

    # ---------------------------------------------------------------- input
    def add(self, flows: pa.Table, probes: pa.Table) -> None:
        """Keep a tick's flows and probes for the bin they fall in."""
        if flows.num_rows:
            self._fold(flows)
        if probes.num_rows:
            self.probes.append(probes)

    def close(self, at_us: int, with_traffic: bool = True) -> list[Series]:
        """Every signal of the bin that ends at ``at_us``; forget the bin's records."""
        out = self._bgp_series(at_us)
        probes = pa.concat_tables(self.probes).combine_chunks() if self.probes else PROBE_SCHEMA.empty_table()
        traffic = {side: merge_sums(parts) for side, parts in self.traffic.items() if parts}
        self.traffic, self.probes = {side: [] for side, _ in SIDES}, []
        self._folded = {side: 0 for side, _ in SIDES}
        raw = self._traffic(traffic, at_us) if with_traffic and traffic else []
        raw += self._probing(probes, at_us)
        return out + [self._series(r) for r in raw]

    def _bgp_series(self, at_us: int) -> list[Series]:
        """The BGP series, recomputed only when the routing state (or the country table) changed."""
        countries = self.countries(at_us) if self.countries is not None else None
        key = (self.routing.reach_version if self.routing is not None else -1, id(countries))
        if self._bgp_series_cache is None or self._bgp_series_cache[0] != key:
            self._bgp_series_cache = (key, [self._series(r) for r in self._bgp(countries)])
        return list(self._bgp_series_cache[1])

    def _series(self, raw: Raw) -> Series:
        """Place raw values on their registry's rows.  Only watched entities unless all are wanted;
        entities reported before but absent now get 0 (gone, not unknown), except for shares."""
        signal, etype, keys, values = raw
        if not self.all and etype == "asn":
            keep = np.isin(keys, np.array(self.watch.asns, dtype=np.uint32))
            keys, values = keys[keep], values[keep]
        elif not self.all and etype == "country":
            keep = np.isin(keys, np.array(self.watch.countries, dtype=object))
            keys, values = keys[keep], values[keep]
        reg = self.registries.get((signal, etype))
        if reg is None:
            reg = self.registries[(signal, etype)] = Registry(numeric=etype == "asn")
        rows = reg.rows(keys)
        out = np.full(len(reg), np.nan if signal == "probing_share" else 0.0)
        out[rows] = values
        fresh = None
        if signal == "probing_up":
            fresh = np.zeros(len(reg), dtype=bool)
            fresh[rows[np.isin(keys, self._probed.get(etype, keys[:0]))]] = True
        return Series(signal, etype, reg, out, fresh)

    def _where(self, addrs: pa.Array, at_us: int) -> tuple[np.ndarray, np.ndarray]:
        """(origin AS, country) of addresses; unrouted IPv4 addresses keep their /24's last origin."""
        if self.enricher is None or len(addrs) == 0:
            return np.zeros(len(addrs), np.uint32), np.full(len(addrs), "", dtype=object)
        e = self.enricher.lookup(addrs, at_us)
        asn = np.asarray(e.origin_asn, dtype=np.uint32).copy()
        v4 = is_v4(addrs)
        blocks = v4_to_u32(addrs) >> np.uint32(8)
        self.homes.update(blocks[v4], asn[v4])
        lost = v4 & (asn == 0)
        if lost.any():
            asn[lost] = self.homes.get(blocks[lost])
        return asn, np.asarray(e.country, dtype=object)

    # ------------------------------------------------------------------ BGP
    def _bgp(self, countries: V4Ranges | None) -> list[Raw]:
        rs = self.routing
        if rs is None or not rs.peers:  # routes may be none: a full feed that withdrew all still reports
            return []
        view = rs.view()
        out: list[Raw] = []
        if view.full_feed_v4 > 0:
            by_asn = rs.visible_slash24_by_asn()
            out.append(("bgp", "asn", by_asn["asn"].to_numpy(), by_asn["slash24"].to_numpy().astype(float)))
            if countries is not None:
                by_cc = rs.visible_slash24_by_country(countries)
                cc = np.array(by_cc["country"].to_pylist(), dtype=object)
                out.append(("bgp", "country", cc, by_cc["slash24"].to_numpy().astype(float)))
            if self.watch.prefixes:
                out += self._bgp_prefixes(view)
        return out

    def _bgp_prefixes(self, view: Any) -> list[Raw]:
        """Visible /24s inside each watched prefix, and the most full-feed peers seeing one route there."""
        assert self.routing is not None
        cfg = self.routing.config
        counts, most = in_ranges(view, self.watch.pfx_lo, self.watch.pfx_hi, cfg.slash24_min_len, cfg.slash24_max_len)
        names = np.array(self.watch.prefixes, dtype=object)
        return [("bgp", "prefix", names, counts), ("bgp_peers", "prefix", names, most)]

    # -------------------------------------------------------------- traffic
    def _fold(self, flows: pa.Table) -> None:
        """Reduce a tick's flows to its distinct addresses per side (sums are exact: integer-valued floats)."""
        rate = np.maximum(flows.column("sampling_rate").to_numpy(), 1).astype(np.float64)
        nbytes = flows.column("bytes").to_numpy().astype(np.float64) * rate
        packets = flows.column("packets").to_numpy().astype(np.float64) * rate
        for side, col in SIDES:
            parts = self.traffic[side]
            parts.append(sum_by_address(*words(flows.column(col)), nbytes, packets))
            # merge the parts once they hold more than the merged part: amortised, and a bin's memory
            # is its distinct addresses, not its flows
            if sum(len(part[0]) for part in parts) > 2 * self._folded[side] + 65536:
                self.traffic[side] = [merge_sums(parts)]
                self._folded[side] = len(self.traffic[side][0][0])

    def _traffic(self, traffic: dict[str, AddressSums], at_us: int) -> list[Raw]:
        out: list[Raw] = []
        for side, _ in SIDES:
            if side not in traffic:
                continue
            hi, lo, nbytes, packets = traffic[side]
            weights = {"bytes": nbytes, "packets": packets}
            addrs = from_matrix(np.stack([hi, lo], axis=1).astype(">u8").view(np.uint8).reshape(-1, 16))
            item = lo ^ (hi * np.uint64(0x9E3779B97F4A7C15))
            asn, cc = self._where(addrs, at_us)
            for etype, code, keys in _groupings(asn, cc):
                rows = code >= 0
                groups = Groups(code[rows])
                for what in ("bytes", "packets"):
                    out.append((f"traffic_{side}_{what}", etype, keys[groups.keys], groups.sum(weights[what][rows])))
                u, d = group_distinct(code[rows], item[rows])
                out.append((f"traffic_{side}_addrs", etype, keys[u], d))
            if self.watch.prefixes:
                out += self._traffic_prefixes(side, addrs, weights, item)
        return out

    def _traffic_prefixes(
        self, side: str, addrs: pa.Array, weights: dict[str, np.ndarray], item: np.ndarray
    ) -> list[Raw]:
        ip = v4_to_u32(addrs).astype(np.uint64)
        v4 = is_v4(addrs)
        vals: dict[str, list[float]] = {w: [] for w in TRAFFIC}
        for lo, hi in zip(self.watch.pfx_lo.tolist(), self.watch.pfx_hi.tolist(), strict=True):
            inside = v4 & (ip >= np.uint64(lo)) & (ip < np.uint64(hi))
            vals["bytes"].append(float(weights["bytes"][inside].sum()))
            vals["packets"].append(float(weights["packets"][inside].sum()))
            vals["addrs"].append(float(len(np.unique(item[inside]))))
        names = np.array(self.watch.prefixes, dtype=object)
        return [(f"traffic_{side}_{w}", "prefix", names, np.array(vals[w])) for w in TRAFFIC]

    # -------------------------------------------------------------- probing
    def _probing(self, probes: pa.Table, at_us: int) -> list[Raw]:
        if probes.num_rows:
            self._observe(probes, at_us)
        if len(self.blocks) == 0:
            return []
        up = (self.belief > BELIEF_UP).astype(np.float64)
        out: list[Raw] = []
        out += _per_entity("probing_up", self.block_asn, self.block_cc, up, self.blocks, self.watch, "sum")
        probed = np.zeros(len(self.blocks))
        if probes.num_rows:
            targets = probes.column("target").combine_chunks()
            v4 = is_v4(targets)
            ip = v4_to_u32(targets)[v4]
            probed[np.searchsorted(self.blocks, ip >> np.uint32(8))] = 1.0
        touched = _per_entity("probed", self.block_asn, self.block_cc, probed, self.blocks, self.watch, "sum")
        self._probed = {etype: keys[vals > 0] for _, etype, keys, vals in touched}
        if probes.num_rows:
            answered = probes.column("received").to_numpy()[v4] > 0
            # one row per distinct target: answered if any result for it was
            order = np.lexsort((~answered, ip))
            first = np.ones(len(ip), dtype=bool)
            first[1:] = ip[order][1:] != ip[order][:-1]
            uip, uans = ip[order][first], answered[order][first].astype(np.float64)
            i = np.searchsorted(self.blocks, uip >> np.uint32(8))
            asn, cc = self.block_asn[i], self.block_cc[i]
            out += _per_entity("probing_share", asn, cc, uans, uip >> 8, self.watch, "mean")
        return out

    def _observe(self, probes: pa.Table, at_us: int) -> None:
        """Bayesian update of the belief of every probed /24 block (one observation per result)."""
        targets = probes.column("target").combine_chunks()
        v4 = is_v4(targets)
        blocks = (v4_to_u32(targets) >> np.uint32(8))[v4]
        pos = (probes.column("received").to_numpy() > 0)[v4]
        new = np.setdiff1d(np.unique(blocks), self.blocks)
        if len(new):
            asn, cc = self._where(from_v4_u32(new.astype(np.uint32) << np.uint32(8)), at_us)
            merged = np.concatenate([self.blocks, new])
            order = np.argsort(merged, kind="stable")
            self.blocks = merged[order]
            self.belief = np.concatenate([self.belief, np.full(len(new), BELIEF_START)])[order]
            self.answers = np.concatenate([self.answers, np.zeros(len(new))])[order]
            self.results = np.concatenate([self.results, np.zeros(len(new))])[order]
            self.block_asn = np.concatenate([self.block_asn, asn])[order]
            self.block_cc = np.concatenate([self.block_cc, cc])[order]
        idx = np.searchsorted(self.blocks, blocks)
        n = len(self.blocks)
        npos = np.bincount(idx, weights=pos.astype(np.float64), minlength=n)
        nneg = np.bincount(idx, weights=(~pos).astype(np.float64), minlength=n)
        # the prober's own Bayes update, in log-odds: a census of a dense /24 (hundreds of answers in
        # one bin) overflowed the odds product to NaN, which read as "down"
        self.belief = trinocular.update(self.belief, trinocular.availability(self.answers, self.results), npos, nneg)
        up = self.belief > BELIEF_UP
        self.answers += np.where(up, npos, 0.0)
        self.results += np.where(up, npos + nneg, 0.0)
        # blocks seen routed now keep that origin (probes may outlive the route)
        touched = np.flatnonzero((npos + nneg) > 0)
        if len(touched) and self.enricher is not None:
            asn, _ = self._where(from_v4_u32(self.blocks[touched] << np.uint32(8)), at_us)
            self.block_asn[touched] = np.where(asn != 0, asn, self.block_asn[touched])


def _groupings(asn: np.ndarray, cc: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per row, its country and its AS as (entity type, code per row (-1: unknown), key per code)."""
    out = []
    if len(cc):
        enc = pc.dictionary_encode(pa.array(np.asarray(cc, dtype=object).tolist(), pa.string()))
        code = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
        names = np.array(enc.dictionary.to_pylist(), dtype=object)
        code = np.where(code >= 0, code, -1)
        if len(names):
            code = np.where(names[np.maximum(code, 0)] == "", -1, code)
    else:
        code, names = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
    out.append(("country", code, names))
    uniq, inv = np.unique(asn, return_inverse=True)
    out.append(("asn", np.where(uniq[inv.ravel()] == 0, -1, inv.ravel()).astype(np.int64), uniq.astype(np.uint32)))
    return out


def _per_entity(
    signal: str, asn: np.ndarray, cc: np.ndarray, x: np.ndarray, blocks: np.ndarray, watch: Watch, how: str
) -> list[Raw]:
    """Sum or mean of x per AS, per country and per watched prefix (blocks are /24 numbers)."""
    out: list[Raw] = []
    for etype, code, keys in _groupings(asn, cc):
        rows = code >= 0
        u, s = group_sum(code[rows], x[rows])
        if how == "mean":
            _, c = group_sum(code[rows], np.ones(int(rows.sum())))
            s = s / np.maximum(c, 1)
        out.append((signal, etype, keys[u], s))
    if watch.prefixes:
        b = blocks.astype(np.uint64)
        vals = []
        for lo, hi in zip(watch.pfx_lo.tolist(), watch.pfx_hi.tolist(), strict=True):
            inside = (b >= np.uint64(lo >> 8)) & (b < np.uint64(max(hi >> 8, (lo >> 8) + 1)))
            # no block of the prefix yet: no value (a 0 before its first probe would become the
            # trackers' baseline, and its later fall to 0 would never alert)
            if not inside.any():
                vals.append(np.nan)
            else:
                vals.append(float(x[inside].mean() if how == "mean" else x[inside].sum()))
        arr = np.array(vals)
        keep = np.isfinite(arr)
        out.append((signal, "prefix", np.array(watch.prefixes, dtype=object)[keep], arr[keep]))
    return out

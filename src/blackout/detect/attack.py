"""What the DDoS detector accumulates about one attack, and the record it becomes.

Each tick, the rows toward an attacked target are folded into a fresh
:class:`AttackStats` (compiled passes over all the attacks' rows at once,
:mod:`.attack_fold`; sorted-key counters), which is merged into the attack's
running total — or held as *pending* while the target is quiet, and merged
only if the attack goes on (so an attack's totals cover exactly its
[start, end) span).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import pyarrow as pa

from .. import addr
from ..enrich.base import Enricher
from . import spoofing
from .attack_fold import attack_entries, fold_codes, fold_rows, owner_totals, port_codes, split_totals
from .counter import SparseCounter
from .grouping import group_by_key
from .reflection import PortReflections, candidates
from .roles import role_of
from .sketch import DENSE_CELLS, address_keys, dense_codes, fold_by_owner, smallest_distinct
from .tick_columns import TickColumns
from .vectors import DIRECT_PORTED, FALLBACK, N_VECTORS, REFLECTED, UDP_FLOOD, classify, vector_shares

TOP = 10  # entries kept in top_sources, source_countries, source_asns
SRC_PK, SRC_RAW, SRC_FLAG = 0, 1, 2  # columns of the per-source counter
ALL_PORTS = np.arange(1 << 16, dtype=np.uint64)  # port p's key is p (the dense fold's port codes)


@dataclasses.dataclass
class AttackRows:
    """Columns of one tick's rows that go to some attack, computed once for all attacks."""

    src_hi: np.ndarray
    src_lo: np.ndarray
    src_key: np.ndarray
    vector: np.ndarray
    packets: np.ndarray  # sampling-corrected
    raw_packets: np.ndarray
    bytes: np.ndarray  # sampling-corrected
    src_port: np.ndarray
    dst_port: np.ndarray
    size: np.ndarray  # bytes per packet of the row
    ttl: np.ndarray
    sampled: np.ndarray
    src_flag: np.ndarray  # per distinct source: a bogon or (routing known) unrouted
    src_country: np.ndarray  # per distinct source: uint64 packed ISO code, 0 unknown
    src_asn: np.ndarray  # per distinct source: uint64, 0 unknown
    src_uniq: np.ndarray  # the tick's distinct source keys, sorted
    src_code: np.ndarray  # index of each row's source key in src_uniq
    src_first: np.ndarray  # one row of each distinct source

    @classmethod
    def build(
        cls, cols: TickColumns, rows: np.ndarray, enricher: Enricher, at_us: int, expect_sources: int = 0
    ) -> AttackRows:
        """Take the rows, classify them and enrich their distinct sources (one lookup for the tick);
        ``expect_sources``: about how many distinct sources (sizes the grouping's table)."""
        src_addr = cols.table.column("src_addr")
        every = len(rows) == len(cols)  # a flood's tick: every row goes to some attack; no copies

        def pick(column: np.ndarray) -> np.ndarray:
            return column if every else column[rows]

        if 4 * len(rows) >= len(cols):  # most rows: converting the whole column is cheaper than a take
            hi, lo = (pick(words) for words in cols.src_words)
        else:
            hi, lo = addr.words(src_addr.take(pa.array(rows, type=pa.int64())))
        keys = address_keys(hi, lo)
        rate = pick(cols.rate)
        raw = pick(cols.packets)
        src_port = pick(cols.src_port)
        dst_port = pick(cols.dst_port)
        vec = classify(pick(cols.protocol), pick(cols.tcp_flags), src_port, dst_port, pick(cols.fragment))
        uniq, first, inv = group_by_key(keys, expect_sources)
        info = enricher.lookup(src_addr.take(pa.array(rows[first], type=pa.int64())), at_us)
        routed = np.asarray(info.routed, dtype=bool)
        routing_known = bool(routed.any())
        flag = spoofing.bogon(hi[first], lo[first]) | (routing_known & ~routed)
        packed = _pack_countries(info.country)
        raw_bytes = pick(cols.bytes)
        return cls(
            hi,
            lo,
            keys,
            vec,
            raw * rate,
            raw,
            raw_bytes * rate,
            src_port,
            dst_port,
            raw_bytes / np.maximum(raw, 1.0),
            pick(cols.table.column("ttl").to_numpy()),
            rate > 1,
            flag,
            packed,
            np.asarray(info.origin_asn, dtype=np.uint64),
            uniq,
            inv,
            first,
        )


@dataclasses.dataclass
class Shares:
    """Which attacks each of the tick's attack rows feeds: attack row p is the tick's row rows[p]; ``route``
    (row_host, host_prefix, host_group, ordinal) sends it to the attack numbers ``ordinal[t]`` (-1: none)
    of its host t = row_host[rows[p]], of the host's prefix and of its group (-1: none).  The (attack,
    row) entries are built only when asked for."""

    rows: np.ndarray
    route: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    owners: int

    @functools.cached_property
    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(owner, sel): :func:`.attack_fold.attack_entries`."""
        return attack_entries(self.rows, self.route, self.owners)


class AttackStats:
    """Running totals of one attack (or of one tick of it)."""

    def __init__(self, max_sources: int, min_sources: int, reflection_min_bytes: float = 200.0) -> None:
        self.min_sources = min_sources
        self.packets = 0.0
        self.bytes = 0.0
        self.peak_pps, self.peak_pps_at = 0.0, 0
        self.peak_bps, self.peak_bps_at = 0.0, 0
        self.vectors = np.zeros(N_VECTORS, dtype=np.float64)
        self.reflectors: dict[int, np.ndarray] = {}  # reflected vector -> its smallest source keys
        self.other_ports = PortReflections(min_sources, reflection_min_bytes)  # udp_reflection:<port>
        self.sources = SparseCounter(columns=3, tags=2, cap=max_sources)
        self.ports = SparseCounter()
        self.countries = SparseCounter()
        self.asns = SparseCounter()
        self.ttl = np.zeros(256, dtype=np.float64)
        self.sampled = False

    def add_reflectors(self, vec: np.ndarray, keys: np.ndarray) -> None:
        """Keep enough distinct sources per reflection vector to tell a reflection from one server."""
        for code in np.unique(vec).tolist():
            got = self.reflectors.get(code, np.zeros(0, np.uint64))
            self.reflectors[code] = smallest_distinct(got, keys[vec == code], self.min_sources)

    def _peak(self, pps: float, bps: float, at_us: int) -> None:
        if pps > self.peak_pps:
            self.peak_pps, self.peak_pps_at = pps, at_us
        if bps > self.peak_bps:
            self.peak_bps, self.peak_bps_at = bps, at_us

    def merge(self, other: AttackStats) -> None:
        """Add another span's totals (a later one: peaks keep the earliest time on ties)."""
        self.packets += other.packets
        self.bytes += other.bytes
        if other.peak_pps > self.peak_pps:
            self.peak_pps, self.peak_pps_at = other.peak_pps, other.peak_pps_at
        if other.peak_bps > self.peak_bps:
            self.peak_bps, self.peak_bps_at = other.peak_bps, other.peak_bps_at
        self.vectors += other.vectors
        for code, keys in other.reflectors.items():
            got = self.reflectors.get(code, np.zeros(0, np.uint64))
            self.reflectors[code] = smallest_distinct(got, keys, self.min_sources)
        self.other_ports.merge(other.other_ports)
        self.sources.merge(other.sources)
        for mine, theirs in ((self.ports, other.ports), (self.countries, other.countries), (self.asns, other.asns)):
            mine.merge(theirs)
        self.ttl += other.ttl
        self.sampled = self.sampled or other.sampled

    # ------------------------------------------------------------ record
    def final_vectors(self) -> tuple[np.ndarray, dict[int, float]]:
        """Packets per vector (reflection vectors with too few sources moved to their direct fallback),
        and the udp_flood packets that are udp_reflection:<port> instead, by port."""
        out = self.vectors.copy()
        for code in np.flatnonzero(REFLECTED & (out > 0)).tolist():
            if len(self.reflectors.get(code, ())) < self.min_sources:
                out[FALLBACK[code]] += out[code]
                out[code] = 0.0
        other = self.other_ports.reflected()
        out[UDP_FLOOD] = max(out[UDP_FLOOD] - sum(other.values()), 0.0)
        return out, other

    def unique_sources(self) -> int:
        """Exact while under the cap, HyperLogLog after."""
        return self.sources.distinct()

    def fields(self) -> dict[str, Any]:
        """The record fields that come from traffic (everything but identity, target and times)."""
        vec, other = self.final_vectors()
        total = self.packets if self.packets > 0 else 1.0
        reflected = (float(vec[REFLECTED].sum()) + sum(other.values())) / total
        src = self.sources
        n = len(src)
        single = int(np.count_nonzero(src.sums[:, SRC_RAW] <= 1)) if src.exact and not self.sampled else None
        spoof = spoofing.estimate(n, int(np.count_nonzero(src.sums[:, SRC_FLAG] > 0)), single, self.ttl, reflected)
        top = src.top(TOP, SRC_PK)
        top_sources = [
            {"address": _address(int(src.tags[i, 0]), int(src.tags[i, 1])), "share": float(src.sums[i, SRC_PK]) / total}
            for i in top.tolist()
        ]
        return {
            "peak_bps": self.peak_bps,
            "peak_bps_at": self.peak_bps_at,
            "peak_pps": self.peak_pps,
            "peak_pps_at": self.peak_pps_at,
            "total_bytes": self.bytes,
            "total_packets": self.packets,
            "vectors": vector_shares(vec, other),
            "unique_sources": self.unique_sources(),
            "source_countries": [
                {"country": _country(int(k)), "share": s / total} for k, s in _top_known(self.countries)
            ],
            "source_asns": [{"asn": int(k), "share": s / total} for k, s in _top_known(self.asns)],
            "top_sources": top_sources,
            "spoofing": spoof,
            "target_role": role_of(self.ports.keys, self.ports.sums[:, 0]),
        }


def fold_tick(
    rows: AttackRows,
    stats: list[AttackStats],
    share: Shares,
    start_us: int,
    pps: list[float],
    bps: list[float],
) -> None:
    """Fold one tick's rows into many attacks at once: attack row p goes to the attacks ``share`` gives it.

    Every sum is one compiled pass (:mod:`.attack_fold`) over all the attacks' rows together: with few
    attacks (the grids fit :data:`.sketch.DENSE_CELLS`) one pass row by row does them all; with many,
    per-attack scratch over the (attack, row) entries.  The per-attack cost left is handing each attack
    its slice; per-attack counters merge those slices lazily (:meth:`SparseCounter.add_folded`).
    """
    n = len(stats)
    flag = rows.src_flag.astype(np.float64)  # per source; a row's is flag[src_code[row]]
    country_keys, source_country = dense_codes(rows.src_country)  # over the tick's distinct sources
    asn_keys, source_asn = dense_codes(rows.src_asn)
    n_src = len(rows.src_uniq)
    sizes = (n_src, len(country_keys), len(asn_keys))
    # grids of 3 + 1 floats (and seen) a source, 1 a country, AS and port (every port: no pass numbering them)
    dense = n * (n_src * 4 + (sizes[1] + sizes[2] + (1 << 16)) * 2) <= DENSE_CELLS
    needs_entries = bool(REFLECTED[rows.vector].any() or (rows.vector == UDP_FLOOD).any())
    none = np.zeros(0, dtype=np.int64)  # a SYN flood has neither: no entries built for them
    owner, sel = share.entries if needs_entries or not dense else (none, none)
    if dense:  # the usual case: one pass
        port_keys = ALL_PORTS
        totals, src_fold, country_fold, asn_fold, port_fold = fold_rows(
            share.rows, share.route, n, (rows.src_code, source_country, source_asn, rows.dst_port), sizes,
            DIRECT_PORTED, rows.packets, rows.raw_packets, flag, rows.bytes, rows.vector, N_VECTORS, rows.ttl,
            rows.sampled,
        )  # fmt: skip
    else:
        port_keys, port_code = port_codes(rows.dst_port, DIRECT_PORTED[rows.vector])  # the rows' ports
        totals = owner_totals(owner, sel, rows.packets, rows.bytes, rows.vector, rows.ttl, rows.sampled, n, N_VECTORS)
        src_fold = _fold(owner, sel, n, rows.src_code, n_src, rows.packets, rows.raw_packets, flag[rows.src_code])
        country_fold = _fold(owner, sel, n, source_country[rows.src_code], sizes[1], rows.packets)
        asn_fold = _fold(owner, sel, n, source_asn[rows.src_code], sizes[2], rows.packets)
        port_fold = _fold(owner, sel, n, port_code, len(port_keys), rows.packets)
    packets, nbytes, vectors, ttl, sampled = split_totals(totals)
    packets, nbytes, sampled = packets.tolist(), nbytes.tolist(), sampled.tolist()
    # each counter's keys (and the sources' tags) gathered once for all the attacks, sliced per attack below:
    # hosts=256, fold_tick's own time under cProfile 1.0 -> 0.69 s
    src_b, src_c, src_s = src_fold
    src_keys = rows.src_uniq[src_c]
    src_tags = np.stack([rows.src_hi[rows.src_first], rows.src_lo[rows.src_first]], axis=1)[src_c]
    chunks = [(src_b.tolist(), src_keys, src_s, src_tags)]
    for keys, (b, c, s) in ((port_keys, port_fold), (country_keys, country_fold), (asn_keys, asn_fold)):
        chunks.append((b.tolist(), keys[c], s, None))
    reflected = np.flatnonzero(REFLECTED[rows.vector[sel]]) if needs_entries else none
    reflected_b = np.searchsorted(owner[reflected], np.arange(n + 1)).tolist()
    udp = np.flatnonzero(rows.vector[sel] == UDP_FLOOD) if needs_entries else none
    if n and len(udp):
        udp = udp[candidates(rows.src_port[sel[udp]], rows.size[sel[udp]], stats[0].other_ports.min_bytes)]
    udp_b = np.searchsorted(owner[udp], np.arange(n + 1)).tolist()
    udp_port = rows.src_port[sel[udp]].astype(np.uint64)
    udp_src = rows.src_key[sel[udp]]
    udp_keys, udp_code = dense_codes(udp_port)
    udp_fold_b, udp_c, udp_s = fold_by_owner(owner[udp], n, udp_code, len(udp_keys), [rows.packets[sel[udp]]])
    udp_fold_b, udp_fold_keys = udp_fold_b.tolist(), udp_keys[udp_c]
    for a, st in enumerate(stats):
        st.packets += packets[a]
        st.bytes += nbytes[a]
        st._peak(pps[a], bps[a], start_us)
        st.vectors += vectors[a]
        st.ttl += ttl[a]
        st.sampled = st.sampled or sampled[a]
        for counter, (b, keys, s, tags) in zip((st.sources, st.ports, st.countries, st.asns), chunks, strict=True):
            lo, hi = b[a], b[a + 1]
            if hi > lo:
                counter.add_folded(keys[lo:hi], s[lo:hi], None if tags is None else tags[lo:hi])
        if reflected_b[a + 1] > reflected_b[a]:
            mine = reflected[reflected_b[a] : reflected_b[a + 1]]
            st.add_reflectors(rows.vector[sel[mine]], rows.src_key[sel[mine]])
        if udp_b[a + 1] > udp_b[a]:
            lo, hi = udp_fold_b[a], udp_fold_b[a + 1]
            part = slice(udp_b[a], udp_b[a + 1])
            st.other_ports.add_candidates(udp_fold_keys[lo:hi], udp_s[lo:hi], udp_port[part], udp_src[part])


def _fold(
    owner: np.ndarray, sel: np.ndarray, owners: int, row_code: np.ndarray, n_codes: int, *weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-level weights summed by (attack, row code) over the entries (row sel[i] of attack owner[i]),
    rows with a negative code left out (:func:`.attack_fold.fold_codes`).  The kernel indexes the weights'
    tuple at run time, which numba types only when every weight is the same array type: a read-only or
    strided column (a zero-copy Arrow one) is copied to a writable contiguous float64 first."""
    weights = tuple(np.require(w, np.float64, ["C", "W"]) for w in weights)
    return fold_codes(owner, sel, row_code, n_codes, owners, weights)


def _pack_countries(country: np.ndarray) -> np.ndarray:
    """ISO codes as uint64 (two ASCII bytes, big-endian), 0 for unknown or malformed.

    Dictionary-encoded first: a tick's hundred thousand sources come from a few
    hundred countries, so only the distinct codes are packed (in Python).
    """
    try:
        encoded = pa.array(country, type=pa.string()).dictionary_encode()
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return np.zeros(len(country), dtype=np.uint64)
    iso = [c if len(c) == 2 and c.isascii() else "" for c in encoded.dictionary.to_pylist()]
    packed = np.array([int.from_bytes(c.encode(), "big") for c in iso], dtype=np.uint64)
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    valid = ~np.asarray(encoded.indices.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out = np.zeros(len(country), dtype=np.uint64)
    out[valid] = packed[indices[valid].astype(np.int64)]
    return out


def _top_known(counter: SparseCounter) -> list[tuple[int, float]]:
    idx = [i for i in counter.top(TOP + 1).tolist() if counter.keys[i] != 0][:TOP]
    return [(int(counter.keys[i]), float(counter.sums[i, 0])) for i in idx]


def _country(packed: int) -> str:
    return packed.to_bytes(2, "big").decode("ascii", "replace")


def _address(hi: int, lo: int) -> str:
    return addr.format_one(hi.to_bytes(8, "big") + lo.to_bytes(8, "big")) or ""

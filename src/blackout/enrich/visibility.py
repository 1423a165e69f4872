"""What the routing state says about prefixes: who sees them, from which origin, how many /24s are up.

IODA's BGP signal, computed over the whole state with array operations: a peer
is a *full feed* above 400k IPv4 (or 10k IPv6) prefixes (at its largest since
its session came up); a prefix is *visible*
when more than half of the full-feed peers of its family see it; an AS's (or a
country's) signal is the number of distinct /24s its visible prefixes cover,
each /24 counted once however many prefixes cover it.

Everything works on the routing state's sorted keys, where the routes of one
prefix are adjacent and, inside, the routes of one peer too: groups are runs,
counted with ``bincount``; /24 unions are interval merges with a running max.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np
import pyarrow as pa

from ..addr import from_matrix

_MAPPED = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)
ASN_SHIFT = np.uint64(25)  # /24 numbers are < 2**24, so (asn << 25 | /24) keeps ASes apart


class V4Ranges(Protocol):
    """Anything that places IPv4 ranges in countries (the RIR country table)."""

    codes: list[str]

    def v4_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(first address, end address exclusive, code index) of each range, as uint64/uint64/int."""
        ...


@dataclasses.dataclass
class PrefixView:
    """One row per prefix of the state, in key order."""

    prefix: np.ndarray  # (P, 16) uint8, host bits clear
    bits: np.ndarray  # (P,) prefix length in the 128-bit space (IPv4 + 96)
    v4: np.ndarray  # bool
    origin: np.ndarray  # uint32, the origin most full-feed peers see (none: most peers; ties: lowest AS)
    peers: np.ndarray  # uint32, distinct peers with a route
    full_peers: np.ndarray  # uint32, distinct full-feed peers with a route
    visible: np.ndarray  # bool, seen by more than half of the family's full-feed peers
    full_feed: np.ndarray  # (n_peers,) bool, which peers are full feeds (either family)
    full_feed_v4: int  # how many IPv4 full-feed peers
    full_feed_v6: int

    @property
    def prefix_len(self) -> np.ndarray:
        """Prefix lengths as the model stores them (IPv4 0..32)."""
        return (self.bits - 96 * self.v4).astype(np.uint8)

    def table(self) -> pa.Table:
        """prefix → origin AS and peer counts, as Arrow."""
        return pa.table(
            {
                "prefix": from_matrix(self.prefix),
                "prefix_len": pa.array(self.prefix_len),
                "origin_asn": pa.array(self.origin, pa.uint32()),
                "peers": pa.array(self.peers, pa.uint32()),
                "full_feed_peers": pa.array(self.full_peers, pa.uint32()),
                "visible": pa.array(self.visible),
            }
        )


def prefix_view(
    km: np.ndarray, peer: np.ndarray, origin: np.ndarray, peak: np.ndarray, full_v4: int, full_v6: int
) -> PrefixView:
    """Per-prefix view of sorted route keys (see routing.KEY_BYTES for the key layout).

    `peak` is each peer's largest (IPv4, IPv6) table since its session came up, shape (n_peers, 2):
    full-feed status comes from it, so a full feed that withdraws everything still counts (its
    routes are gone, not its vantage point)."""
    n_peers = len(peak)
    n = len(km)
    newp = np.ones(n, dtype=bool)
    if n > 1:
        newp[1:] = np.any(km[1:, :17] != km[:-1, :17], axis=1)
    gid = np.cumsum(newp) - 1
    first = np.flatnonzero(newp)
    n_pfx = len(first)
    v4 = np.all(km[first, :12] == _MAPPED, axis=1)
    newpp = newp.copy()  # first route of each (prefix, peer): add-path routes count once
    newpp[1:] |= peer[1:] != peer[:-1]
    rows = np.flatnonzero(newpp)
    rp, rg = peer[rows].astype(np.int64), gid[rows]
    rv4 = v4[rg]
    c4 = np.bincount(rp[rv4], minlength=n_peers)
    c6 = np.bincount(rp[~rv4], minlength=n_peers)
    full4, full6 = np.maximum(c4, peak[:, 0]) > full_v4, np.maximum(c6, peak[:, 1]) > full_v6
    is_full = np.where(rv4, full4[rp], full6[rp])
    peers = np.bincount(rg, minlength=n_pfx).astype(np.uint32)
    full_peers = np.bincount(rg[is_full], minlength=n_pfx).astype(np.uint32)
    denom = np.where(v4, int(full4.sum()), int(full6.sum()))
    # the origin the full feeds see: a partial feed with another origin must not flip it
    row_origin = origin[rows]
    best = _mode_origin(rg, row_origin, n_pfx)
    if is_full.any():
        best = np.where(full_peers > 0, _mode_origin(rg[is_full], row_origin[is_full], n_pfx), best)
    return PrefixView(
        prefix=np.ascontiguousarray(km[first, :16]),
        bits=km[first, 16].astype(np.int64),
        v4=v4,
        origin=best,
        peers=peers,
        full_peers=full_peers,
        visible=full_peers.astype(np.int64) * 2 > denom,
        full_feed=full4 | full6,
        full_feed_v4=int(full4.sum()),
        full_feed_v6=int(full6.sum()),
    )


def _mode_origin(group: np.ndarray, origin: np.ndarray, n_groups: int) -> np.ndarray:
    """The most frequent origin per group (rows sorted by group), ties to the lowest AS number.

    Most prefixes have one origin at every peer: those are read off directly, and only the
    rows of prefixes with several origins are sorted."""
    out = np.zeros(n_groups, dtype=np.uint32)
    if len(group) == 0:
        return out
    starts = np.flatnonzero(np.diff(group, prepend=-1))
    lo, hi = np.minimum.reduceat(origin, starts), np.maximum.reduceat(origin, starts)
    out[group[starts]] = lo
    mixed = np.flatnonzero((lo != hi)[np.cumsum(np.diff(group, prepend=-1) != 0) - 1])
    if len(mixed) == 0:
        return out
    g, o = group[mixed], origin[mixed]
    order = np.lexsort((o, g))
    g, o = g[order], o[order]
    start = np.ones(len(g), dtype=bool)
    start[1:] = (g[1:] != g[:-1]) | (o[1:] != o[:-1])
    runs = np.flatnonzero(start)
    counts = np.diff(np.append(runs, len(g)))
    rg, ro = g[runs], o[runs]
    best = np.lexsort((ro, -counts, rg))  # per group: highest count, then lowest AS
    firsts = np.ones(len(best), dtype=bool)
    firsts[1:] = rg[best][1:] != rg[best][:-1]
    out[rg[best][firsts]] = ro[best][firsts]
    return out


def slash24_intervals(view: PrefixView, min_len: int, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin AS, first /24, end /24 exclusive) of each visible IPv4 prefix in [min_len, max_len]."""
    plen = view.prefix_len.astype(np.int64)
    sel = view.v4 & view.visible & (plen >= min_len) & (plen <= min(max_len, 24))
    addr = np.ascontiguousarray(view.prefix[sel, 12:16]).view(">u4").ravel().astype(np.uint64)
    first = addr >> np.uint64(8)
    return view.origin[sel], first, first + (np.uint64(1) << (24 - plen[sel]).astype(np.uint64))


def in_ranges(
    view: PrefixView, lo: np.ndarray, hi: np.ndarray, min_len: int, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """For IPv4 ranges [lo, hi) (uint64 addresses, prefixes): the visible /24s inside each, and the most
    full-feed peers that see one route inside or covering it, as floats.

    All ranges at once: /24s by the covered length of the merged visible intervals below each end;
    peers by a range maximum over the routes starting inside each range, and a lookup of the routes
    covering it (at most one per length).  A pass over the table per range cost ~17 ms a range."""
    _, first, end = slash24_intervals(view, min_len, max_len)
    s, e = merge(first, end)
    a = lo >> np.uint64(8)
    b = np.maximum(hi >> np.uint64(8), a + np.uint64(1))
    counts = (covered_below(s, e, b) - covered_below(s, e, a)).astype(np.float64)
    plen = view.prefix_len.astype(np.int64)
    sel = view.v4 & (plen >= min_len)
    start = np.ascontiguousarray(view.prefix[sel, 12:16]).view(">u4").ravel().astype(np.uint64)
    plen, peers = plen[sel], view.full_peers[sel].astype(np.int64)
    order = np.argsort(start, kind="stable")
    by_start, ranked = start[order], np.append(peers[order], 0)
    i, j = np.searchsorted(by_start, lo), np.searchsorted(by_start, hi)
    bounds = np.stack([i, j], axis=1).ravel()
    most = np.where(j > i, np.maximum.reduceat(ranked, bounds)[::2] if len(bounds) else 0, 0)
    keys = (start << np.uint64(6)) | plen.astype(np.uint64)
    korder = np.argsort(keys)
    sorted_keys = keys[korder]
    for length in range(min_len, 33) if len(keys) else ():  # the route of each length covering the range
        mask = np.uint64((0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF)
        want = ((lo & mask) << np.uint64(6)) | np.uint64(length)
        at = np.minimum(np.searchsorted(sorted_keys, want), len(keys) - 1)
        hit = sorted_keys[at] == want
        most = np.where(hit, np.maximum(most, peers[korder[at]]), most)
    return counts, most.astype(np.float64)


def merge(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of half-open intervals as sorted disjoint (start, end) arrays."""
    if len(start) == 0:
        return start, end
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    heads = np.flatnonzero(new)
    tails = np.append(heads[1:], len(s)) - 1
    return s[heads], reach[tails]


def slash24_by_asn(view: PrefixView, min_len: int = 8, max_len: int = 24) -> pa.Table:
    """Visible /24s per origin AS: table (asn uint32, slash24 uint64), ASes ascending."""
    asn, first, end = slash24_intervals(view, min_len, max_len)
    s, e = merge((asn.astype(np.uint64) << ASN_SHIFT) | first, (asn.astype(np.uint64) << ASN_SHIFT) + end)
    asns = s >> ASN_SHIFT  # ascending: merge sorts by start, and the AS is the start's high bits
    heads = np.flatnonzero(np.diff(asns, prepend=np.uint64(2**63)) != 0) if len(asns) else np.zeros(0, np.int64)
    owners = asns[heads]
    counts = np.add.reduceat((e - s).astype(np.float64), heads) if len(heads) else np.zeros(0)
    return pa.table({"asn": pa.array(owners.astype(np.uint32)), "slash24": pa.array(counts.astype(np.uint64))})


def slash24_by_country(view: PrefixView, countries: V4Ranges, min_len: int = 8, max_len: int = 24) -> pa.Table:
    """Visible /24s per country (a /24 belongs to the range holding its first address):
    table (country, slash24), countries ascending; /24s of no known country are left out."""
    _, first, end = slash24_intervals(view, min_len, max_len)
    s, e = merge(first, end)
    lo, hi, code = countries.v4_ranges()
    a, b = (lo + np.uint64(255)) >> np.uint64(8), (hi + np.uint64(255)) >> np.uint64(8)
    per_range = covered_below(s, e, b) - covered_below(s, e, a)
    counts = np.bincount(code, weights=per_range.astype(np.float64), minlength=len(countries.codes))
    keep = np.flatnonzero(counts > 0)
    names = np.array(countries.codes, dtype=object)[keep]
    order = np.argsort(names)
    return pa.table(
        {"country": pa.array(names[order].tolist(), pa.string()), "slash24": pa.array(counts[keep][order], pa.uint64())}
    )


def covered_below(s: np.ndarray, e: np.ndarray, x: np.ndarray) -> np.ndarray:
    """How many units of the disjoint sorted intervals (s, e) lie below each x."""
    if len(s) == 0:
        return np.zeros(len(x), dtype=np.int64)
    cum = np.concatenate([[0], np.cumsum((e - s).astype(np.int64))])
    i = np.searchsorted(s, x, side="right") - 1
    j = np.maximum(i, 0)
    inside = np.minimum(x, e[j]).astype(np.int64) - s[j].astype(np.int64)
    return np.where(i < 0, 0, cum[j] + np.maximum(inside, 0))

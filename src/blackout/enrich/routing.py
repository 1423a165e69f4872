"""The routing state: the current route of every (collector, peer, prefix, path id), from route elements.

Why a columnar table and not a dict of routes: a full RIB is 500k-1M routes per
peer and a replay applies a RIB then thousands of ticks of updates.  The state is
a handful of numpy arrays sorted by one fixed-width byte key
(prefix | prefix length | peer | path id, big-endian, so byte order is prefix
order).  A batch is applied whole: its keys are sorted (stable), the last element
per key wins, and the winners are matched against the state with one
``searchsorted``; changed routes are overwritten in place, new ones inserted,
withdrawn ones deleted — O(n log n + N) per batch with no Python per route.  The
jinx RIB (503,590 entries) applies in about 0.3 s.

A STATE element taking a peer out of Established (new_state != 6) drops all its
routes at that point of the batch: the batch is cut at those elements, which are
rare, and each part applied in order.

Derived views (full-feed peers, per-prefix visibility, visible /24 counts, the
prefix table handed to longest-prefix match) live in :mod:`.visibility` and are
recomputed lazily, once per change of the state (``version``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..addr import as_matrix, from_matrix
from ..config import register_section
from ..model import ElemType
from .visibility import PrefixView, V4Ranges, prefix_view, slash24_by_asn, slash24_by_country

KEY_BYTES = 25  # prefix 16 | length (0..128, IPv4 counted +96) 1 | peer id 4 | path id 4
KEY_DTYPE = f"S{KEY_BYTES}"
ESTABLISHED = 6  # RFC 6396 4.4.1 state code
_ARCHIVE_PART = re.compile(r"(?:^|\.)(?:ribs?|bview|updates?)\.\d")
_MAPPED = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)
# PREFIX_MASKS[L] is the 16-byte netmask of a 128-bit prefix length L.
PREFIX_MASKS = ((0xFF00 >> np.clip(np.arange(129)[:, None] - 8 * np.arange(16), 0, 8)) & 0xFF).astype(np.uint8)


@dataclasses.dataclass
class RoutingConfig:
    """[routing] section: what counts as a full feed, and which prefixes count in /24 totals."""

    full_feed_v4: int = 400_000  # a peer is a full feed above this many IPv4 prefixes (IODA)
    full_feed_v6: int = 10_000  # ... or above this many IPv6 prefixes (IODA)
    slash24_min_len: int = 8  # shorter IPv4 prefixes (default routes) are left out of /24 counts
    slash24_max_len: int = 24  # longer prefixes do not make a /24 visible


register_section("routing", RoutingConfig)


@dataclasses.dataclass(frozen=True)
class Peer:
    """A BGP session seen by a collector."""

    collector: str
    addr: bytes  # 16 stored bytes
    asn: int


class RoutingState:
    """Current routes per (collector, peer, prefix[, path id]); apply() a route batch per tick."""

    def __init__(self, config: RoutingConfig | None = None) -> None:
        self.config = config or RoutingConfig()
        self.keys = np.zeros(0, dtype=KEY_DTYPE)  # sorted
        self.origin = np.zeros(0, dtype=np.uint32)  # 0 for an AS_SET origin
        self.path = np.zeros(0, dtype=np.uint32)  # index into self.paths
        self.peer = np.zeros(0, dtype=np.uint32)  # index into self.peers
        self.updated_us = np.zeros(0, dtype=np.int64)
        self.peers: list[Peer] = []
        self._peer_ids: dict[tuple[str, bytes], int] = {}
        self.paths: list[str] = []
        self._path_ids: dict[str, int] = {}
        self.version = 0  # bumped by every change (an AS path too)
        # bumped only when what is reachable changes: a route appears or goes, or a prefix's origin AS
        # changes.  Views (visibility, origin, LPM) are cached per reach_version, so the steady churn of
        # re-announced routes (most of a collector's updates) does not rebuild them.
        self.reach_version = 0
        self.stats: Counter[str] = Counter()  # elements applied, withdrawals of unknown routes, skipped rows
        self._cache: dict[str, Any] = {}
        # per peer, (IPv4, IPv6) distinct prefixes now and the most since its session came up: a full
        # feed that withdraws everything stays a full feed (its prefixes are then dark, not unwatched)
        self.table_now = np.zeros((0, 2), dtype=np.int64)
        self.table_peak = np.zeros((0, 2), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    # ------------------------------------------------------------------ apply
    def apply(self, routes: pa.Table | pa.RecordBatch) -> None:
        """Apply route elements (ROUTE_SCHEMA rows, in time order): RIB entries, announcements,
        withdrawals, and peer state changes."""
        if routes.num_rows == 0:
            return
        table = routes if isinstance(routes, pa.Table) else pa.Table.from_batches([routes])
        table = table.combine_chunks()
        etype = _np(table.column("elem_type"), np.uint8, 255)
        new_state = _np(table.column("new_state"), np.uint8, ESTABLISHED)
        peer_ids = self._intern_peers(table)
        downs = np.flatnonzero((etype == ElemType.STATE) & (new_state != ESTABLISHED))
        start = 0
        for d in downs.tolist():
            self._apply_routes(table, etype, peer_ids, start, d)
            self._drop_peer(int(peer_ids[d]))
            start = d + 1
        self._apply_routes(table, etype, peer_ids, start, table.num_rows)

    def _intern_peers(self, table: pa.Table) -> np.ndarray:
        """Global peer id of every row (collector and peer address, dictionary-encoded first)."""
        coll = pc.dictionary_encode(_arr(table, "collector"))
        addr = pc.dictionary_encode(_arr(table, "peer_addr"))
        n_addr = max(len(addr.dictionary), 1)
        combo = _np(coll.indices, np.int64, 0) * n_addr + _np(addr.indices, np.int64, 0)
        uniq, first, inverse = np.unique(combo, return_index=True, return_inverse=True)
        names = [collector_of(c) for c in coll.dictionary.to_pylist()]
        addrs = addr.dictionary.to_pylist()
        asns = _arr(table, "peer_asn").take(pa.array(first)).to_pylist()
        ids = np.empty(len(uniq), dtype=np.uint32)
        for j, c in enumerate(uniq.tolist()):
            key = (names[c // n_addr], addrs[c % n_addr])
            pid = self._peer_ids.get(key)
            if pid is None:
                pid = self._peer_ids[key] = len(self.peers)
                self.peers.append(Peer(key[0], key[1], int(asns[j])))
            ids[j] = pid
        if len(self.table_now) < len(self.peers):
            grow = np.zeros((len(self.peers) - len(self.table_now), 2), dtype=np.int64)
            self.table_now, self.table_peak = np.vstack([self.table_now, grow]), np.vstack([self.table_peak, grow])
        return ids[inverse.ravel()]

    def _apply_routes(self, table: pa.Table, etype: np.ndarray, peer_ids: np.ndarray, lo: int, hi: int) -> None:
        """Apply rows [lo, hi) that carry routes (the STATE rows among them are skipped)."""
        if hi <= lo:
            return
        unknown = int((etype[lo:hi] > ElemType.STATE).sum())
        if unknown:
            self.stats["skipped_unknown_type"] += unknown
        sel = lo + np.flatnonzero(etype[lo:hi] <= ElemType.WITHDRAW)
        if len(sel) == 0:
            return
        part = table if len(sel) == table.num_rows else table.take(pa.array(sel)).combine_chunks()
        prefix = _arr(part, "prefix")
        lengths = _np(_arr(part, "prefix_len"), np.int64, 255)
        matrix = as_matrix(prefix)
        v4 = np.all(matrix[:, :12] == _MAPPED, axis=1)
        bad = pc.is_null(prefix).to_numpy(zero_copy_only=False) | (lengths > np.where(v4, 32, 128))
        if bad.any():
            self.stats["skipped_bad_prefix"] += int(bad.sum())
        keys = make_keys(matrix, lengths + 96 * v4, peer_ids[sel], _np(_arr(part, "path_id"), np.uint32, 0))
        good = np.flatnonzero(~bad)
        self._merge(
            keys[good],
            etype[sel][good],
            _np(_arr(part, "origin_asn"), np.uint32, 0)[good],
            pc.fill_null(_arr(part, "as_path"), "").take(pa.array(good)),
            _arr(part, "ts").cast(pa.int64()).to_numpy(zero_copy_only=False)[good],
        )

    def _merge(self, keys: np.ndarray, kind: np.ndarray, origin: np.ndarray, as_path: pa.Array, ts: np.ndarray) -> None:
        """Last element per key wins; merge the winners into the sorted state."""
        n = len(keys)
        if n == 0:
            return
        self.stats["elements"] += n
        order = np.argsort(keys, kind="stable")
        ks = keys[order]
        last = np.ones(n, dtype=bool)
        last[:-1] = ks[1:] != ks[:-1]
        win = order[last]  # stable sort: the last of each run is the latest element
        ukeys = ks[last]
        pos = np.searchsorted(self.keys, ukeys)
        found = np.zeros(len(ukeys), dtype=bool)
        inside = pos < len(self.keys)
        found[inside] = self.keys[pos[inside]] == ukeys[inside]
        ann = kind[win] != ElemType.WITHDRAW
        self.stats["withdraw_unknown"] += int((~ann & ~found).sum())
        path_ids = self._intern_paths(as_path.take(pa.array(win[ann])))
        src, apos, afound = win[ann], pos[ann], found[ann]
        upd = apos[afound]  # announced routes already there: overwrite in place
        self.reach_version += bool(np.any(self.origin[upd] != origin[src[afound]]))
        self.origin[upd] = origin[src[afound]]
        self.path[upd] = path_ids[afound]
        self.updated_us[upd] = ts[src[afound]]
        self.version += bool(len(upd))
        dele = pos[~ann & found]
        at, new = apos[~afound], src[~afound]
        if len(at) == 0 and len(dele) == 0:
            return
        self.version += 1
        self.reach_version += 1
        new_keys = ukeys[ann][~afound]
        gone_keys = ukeys[~ann & found]
        self.keys = np.insert(self.keys, at, new_keys)
        self.origin = np.insert(self.origin, at, origin[new])
        self.path = np.insert(self.path, at, path_ids[~afound])
        self.peer = np.insert(self.peer, at, key_peers(new_keys))
        self.updated_us = np.insert(self.updated_us, at, ts[new])
        if len(dele):
            keep = np.ones(len(self.keys), dtype=bool)
            keep[dele + np.searchsorted(at, dele, side="right")] = False  # at is sorted: ukeys were
            self._keep(keep)
        self._count_tables(new_keys, gone_keys)

    def _count_tables(self, added: np.ndarray, removed: np.ndarray) -> None:
        """Update each peer's prefix counts (and peaks) from the routes just added and removed: a
        (prefix, peer) counts once however many add-path routes it has, so only the groups the keys
        touch are looked up in the state, by range."""
        touched = np.concatenate([added, removed]).view(np.uint8).reshape(-1, KEY_BYTES).copy()
        touched[:, 21:] = 0
        sign = np.repeat(np.array([1, -1], dtype=np.int64), [len(added), len(removed)])
        if len(added) and len(removed):  # each alone is sorted already (the batch's keys were)
            order = np.argsort(touched.view(KEY_DTYPE).ravel(), kind="stable")
            touched, sign = touched[order], sign[order]
        heads = np.ones(len(touched), dtype=bool)
        heads[1:] = np.any(touched[1:, :21] != touched[:-1, :21], axis=1)
        starts = np.flatnonzero(heads)
        delta = np.add.reduceat(sign, starts)
        groups = np.ascontiguousarray(touched[starts]).view(KEY_DTYPE).ravel()
        if len(removed) == 0 and len(added) == len(self.keys):  # into an empty state: every group is new
            change = np.ones(len(groups), dtype=np.int64)
        else:
            hi = groups.view(np.uint8).reshape(-1, KEY_BYTES).copy()
            hi[:, 21:] = 0xFF
            after = np.searchsorted(self.keys, hi.view(KEY_DTYPE).ravel(), side="right")
            after -= np.searchsorted(self.keys, groups, side="left")
            change = (after > 0).astype(np.int64) - (after - delta > 0)
        m = groups.view(np.uint8).reshape(-1, KEY_BYTES)
        v6 = (~np.all(m[:, :12] == _MAPPED, axis=1)).astype(np.int64)
        cell = key_peers(groups).astype(np.int64) * 2 + v6
        delta_now = np.bincount(cell, weights=change, minlength=self.table_now.size)
        self.table_now += delta_now.reshape(-1, 2).astype(np.int64)
        np.maximum(self.table_peak, self.table_now, out=self.table_peak)

    def _intern_paths(self, as_path: pa.Array) -> np.ndarray:
        """Global ids of AS paths (a Python dict over the batch's distinct paths only)."""
        if len(as_path) == 0:
            return np.zeros(0, dtype=np.uint32)
        enc = pc.dictionary_encode(as_path)
        local = np.array([self._path_id(p) for p in enc.dictionary.to_pylist()], dtype=np.uint32)
        return local[_np(enc.indices, np.int64, 0)]

    def _path_id(self, path: str) -> int:
        pid = self._path_ids.get(path)
        if pid is None:
            pid = self._path_ids[path] = len(self.paths)
            self.paths.append(path)
        return pid

    def _drop_peer(self, peer: int) -> None:
        """A session left Established: all its routes go."""
        gone = self.peer == peer
        self.stats["peer_down"] += 1
        was_counted = bool(self.table_peak[peer].any())  # its full-feed status ends with the session
        self.table_now[peer] = self.table_peak[peer] = 0
        if gone.any():
            self._keep(~gone)
        if gone.any() or was_counted:
            self.version += 1
            self.reach_version += 1

    def _keep(self, keep: np.ndarray) -> None:
        self.keys = self.keys[keep]
        self.origin = self.origin[keep]
        self.path = self.path[keep]
        self.peer = self.peer[keep]
        self.updated_us = self.updated_us[keep]
        if len(self.paths) > 2 * len(self.keys) + 65536:
            self._compact_paths()

    def _compact_paths(self) -> None:
        """Forget AS paths no route uses any more (a long run would otherwise keep every path ever seen)."""
        used, inverse = np.unique(self.path, return_inverse=True)
        self.paths = [self.paths[i] for i in used.tolist()]
        self._path_ids = {p: i for i, p in enumerate(self.paths)}
        self.path = inverse.astype(np.uint32).ravel()

    # ------------------------------------------------------------------ views
    def key_matrix(self) -> np.ndarray:
        """The sorted keys as an (N, 25) byte matrix (a view, no copy)."""
        return self.keys.view(np.uint8).reshape(-1, KEY_BYTES)

    def routes(self) -> pa.Table:
        """Every current route (collector, peer, prefix, path id, origin, AS path): for tests and output."""
        m = self.key_matrix()
        v4 = np.all(m[:, :12] == _MAPPED, axis=1)
        peer_addr = np.frombuffer(b"".join(p.addr for p in self.peers), np.uint8).reshape(-1, 16)
        collectors = pa.array([p.collector for p in self.peers], pa.string())
        return pa.table(
            {
                "collector": collectors.take(pa.array(self.peer)),
                "peer_addr": from_matrix(peer_addr[self.peer]),
                "prefix": from_matrix(m[:, :16]),
                "prefix_len": pa.array((m[:, 16] - 96 * v4).astype(np.uint8)),
                "path_id": pa.array(np.ascontiguousarray(m[:, 21:25]).view(">u4").ravel().astype(np.uint32)),
                "origin_asn": pa.array(self.origin),
                "as_path": pa.array(self.paths, pa.string()).take(pa.array(self.path)),
            }
        )

    def view(self) -> PrefixView:
        """Per-prefix origin, peer counts and visibility (cached until what is reachable changes)."""
        cached = self._cache.get("view")
        if cached is None or cached[0] != self.reach_version:
            cfg = self.config
            v = prefix_view(
                self.key_matrix(), self.peer, self.origin, self.table_peak, cfg.full_feed_v4, cfg.full_feed_v6
            )
            cached = self._cache["view"] = (self.reach_version, v)
        return cached[1]

    def snapshot(self) -> pa.Table:
        """prefix → (origin AS, peer counts, visible) of the current state, as Arrow."""
        return self.view().table()

    def full_feed_peers(self) -> list[Peer]:
        """Peers above the full-feed thresholds ([routing] full_feed_v4 / full_feed_v6) at some time
        since their session came up."""
        full = self.view().full_feed
        return [p for p, f in zip(self.peers, full.tolist(), strict=True) if f]

    def visible_slash24_by_asn(self) -> pa.Table:
        """IODA's BGP signal per origin AS: visible /24s, table (asn, slash24)."""
        cfg = self.config
        return slash24_by_asn(self.view(), cfg.slash24_min_len, cfg.slash24_max_len)

    def visible_slash24_by_country(self, countries: V4Ranges) -> pa.Table:
        """IODA's BGP signal per country (by address, from the country table): table (country, slash24)."""
        cfg = self.config
        return slash24_by_country(self.view(), countries, cfg.slash24_min_len, cfg.slash24_max_len)

    def nbytes(self) -> int:
        """Memory held by the route arrays and the AS path table (bytes, approximate)."""
        arrays = self.keys.nbytes + self.origin.nbytes + self.path.nbytes + self.peer.nbytes + self.updated_us.nbytes
        return arrays + sum(len(p) + 49 for p in self.paths) + 100 * len(self._path_ids)


def make_keys(prefix: np.ndarray, bits: np.ndarray, peer: np.ndarray, path_id: np.ndarray) -> np.ndarray:
    """Route keys from an (n, 16) prefix matrix, 128-bit lengths, peer ids and path ids (host bits cleared)."""
    n = len(prefix)
    km = np.zeros((n, KEY_BYTES), dtype=np.uint8)
    km[:, :16] = prefix & PREFIX_MASKS[np.minimum(bits, 128)]
    km[:, 16] = np.minimum(bits, 255)
    km[:, 17:21] = np.asarray(peer, dtype=">u4").view(np.uint8).reshape(n, 4)
    km[:, 21:25] = np.asarray(path_id, dtype=">u4").view(np.uint8).reshape(n, 4)
    return km.view(KEY_DTYPE).ravel()


def collector_of(name: str) -> str:
    """The collector an archive belongs to, so a RIB and the updates after it meet the same peers:
    "routeviews.route-views.jinx.ribs.1401487200.bz2" → "routeviews.route-views.jinx",
    "ris.rrc06.updates.1401488100.gz" → "ris.rrc06"; other names (BMP routers) are kept as they are."""
    base = os.path.basename(name)
    m = _ARCHIVE_PART.search(base)
    return base[: m.start()] if m else name


def key_peers(keys: np.ndarray) -> np.ndarray:
    """The peer ids inside route keys."""
    m = keys.view(np.uint8).reshape(-1, KEY_BYTES)
    return np.ascontiguousarray(m[:, 17:21]).view(">u4").ravel().astype(np.uint32)


def _arr(table: pa.Table, name: str) -> pa.Array:
    """One column of a combined table as an Array."""
    col = table.column(name)
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def _np(col: Any, dtype: Any, fill: Any) -> np.ndarray:
    """An integer column as numpy, nulls replaced by fill (fill_null skipped when there are none:
    it costs ~0.1 ms a call, and route ticks are many and small)."""
    if col.null_count:
        col = pc.fill_null(col, fill)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=dtype)

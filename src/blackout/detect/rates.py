"""Per-target rates of one tick: pps, bps, flows/s, by protocol, sampling-corrected, over the whole flow table.

A *target* is a destination address (a host), its covering prefix (/24 for
IPv4, /64 for IPv6 by default), or a configured host group.  Targets are keyed
by (masked high word, masked low word, tag) where the tag is the prefix length
in the 128-bit (IPv4-mapped) space — 128 for a host, 120 for an IPv4 /24 — or
255 for a host group.  Grouping is a 64-bit hash, ``np.unique`` and
``bincount``; hash collisions are checked exactly and fall back to a lexsort.

Flows/s counts distinct 5-tuples per tick (a pcap gives one row per packet, so
rows are not flows).  With sampling, a 5-tuple seen in a single sampled packet
stands for ``sampling_rate`` flows (short spoofed flows are the ones sampling
hides), any other for one.  Packets and bytes are multiplied by the row's
sampling rate, as FastNetMon does.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import numpy as np
import pyarrow as pa

from .. import addr
from ..errors import ConfigError
from .sketch import address_keys, group_keys, hash3
from .vectors import ICMP, ICMP6, SYN, TCP, UDP

METRICS = (
    "pps",
    "bps",
    "flows",
    "tcp_pps",
    "tcp_bps",
    "tcp_syn_pps",
    "tcp_syn_bps",
    "udp_pps",
    "udp_bps",
    "icmp_pps",
    "icmp_bps",
    "frag_pps",
    "frag_bps",
)
M = {name: i for i, name in enumerate(METRICS)}
HOST, GROUP = 128, 255
_HIGH = np.uint64(1 << 63)


def masks(length: int) -> tuple[np.uint64, np.uint64]:
    """High and low word masks of a prefix length in the 128-bit space."""
    hi = (1 << 64) - (1 << (64 - min(length, 64))) if length > 0 else 0
    lo = (1 << 64) - (1 << (128 - length)) if length > 64 else 0
    return np.uint64(hi & 0xFFFFFFFFFFFFFFFF), np.uint64(lo & 0xFFFFFFFFFFFFFFFF)


def parse_network(text: str) -> tuple[int, int, int]:
    """ "10.10.10.0/24" → (high word, low word, length in the 128-bit space); IPv4 is mapped."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not a network (write it as 10.10.10.0/24 or 2001:db8::/32)") from exc
    raw = addr.parse(str(net.network_address))
    length = net.prefixlen + (96 if net.version == 4 else 0)
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big"), length


class PrefixMatcher:
    """Longest-prefix match of address words against a few networks, one pass per distinct length."""

    def __init__(self, networks: list[tuple[str, int]]) -> None:
        by_len: dict[int, list[tuple[int, int, int]]] = {}
        for text, value in networks:
            hi, lo, length = parse_network(text)
            mhi, mlo = masks(length)
            by_len.setdefault(length, []).append((hi & int(mhi), lo & int(mlo), value))
        self.levels: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for length in sorted(by_len):  # shortest first: longer matches overwrite
            entries = by_len[length]
            hi_arr = np.array([e[0] for e in entries], dtype=np.uint64)
            lo_arr = np.array([e[1] for e in entries], dtype=np.uint64)
            keys = hash3(hi_arr, lo_arr, length)
            order = np.argsort(keys)
            values = np.array([e[2] for e in entries], dtype=np.int64)
            self.levels.append((length, keys[order], hi_arr[order], lo_arr[order], values[order]))

    def __bool__(self) -> bool:
        return bool(self.levels)

    def match(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """The value of the longest matching network for each address, -1 where none matches."""
        out = np.full(len(hi), -1, dtype=np.int64)
        for length, keys, net_hi, net_lo, values in self.levels:
            mhi, mlo = masks(length)
            h, low = hi & mhi, lo & mlo
            pos = np.minimum(np.searchsorted(keys, hash3(h, low, length)), len(keys) - 1)
            hit = (net_hi[pos] == h) & (net_lo[pos] == low)
            out[hit] = values[pos[hit]]
        return out


def group_rows(
    hi: np.ndarray, lo: np.ndarray, tag: np.ndarray, keys: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, first index, inverse) of the distinct (hi, lo, tag) triples; exact despite hashing.

    Keys are hashes with the top bit set unless given (hosts give address_keys,
    exact for IPv4 and never with the top bit), so host and prefix keys never meet.
    """
    if keys is None:
        keys = hash3(hi, lo, tag) | _HIGH
    uniq, first, inv = group_keys(keys)
    rep = first[inv]
    if np.array_equal(hi[rep], hi) and np.array_equal(lo[rep], lo) and np.array_equal(tag[rep], tag):
        return uniq, first, inv
    order = np.lexsort((tag, lo, hi))  # a 64-bit collision: group exactly instead
    s_hi, s_lo, s_tag = hi[order], lo[order], tag[order]
    start = np.ones(len(order), dtype=bool)
    start[1:] = (s_hi[1:] != s_hi[:-1]) | (s_lo[1:] != s_lo[:-1]) | (s_tag[1:] != s_tag[:-1])
    ids = np.cumsum(start) - 1
    inv = np.empty(len(order), dtype=np.int64)
    inv[order] = ids
    first = order[start]
    return keys[first], first, inv


@dataclasses.dataclass
class TickRates:
    """Targets of one tick — hosts first, then prefixes, then host groups — and their rates.

    ``row_host[r]`` is the host target of flow row r; ``host_prefix[h]`` and
    ``host_group[h]`` (-1 for none) the prefix and group targets of host h.
    """

    keys: np.ndarray  # uint64 key per target
    hi: np.ndarray  # masked address words per target
    lo: np.ndarray
    tag: np.ndarray  # uint8: HOST (128), prefix length, or GROUP (255)
    group: np.ndarray  # int64 host group of the target (-1 none); for GROUP targets, the group itself
    rates: np.ndarray  # (targets, len(METRICS)) per second
    row_host: np.ndarray
    host_prefix: np.ndarray
    host_group: np.ndarray

    def rows_of(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flow rows, owning target) of every row that goes to one of the targets (rows may repeat)."""
        rows_out, owners = [], []
        for per_host in (np.arange(len(self.host_prefix)), self.host_prefix, self.host_group):
            owner = per_host[self.row_host]
            rows = np.flatnonzero(np.isin(owner, targets))
            rows_out.append(rows)
            owners.append(owner[rows])
        return np.concatenate(rows_out), np.concatenate(owners)


# per-row traffic classes for the per-protocol rates: (class, fragment) -> one bincount for all metrics
_TCP_SYN, _TCP, _UDP, _ICMP, _OTHER = range(5)
_CLASSES = 10
_METRIC_CLASSES = {
    "total": list(range(_CLASSES)),
    "tcp": [2 * _TCP_SYN, 2 * _TCP_SYN + 1, 2 * _TCP, 2 * _TCP + 1],
    "tcp_syn": [2 * _TCP_SYN, 2 * _TCP_SYN + 1],
    "udp": [2 * _UDP, 2 * _UDP + 1],
    "icmp": [2 * _ICMP, 2 * _ICMP + 1],
    "frag": [2 * c + 1 for c in range(5)],
}


def _row_class(flows: pa.Table) -> np.ndarray:
    proto = flows.column("protocol").to_numpy()
    flags = flows.column("tcp_flags").to_numpy()
    cls = np.full(len(proto), _OTHER, dtype=np.int64)
    cls[proto == TCP] = _TCP
    cls[(proto == TCP) & ((flags & SYN) != 0)] = _TCP_SYN  # any SYN, SYN-ACK included, as FastNetMon counts
    cls[proto == UDP] = _UDP
    cls[(proto == ICMP) | (proto == ICMP6)] = _ICMP
    return 2 * cls + flows.column("fragment").to_numpy(zero_copy_only=False)


def _flow_weights(flows: pa.Table, raw_pk: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Flow count carried by each row: nonzero only on the first row of each distinct 5-tuple."""
    s_hi, s_lo = addr.words(flows.column("src_addr"))
    d_hi, d_lo = addr.words(flows.column("dst_addr"))
    ports = (
        flows.column("src_port").to_numpy().astype(np.uint64) << np.uint64(24)
        | flows.column("dst_port").to_numpy().astype(np.uint64) << np.uint64(8)
        | flows.column("protocol").to_numpy().astype(np.uint64)
    )
    key = hash3(s_hi ^ (d_lo * np.uint64(3)), s_lo ^ d_hi, ports)  # an estimate: collisions only merge two flows
    _, first, inv = group_keys(key)
    seen = np.bincount(inv, weights=raw_pk)
    out = np.zeros(len(key), dtype=np.float64)
    out[first] = np.where(seen <= 1, rate[first], 1.0)
    return out


def host_rates(flows: pa.Table, inv: np.ndarray, hosts: int, tick_s: float, flows_rule: bool) -> np.ndarray:
    """(hosts, METRICS) rates: two bincounts over (host, traffic class), one more for flows if a rule needs it."""
    rate = flows.column("sampling_rate").to_numpy().astype(np.float64)
    rate[rate < 1] = 1.0  # 0 = unknown: count as unsampled
    raw_pk = flows.column("packets").to_numpy().astype(np.float64)
    index = _row_class(flows) * hosts + inv  # (class, host): each class's hosts contiguous
    size = hosts * _CLASSES
    pk = np.bincount(index, weights=raw_pk * rate * (1.0 / tick_s), minlength=size).reshape(_CLASSES, hosts)
    by = flows.column("bytes").to_numpy().astype(np.float64) * rate * (8.0 / tick_s)
    bits = np.bincount(index, weights=by, minlength=size).reshape(_CLASSES, hosts)
    out = np.zeros((len(METRICS), hosts), dtype=np.float64)  # metric-major while summing: contiguous rows
    for name, cols in _METRIC_CLASSES.items():
        for unit, per_class in (("pps", pk), ("bps", bits)):
            row = out[M[unit if name == "total" else f"{name}_{unit}"]]
            for c in cols:
                row += per_class[c]
    if flows_rule:
        out[M["flows"]] = np.bincount(inv, weights=_flow_weights(flows, raw_pk, rate), minlength=hosts) / tick_s
    return out.T


def aggregate(
    flows: pa.Table,
    tick_s: float,
    prefix_v4: int,
    prefix_v6: int,
    groups: PrefixMatcher,
    flows_rule: bool = True,
) -> TickRates:
    """Rates of every host, prefix and host-group target present in the tick.

    Rows are grouped into hosts (one unique over the rows), hosts into
    prefixes and groups (over the distinct hosts only), so the cost is one
    sort of the rows plus two bincounts.  Flows/s is counted only when a
    flows rule is on (``flows_rule``): it costs a second sort of the rows.
    """
    hi, lo = addr.words(flows.column("dst_addr"))
    host_keys, first, row_host = group_rows(hi, lo, np.full(len(hi), HOST, np.uint8), address_keys(hi, lo))
    h_hi, h_lo = hi[first], lo[first]
    n_hosts = len(first)
    h_rates = host_rates(flows, row_host, n_hosts, tick_s, flows_rule)
    v4 = (h_hi == 0) & ((h_lo >> np.uint64(32)) == np.uint64(0xFFFF))
    p_len = np.where(v4, 96 + prefix_v4, prefix_v6).astype(np.uint8)
    p_hi, p_lo = h_hi.copy(), h_lo.copy()
    for length in {96 + prefix_v4, prefix_v6}:
        mhi, mlo = masks(length)
        sel = p_len == length
        p_hi[sel] &= mhi
        p_lo[sel] &= mlo
    p_keys, p_first, host_p = group_rows(p_hi, p_lo, p_len)
    n_pref = len(p_keys)
    g_of_host = groups.match(h_hi, h_lo) if groups else np.full(n_hosts, -1, dtype=np.int64)
    in_group = g_of_host >= 0
    g_ids, host_g = np.unique(g_of_host[in_group], return_inverse=True)
    n_grp = len(g_ids)
    rates = np.empty((n_hosts + n_pref + n_grp, len(METRICS)), dtype=np.float64)
    rates[:n_hosts] = h_rates
    for c in range(len(METRICS)):
        rates[n_hosts : n_hosts + n_pref, c] = np.bincount(host_p, weights=h_rates[:, c], minlength=n_pref)
        rates[n_hosts + n_pref :, c] = np.bincount(host_g, weights=h_rates[in_group, c], minlength=n_grp)
    host_group = np.full(n_hosts, -1, dtype=np.int64)
    host_group[in_group] = n_hosts + n_pref + host_g
    g_u64 = g_ids.astype(np.uint64)
    zeros = np.zeros(n_grp, np.uint64)
    return TickRates(
        keys=np.concatenate([host_keys, p_keys, hash3(zeros, g_u64, GROUP) | _HIGH]),
        hi=np.concatenate([h_hi, p_hi[p_first], zeros]),
        lo=np.concatenate([h_lo, p_lo[p_first], g_u64]),
        tag=np.concatenate([np.full(n_hosts, HOST, np.uint8), p_len[p_first], np.full(n_grp, GROUP, np.uint8)]),
        group=np.concatenate([g_of_host, np.full(n_pref, -1, np.int64), g_ids]),
        rates=rates,
        row_host=row_host,
        host_prefix=n_hosts + host_p,
        host_group=host_group,
    )


def target_text(hi: int, lo: int, tag: int, group_names: list[str]) -> str:
    """How a target is written in records: an address, a prefix, or ``hostgroup:<name>``."""
    if tag == GROUP:
        return f"hostgroup:{group_names[lo]}"
    raw = hi.to_bytes(8, "big") + lo.to_bytes(8, "big")
    if tag == HOST:
        return addr.format_one(raw) or ""
    v4 = raw[:12] == bytes(addr.V4_MAPPED)
    return addr.format_prefix(raw, tag - 96 if v4 else tag) or ""

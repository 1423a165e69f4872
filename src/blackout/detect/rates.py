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
from .sketch import hash3
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
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


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


def group_rows(hi: np.ndarray, lo: np.ndarray, tag: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash keys, first index, inverse) of the distinct (hi, lo, tag) triples; exact despite hashing."""
    keys = hash3(hi, lo, tag)
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
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
    """Targets of one tick and their rates; ``entry_row[i]`` is the flow row of target entry ``entry_target[i]``."""

    keys: np.ndarray  # uint64 hash per target
    hi: np.ndarray  # masked address words per target
    lo: np.ndarray
    tag: np.ndarray  # uint8: HOST (128), prefix length, or GROUP (255)
    group: np.ndarray  # int64 host group of the target (-1 none); for GROUP targets, the group itself
    rates: np.ndarray  # (targets, len(METRICS)) per second
    entry_row: np.ndarray
    entry_target: np.ndarray


def row_weights(flows: pa.Table, tick_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-row metric weights (rows, METRICS) already divided by tick seconds, and the raw packet counts."""
    n = flows.num_rows
    rate = flows.column("sampling_rate").to_numpy().astype(np.float64)
    rate[rate < 1] = 1.0  # 0 = unknown: count as unsampled
    raw_pk = flows.column("packets").to_numpy().astype(np.float64)
    pk = raw_pk * rate / tick_s
    bits = flows.column("bytes").to_numpy().astype(np.float64) * rate * 8.0 / tick_s
    proto = flows.column("protocol").to_numpy()
    flags = flows.column("tcp_flags").to_numpy()
    frag = flows.column("fragment").to_numpy(zero_copy_only=False)
    w = np.zeros((n, len(METRICS)), dtype=np.float64)
    w[:, M["pps"]], w[:, M["bps"]] = pk, bits
    for name, mask in (
        ("tcp", proto == TCP),
        ("tcp_syn", (proto == TCP) & ((flags & SYN) != 0)),
        ("udp", proto == UDP),
        ("icmp", (proto == ICMP) | (proto == ICMP6)),
        ("frag", frag),
    ):
        w[mask, M[f"{name}_pps"]] = pk[mask]
        w[mask, M[f"{name}_bps"]] = bits[mask]
    w[:, M["flows"]] = _flow_weights(flows, raw_pk, rate) / tick_s
    return w, raw_pk


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
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    seen = np.bincount(inv, weights=raw_pk)
    out = np.zeros(len(key), dtype=np.float64)
    out[first] = np.where(seen <= 1, rate[first], 1.0)
    return out


def aggregate(
    flows: pa.Table,
    tick_s: float,
    prefix_v4: int,
    prefix_v6: int,
    groups: PrefixMatcher,
) -> TickRates:
    """Rates of every host, prefix and host-group target present in the tick."""
    hi, lo = addr.words(flows.column("dst_addr"))
    n = len(hi)
    w, _ = row_weights(flows, tick_s)
    rows = np.arange(n)
    v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    p_len = np.where(v4, 96 + prefix_v4, prefix_v6).astype(np.uint8)
    p_hi, p_lo = hi.copy(), lo.copy()
    for length in (96 + prefix_v4, prefix_v6):
        mhi, mlo = masks(length)
        sel = p_len == length
        p_hi[sel] &= mhi
        p_lo[sel] &= mlo
    host_group = groups.match(hi, lo) if groups else np.full(n, -1, dtype=np.int64)
    in_group = host_group >= 0
    g_rows = rows[in_group]
    all_hi = np.concatenate([hi, p_hi, np.zeros(len(g_rows), np.uint64)])
    all_lo = np.concatenate([lo, p_lo, host_group[in_group].astype(np.uint64)])
    all_tag = np.concatenate([np.full(n, HOST, np.uint8), p_len, np.full(len(g_rows), GROUP, np.uint8)])
    entry_row = np.concatenate([rows, rows, g_rows])
    keys, first, inv = group_rows(all_hi, all_lo, all_tag)
    rates = np.zeros((len(keys), len(METRICS)), dtype=np.float64)
    for c in range(len(METRICS)):
        rates[:, c] = np.bincount(inv, weights=w[entry_row, c], minlength=len(keys))
    tag = all_tag[first]
    group = np.where(tag == GROUP, all_lo[first].astype(np.int64), host_group[entry_row[first]])
    group[(tag != GROUP) & (tag != HOST)] = -1
    return TickRates(keys, all_hi[first], all_lo[first], tag, group, rates, entry_row, inv)


def target_text(hi: int, lo: int, tag: int, group_names: list[str]) -> str:
    """How a target is written in records: an address, a prefix, or ``hostgroup:<name>``."""
    if tag == GROUP:
        return f"hostgroup:{group_names[lo]}"
    raw = hi.to_bytes(8, "big") + lo.to_bytes(8, "big")
    if tag == HOST:
        return addr.format_one(raw) or ""
    v4 = raw[:12] == bytes(addr.V4_MAPPED)
    return addr.format_prefix(raw, tag - 96 if v4 else tag) or ""

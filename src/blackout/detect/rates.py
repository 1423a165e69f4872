"""Per-target rates of one tick: pps, bps, flows/s, by protocol, sampling-corrected, over the whole flow table.

A *target* is a destination address (a host), its covering prefix (/24 for
IPv4, /64 for IPv6 by default), or a configured host group.  Targets are keyed
by (masked high word, masked low word, tag) where the tag is the prefix length
in the 128-bit (IPv4-mapped) space — 128 for a host, 120 for an IPv4 /24 — or
255 for a host group.  Grouping is an exact hash table over the rows
(:func:`.tick_columns.group_exact`) and per-row sums in one compiled pass.

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
from numba import njit

from .. import addr
from ..errors import ConfigError
from .grouping import group_exact
from .roles import N_ROLES, ROLE_LUT
from .sketch import address_keys, group_keys, hash3, hash3_one
from .tick_columns import TickColumns
from .vectors import ACK, ICMP, ICMP6, SYN, TCP, UDP

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
    rates: np.ndarray  # (targets, len(metrics)) per second: column c is metric metrics[c] (pps, bps first)
    row_host: np.ndarray
    host_prefix: np.ndarray
    host_group: np.ndarray
    asked: np.ndarray  # (hosts, N_ROLES) packets asked of each host per role this tick


# the columns each row adds to (every metric's bps follows its pps)
_PPS, _BPS, _TCP_PPS, _SYN_PPS = M["pps"], M["bps"], M["tcp_pps"], M["tcp_syn_pps"]
_UDP_PPS, _ICMP_PPS, _FRAG_PPS = M["udp_pps"], M["icmp_pps"], M["frag_pps"]
assert all(M[f"{name}_bps"] == M[f"{name}_pps"] + 1 for name in ("tcp", "tcp_syn", "udp", "icmp", "frag"))


def host_rates(
    cols: TickColumns, inv: np.ndarray, hosts: int, rates: np.ndarray, tick_s: float, metrics: np.ndarray
) -> np.ndarray:
    """Fill rates[:hosts] with the ``metrics`` (row r goes to host inv[r]) in one pass over the rows, one
    more for flows if asked; return the packets each host was asked for per role (see :mod:`.roles`)."""
    c = cols
    column = np.full(len(METRICS), -1, dtype=np.int64)
    column[metrics] = np.arange(len(metrics))
    classes = bool((column[_TCP_PPS:] >= 0).any())  # METRICS: pps, bps, flows, then the per-class ones
    asked = _class_sums(
        inv, hosts, c.protocol, c.tcp_flags, c.fragment, c.packets, c.rate, c.bytes, c.dst_port, ROLE_LUT, tick_s,
        column, classes, rates,
    )  # fmt: skip
    if column[M["flows"]] >= 0:
        weights = _flow_weights(cols)
        rates[:hosts, column[M["flows"]]] = np.bincount(inv, weights=weights, minlength=hosts) / tick_s
    return asked


@njit(cache=True, inline="always")
def _add(rates: np.ndarray, h: int, column: int, value: float) -> None:  # pragma: no cover - compiled
    if column >= 0:
        rates[h, column] += value


@njit(cache=True)
def _class_sums(
    inv: np.ndarray,
    hosts: int,
    protocol: np.ndarray,
    flags: np.ndarray,
    fragment: np.ndarray,
    packets: np.ndarray,
    rate: np.ndarray,
    nbytes: np.ndarray,
    dst_port: np.ndarray,
    role_lut: np.ndarray,
    tick_s: float,
    column: np.ndarray,
    classes: bool,
    rates: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled
    """rates[:hosts] by one pass over the rows: each row adds to the total and, when some class metric is
    watched (``classes``), to its protocol's, the SYN and the fragment metrics (metric m goes to column
    column[m], nowhere if -1; the class tests cost ~3x the totals, so unwatched they are skipped); return
    the packets asked per (host, role): exchanges (UDP, TCP with ACK) toward a service port, as
    :func:`.roles.service_rows` picks them."""
    rates[:hosts] = 0.0
    asked = np.zeros((hosts, N_ROLES + 1))  # + scratch
    per_s, bits_per_s = 1.0 / tick_s, 8.0 / tick_s
    tcp, tcp_b, syn, syn_b = column[_TCP_PPS], column[_TCP_PPS + 1], column[_SYN_PPS], column[_SYN_PPS + 1]
    udp, udp_b, icmp, icmp_b = column[_UDP_PPS], column[_UDP_PPS + 1], column[_ICMP_PPS], column[_ICMP_PPS + 1]
    frag, frag_b = column[_FRAG_PPS], column[_FRAG_PPS + 1]
    for r in range(len(inv)):
        h = inv[r]
        corrected = packets[r] * rate[r]
        pps = corrected * per_s
        bps = nbytes[r] * rate[r] * bits_per_s
        rates[h, _PPS] += pps
        rates[h, _BPS] += bps
        p = protocol[r]
        if classes:
            if p == TCP:
                _add(rates, h, tcp, pps)
                _add(rates, h, tcp_b, bps)
                if flags[r] & SYN:
                    _add(rates, h, syn, pps)
                    _add(rates, h, syn_b, bps)
            elif p == UDP:
                _add(rates, h, udp, pps)
                _add(rates, h, udp_b, bps)
            elif p == ICMP or p == ICMP6:  # noqa: SIM109 (numba: no tuple membership of ints)
                _add(rates, h, icmp, pps)
                _add(rates, h, icmp_b, bps)
            if fragment[r]:
                _add(rates, h, frag, pps)
                _add(rates, h, frag_b, bps)
        role = role_lut[dst_port[r]]  # no branch (a flood's rows mispredict it): others add to the scratch column
        asks = (role >= 0) & ((p == UDP) | ((p == TCP) & ((flags[r] & ACK) != 0)))
        asked[h, role if asks else N_ROLES] += corrected
    return asked[:, :N_ROLES]


@njit(cache=True)
def _sum_into(rates: np.ndarray, src: np.ndarray, dst: np.ndarray, start: int, count: int) -> None:  # pragma: no cover
    """rates[start + dst[i]] += rates[src[i]] for every i in order (the bincount over src rows, bit for bit)."""
    for t in range(start, start + count):
        for c in range(rates.shape[1]):
            rates[t, c] = 0.0
    for i in range(len(src)):
        for c in range(rates.shape[1]):
            rates[start + dst[i], c] += rates[src[i], c]


@njit(cache=True)
def _prefixes(
    hi: np.ndarray,
    lo: np.ndarray,
    v4_len: int,
    v4_hi: np.uint64,
    v4_lo: np.uint64,
    v6_len: int,
    v6_hi: np.uint64,
    v6_lo: np.uint64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Each host's covering prefix: (masked high word, low word, length, key = hash3(...) | 2^63)."""
    n = len(hi)
    p_hi, p_lo = np.empty(n, np.uint64), np.empty(n, np.uint64)
    p_len, keys = np.empty(n, np.uint8), np.empty(n, np.uint64)
    for i in range(n):
        v4 = hi[i] == 0 and (lo[i] >> np.uint64(32)) == np.uint64(0xFFFF)
        length, mhi, mlo = (v4_len, v4_hi, v4_lo) if v4 else (v6_len, v6_hi, v6_lo)
        p_hi[i], p_lo[i], p_len[i] = hi[i] & np.uint64(mhi), lo[i] & np.uint64(mlo), length
        keys[i] = hash3_one(p_hi[i], p_lo[i], length) | _HIGH
    return p_hi, p_lo, p_len, keys


def _flow_weights(cols: TickColumns) -> np.ndarray:
    """Flow count carried by each row: nonzero only on the first row of each distinct 5-tuple."""
    s_hi, s_lo = cols.src_words
    d_hi, d_lo = cols.dst_hi, cols.dst_lo
    ports = (
        cols.src_port.astype(np.uint64) << np.uint64(24)
        | cols.dst_port.astype(np.uint64) << np.uint64(8)
        | cols.protocol.astype(np.uint64)
    )
    key = hash3(s_hi ^ (d_lo * np.uint64(3)), s_lo ^ d_hi, ports)  # an estimate: collisions only merge two flows
    _, first, inv = group_keys(key)
    seen = np.bincount(inv, weights=cols.packets)
    out = np.zeros(len(key), dtype=np.float64)
    out[first] = np.where(seen <= 1, cols.rate[first], 1.0)
    return out


def aggregate(
    cols: TickColumns,
    tick_s: float,
    prefix_v4: int,
    prefix_v6: int,
    groups: PrefixMatcher,
    metrics: np.ndarray | None = None,
    expect_hosts: int = 0,
) -> TickRates:
    """Rates of every host, prefix and host-group target present in the tick.

    Rows are grouped into hosts (one hash pass over the rows), hosts into
    prefixes and groups (over the distinct hosts only), so the cost is one
    pass over the rows and a sort of the distinct hosts.  Only the ``metrics``
    asked for are summed (sorted metric indices, pps and bps among them; default
    all): the detector watches few, and narrow rows keep the per-row pass in
    cache.  Flows/s costs a sort of the rows.  ``expect_hosts``: about how many distinct hosts (the
    previous tick's count sizes the grouping's table at once).
    """
    metrics = np.arange(len(METRICS)) if metrics is None else np.asarray(metrics, np.int64)
    assert metrics[0] == _PPS and metrics[1] == _BPS, "pps and bps are columns 0 and 1"
    hi, lo = cols.dst_hi, cols.dst_lo
    tags = np.full(len(hi), HOST, np.uint8)
    host_keys, first, row_host = group_exact(address_keys(hi, lo), hi, lo, tags, expect_hosts)
    h_hi, h_lo = hi[first], lo[first]
    n_hosts = len(first)
    v4_len, v6_len = 96 + prefix_v4, prefix_v6
    p_hi, p_lo, p_len, p_keys = _prefixes(h_hi, h_lo, v4_len, *masks(v4_len), v6_len, *masks(v6_len))
    p_keys, p_first, host_p = group_exact(p_keys, p_hi, p_lo, p_len)
    n_pref = len(p_keys)
    g_of_host = groups.match(h_hi, h_lo) if groups else np.full(n_hosts, -1, dtype=np.int64)
    in_group = np.flatnonzero(g_of_host >= 0)
    g_ids, host_g = np.unique(g_of_host[in_group], return_inverse=True)
    n_grp = len(g_ids)
    rates = np.empty((n_hosts + n_pref + n_grp, len(metrics)), dtype=np.float64)
    asked = host_rates(cols, row_host, n_hosts, rates, tick_s, metrics)
    _sum_into(rates, np.arange(n_hosts), host_p, n_hosts, n_pref)
    _sum_into(rates, in_group, host_g, n_hosts + n_pref, n_grp)
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
        asked=asked,
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

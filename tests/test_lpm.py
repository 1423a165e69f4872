"""Longest-prefix match against a brute-force oracle (Python ipaddress over the same prefixes)."""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pytest

from bgpdump_oracle import JINX_RIB, bgpdump_lines, jinx_tables
from blackout import addr
from blackout.enrich.lpm import IntervalIndex, LpmTable


def _oracle(prefixes: list[str]) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]:
    """(network as int, length) → row, per family."""
    v4: dict[tuple[int, int], int] = {}
    v6: dict[tuple[int, int], int] = {}
    for row, text in enumerate(prefixes):
        net = ipaddress.ip_network(text)
        (v4 if net.version == 4 else v6)[(int(net.network_address), net.prefixlen)] = row
    return v4, v6


def _brute(addresses: list[str], table: tuple[dict[tuple[int, int], int], dict[tuple[int, int], int]]) -> list[int]:
    """Try every length from the longest down: the first prefix found is the longest match."""
    out = []
    lengths4 = sorted({n for _, n in table[0]}, reverse=True)
    lengths6 = sorted({n for _, n in table[1]}, reverse=True)
    for text in addresses:
        ip = ipaddress.ip_address(text)
        bits, known, lengths = (32, table[0], lengths4) if ip.version == 4 else (128, table[1], lengths6)
        value, found = int(ip), -1
        for n in lengths:
            key = (value >> (bits - n) << (bits - n) if n else 0, n)
            if key in known:
                found = known[key]
                break
        out.append(found)
    return out


def _table(prefixes: list[str]) -> LpmTable:
    nets = [ipaddress.ip_network(p) for p in prefixes]
    return LpmTable(addr.from_strings([str(n.network_address) for n in nets]), np.array([n.prefixlen for n in nets]))


@pytest.fixture(scope="module")
def jinx_prefixes() -> list[str]:
    return sorted({line.split("|")[5] for line in bgpdump_lines(JINX_RIB)})


def _addresses(prefixes: list[str], rng: np.random.Generator, n: int) -> list[str]:
    """Random addresses, addresses inside real prefixes, and the first, last and next-after-last of prefixes."""
    out = [str(ipaddress.IPv4Address(int(v))) for v in rng.integers(0, 2**32, n)]
    out += [
        str(ipaddress.IPv6Address((0x2 << 125) | int(v) << 64 | int(w))) for v, w in rng.integers(0, 2**61, (n // 4, 2))
    ]
    for i in rng.choice(len(prefixes), size=min(n, len(prefixes)), replace=False).tolist():
        net = ipaddress.ip_network(prefixes[i])
        size = net.num_addresses
        out.append(str(net.network_address + int(rng.integers(0, min(size, 2**62)))))
        out.append(str(net.network_address))
        out.append(str(net.broadcast_address))
        if int(net.broadcast_address) + 1 < 2**net.max_prefixlen:
            out.append(str(net.broadcast_address + 1))
    return out


def test_jinx_full_table_equals_brute_force(jinx_prefixes: list[str]) -> None:
    table = _table(jinx_prefixes)
    addresses = _addresses(jinx_prefixes, np.random.default_rng(1), 6000)
    got = table.lookup(addr.from_strings(addresses)).tolist()
    assert got == _brute(addresses, _oracle(jinx_prefixes))
    assert any(":" in a for a, g in zip(addresses, got, strict=True) if g >= 0)  # IPv6 matched too


def test_snapshot_table_and_texts() -> None:
    """Built from the routing state's snapshot: KP addresses land in their /24s, texts as bgpdump writes them."""
    from blackout.enrich.routing import RoutingState

    state = RoutingState()
    state.apply(jinx_tables()[0])
    table = LpmTable.from_snapshot(state.snapshot())
    rows = table.lookup(addr.from_strings(["175.45.176.1", "175.45.179.254", "175.45.180.1"]))
    texts = table.prefix_texts(rows)
    assert texts[:2] == ["175.45.176.0/24", "175.45.179.0/24"]
    assert texts[2] != "175.45.179.0/24"


def test_nested_long_ipv6_and_edges() -> None:
    """A synthetic table with nesting, /0, /32, /128 and IPv6 prefixes longer than /64, checked by the oracle."""
    prefixes = [
        "0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25", "10.1.2.200/32",
        "255.255.255.255/32", "192.0.2.0/24", "2001:db8::/32", "2001:db8:1::/48", "2001:db8:1:2::/64",
        "2001:db8:1:2::/96", "2001:db8:1:2::8000:0/97", "2001:db8:1:2::1/128", "::/0", "ff00::/8",
    ]  # fmt: skip
    table = _table(prefixes)
    rng = np.random.default_rng(3)
    edges = ["0.0.0.0", "255.255.255.255", "10.1.2.200", "2001:db8:1:2::1", "2001:db8:1:2::2", "::", "ffff::1"]
    addresses = [*_addresses(prefixes, rng, 2000), *edges, "2001:db8:1:2:0:0:8000:1"]
    assert table.lookup(addr.from_strings(addresses)).tolist() == _brute(addresses, _oracle(prefixes))


def test_empty_table_and_empty_column() -> None:
    empty = LpmTable(pa.array([], pa.binary(16)), np.zeros(0, np.uint8))
    assert empty.lookup(addr.from_strings(["1.2.3.4", "2001:db8::1"])).tolist() == [-1, -1]
    assert empty.lookup(pa.array([], pa.binary(16))).tolist() == []
    index = IntervalIndex(32, np.array([5], np.uint64), np.array([9], np.uint64), np.array([0]), np.array([7]))
    assert index.find(np.array([0, 4, 5, 9, 10, 2**32 - 1], np.uint64)).tolist() == [-1, -1, 7, 7, -1, -1]

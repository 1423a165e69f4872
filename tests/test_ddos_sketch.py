"""SparseCounter's two ways of summing a batch (sorting, or bincount over small keys) against a Python Counter."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from blackout.detect.baseline import index_find
from blackout.detect.counter import SparseCounter
from blackout.detect.grouping import group_by_key, group_exact, radix_argsort
from blackout.detect.sketch import dense_codes, fold_by_owner, hash3, hash3_one


@pytest.mark.parametrize("high", [1 << 16, 1 << 40], ids=["small-keys", "large-keys"])
def test_sums_match_a_python_counter(high: int) -> None:
    rng = np.random.default_rng(4)
    counter, want = SparseCounter(columns=2), Counter[int]()
    for n in (10, 5000, 20000, 3):  # below and above the bincount threshold
        keys = rng.integers(0, min(high, 3000) if n == 5000 else high, n).astype(np.uint64)
        weights = rng.integers(1, 50, n).astype(np.float64)
        counter.add(keys, np.stack([weights, 2 * weights], axis=1))
        for k, w in zip(keys.tolist(), weights.tolist(), strict=True):
            want[k] += w
    assert counter.keys.tolist() == sorted(want)
    assert counter.sums[:, 0].tolist() == [want[k] for k in sorted(want)]
    assert np.array_equal(counter.sums[:, 1], 2 * counter.sums[:, 0])


@pytest.mark.parametrize("high", [1 << 16, 1 << 40], ids=["dense-grid", "hashed"])
def test_batched_fold_into_many_counters_matches_python(high: int) -> None:
    """Many attacks' rows folded by (owner, key) at once, merged lazily, equal a Counter per owner;
    a capped counter prunes exactly as when each batch is added at once."""
    rng = np.random.default_rng(7)
    owners = 5
    lazy = [SparseCounter(tags=1) for _ in range(owners)] + [SparseCounter(cap=300, sketch=True)]
    eager = SparseCounter(cap=300, sketch=True)
    want = [Counter[int]() for _ in range(owners)]
    for n in (0, 50, 3000, 40000, 7):
        owner = np.sort(rng.integers(0, owners, n))
        keys = rng.integers(0, high, n).astype(np.uint64)
        weights = rng.integers(1, 9, n).astype(np.float64)
        uniq, codes = dense_codes(keys)
        bounds, code, sums = fold_by_owner(owner, owners, codes, len(uniq), [weights])
        for o in range(owners):
            part = slice(int(bounds[o]), int(bounds[o + 1]))
            lazy[o].add_folded(uniq[code[part]], sums[part], uniq[code[part]] * np.uint64(3))
        for k, w, o in zip(keys.tolist(), weights.tolist(), owner.tolist(), strict=True):
            want[o][k] += w
        first = owner == 0
        only_first = slice(int(bounds[0]), int(bounds[1]))
        lazy[owners].add_folded(uniq[code[only_first]], sums[only_first])
        eager.add(keys[first], weights[first])
    for o in range(owners):
        assert lazy[o].keys.tolist() == sorted(want[o])
        assert lazy[o].sums[:, 0].tolist() == [want[o][k] for k in sorted(want[o])]
        assert np.array_equal(lazy[o].tags[:, 0], lazy[o].keys * np.uint64(3))
    capped = lazy[owners]
    assert capped.keys.tolist() == eager.keys.tolist() and not capped.exact
    assert capped.sums.tolist() == eager.sums.tolist() and capped.distinct() == eager.distinct()


def test_exact_grouping_and_radix_sort_match_python() -> None:
    """group_exact (hash table over rows) numbers the distinct (hi, lo, tag) triples as a dict would, ordered
    by key, even when different triples share a key (a forced 64-bit collision); radix_argsort is a stable
    argsort (ties by position), checked against sorted()."""
    rng = np.random.default_rng(7)
    n = 20000
    v4 = np.uint64(0xFFFF00000000) + rng.integers(0, 3000, n).astype(np.uint64)  # IPv4-mapped: key = low word
    hi = np.where(np.arange(n) % 3 == 0, rng.integers(1, 4, n).astype(np.uint64), np.uint64(0))
    lo = np.where(hi == 0, v4, rng.integers(0, 5, n).astype(np.uint64))
    tag = rng.integers(0, 2, n).astype(np.uint8)
    keys = np.where(hi == 0, lo, np.uint64(1 << 63) | (lo % np.uint64(2)))  # hashed keys that collide a lot
    tag[hi == 0] = 0  # a key below 2^63 stands for its address alone
    # by key: runs of one key, different triples side by side (the previous-row shortcut must tell them
    # apart); a sized table, and a hint far past the rows (a flood of spoofed targets last tick), must give
    # the same answer
    by_key = np.argsort(keys, kind="stable")
    for order, expect in ((np.arange(n), 0), (by_key, 0), (by_key, 5000), (by_key, 1 << 40)):
        h, low, t = hi[order], lo[order], tag[order]
        uniq, first, inv = group_exact(keys[order], h, low, t, expect)
        triples = list(zip(h.tolist(), low.tolist(), t.tolist(), strict=True))
        groups: dict[tuple[int, int, int], int] = {}
        for triple in triples:
            groups.setdefault(triple, len(groups))
        assert len(uniq) == len(first) == len(groups)
        assert uniq.tolist() == sorted(uniq.tolist())
        assert [triples[int(f)] for f in first[inv]] == triples  # every row lands in its own triple's group
        assert len({triples[int(f)] for f in first}) == len(groups)
        assert all(triples[int(f)] not in triples[: int(f)] for f in first)  # the first row of each, as a dict
    runs = np.repeat(rng.integers(0, 50, 300).astype(np.uint64), rng.integers(1, 9, 300))  # the shortcut by key
    for data in (keys, rng.integers(0, 1 << 63, 5000).astype(np.uint64), np.zeros(0, np.uint64), runs):
        assert radix_argsort(data).tolist() == sorted(range(len(data)), key=lambda i: (int(data[i]), i))
        want, want_inv = np.unique(data, return_inverse=True)
        got, got_first, got_inv = group_by_key(data)  # by the key alone, as np.unique
        assert np.array_equal(got, want) and np.array_equal(got_inv, want_inv)
        assert np.array_equal(data[got_first], got)


def test_top_matches_a_full_sort_with_ties() -> None:
    """top(k) picks by a partition but must give exactly sorted()'s first k by (-sum, key), ties included."""
    rng = np.random.default_rng(11)
    counter = SparseCounter()
    keys = rng.choice(1 << 40, 30000, replace=False).astype(np.uint64)
    counter.add(keys, rng.integers(1, 4, len(keys)).astype(np.float64))  # three values: ties everywhere
    pairs = sorted(zip(counter.sums[:, 0].tolist(), counter.keys.tolist(), strict=True), key=lambda p: (-p[0], p[1]))
    for k in (0, 1, 10, 9999, 10000, 29999, 30000, 40000):
        got = counter.top(k)
        assert [(counter.sums[i, 0], counter.keys[i]) for i in got.tolist()] == pairs[:k]


def test_compiled_hash_has_the_same_bits() -> None:
    """hash3_one (compiled code's target keys) must equal hash3 (numpy's), or state would split one target."""
    rng = np.random.default_rng(2)
    hi, lo = (rng.integers(0, 1 << 63, 1000).astype(np.uint64) * np.uint64(2) for _ in range(2))
    tag = rng.integers(0, 256, 1000).astype(np.uint8)
    want = hash3(hi, lo, tag)
    assert [int(hash3_one(h, low, int(t))) for h, low, t in zip(hi, lo, tag, strict=True)] == want.tolist()


def test_state_index_search_matches_a_dict() -> None:
    """The galloping search of the targets' sorted index finds exactly what a dict finds, for keys that
    ascend in runs (hosts, then prefixes, then groups) or not at all."""
    rng = np.random.default_rng(3)
    index = np.unique(rng.integers(0, 1 << 40, 5000).astype(np.uint64))
    slots = rng.permutation(len(index)).astype(np.int64)
    where = dict(zip(index.tolist(), slots.tolist(), strict=True))
    probe = np.concatenate([index[::3], rng.integers(0, 1 << 40, 3000).astype(np.uint64)])
    for keys in (np.sort(probe), rng.permutation(probe), np.concatenate([np.sort(probe)[::-1][:50], np.sort(probe)])):
        got = index_find(index, slots, keys)
        assert got.tolist() == [where.get(k, -1) for k in keys.tolist()]
    assert index_find(index[:0], slots[:0], probe).tolist() == [-1] * len(probe)


@pytest.mark.parametrize("name", ["pkt.TCP.synflood.spoofed.pcap", "amp.dns.RRSIG.fragmented.pcap",
                                  "amp.TCP.reflection.SYNACK.pcap"])  # fmt: skip
def test_dense_and_sparse_attack_folds_give_the_same_records(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack accounting's sums on fold_rows' dense grids (row by row) and attack by attack through
    owner_totals and fold_codes' scratch (the path of many attacks × many sources) give the same records,
    bit for bit: with DENSE_CELLS at 0 they take the second.  Host and /24 attacks at once (a row feeds both),
    the flood's vectors, reflection and fragments, source countries and ASes.  (Each kernel against
    bincount / fold_by_owner: below.)"""
    from blackout.detect import attack
    from test_ddos import DATA, FirstOctet, pcap_flows, run

    flows = pcap_flows(DATA / "pcap" / "stopddos" / name)
    conf = ["ddos.threshold_pps=100", "ddos.prefix_threshold_pps=100", "ddos.ban_for_bandwidth=off"]
    conf += ["ddos.baseline=false", "ddos.start_ticks=1"]
    dense = run(flows, conf, enricher=FirstOctet())  # source countries, ASes, unrouted 10/8
    monkeypatch.setattr(attack, "DENSE_CELLS", 0)
    sparse = run(flows, conf, enricher=FirstOctet())
    assert len(dense) >= 2 and {"/" in r["target"] for r in dense} == {True, False}
    assert all(r["source_countries"] and r["source_asns"] for r in dense)
    assert dense == sparse


def _routing(rng: np.random.Generator, n_rows: int, attacks: int) -> tuple[np.ndarray, ...]:
    """A tick's routing of rows to targets: (row_host, host_prefix, host_group, ordinal), ``attacks`` of the
    hosts, prefixes and groups attacked, a row feeding up to three of them."""
    hosts, prefixes, groups = 400, 20, 3
    row_host = rng.integers(0, hosts, n_rows)
    host_prefix = hosts + rng.integers(0, prefixes, hosts)
    host_group = np.where(rng.random(hosts) < 0.5, hosts + prefixes + rng.integers(0, groups, hosts), -1)
    attacked = rng.choice(hosts + prefixes + groups, attacks, replace=False)
    ordinal = np.full(hosts + prefixes + groups, -1)
    ordinal[attacked] = np.arange(attacks)
    return row_host, host_prefix, host_group, ordinal


def test_attack_fold_kernels_equal_bincount_and_fold_by_owner() -> None:
    """owner_totals and fold_codes (over the entries, read through row numbers) and fold_rows (all of them
    row by row, no entries) against np.bincount and fold_by_owner over the gathered columns, exactly:
    rows feeding several attacks, rows without a port, an attack with no rows, weights whose sums show
    their order."""
    from blackout.detect.attack_fold import (
        attack_entries,
        attack_rows,
        fold_codes,
        fold_rows,
        owner_totals,
        split_totals,
    )

    rng = np.random.default_rng(11)
    owners, n_src = 25, 300
    row_host, host_prefix, host_group, ordinal = _routing(rng, 20000, owners)
    ordinal[ordinal == 7] = -1  # attack 7 gets no rows
    rows = attack_rows(row_host, host_prefix, host_group, ordinal)
    owner, sel = attack_entries(rows, (row_host, host_prefix, host_group, ordinal), owners)
    n_rows = len(rows)
    packets = rng.integers(1, 9, n_rows) * rng.choice([1.0, 0.1, 3.7], n_rows)  # sums whose order shows
    nbytes, raw = packets * 61.3, packets / 3
    vector, ttl = rng.integers(0, 12, n_rows), rng.integers(0, 256, n_rows).astype(np.uint8)
    sampled, flag = rng.random(n_rows) < 0.01, (rng.random(n_src) < 0.3).astype(np.float64)  # flag: per source
    src_code = rng.integers(0, n_src, n_rows)
    source_country, source_asn = rng.integers(0, 7, n_src), rng.integers(0, 40, n_src)
    row_code = np.where(rng.random(n_rows) < 0.2, -1, rng.integers(0, 50, n_rows))
    pk = packets[sel]
    want = (
        np.bincount(owner, weights=pk, minlength=owners),
        np.bincount(owner, weights=nbytes[sel], minlength=owners),
        np.bincount(owner * 12 + vector[sel], weights=pk, minlength=owners * 12).reshape(owners, 12),
        np.bincount(owner * 256 + ttl[sel], weights=pk, minlength=owners * 256).reshape(owners, 256),
        np.bincount(owner, weights=sampled[sel], minlength=owners) > 0,
    )
    got = split_totals(owner_totals(owner, sel, packets, nbytes, vector, ttl, sampled, owners, 12))
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)
    keep = row_code[sel] >= 0
    (wb, wc, ws) = fold_by_owner(owner[keep], owners, row_code[sel][keep], 50, [pk[keep], raw[sel][keep]])
    (b, c, s) = fold_codes(owner, sel, row_code, 50, owners, (packets, raw))
    assert np.array_equal(b, wb) and np.array_equal(c, wc) and np.array_equal(s, ws)
    ported = rng.random(12) < 0.7  # a row's port is kept where ported[vector]: the port is its code
    port = rng.integers(0, 50, n_rows).astype(np.uint16) * np.uint16(1301)  # ports 0 to 63,749, and the last
    port[::97] = 65535
    port_code = np.where(ported[vector], port.astype(np.int64), -1)
    port_want = fold_by_owner(owner[port_code[sel] >= 0], owners, port_code[sel][port_code[sel] >= 0], 1 << 16,
                              [pk[port_code[sel] >= 0]])  # fmt: skip
    totals, *folds = fold_rows(
        rows, (row_host, host_prefix, host_group, ordinal), owners, (src_code, source_country, source_asn, port),
        (n_src, 7, 40), ported, packets, raw, flag, nbytes, vector, 12, ttl, sampled,
    )  # fmt: skip
    for g, w in zip(split_totals(totals), want, strict=True):
        assert np.array_equal(g, w)
    code = src_code[sel]
    wants = (
        fold_by_owner(owner, owners, code, n_src, [pk, raw[sel], flag[code]]),
        fold_by_owner(owner, owners, source_country[code], 7, [pk]),
        fold_by_owner(owner, owners, source_asn[code], 40, [pk]),
        port_want,
    )
    for fold, want_fold in zip(folds, wants, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(fold, want_fold, strict=True))


def test_attack_entries_and_port_codes_equal_their_numpy_forms() -> None:
    """attack_rows and attack_entries (two passes, no sort) against a stable argsort of the rows each attacked
    target gets (hosts, their prefixes, their groups); port_codes against dense_codes of the kept rows' ports."""
    from blackout.detect.attack_fold import attack_entries, attack_rows, port_codes

    rng = np.random.default_rng(5)
    row_host, host_prefix, host_group, ordinal = _routing(rng, 3000, 25)
    rows = attack_rows(row_host, host_prefix, host_group, ordinal)
    owner, sel = attack_entries(rows, (row_host, host_prefix, host_group, ordinal), 25)
    per_row = [row_host, host_prefix[row_host], host_group[row_host]]
    entry_rows = np.concatenate([np.flatnonzero((t >= 0) & (ordinal[t] >= 0)) for t in per_row])
    entry_owner = np.concatenate([ordinal[t[(t >= 0) & (ordinal[t] >= 0)]] for t in per_row])
    order = np.argsort(entry_owner, kind="stable")
    want_rows = np.unique(entry_rows)
    assert np.array_equal(rows, want_rows) and np.array_equal(owner, entry_owner[order])
    assert np.array_equal(rows[sel], entry_rows[order])
    port = rng.integers(0, 1 << 16, 9000).astype(np.uint16)
    port[::3] = 80
    keep = rng.random(len(port)) < 0.6
    keys, codes = port_codes(port, keep)
    want_keys, want_codes = dense_codes(port[keep].astype(np.uint64))
    assert np.array_equal(keys, want_keys) and keys.dtype == want_keys.dtype
    assert np.array_equal(codes[keep], want_codes) and (codes[~keep] == -1).all()


@pytest.mark.parametrize("column", ["dst_port", "src_port"])
def test_a_port_wider_than_the_schema_is_refused_not_read_past_the_port_tables(column: str) -> None:
    """The compiled passes index 2^16-entry tables by port (roles, port codes, the port grid) without bounds
    checks: a table whose port column is not the flow schema's uint16 (port 70000 in it) is a TypeError
    naming the column and its type, not a read or write past a table."""
    import pyarrow as pa

    from test_ddos import DATA, pcap_flows, run

    flows = pcap_flows(DATA / "pcap" / "stopddos" / "pkt.TCP.synflood.spoofed.pcap")
    wide = flows.column(column).to_numpy().astype(np.uint32)
    wide[:5] = 70000
    at = flows.schema.get_field_index(column)
    flows = flows.set_column(at, pa.field(column, pa.uint32()), pa.array(wide))
    with pytest.raises(TypeError, match=f"{column} is uint32"):
        run(flows, ["ddos.threshold_pps=100", "ddos.baseline=false", "ddos.start_ticks=1"])


def test_attack_records_on_ipv6_sampled_and_hostgroup_rows_match_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end on the rows the captures lack: an IPv6 host and a host group (total) flooded at once, half
    the rows sampled 1 in 10.  Each record's totals, source count and top source equal those computed here
    from the rows inside its span (sampling-corrected), and both fold paths agree."""
    from blackout import addr
    from blackout.detect import attack
    from blackout.model import FLOW_SCHEMA
    from test_ddos import run

    rng = np.random.default_rng(3)
    n, t0 = 40_000, 1_700_000_000_000_000
    ts = t0 + np.sort(rng.integers(0, 8_000_000, n))
    v6 = rng.random(n) < 0.5
    ids = rng.integers(0, 3000, n).tolist()
    src = [f"2001:db8:{s:x}::9" if v else f"198.51.{s % 250}.{s // 250}" for s, v in zip(ids, v6, strict=True)]
    dst = np.where(v6, "2001:db8:ffff::1", np.array([f"203.0.113.{h}" for h in rng.integers(1, 40, n)]))
    packets = rng.integers(1, 4, n).astype(np.uint64)
    rate = np.where(rng.random(n) < 0.5, 10, 1).astype(np.uint32)
    table = pa.table(
        {
            "ts": pa.array(ts, pa.int64()).cast(FLOW_SCHEMA.field("ts").type),
            "exporter": pa.array(np.full(n, "t")),
            "src_addr": pa.array([addr.parse(s) for s in src], addr.ADDR),
            "dst_addr": pa.array([addr.parse(str(d)) for d in dst], addr.ADDR),
            "src_port": pa.array(rng.integers(1024, 65535, n).astype(np.uint16)),
            "dst_port": pa.array(np.full(n, 443, np.uint16)),
            "protocol": pa.array(np.full(n, 6, np.uint8)),
            "tcp_flags": pa.array(np.full(n, 0x02, np.uint8)),
            "fragment": pa.array(np.zeros(n, bool)),
            "ttl": pa.array(rng.integers(40, 128, n).astype(np.uint8)),
            "bytes": packets * 60,
            "packets": pa.array(packets),
            "sampling_rate": pa.array(rate),
            "in_if": pa.array(np.zeros(n, np.uint32)),
            "out_if": pa.array(np.zeros(n, np.uint32)),
        },
        schema=FLOW_SCHEMA,
    )
    conf = ["ddos.threshold_pps=5000", "ddos.ban_for_bandwidth=off", "ddos.baseline=false", "ddos.start_ticks=1"]
    conf.append('ddos.hostgroups={g = {networks = ["203.0.113.0/24"], threshold_pps = 5000, ban_for_pps = "on", '
                'calculation = "total"}}')  # fmt: skip
    records = {r["target"]: r for r in run(table, conf)}
    assert set(records) == {"2001:db8:ffff::1", "hostgroup:g"}
    corrected = packets.astype(np.float64) * rate
    for target, mine in (("2001:db8:ffff::1", v6), ("hostgroup:g", ~v6)):
        rec = records[target]
        inside = mine & (ts >= rec["start"]) & (ts < rec["end"])
        by_source: dict[str, float] = {}
        for s, p in zip(np.array(src)[inside].tolist(), corrected[inside].tolist(), strict=True):
            by_source[s] = by_source.get(s, 0.0) + p
        assert rec["total_packets"] == pytest.approx(corrected[inside].sum(), rel=1e-12)
        assert rec["unique_sources"] == len(by_source)
        most = max(by_source.values())
        assert rec["top_sources"][0]["share"] == pytest.approx(most / corrected[inside].sum(), rel=1e-12)
        assert by_source[rec["top_sources"][0]["address"]] == most
    monkeypatch.setattr(attack, "DENSE_CELLS", 0)
    assert {r["target"]: r for r in run(table, conf)} == records

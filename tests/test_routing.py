"""Routing state against bgpdump: the real jinx RIB and updates, withdrawals, peer-down, visibility."""

from __future__ import annotations

import ipaddress
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgpdump_oracle import (
    JINX_RIB,
    JINX_UPDATES,
    bgpdump_lines,
    jinx_tables,
    oracle_arrow,
    oracle_table,
    routes_table,
    state_arrow,
)
from blackout import addr
from blackout.config import Config
from blackout.enrich.routing import RoutingConfig, RoutingState, collector_of
from blackout.sources import FILE_DECODERS, DecodeContext, read_input

KP = ["175.45.176.0/24", "175.45.177.0/24", "175.45.178.0/24", "175.45.179.0/24"]


@pytest.fixture(scope="module")
def rib_state() -> RoutingState:
    state = RoutingState()
    state.apply(jinx_tables()[0])
    return state


def _rows(table: pa.Table, prefixes: list[str]) -> pa.Table:
    nets = [ipaddress.ip_network(p) for p in prefixes]
    keys = addr.from_strings([str(n.network_address) for n in nets])
    return table.filter(pc.is_in(table.column("prefix"), keys))


def test_rib_holds_north_korea_via_china_unicom(rib_state: RoutingState) -> None:
    """Published fact: the jinx RIB of 2014-05-30 has KP's four /24s, origin AS131279, upstream AS4837."""
    routes = _rows(rib_state.routes(), KP)
    assert (
        sorted(
            str(addr.format_prefix(p, n))
            for p, n in zip(*[routes.column(c).to_pylist() for c in ("prefix", "prefix_len")], strict=True)
        )
        == KP
    )
    assert set(routes.column("origin_asn").to_pylist()) == {131279}
    for path in routes.column("as_path").to_pylist():
        assert path.split()[-2:] == ["4837", "131279"]
    snap = _rows(rib_state.snapshot(), KP)
    assert snap.column("origin_asn").to_pylist() == [131279] * 4
    assert all(snap.column("visible").to_pylist())
    full = rib_state.full_feed_peers()
    assert full and all(n >= 1 for n in snap.column("full_feed_peers").to_pylist())
    # full-feed peers are those bgpdump shows with more than 400k IPv4 prefixes
    counts = Counter((f[3], f[4]) for f in (line.split("|") for line in bgpdump_lines(JINX_RIB)) if ":" not in f[5])
    expected = {peer for peer, n in counts.items() if n > 400_000}
    assert {(addr.format_one(p.addr), str(p.asn)) for p in full} == expected


def test_visible_slash24_of_as131279_is_four(rib_state: RoutingState) -> None:
    table = rib_state.visible_slash24_by_asn()
    got = dict(zip(table.column("asn").to_pylist(), table.column("slash24").to_pylist(), strict=True))
    assert got[131279] == 4


def test_rib_then_updates_equals_bgpdump_oracle(rib_state: RoutingState) -> None:
    """The vectorised state after RIB + updates equals a Python dict fed every bgpdump line in order."""
    state = RoutingState()
    rib, updates = jinx_tables()
    state.apply(rib)
    assert len(state) == len(bgpdump_lines(JINX_RIB))
    state.apply(updates)
    expected = oracle_arrow(oracle_table(bgpdump_lines(JINX_RIB), bgpdump_lines(JINX_UPDATES)))
    assert state_arrow(state.routes()).equals(expected)


def test_batching_does_not_change_the_state() -> None:
    """Updates applied in random slices give the state of one batch (order across batches respected)."""
    rib, updates = jinx_tables()
    small = pa.concat_tables([_rows(rib, _prefixes_of(updates)), updates])
    whole = RoutingState()
    whole.apply(small)
    rng = np.random.default_rng(7)
    cuts = np.sort(rng.choice(np.arange(1, small.num_rows), size=25, replace=False))
    sliced = RoutingState()
    for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), small.num_rows], strict=True):
        sliced.apply(small.slice(lo, hi - lo))
    assert state_arrow(sliced.routes()).equals(state_arrow(whole.routes()))


def _prefixes_of(table: pa.Table) -> list[str]:
    valid = table.filter(pc.is_valid(table.column("prefix")))
    pairs = zip(valid.column("prefix").to_pylist(), valid.column("prefix_len").to_pylist(), strict=True)
    return sorted({str(addr.format_prefix(p, n)) for p, n in pairs})


def _kp_lines() -> list[str]:
    """The RIB lines of the KP prefixes plus a few of another peer."""
    lines = [ln for ln in bgpdump_lines(JINX_RIB) if ln.split("|")[5] in KP]
    other = [ln for ln in bgpdump_lines(JINX_RIB) if ln.split("|")[3] == "196.223.14.10"][:50]
    return lines + other


def test_withdrawal_and_peer_down_remove_routes() -> None:
    base = _kp_lines()
    peer, asn = base[0].split("|")[3:5]
    other = base[-1].split("|")[3:5]
    ts = "1401493600"
    events = [
        f"BGP4MP|{ts}|W|{peer}|{asn}|175.45.177.0/24",
        f"BGP4MP|{ts}|W|{peer}|{asn}|10.99.0.0/16",  # unknown route: counted, ignored
        f"BGP4MP|{ts}|STATE|{other[0]}|{other[1]}|6|1",  # the other peer goes down...
        base[-1].replace("TABLE_DUMP2", "BGP4MP").replace("|B|", "|A|"),  # ...and announces one route again
    ]
    state = RoutingState()
    state.apply(routes_table(base))
    assert len(state) == len(base)
    state.apply(routes_table(events))
    assert state_arrow(state.routes()).equals(oracle_arrow(oracle_table(tuple(base), tuple(events))))
    assert state.stats["withdraw_unknown"] == 1
    assert len(_rows(state.snapshot(), KP)) == 3
    # a peer-down of the KP peer empties its routes, and the /24 count of AS131279 drops to 0
    state.apply(routes_table([f"BGP4MP|{ts}|STATE|{peer}|{asn}|6|2"]))
    assert len(_rows(state.snapshot(), KP)) == 0
    assert 131279 not in state.visible_slash24_by_asn().column("asn").to_pylist()


def test_a_full_feed_that_withdraws_everything_stays_one_until_its_session_goes_down() -> None:
    """The jinx RIB, then one full feed withdraws every route: it keeps its full-feed status (its
    prefixes lose its vote, fewer are visible) until a STATE down ends its session."""
    lines = bgpdump_lines(JINX_RIB)
    per_peer = Counter(ln.split("|")[3] for ln in lines if ":" not in ln.split("|")[5])
    full = {p for p, n in per_peer.items() if n > RoutingConfig().full_feed_v4}
    peer = min(full)
    state = RoutingState()
    state.apply(jinx_tables()[0])
    assert _full_feeds(state) == full
    visible = int(np.count_nonzero(state.view().visible))
    mine = [ln.split("|") for ln in lines if ln.split("|")[3] == peer]
    state.apply(routes_table([f"BGP4MP|1401493600|W|{f[3]}|{f[4]}|{f[5]}" for f in mine]))
    assert peer not in {addr.format_one(a) for a in state.routes().column("peer_addr").to_pylist()}
    assert _full_feeds(state) == full
    assert state.view().full_feed_v4 == len(full)
    assert int(np.count_nonzero(state.view().visible)) < visible
    state.apply(routes_table([f"BGP4MP|1401493601|STATE|{peer}|{mine[0][4]}|6|1"]))
    assert _full_feeds(state) == full - {peer}


def _full_feeds(state: RoutingState) -> set[str]:
    return {str(addr.format_one(p.addr)) for p in state.full_feed_peers()}


def test_visibility_and_slash24_against_python_oracle() -> None:
    """A slice of the RIB (prefixes under 175/8 and 1/8) with small full-feed thresholds, checked
    against per-prefix peer sets and per-AS /24 sets computed in Python."""
    lines = [ln for ln in bgpdump_lines(JINX_RIB) if ln.split("|")[5].startswith(("175.", "1."))]
    cfg = RoutingConfig(full_feed_v4=20, full_feed_v6=1)
    state = RoutingState(cfg)
    state.apply(routes_table(lines))
    per_peer = Counter(ln.split("|")[3] for ln in lines)
    full = {p for p, n in per_peer.items() if n > cfg.full_feed_v4}
    seen: dict[str, set[str]] = {}
    origins: dict[str, Counter[int]] = {}
    full_origins: dict[str, Counter[int]] = {}  # the origins full feeds see decide where there are any
    for ln in lines:
        f = ln.split("|")
        seen.setdefault(f[5], set()).add(f[3])
        last = f[6].split()[-1]
        origins.setdefault(f[5], Counter())[int(last) if last.isdigit() else 0] += 1
        if f[3] in full:
            full_origins.setdefault(f[5], Counter())[int(last) if last.isdigit() else 0] += 1
    snap = state.snapshot()
    assert snap.num_rows == len(seen)
    slash24: dict[int, set[int]] = {}
    for p, n, peers, nfull, vis, origin in zip(
        *[
            snap.column(c).to_pylist()
            for c in ("prefix", "prefix_len", "peers", "full_feed_peers", "visible", "origin_asn")
        ],
        strict=True,
    ):
        text = str(addr.format_prefix(p, n))
        assert peers == len(seen[text])
        assert nfull == len(seen[text] & full)
        assert vis == (2 * len(seen[text] & full) > len(full))
        votes = full_origins.get(text) or origins[text]
        assert origin == min(a for a, c in votes.items() if c == max(votes.values()))
        net = ipaddress.ip_network(text)
        if vis and 8 <= n <= 24:
            first = int(net.network_address) >> 8
            slash24.setdefault(origin, set()).update(range(first, first + (1 << (24 - n))))
    got = state.visible_slash24_by_asn()
    assert dict(zip(got.column("asn").to_pylist(), got.column("slash24").to_pylist(), strict=True)) == {
        a: len(s) for a, s in slash24.items()
    }


def test_routing_config_section() -> None:
    cfg = Config.load(overrides=["routing.full_feed_v4=10", "routing.full_feed_v6=2"]).section("routing", RoutingConfig)
    assert (cfg.full_feed_v4, cfg.full_feed_v6, cfg.slash24_max_len) == (10, 2, 24)


def test_state_from_the_mrt_decoder_equals_bgpdump() -> None:
    """When the MRT decoder is in the tree: the RIB and the updates it decodes (collector named after
    each file) give the state bgpdump's lines give."""
    decoder = FILE_DECODERS.get("mrt")
    if decoder is None:
        pytest.skip("the mrt decoder is not registered in this tree yet")
    ctx = DecodeContext()
    state = RoutingState()
    for path in (JINX_RIB, JINX_UPDATES):
        for batch in decoder.read(str(path), read_input(str(path)), ctx):
            state.apply(batch)
    expected = oracle_arrow(oracle_table(bgpdump_lines(JINX_RIB), bgpdump_lines(JINX_UPDATES)))
    assert state_arrow(state.routes()).equals(expected)
    assert [p.collector for p in state.peers] == ["routeviews.route-views.jinx"] * len(state.peers)


def test_collector_of_archive_names() -> None:
    assert collector_of("routeviews.route-views.jinx.ribs.1401487200.bz2") == "routeviews.route-views.jinx"
    assert collector_of("/x/routeviews.route-views.jinx.updates.1401493500.bz2") == "routeviews.route-views.jinx"
    assert collector_of("ris.rrc06.updates.1401488100.gz") == "ris.rrc06"
    assert collector_of("rrc00.bview.20020722.2337.gz") == "rrc00"
    assert collector_of("127.0.0.4:10179") == "127.0.0.4:10179"


LINE_KINDS = st.sampled_from(["A", "A", "W", "STATE"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            LINE_KINDS, st.integers(0, 3), st.integers(0, 7), st.sampled_from([8, 16, 22, 24]), st.integers(0, 7)
        ),
        max_size=60,
    ),
    st.integers(1, 8),
)
def test_fuzz_random_elements_match_the_oracle(ops: list[tuple[str, int, int, int, int]], parts: int) -> None:
    """Random announce/withdraw/peer-down sequences, split in random batches, equal the Python oracle."""
    lines = []
    for i, (kind, peer, net, length, state_code) in enumerate(ops):
        p = f"10.0.0.{peer + 1}"
        if kind == "STATE":
            lines.append(f"BGP4MP|{1000 + i}|STATE|{p}|{65000 + peer}|6|{state_code}")
        elif kind == "W":
            lines.append(f"BGP4MP|{1000 + i}|W|{p}|{65000 + peer}|{net}.0.0.0/{length}")
        else:
            lines.append(
                f"BGP4MP|{1000 + i}|A|{p}|{65000 + peer}|{net}.0.0.0/{length}|65000 {64500 + i}|IGP|{p}|0|0||NAG||"
            )
    state = RoutingState(RoutingConfig(full_feed_v4=1))
    step = max(1, len(lines) // parts)
    peak: Counter[str] = Counter()  # a peer's largest table after any applied part since it came up
    done: list[str] = []
    for lo in range(0, len(lines), step):
        batch = lines[lo : lo + step]
        state.apply(routes_table(batch))
        for ln in batch:  # the state applies a batch in parts cut at peer-downs
            f = ln.split("|")
            if f[2] == "STATE" and f[6] != "6":
                _note_peaks(peak, oracle_table(tuple(done)))
                peak[f[3]] = 0
            done.append(ln)
        _note_peaks(peak, oracle_table(tuple(done)))
    oracle = oracle_table(tuple(lines))
    assert state_arrow(state.routes()).equals(oracle_arrow(oracle))
    full = {p for p, n in peak.items() if n > 1}
    assert _full_feeds(state) == full
    origins: dict[str, Counter[int]] = {}
    full_origins: dict[str, Counter[int]] = {}
    for (who, pfx), (origin, _) in oracle.items():
        origins.setdefault(pfx, Counter())[origin or 0] += 1
        if who in full:
            full_origins.setdefault(pfx, Counter())[origin or 0] += 1
    snap = state.snapshot()
    got = {
        str(addr.format_prefix(p, n)): o
        for p, n, o in zip(*[snap.column(c).to_pylist() for c in ("prefix", "prefix_len", "origin_asn")], strict=True)
    }
    votes = {p: full_origins.get(p) or c for p, c in origins.items()}
    assert got == {p: min(a for a, k in c.items() if k == max(c.values())) for p, c in votes.items()}
    state.visible_slash24_by_asn()


def _note_peaks(peak: Counter[str], table: dict[tuple[str, str], tuple[int | None, str]]) -> None:
    for peer, n in Counter(p for p, _ in table).items():
        peak[peer] = max(peak[peer], n)


def test_reannouncing_known_routes_keeps_the_reach_views() -> None:
    """Most updates re-announce a route unchanged: views (visibility, LPM) must not be rebuilt for them."""
    rib, _ = jinx_tables()
    state = RoutingState()
    state.apply(rib)
    view, reach, version = state.view(), state.reach_version, state.version
    col = rib.schema.get_field_index("elem_type")
    again = rib.slice(0, 50_000).set_column(col, "elem_type", pa.array(np.full(50_000, 1, np.uint8)))
    state.apply(again)  # the same routes announced again
    assert state.version > version and state.reach_version == reach and state.view() is view
    kp = _rows(rib, ["175.45.176.0/24"])
    state.apply(kp.set_column(col, "elem_type", pa.array(np.full(kp.num_rows, 2, np.uint8))))  # withdrawn
    assert state.reach_version > reach and state.view() is not view
    assert "175.45.176.0/24" not in _prefixes_of(state.snapshot())

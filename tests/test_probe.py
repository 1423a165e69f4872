"""The Trinocular prober: the model against the paper's formulas, and real hosts in network namespaces.

Probes go ONLY to 127.0.0.0/8 and to addresses that exist solely inside the network namespace this
test creates (10.77.N.0/24 routed over a veth pair; an `unreachable` route of higher metric stands
behind it so nothing can leave the machine if the veth route goes away).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blackout.config import Config
from blackout.detect.outage import outage_detectors
from blackout.engine import Engine, EngineConfig, Source
from blackout.errors import ConfigError
from blackout.model import Kind
from blackout.probe import BELIEF_DOWN, Blocks, Pacer, ProbeConfig, Prober, Targets, TcpPinger, availability, update
from blackout.probe.icmp import IcmpPinger, echo_requests
from blackout.sources import FILE_DECODERS, DecodeContext

LOOP = np.array([0x7F000001], np.uint32)  # 127.0.0.1


def ip4(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


# ------------------------------------------------------------------ the model (hand-computed)
def test_update_matches_bayes_by_hand() -> None:
    one = np.ones(1)
    # B = 0.99, A = 0.5, one silence: odds 99 · (0.5 / 0.99) = 50 → B' = 50/51
    assert update(np.array([0.99]), np.array([0.5]), 0 * one, one)[0] == pytest.approx(50 / 51)
    # A = 0.9, three silences: odds 99 · (0.1/0.99)³ = 0.1020304 → B' = 0.1020304/1.1020304 = 0.0925844
    assert update(np.array([0.99]), np.array([0.9]), 0 * one, 3 * one)[0] == pytest.approx(0.0925844, abs=1e-6)
    # from the floor, one answer with A = 0.9: odds (1/99) · 90 = 0.9090909 → B' = 10/21
    assert update(np.array([0.01]), np.array([0.9]), one, 0 * one)[0] == pytest.approx(10 / 21)
    # clamped to [0.01, 0.99], and hundreds of results at once (a census) do not overflow
    assert update(np.array([0.99]), np.array([0.9]), 300 * one, 0 * one)[0] == 0.99
    assert update(np.array([0.5]), np.array([0.9]), 0 * one, 300 * one)[0] == 0.01


def test_availability_by_hand() -> None:
    got = availability(np.array([0.0, 5.0, 0.0, 500.0]), np.array([0.0, 5.0, 20.0, 500.0]))
    # (0+1)/(0+2), (5+1)/(5+2), 1/22 → floor 0.1, 501/502 → ceiling 0.99
    assert got.tolist() == pytest.approx([0.5, 6 / 7, 0.1, 0.99])


def test_adaptive_schedule_and_round_limit() -> None:
    b = Blocks(max_probes=14)
    b.set_addresses(np.array([ip4("10.0.0.1"), ip4("10.0.0.2"), ip4("10.0.1.1")], np.uint32))
    assert b.blocks.tolist() == [ip4("10.0.0.0") >> 8, ip4("10.0.1.0") >> 8]
    for _ in range(8):  # rounds in which both answer: one probe each, availability learnt (9/10)
        b.start_round()
        idx, targets = b.wave(10)
        b.observe(idx, np.ones(2, bool))
        assert b.wave(10)[0].tolist() == [] and b.sent.tolist() == [1, 1]
    assert availability(b.answers, b.results).tolist() == pytest.approx([0.9, 0.9])
    b.start_round()
    idx, targets = b.wave(10)
    assert idx.tolist() == [0, 1] and targets.tolist() == [ip4("10.0.0.1"), ip4("10.0.1.1")]
    b.observe(idx, np.array([True, False]))  # block 0 confirms "up": done; block 1 moved: probe again
    assert b.active.tolist() == [False, True]
    while len((w := b.wave(10))[0]):
        b.observe(w[0], np.zeros(len(w[0]), bool))
    # by hand: odds 99 → ·(0.1/0.99) = 10 (still up: A becomes 9/11) → ·((2/11)/0.99) = 1.8365 →
    # 0.3374 → 0.0620: belief 0.0584 after 4 silences
    assert b.sent.tolist() == [1, 4] and b.belief[1] == pytest.approx(0.0620 / 1.0620, abs=2e-4)
    # a new block that stays silent: its availability is unknown (sparse or down?), the belief sinks
    # slowly and the round stops at max_probes, still uncertain
    b = Blocks(max_probes=5)
    b.set_addresses(np.array([ip4("10.0.2.1"), ip4("10.0.2.2")], np.uint32))
    b.start_round()
    while len((w := b.wave(10))[0]):
        b.observe(w[0], np.zeros(1, bool))
    assert b.sent.tolist() == [5] and BELIEF_DOWN < b.belief[0] < 0.99
    assert b.cursor.tolist() == [5]  # round robin over E(b)


def test_targets_parse() -> None:
    t = Targets.parse(["10.77.1.0/24", "10.77.2.9", "10.77.4.0/23", "10.77.2.0/24"])
    assert t.addrs.tolist() == [ip4("10.77.2.9")]
    assert (t.census << 8).tolist() == [ip4("10.77.1.0"), ip4("10.77.4.0"), ip4("10.77.5.0")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=24), max_size=4))
def test_targets_parse_fuzz(items: list[str]) -> None:
    try:
        t = Targets.parse(items)
    except ConfigError:
        return
    assert t.addrs.dtype == np.uint32 and t.census.dtype == np.uint32


# ------------------------------------------------------------------ real sockets on loopback
def test_icmp_wave_and_rate_on_loopback() -> None:
    pinger = IcmpPinger(Pacer(200.0), "raw")  # the kernel only answers requests whose checksum is right
    try:
        targets = np.full(40, LOOP[0], np.uint32) + np.arange(40, dtype=np.uint32)  # 127.0.0.1-40
        t0 = time.monotonic()
        answered, rtt, sent_us = pinger.wave(targets, 1.0)
        took = time.monotonic() - t0
    finally:
        pinger.close()
    assert answered.all() and np.isfinite(rtt).all() and (rtt < 1000).all()
    assert took >= 39 / 200.0 * 0.95  # the global rate limit paced the sends
    assert (np.diff(sent_us) >= 0).all()


def test_unprivileged_datagram_socket_in_namespace(hosts: Namespace) -> None:
    """The SOCK_DGRAM path, where ping_group_range allows it (set only inside the test's namespace)."""
    subprocess.run(
        ["ip", "netns", "exec", hosts.ns, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"], check=True
    )
    code = (
        "import numpy as np; from blackout.probe.icmp import IcmpPinger, Pacer\n"
        "p = IcmpPinger(Pacer(100.0), 'dgram'); a, r, _ = p.wave(np.array([0x7F000001, 0x7F000002], np.uint32), 1.0)\n"
        "print(p.raw, a.tolist(), bool(np.isfinite(r).all()))"
    )
    got = subprocess.run(
        ["ip", "netns", "exec", hosts.ns, sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert got.stdout.split() == ["False", "[True,", "True]", "True"], got.stderr


def test_echo_checksum_by_hand() -> None:
    # id 0x1234, seq 1, payload "blackout": one's complement sum of the words, by hand
    words = [0x0800, 0x1234, 0x0001, 0x626C, 0x6163, 0x6B6F, 0x7574]
    total = sum(words)
    total = (total & 0xFFFF) + (total >> 16)
    pkt = echo_requests(0x1234, np.array([1]))[0]
    assert int(pkt[2]) << 8 | int(pkt[3]) == (~total) & 0xFFFF


def test_cli_writes_atlas_lines_replay_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "probes.jsonl"
    exe = Path(sys.executable).with_name("blackout")
    run = subprocess.run(
        [
            str(exe),
            "probe",
            "127.0.0.1",
            "127.0.0.2",
            "127.0.3.0/24",
            "--rounds",
            "2",
            "--round-s",
            "0.3",
            "--rate",
            "3000",
            "--timeout",
            "0.5",
            "--out",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [ln["up"] for ln in lines[:-1]] == [2, 2] and lines[-1]["rounds"] == 2
    assert [ln["probes"] for ln in lines[:-1]] == [2, 2]  # certain blocks: one probe a round each
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == lines[-1]["probes"] == 254 + 4  # census answers + 2 rounds × 2 blocks
    rows = list(FILE_DECODERS["atlas"].read(str(out), out.read_bytes(), DecodeContext()))
    assert sum(r.num_rows for r in rows) == len(written)
    assert all(int(r.column("received").to_numpy().sum()) == r.num_rows for r in rows)


# ------------------------------------------------------------------ real hosts in a network namespace
class Namespace:
    """10.77.N.0/24 hosts .1-.3 inside a namespace, routed from the root namespace over a veth pair."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.n = 1 + os.getpid() % 200
        self.ns, self.a, self.b = f"bo-probe-{tag}", f"bpa{tag}", f"bpb{tag}"
        self.prefix = f"10.77.{self.n}.0/24"
        self.hosts = [f"10.77.{self.n}.{i}" for i in (1, 2, 3)]

    def ip(self, *args: str, ns: bool = False) -> None:
        cmd = ["ip", "-n", self.ns, *args] if ns else ["ip", *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=10)

    def up(self) -> None:
        link = f"10.76.{self.n}"
        self.ip("netns", "add", self.ns)
        self.ip("link", "add", self.a, "type", "veth", "peer", "name", self.b, "netns", self.ns)
        self.ip("addr", "add", f"{link}.1/30", "dev", self.a)
        self.ip("link", "set", self.a, "up")
        self.ip("link", "set", "lo", "up", ns=True)
        self.ip("addr", "add", f"{link}.2/30", "dev", self.b, ns=True)
        for h in self.hosts:
            self.ip("addr", "add", f"{h}/32", "dev", self.b, ns=True)
        self.set_link(True)
        self.ip("route", "add", "unreachable", self.prefix, "metric", "4000")  # never leaks past the veth
        self.ip("route", "add", self.prefix, "via", f"{link}.2", "dev", self.a)
        for h in [*self.hosts, f"10.77.{self.n}.200"]:
            got = subprocess.run(["ip", "route", "get", h], capture_output=True, text=True, check=True).stdout
            assert f"dev {self.a}" in got, f"refusing to probe {h}: {got}"

    def set_link(self, up: bool) -> None:
        """The hosts' side of the link down or up (on up, its default route back comes again)."""
        self.ip("link", "set", self.b, "up" if up else "down", ns=True)
        if up:
            self.ip("route", "replace", "default", "via", f"10.76.{self.n}.1", "dev", self.b, ns=True)

    def down(self) -> None:
        for cmd in (
            ["ip", "route", "del", self.prefix, "via", f"10.76.{self.n}.2"],
            ["ip", "route", "del", "unreachable", self.prefix, "metric", "4000"],
            ["ip", "link", "del", self.a],
            ["ip", "netns", "del", self.ns],
        ):
            subprocess.run(cmd, capture_output=True, timeout=10)


@pytest.fixture
def hosts() -> Iterator[Namespace]:
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.fail("the namespace tests need iproute2 and root (CAP_NET_ADMIN)")
    space = Namespace()
    try:
        space.up()
        yield space
    finally:
        space.down()


def test_tcp_and_icmp_waves_in_namespace(hosts: Namespace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("blackout.probe.icmp.CONNECTIONS", 3)  # two chunks of TCP connections
    targets = np.array([ip4(h) for h in hosts.hosts] + [ip4(f"10.77.{hosts.n}.200")], np.uint32)
    for pinger in (TcpPinger(Pacer(500.0), port=9), IcmpPinger(Pacer(500.0), "auto")):
        try:
            answered, rtt, _ = pinger.wave(targets, 0.4)  # TCP: RST from port 9 (nothing listens) = up
        finally:
            pinger.close()
        assert answered.tolist() == [True, True, True, False], pinger.method
        assert np.isfinite(rtt[:3]).all() and np.isnan(rtt[3])


def test_link_down_opens_outage_within_a_round(hosts: Namespace) -> None:
    round_s, down_at, up_at, rounds = 2.0, 5, 8, 11
    cfg = ProbeConfig(round_s=round_s, timeout_s=0.4, rate_pps=2000.0, max_probes=14)
    prober = Prober(Targets.parse([hosts.prefix]), cfg, name="test")
    marks: dict[str, int] = {}

    def on_round(p: Prober) -> None:
        if p.round == down_at:
            hosts.set_link(False)
            marks["down"] = time.time_ns() // 1000
        elif p.round == up_at:
            hosts.set_link(True)
            marks["up"] = time.time_ns() // 1000

    prober.on_round = on_round
    config = Config(
        {
            "outage": {
                "watch": [f"prefix:{hosts.prefix}"],
                "bin_s": 5.0,
                "method": "fast",
                "fast_warmup_s": 5.0,
                "fast_window_s": 60.0,
            },
            "engine": {"tick_s": 1.0, "lateness_s": 0.0},
        }
    )
    events: dict[str, dict] = {}

    def sink(batch: dict) -> None:
        for ev in batch.get("outages", []):
            events[ev["id"]] = ev

    engine = Engine(outage_detectors(config), sink, config.section("engine", EngineConfig))
    try:
        stats = engine.run([Source("probe", Kind.PROBE, prober.run(rounds), heartbeat=prober.heartbeat)])
    finally:
        prober.close()
    h = prober.history
    assert len(h) == rounds and h[0]["blocks"].tolist() == [ip4(hosts.prefix.split("/")[0]) >> 8]
    assert prober.blocks.addrs.tolist() == [ip4(x) for x in hosts.hosts]  # the census found E(b)
    belief = [float(r["belief"][0]) for r in h]
    sent = [int(r["sent"][0]) for r in h]
    assert all(b > 0.9 for b in belief[:down_at]) and sent[1:down_at] == [1] * (down_at - 1)
    assert belief[down_at] < BELIEF_DOWN  # within the first round after the link went down
    assert 1 < sent[down_at] <= cfg.max_probes and max(sent) <= cfg.max_probes
    assert all(b < BELIEF_DOWN for b in belief[down_at:up_at]) and sent[down_at + 1 : up_at] == [1] * 2
    assert all(b > 0.9 for b in belief[up_at:])
    assert stats.records["probe"] == sum(sent) + 3  # census answers + every E(b) probe
    found = [ev for ev in events.values() if ev["entity"] == hosts.prefix]
    assert len(found) == 1, events
    ev = found[0]
    assert "probing_up" in ev["signals"] and ev["severity"] == 1.0
    bin_us = 5_000_000
    assert marks["down"] - bin_us <= ev["start"] <= marks["down"] + round_s * 1e6 + bin_us
    assert ev["end"] is not None and marks["up"] - bin_us <= ev["end"] <= marks["up"] + round_s * 1e6 + bin_us

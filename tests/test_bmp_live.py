"""The live BMP listener against real speakers: GoBGP announces to FRR, FRR reports over BMP to blackout.

GoBGP (127.0.0.2, AS 65001) peers with FRR bgpd (127.0.0.4, AS 65003, ``-M bmp``)
on loopback; FRR monitors the session pre- and post-policy and connects to
blackout's listener (in-process for the timing test, ``blackout collect`` for
the CLI test).  The test announces and withdraws prefixes on GoBGP and asserts
that blackout's routing state, fed the decoded route batches, follows within a second.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from blackout.addr import parse
from blackout.collect.bmp import BmpCollector
from blackout.enrich.routing import RoutingState
from blackout.model import ROUTE_SCHEMA
from blackout.sources import DecodeContext
from blackout.sources.bmp import BmpStream
from conftest import need_tool

GOBGP_AS, FRR_AS = 65001, 65003
PREFIXES = ["10.77.1.0/24", "10.77.2.0/24", "10.77.3.0/25"]
PEER = parse("127.0.0.2")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def bgp_port() -> int:
    """A TCP port free on both speakers' addresses."""
    for _ in range(50):
        port = free_port("127.0.0.2")
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.4", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no common free port")


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll cond every 10 ms; return the seconds it took, fail after timeout."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - start


@dataclass
class Routes:
    """The route batches received so far, applied to blackout's routing state as the engine would."""

    batches: list[pa.RecordBatch] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    state: RoutingState = field(default_factory=RoutingState)
    peers_up: int = 0

    def add(self, batch: pa.RecordBatch) -> None:
        with self.lock:
            self.batches.append(batch)
            self.state.apply(batch)
            up = pc.and_(pc.equal(batch["elem_type"], 3), pc.equal(batch["new_state"], 6))
            self.peers_up += pc.sum(up).as_py() or 0

    def visible(self, prefix: str) -> dict[str, tuple[str, int]]:
        """Per collector view: the route of prefix from the GoBGP peer (AS path, origin AS)."""
        addr, plen = prefix.split("/")
        with self.lock:
            routes = self.state.routes().to_pylist()
        want = (PEER, parse(addr), int(plen))
        return {
            r["collector"]: (r["as_path"], r["origin_asn"])
            for r in routes
            if (r["peer_addr"], r["prefix"], r["prefix_len"]) == want
        }


def gobgp(api: int, *args: str) -> None:
    cmd = [need_tool("gobgp"), "-u", "127.0.0.1", "-p", str(api), *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


def write_configs(tmp: Path, port: int, api: int, bmp_ports: list[int]) -> tuple[Path, Path]:
    gobgp_conf = tmp / "gobgpd.toml"
    gobgp_conf.write_text(
        f"""[global.config]
  as = {GOBGP_AS}
  router-id = "127.0.0.2"
  port = {port}
  local-address-list = ["127.0.0.2"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "127.0.0.4"
    peer-as = {FRR_AS}
  [neighbors.transport.config]
    local-address = "127.0.0.2"
    remote-port = {port}
  [neighbors.timers.config]
    connect-retry = 1
"""
    )
    targets = "".join(
        f""" bmp targets T{i}
  bmp connect 127.0.0.1 port {p} min-retry 100 max-retry 500
  bmp monitor ipv4 unicast pre-policy
  bmp monitor ipv4 unicast post-policy
 exit
"""
        for i, p in enumerate(bmp_ports)
    )
    frr_conf = tmp / "bgpd.conf"
    frr_conf.write_text(
        f"""frr defaults traditional
router bgp {FRR_AS}
 bgp router-id 127.0.0.4
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp allow-martian-nexthop
 neighbor 127.0.0.2 remote-as {GOBGP_AS}
 neighbor 127.0.0.2 port {port}
 neighbor 127.0.0.2 update-source 127.0.0.4
 neighbor 127.0.0.2 timers connect 1
 address-family ipv4 unicast
  neighbor 127.0.0.2 soft-reconfiguration inbound
 exit-address-family
{targets}"""
    )
    return gobgp_conf, frr_conf


@dataclass
class Speakers:
    api: int
    collector: BmpCollector
    routes: Routes
    cli_port: int
    ctx: DecodeContext


@pytest.fixture(scope="module")
def speakers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Speakers]:
    """GoBGP and FRR running, FRR reporting over BMP to an in-process listener (and to a port for the CLI test)."""
    bgpd = Path("/usr/lib/frr/bgpd")
    if not bgpd.exists():
        pytest.fail("FRR is not installed: run `make test`, which apt-gets frr")
    gobgpd = need_tool("gobgpd")
    tmp = tmp_path_factory.mktemp("speakers")
    ctx = DecodeContext()
    collector = BmpCollector(0, ctx, host="127.0.0.1")
    routes = Routes()
    collector.start()
    consumer = threading.Thread(target=lambda: [routes.add(b) for b in collector.batches()], daemon=True)
    consumer.start()
    port, api, cli_port = bgp_port(), free_port(), free_port()
    gobgp_conf, frr_conf = write_configs(tmp, port, api, [collector.port, cli_port])
    procs: list[subprocess.Popen[bytes]] = []
    try:
        log = (tmp / "gobgpd.log").open("wb")
        procs.append(
            subprocess.Popen([gobgpd, "-f", str(gobgp_conf), "--api-hosts", f"127.0.0.1:{api}"], stdout=log, stderr=log)
        )
        flog = (tmp / "bgpd.log").open("wb")
        frr = [str(bgpd), "-f", str(frr_conf), "-i", str(tmp / "b.pid"), "-z", str(tmp / "zserv.api")]
        frr += ["--vty_socket", str(tmp), "-p", str(port), "-l", "127.0.0.4", "-Z", "-S", "-M", "bmp", "-P", "0"]
        procs.append(subprocess.Popen(frr, stdout=flog, stderr=flog))
        wait_for(lambda: routes.peers_up > 0, 60, "a BMP Peer Up from FRR")
        yield Speakers(api, collector, routes, cli_port, ctx)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        collector.stop.set()
        collector.close()
        consumer.join(timeout=5)


def test_announce_and_withdraw_follow_within_a_second(speakers: Speakers) -> None:
    """Announced prefixes appear with GoBGP's path and origin in both views, and go, each within 1 s."""
    routes = speakers.routes
    for prefix in PREFIXES:
        gobgp(speakers.api, "global", "rib", "add", prefix, "nexthop", "192.0.2.1", "-a", "ipv4")
    took = wait_for(
        lambda: all(len(routes.visible(p)) == 2 for p in PREFIXES), 5, "the announcements in both BMP views"
    )
    print(f"announcements visible after {took:.3f} s")
    assert took < 1.0, f"announcements took {took:.2f} s to arrive"
    for prefix in PREFIXES:
        views = routes.visible(prefix)
        assert set(views) == {c for c in views if c.startswith("bmp:127.0.0.")}
        assert {c.endswith(":post") for c in views} == {False, True}
        # FRR 8.4's BMP Route Monitoring carries the path as FRR would send it on (its own AS prepended; tshark
        # shows the same bytes); other versions send it as received.  The origin is GoBGP's AS either way.
        assert set(views.values()) <= {(f"{GOBGP_AS}", GOBGP_AS), (f"{FRR_AS} {GOBGP_AS}", GOBGP_AS)}
        assert len(set(views.values())) == 1
    gone = PREFIXES[:2]
    for prefix in gone:
        gobgp(speakers.api, "global", "rib", "del", prefix, "-a", "ipv4")
    took = wait_for(lambda: not any(routes.visible(p) for p in gone), 5, "the withdrawals")
    print(f"withdrawals gone after {took:.3f} s")
    assert took < 1.0, f"withdrawals took {took:.2f} s to arrive"
    assert len(routes.visible(PREFIXES[2])) == 2  # the one not withdrawn stays
    router = next(iter(routes.visible(PREFIXES[2]))).split(":")[1]
    counters = speakers.ctx.counters
    assert counters[(router, "peers_up")] >= 1 and counters[(router, "route_monitoring")] >= 2 * len(PREFIXES)
    assert counters[(router, "decode_errors")] == 0 and speakers.ctx.errors.total == 0


def test_cli_collect_bmp_only(speakers: Speakers, tmp_path: Path) -> None:
    """`blackout collect --bmp PORT` alone: FRR connects, its table dump and a new announcement are counted."""
    gobgp(speakers.api, "global", "rib", "add", "10.78.0.0/24", "nexthop", "192.0.2.1", "-a", "ipv4")
    exe = shutil.which("blackout", path=str(Path(sys.executable).parent))
    assert exe is not None
    cmd = [exe, "collect", "--bmp", str(speakers.cli_port), "--bind", "127.0.0.1", "--duration", "6", "--json"]
    cmd += ["--stats-interval", "3600", "--db", str(tmp_path / "b.duckdb")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        gobgp(speakers.api, "global", "rib", "add", "10.78.1.0/24", "nexthop", "192.0.2.1", "-a", "ipv4")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    router = report["exporters"]["127.0.0.1"]
    assert router["peers_up"] >= 1 and router["sessions"] >= 1
    assert router["route_monitoring"] >= 2 and "decode_errors" not in router
    assert report["records"]["route"] >= 2 * 2  # both prefixes, pre and post policy


def test_listener_drops_a_damaged_session_and_keeps_listening() -> None:
    """Real captured streams over TCP: same rows as the parser, end-of-session STATE rows, damage drops one session."""
    from test_bmp import ALL_BYTES, message_starts

    def rows(batches: list[pa.RecordBatch]) -> list[dict[str, object]]:
        return pa.Table.from_batches(batches, schema=ROUTE_SCHEMA).drop_columns(["ts"]).to_pylist()

    ctx = DecodeContext()
    collector = BmpCollector(0, ctx, host="127.0.0.1")
    got: list[pa.RecordBatch] = []
    lock = threading.Lock()

    def consume() -> None:
        for batch in collector.batches():
            with lock:
                got.append(batch)

    collector.start()
    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    want = rows(list(BmpStream("bmp:127.0.0.1", DecodeContext()).feed(ALL_BYTES)))
    peers = {r["peer_addr"] for r in want}  # each seen in one view: one Idle row each when the session ends
    try:
        with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as conn:
            for at in range(0, len(ALL_BYTES), 333):  # arbitrary segment sizes
                conn.sendall(ALL_BYTES[at : at + 333])
        wait_for(lambda: len(rows(got)) == len(want) + len(peers), 5, "the session's rows and end rows")
        first = rows(got)
        assert first[: len(want)] == want
        assert {r["peer_addr"] for r in first[len(want) :]} == peers
        assert {(r["elem_type"], r["new_state"]) for r in first[len(want) :]} == {(3, 1)}
        assert ctx.counters[("127.0.0.1", "sessions")] == 1
        # a damaged header in the middle of a second session: what came before is kept, the session dropped
        k = message_starts(ALL_BYTES)[10]
        bad = bytearray(ALL_BYTES)
        bad[k] = 0x42
        before = rows(list(BmpStream("bmp:127.0.0.1", DecodeContext()).feed(ALL_BYTES[:k])))
        with lock:
            got.clear()
        with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as conn:
            conn.sendall(bytes(bad))
            conn.settimeout(5)
            assert conn.recv(10) == b""  # the listener closed the session
        wait_for(lambda: len(rows(got)) >= len(before) + 1, 5, "the rows before the damage")
        assert rows(got)[: len(before)] == before
        assert ctx.counters[("127.0.0.1", "sessions_dropped")] == 1
        assert ctx.counters[("127.0.0.1", "decode_errors")] == 1
        assert ctx.errors.by_reason()["implausible BMP header"] == 1
        # and it still listens
        with lock:
            got.clear()
        with socket.create_connection(("127.0.0.1", collector.port), timeout=5) as conn:
            conn.sendall(ALL_BYTES)
        wait_for(lambda: len(rows(got)) == len(want) + len(peers), 5, "a third session's rows")
        assert ctx.counters[("127.0.0.1", "sessions")] == 3
    finally:
        collector.close()
        consumer.join(timeout=5)

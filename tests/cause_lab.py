"""The cause lab: real mechanisms that make an entity go dark, recorded to files for `blackout replay`.

* :class:`Link` — three network namespaces in a chain, edge → router → host,
  joined by veth pairs.  The edge is where the prober and the flood come from;
  the router forwards, and its port toward the host is the host's link: 64
  kbit/s (``tc tbf``) behind a 64-packet queue.  ``dumpcap`` on that port
  records every frame the host receives or sends (the flows), ``blackout
  probe`` probes the host from the edge every second (RIPE Atlas JSON).  A
  flood is a real capture re-addressed to the host by ``tcprewrite`` and
  replayed from the edge by ``tcpreplay`` (bounded: pps x seconds); a forwarded
  flood is dropped at the router's queue, not held back at its sender as a
  local queue would hold tcpreplay's socket.  A cut is ``ip link set down`` on
  the host's side, its route kept in BGP.
* :class:`Speakers` — GoBGP (AS 65001, 127.0.0.2) announcing the lab's
  prefixes with their AS paths to FRR (AS 65003, 127.0.0.4), which records
  every update in an MRT file (``dump bgp updates``); the config writers and
  helpers are tests/test_bmp_live.py's.

Names carry ``bo-lab-<pid>``; :func:`cleanup` removes whatever this process made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import need_tool
from fnm_side import _stop as stop  # terminate, wait, kill if it does not end
from test_bmp_live import bgp_port, free_port, gobgp, wait_for, write_configs

BLACKOUT = Path(sys.executable).parent / "blackout"
TAG = f"bo-lab-{os.getpid()}"
NEXT_HOP = "192.0.2.1"  # a documentation address: only a value in the route, never sent to


def sh(*argv: str, ns: str | None = None, timeout: float = 20) -> str:
    """Run a command (inside namespace ns), fail with its stderr."""
    cmd = ([need_tool("ip"), "netns", "exec", ns] if ns else []) + list(argv)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


@dataclasses.dataclass
class Link:
    """One edge → router → host chain of namespaces and what runs on it."""

    name: str
    index: int  # 1..: the edge is 10.200.<index>.1, the host 10.201.<index>.2, the router .2 / .1 between
    work: Path
    procs: list[subprocess.Popen[Any]] = dataclasses.field(default_factory=list)

    def ns(self, role: str) -> str:
        """The namespace of edge, router or host."""
        return f"{TAG}-{self.name}-{role}"

    def iface(self, side: str) -> str:
        """e: the edge's, r: the router's toward the edge, s: the router's toward the host, h: the host's."""
        return f"bl{os.getpid() % 100000}{side}{self.index}"

    @property
    def prefix(self) -> str:
        return f"10.201.{self.index}.0/24"

    @property
    def host(self) -> str:
        return f"10.201.{self.index}.2"

    @property
    def flows(self) -> Path:
        return self.work / f"{self.name}-flows.pcap"

    @property
    def probes(self) -> Path:
        return self.work / f"{self.name}-probes.jsonl"

    def create(self, rate: str = "64kbit") -> None:
        """The namespaces, two veth pairs, addresses, routes, and the router's rate limit toward the host."""
        ip, i = need_tool("ip"), self.index
        for role in ("edge", "router", "host"):
            sh(ip, "netns", "add", self.ns(role))
            sh(ip, "link", "set", "lo", "up", ns=self.ns(role))
        plan = [("edge", "e", "router", "r", f"10.200.{i}"), ("router", "s", "host", "h", f"10.201.{i}")]
        for left, lside, right, rside, net in plan:
            sh(ip, "link", "add", self.iface(lside), "netns", self.ns(left), "type", "veth", "peer", "name",
               self.iface(rside), "netns", self.ns(right))  # fmt: skip
            for role, side, last in ((left, lside, 1), (right, rside, 2)):
                sh(ip, "addr", "add", f"{net}.{last}/24", "dev", self.iface(side), ns=self.ns(role))
                sh(ip, "link", "set", self.iface(side), "up", ns=self.ns(role))
        sh(ip, "route", "add", "default", "via", f"10.200.{i}.2", ns=self.ns("edge"))
        sh(ip, "route", "add", "default", "via", f"10.201.{i}.1", ns=self.ns("host"))
        sysctl = need_tool("sysctl")
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
            sh(sysctl, "-qw", key, ns=self.ns("router"))
        sh(sysctl, "-qw", f"net.ipv4.conf.{self.iface('r')}.rp_filter=0", ns=self.ns("router"))
        # the router's link to the host carries `rate` behind a 64-packet queue (half a second at 64 kbit/s,
        # more than the prober's timeout): a flood beyond it keeps the queue full across tcpreplay's pauses
        # (on a busy machine it sends in bursts), so what gets in waits too long and the rest is dropped.
        # Counted in packets: in a byte-counted queue the prober's small echo requests slipped into the gap
        # a 60-byte SYN leaves, and every probe crossed a link dropping 93 % of the flood.
        tc = need_tool("tc")
        sh(tc, "qdisc", "add", "dev", self.iface("s"), "root", "handle", "1:", "tbf", "rate", rate, "burst", "4kb",
           "latency", "50ms", ns=self.ns("router"))  # fmt: skip
        sh(tc, "qdisc", "add", "dev", self.iface("s"), "parent", "1:1", "handle", "10:", "pfifo", "limit", "64",
           ns=self.ns("router"))  # fmt: skip

    def record(self, probe_timeout_s: float = 0.4) -> None:
        """Start dumpcap on the router's port toward the host (the host's link) and the prober (1 s rounds)
        on the edge; :meth:`wait_recording` waits for both."""
        self.work.mkdir(parents=True, exist_ok=True)
        dumpcap = [need_tool("dumpcap"), "-q", "-i", self.iface("s"), "-P", "-s", "128", "-w", str(self.flows)]
        log = (self.work / f"{self.name}-dumpcap.log").open("wb")
        self.procs.append(self._popen(self.ns("router"), dumpcap, log))
        self.probes.unlink(missing_ok=True)  # the prober appends
        probe = [str(BLACKOUT), "probe", self.host, "--round-s", "1", "--timeout", str(probe_timeout_s)]
        probe += ["--max-probes", "6", "--out", str(self.probes), "--json"]
        log = (self.work / f"{self.name}-probe.log").open("wb")
        self.procs.append(self._popen(self.ns("edge"), probe, log))

    @property
    def live_db(self) -> Path:
        return self.work / f"{self.name}-live.duckdb"

    def collect_live(self, sets: list[str]) -> None:
        """Also `blackout collect --interface` on the host's own interface (AF_PACKET), live into its own store.
        Not on the router's port, where dumpcap records: the collector ignores a port's outgoing frames (a
        mirror port's own transmissions), and the router sends the flood out of that port."""
        argv = [str(BLACKOUT), "collect", "--interface", self.iface("h"), "--db", str(self.live_db), "--json"]
        argv += ["--stats-interval", "3600", *[x for s in sets for x in ("--set", s)]]
        err = self.work / f"{self.name}-collect.err"
        self.procs.append(self._popen(self.ns("host"), argv, err.open("wb")))
        wait_for(lambda: b"listening" in err.read_bytes(), 60, "blackout collect to listen")

    def wait_recording(self) -> None:
        """dumpcap's file begun, the prober's first result written."""
        wait_for(lambda: self.flows.exists() and self.flows.stat().st_size >= 24, 30, "dumpcap's pcap header")
        wait_for(lambda: self.probes.exists() and self.probes.stat().st_size > 0, 60, "the prober's first result")

    def _popen(self, ns: str, argv: list[str], log: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen([need_tool("ip"), "netns", "exec", ns, *argv], stdout=log, stderr=subprocess.STDOUT)

    def cut(self, down: bool) -> None:
        """The host's side of the link down (or up again): fibre cut, power loss; nothing is withdrawn."""
        ip = need_tool("ip")
        sh(ip, "link", "set", self.iface("h"), "down" if down else "up", ns=self.ns("host"))
        if not down:  # the kernel dropped the route through the link when it went down
            sh(ip, "route", "replace", "default", "via", f"10.201.{self.index}.1", ns=self.ns("host"))

    def prepare_flood(self, capture: Path) -> Path:
        """A real capture re-addressed by tcprewrite: its target becomes the host, its frames the router's."""
        mac = sh(need_tool("ip"), "-j", "link", "show", self.iface("r"), ns=self.ns("router"))
        router_mac = json.loads(mac)[0]["address"]
        rewritten = self.work / f"{self.name}-flood.pcap"
        sh(need_tool("tcprewrite"), f"--infile={capture}", f"--outfile={rewritten}",
           f"--dstipmap={main_destination(capture)}/32:{self.host}/32", f"--enet-dmac={router_mac}",
           "--fixcsum")  # fmt: skip
        return rewritten

    def flood(self, rewritten: Path, pps: int, seconds: float) -> dict[str, float]:
        """Replay a prepared capture from the edge at pps for (at most) seconds; tcpreplay's counts."""
        out = sh(need_tool("tcpreplay"), "-i", self.iface("e"), "--pps", str(pps), "-L", str(int(pps * seconds)),
                 "--loop", "0", f"--duration={round(seconds)}", str(rewritten), ns=self.ns("edge"),
                 timeout=seconds + 30)  # fmt: skip
        sent = re.search(r"Actual: (\d+) packets", out)
        rate = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", out)
        return {"packets": float(sent.group(1)) if sent else -1.0, "pps": float(rate.group(1)) if rate else 0.0}

    def stop_recording(self) -> None:
        """Stop the prober and dumpcap cleanly (files complete)."""
        for proc in reversed(self.procs):
            stop(proc)
        self.procs.clear()

    def remove(self) -> None:
        """Processes killed, namespaces (and with them the veth pair) deleted."""
        for proc in self.procs:
            stop(proc, signal.SIGKILL, 5)
        for role in ("edge", "router", "host"):
            cmd = [need_tool("ip"), "netns", "del", self.ns(role)]
            subprocess.run(cmd, capture_output=True, timeout=10, check=False)


def main_destination(capture: Path) -> str:
    """The address most packets of a capture go to (the attack's target), by tshark."""
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(capture), "-T", "fields", "-e", "ip.dst", "-c", "2000"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    counts: dict[str, int] = {}
    for line in out.stdout.split():
        counts[line] = counts.get(line, 0) + 1
    return max(counts, key=lambda a: counts[a])


@dataclasses.dataclass
class Speakers:
    """GoBGP announcing to FRR, FRR writing every update to an MRT file."""

    work: Path
    api: int = 0
    procs: list[subprocess.Popen[Any]] = dataclasses.field(default_factory=list)

    @property
    def mrt(self) -> Path:
        return self.work / "updates.mrt"

    def start(self) -> None:
        """Both speakers up and the session established."""
        bgpd = Path("/usr/lib/frr/bgpd")
        if not bgpd.exists():
            raise RuntimeError("FRR is not installed: run `make test`, which apt-gets frr")
        self.work.mkdir(parents=True, exist_ok=True)
        port, self.api = bgp_port(), free_port()
        gobgp_conf, frr_conf = write_configs(self.work, port, self.api, [])
        frr_conf.write_text(frr_conf.read_text() + f"dump bgp updates {self.mrt}\n")
        log = (self.work / "gobgpd.log").open("wb")
        argv = [need_tool("gobgpd"), "-f", str(gobgp_conf), "--api-hosts", f"127.0.0.1:{self.api}"]
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log))
        frr = [str(bgpd), "-f", str(frr_conf), "-i", str(self.work / "b.pid"), "-z", str(self.work / "zserv.api")]
        frr += ["--vty_socket", str(self.work), "-p", str(port), "-l", "127.0.0.4", "-Z", "-S", "-P", "0"]
        log = (self.work / "bgpd.log").open("wb")
        self.procs.append(subprocess.Popen(frr, stdout=log, stderr=log))
        wait_for(self._established, 60, "the GoBGP-FRR session")

    def _established(self) -> bool:
        cmd = [need_tool("gobgp"), "-u", "127.0.0.1", "-p", str(self.api), "neighbor", "-j"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        return proc.returncode == 0 and '"session_state":6' in proc.stdout.replace(" ", "")

    def announce(self, prefix: str, path: list[int]) -> None:
        """Announce prefix with this AS path behind GoBGP's own AS (origin last)."""
        gobgp(self.api, "global", "rib", "add", prefix, "aspath", ",".join(map(str, path)), "nexthop", NEXT_HOP,
              "-a", "ipv4")  # fmt: skip

    def withdraw(self, prefix: str) -> None:
        gobgp(self.api, "global", "rib", "del", prefix, "-a", "ipv4")

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc, signal.SIGTERM, 10)
        self.procs.clear()


# ------------------------------------------------------------------ the lab's cases, recorded at once
SYNFLOOD = Path(__file__).parent / "data" / "pcap" / "stopddos" / "pkt.TCP.synflood.spoofed.pcap"
WARMUP_S = 16.0  # normal data before anything breaks (the replay's fast method needs fast_warmup_s of it)
LOSS_S = 14.0  # how long the flood / the cut lasts
AFTER_S = 10.0  # normal data again after it
FLAPS = 3  # withdraw/announce cycles of the flapping entity, all before the warm-up ends
FLOOD_PPS = 4000  # into a 64 kbit/s link (~130 SYNs/s): ~97 % of it is dropped (tc's own count)
UPSTREAM, OTHER_UPSTREAM = 65021, 65022

# entity -> (origin AS, upstream AS, prefixes); links 1..3 are the namespace chains' host prefixes
ORIGINS = {
    "ddos": (65011, UPSTREAM, ["10.201.1.0/24"]),
    "infrastructure": (65012, UPSTREAM, ["10.201.2.0/24"]),
    "instability": (65015, UPSTREAM, ["10.201.3.0/24"]),
    "routing_withdrawal": (65013, UPSTREAM, ["10.202.13.0/24", "10.202.113.0/24"]),
    "upstream_outage": (65014, OTHER_UPSTREAM, ["10.202.14.0/24"]),
}
UPSTREAM_OWN = {UPSTREAM: ["10.204.0.0/24", "10.204.1.0/24"], OTHER_UPSTREAM: ["10.203.0.0/24", "10.203.1.0/24",
                                                                             "10.203.2.0/24"]}  # fmt: skip


@dataclasses.dataclass
class Recording:
    """The recorded telemetry files and what the lab did when (wall-clock seconds)."""

    work: Path
    files: list[Path]
    loss_at: float  # when the flood, the cut and the withdrawals began
    loss_end: float
    flaps: list[tuple[float, float]]  # (withdrawn, announced again) of the flapping entity
    flood: dict[str, float]  # tcpreplay's counts
    tbf: str  # `tc -s qdisc` of the flooded link after the flood
    links: dict[str, Link]


def record_all(work: Path) -> Recording:
    """Run every case at once on one clock: three namespace chains and one GoBGP-FRR pair; files for replay."""
    links = {name: Link(name, i + 1, work) for i, name in enumerate(("ddos", "infrastructure", "instability"))}
    speakers = Speakers(work / "bgp")
    with lab(list(links.values()), speakers):
        speakers.start()
        for up, prefixes in UPSTREAM_OWN.items():
            for prefix in prefixes:
                speakers.announce(prefix, [up])
        for origin, up, prefixes in ORIGINS.values():  # the entities last: the upstreams are visible by then
            for prefix in prefixes:
                speakers.announce(prefix, [up, origin])
        for link in links.values():
            link.create()
        flood_file = links["ddos"].prepare_flood(SYNFLOOD)
        for link in links.values():  # all at once: see test_explain_lab's probing_up test for why
            link.record()
        for link in links.values():
            link.wait_recording()
        links["ddos"].collect_live(LIVE_SETS)
        start = time.time()
        flaps = []
        for k in range(FLAPS):
            _sleep_until(start + 1.0 + 3.5 * k)
            flaps.append((time.time(), 0.0))
            speakers.withdraw(ORIGINS["instability"][2][0])
            _sleep_until(flaps[-1][0] + 1.5)
            speakers.announce(ORIGINS["instability"][2][0], list(ORIGINS["instability"][1::-1]))
            flaps[-1] = (flaps[-1][0], time.time())
        _sleep_until(start + WARMUP_S)
        loss_at = time.time()
        links["infrastructure"].cut(True)
        links["instability"].cut(True)
        for prefix in UPSTREAM_OWN[OTHER_UPSTREAM]:  # the upstream loses its own routes first, then its customer's
            speakers.withdraw(prefix)
        for name in ("upstream_outage", "routing_withdrawal"):
            for prefix in ORIGINS[name][2]:
                speakers.withdraw(prefix)
        flood = links["ddos"].flood(flood_file, FLOOD_PPS, LOSS_S)
        _sleep_until(loss_at + LOSS_S)
        loss_end = time.time()
        links["infrastructure"].cut(False)
        links["instability"].cut(False)
        tbf = sh(need_tool("tc"), "-s", "qdisc", "show", "dev", links["ddos"].iface("s"), ns=links["ddos"].ns("router"))
        _sleep_until(loss_end + AFTER_S)
        for link in links.values():
            link.stop_recording()
        speakers.stop()
    files = [speakers.mrt] + [f for link in links.values() for f in (link.probes, link.flows)]
    return Recording(work, files, loss_at, loss_end, flaps, flood, tbf, links)


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


# the replay's settings: 1 s ticks, 2 s bins, the fast method with an 8 s warm-up, thresholds for a lab link
REPLAY_SETS = [
    "engine.tick_s=1",
    "outage.bin_s=2",
    "outage.method='fast'",
    "outage.fast_warmup_s=8",
    "outage.fast_window_s=60",
    "outage.traffic_min_s=4",
    "routing.full_feed_v4=2",  # GoBGP's one session carries a dozen prefixes: a full feed of this lab
    "ddos.threshold_pps=50",  # what crosses the 64 kbit/s link: ~130 SYNs/s against ~1 packet/s normally
    "ddos.ban_for_bandwidth=false",
    "ddos.average_calculation_time=1",
    "ddos.end_ticks=5",
]


# the live capture's: the same DDoS rules, each tick released as soon as it ends (frames arrive in order)
LIVE_SETS = [s for s in REPLAY_SETS if s.startswith(("ddos.", "engine."))] + ["engine.lateness_s=0"]


def live_attacks(link: Link) -> list[dict[str, Any]]:
    """`blackout attacks --json` of the link's live store."""
    out = subprocess.run([str(BLACKOUT), "attacks", "--db", str(link.live_db), "--json"], capture_output=True,
                         text=True, timeout=60, check=True)  # fmt: skip
    rows: list[dict[str, Any]] = json.loads(out.stdout)
    return rows


def watch_list(rec: Recording) -> list[str]:
    """The lab's entities: the chains' host prefixes, the BGP-only entities' origin ASes."""
    chains = [f"prefix:{rec.links[n].prefix}" for n in ("ddos", "infrastructure", "instability")]
    return chains + [f"asn:{ORIGINS[n][0]}" for n in ("routing_withdrawal", "upstream_outage")]


def replay(rec: Recording) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """`blackout replay` of every recorded file into a fresh store; `blackout outages/attacks --json`."""
    db = rec.work / "lab.duckdb"
    db.unlink(missing_ok=True)
    argv = [str(BLACKOUT), "replay", "--db", str(db), "--json", *map(str, rec.files)]
    for s in [*REPLAY_SETS, f"outage.watch={watch_list(rec)!r}"]:
        argv += ["--set", s]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode:
        raise RuntimeError(f"blackout replay: exit {proc.returncode}: {proc.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(proc.stdout)
    events = []
    for kind in ("outages", "attacks"):
        out = subprocess.run([str(BLACKOUT), kind, "--db", str(db), "--json"], capture_output=True, text=True,
                             timeout=60, check=True)  # fmt: skip
        events.append(json.loads(out.stdout))
    return events[0], events[1], summary


@contextlib.contextmanager
def lab(links: list[Link], speakers: Speakers) -> Iterator[None]:
    """Everything created inside is removed when the block ends, whatever happened."""
    try:
        yield
    finally:
        speakers.stop()
        for link in links:
            link.remove()
        cleanup()


def cleanup() -> None:
    """Delete any namespace of this process still there (a failed create half-way)."""
    ip = need_tool("ip")
    names = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, timeout=10, check=False).stdout
    for line in names.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"{TAG}-"):
            subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=10, check=False)

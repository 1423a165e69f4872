"""Real normal days through the pipeline: no country goes dark, and an AS outage is one only when the AS
really lost visibility of every prefix it had.

Input: the RouteViews jinx RIB of 2014-05-30 22:00 UTC with its 23:45-24:00 updates and the RIS rrc06
updates of 2014-05-30 22:15 and 2015-04-01 00:00 (tests/data/PROVENANCE.md), replayed in one run with the
pipeline's detectors (routing tracker, DDoS, outages with attribution), every AS and country judged with
the ``fast`` method (the IODA method's 1 h warm-up would leave only the jinx updates judged).

The oracle is bgpdump's reading of the same files (tests/bgpdump_oracle.py), replayed here in plain
Python with IODA's rule written out: a peer is a full feed above 400k IPv4 prefixes, a prefix is visible
when more than half of the full-feed peers see it, and an AS holds the visible IPv4 prefixes (/8-/24)
that full-feed peers see it originate; a watched prefix holds the visible /8-/24s inside or covering it.
An AS (prefix) outage must start in a bin at whose end the AS (prefix) holds none of the prefixes it held
at the bin's start; and every AS or watched prefix the oracle sees lose all it held in a bin must be
flagged in that bin.  Watched prefixes: the first eight the jinx updates withdraw.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import ipaddress
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from bgpdump_oracle import JINX_RIB, JINX_UPDATES, MRT, bgpdump_lines
from blackout.config import Config
from blackout.detect.outage import OutageDetector
from blackout.engine import Engine, EngineConfig
from blackout.explain.attributor import Attributor
from blackout.pipeline import Inputs, build_detectors
from blackout.sources import DecodeContext
from conftest import DATA

# ~35 s on a loaded machine: bgpdump of the 500k-line RIB (run in a thread beside the replay) and the replay
pytestmark = pytest.mark.slow
RRC06_2014 = MRT / "ris.rrc06.updates.1401488100.gz"
RRC06_2015 = MRT / "ris.rrc06.updates.1427846400.gz"
FILES = [JINX_RIB, JINX_UPDATES, RRC06_2014, RRC06_2015]
APNIC = DATA / "rir" / "delegated-apnic-20140214.txt"  # the delegations in force on 2014-05-30
BIN_S = 60
FULL_FEED_V4 = 400_000  # [routing] full_feed_v4, IODA's figure
SETTINGS = [
    "outage.all_entities=true",
    "outage.method=fast",
    "outage.emit_signals=false",
    "engine.tick_s=60",
    "outage.max_quiet_s=7200",  # every bin of 2014 judged; the ten months to 2015 are a gap, not 400k bins
    f"enrich.rir_files=['{APNIC}']",
]


Held = dict[int | str, tuple[set[str], set[str]]]  # AS or watched prefix → (prefixes held at a bin's start, at its end)


class Oracle:
    """bgpdump's routes of every file, applied in time order, asked about ASes at bin boundaries."""

    def __init__(self, files: list[Path], watched: list[str]) -> None:
        self.overlap = {w: _overlapping(w) for w in watched}  # the prefixes that can make a /24 of w visible
        near = set().union(*self.overlap.values())
        lines: list[tuple[int, int, str, list[str]]] = []
        for order, path in enumerate(files):
            collector = path.name.split(".updates")[0].split(".ribs")[0]
            lines += [(int(f[1]), order, collector, f) for f in (ln.split("|", 7) for ln in bgpdump_lines(path))]
        # Only the RIB routes of prefixes the updates touch, or of ASes originating one of those, can
        # matter; the others count toward their peer's full-feed total only (which keeps this fast).
        touched = {f[5] for _, _, _, f in lines if f[2] in ("A", "W")} | near
        ases = {_origin(f[6]) for _, _, _, f in lines if f[2] in ("A", "B") and f[5] in touched}
        keep = [x for x in lines if x[3][2] != "B" or x[3][5] in touched or _origin(x[3][6]) in ases]
        self.unkept: Counter[tuple[str, str]] = Counter(
            (c, f[3])
            for _, _, c, f in lines
            if f[2] == "B" and ":" not in f[5] and not (f[5] in touched or _origin(f[6]) in ases)
        )
        keep.sort(key=lambda x: (x[0], x[1]))  # the engine's order: event time, then source order
        self.lines = keep
        self.at = 0  # lines applied
        self.routes: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)  # v4 prefix → peer → origin
        self.by_peer: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.by_origin: dict[int, set[str]] = defaultdict(set)  # every prefix ever seen with that origin

    def touches(self, until_s: int) -> set[str]:
        """The IPv4 prefixes the lines before until_s not yet applied will touch (a peer going down: all its)."""
        out: set[str] = set()
        for _, _, collector, f in self.lines[self.at :]:
            if int(f[1]) >= until_s:
                break
            if f[2] == "STATE":
                out |= self.by_peer.get((collector, f[3]), set()) if f[6] != "6" else set()
            elif ":" not in f[5]:
                out.add(f[5])
        return out

    def advance(self, until_s: int) -> None:
        """Apply every line stamped before until_s."""
        while self.at < len(self.lines) and self.lines[self.at][0] < until_s:
            _, _, collector, f = self.lines[self.at]
            self.at += 1
            peer = (collector, f[3])
            if f[2] == "STATE":
                for pfx in self.by_peer.pop(peer, set()) if f[6] != "6" else ():
                    self.routes[pfx].pop(peer, None)
                self.unkept[peer] = self.unkept[peer] if f[6] == "6" else 0
                continue
            pfx = f[5]
            if ":" in pfx:
                continue
            if f[2] == "W":
                self.routes[pfx].pop(peer, None)
                self.by_peer[peer].discard(pfx)
                continue
            origin = _origin(f[6])
            self.routes[pfx][peer] = origin
            self.by_peer[peer].add(pfx)
            self.by_origin[origin].add(pfx)

    def full_feeds(self) -> set[tuple[str, str]]:
        return {peer for peer, pfxs in self.by_peer.items() if len(pfxs) + self.unkept[peer] > FULL_FEED_V4}

    def held(self, ases: set[int]) -> dict[int, set[str]]:
        """Per AS, the visible /8-/24 IPv4 prefixes full-feed peers see it originate."""
        full = self.full_feeds()
        return {asn: self._held(asn, full) for asn in ases}

    def _held(self, asn: int, full: set[tuple[str, str]]) -> set[str]:
        out = set()
        for pfx in self.by_origin.get(asn, ()):
            seen = {peer: o for peer, o in self.routes[pfx].items() if peer in full}
            if 2 * len(seen) > len(full) and asn in seen.values() and 8 <= int(pfx.split("/")[1]) <= 24:
                out.add(pfx)
        return out

    def held_inside(self, watched: set[str]) -> dict[int | str, set[str]]:
        """Per watched prefix, the visible prefixes (/8-/24, any origin) inside or covering it."""
        full = self.full_feeds()
        out: dict[int | str, set[str]] = {}
        for w in watched:
            known = [p for p in self.overlap[w] if p in self.routes]
            out[w] = {p for p in known if 2 * sum(peer in full for peer in self.routes[p]) > len(full)}
        return out

    def origins(self, pfxs: set[str]) -> set[int]:
        return {o for pfx in pfxs for o in self.routes[pfx].values() if o}


@functools.cache
def oracle_bins() -> dict[int, Held]:
    """Per bin (start, µs) with route changes after the first: what the ASes whose prefixes it touched held."""
    oracle = Oracle(FILES, watched_prefixes())
    oracle.advance(oracle.lines[0][0] // BIN_S * BIN_S + BIN_S)  # the RIB: nothing held before it
    out: dict[int, Held] = {}
    while oracle.at < len(oracle.lines):
        start = oracle.lines[oracle.at][0] // BIN_S * BIN_S
        touched = oracle.touches(start + BIN_S)
        ases = oracle.origins(touched)
        near = {w for w, cands in oracle.overlap.items() if cands & touched}
        before = {**oracle.held(ases), **oracle.held_inside(near)}
        oracle.advance(start + BIN_S)
        after = {**oracle.held(ases | oracle.origins(touched)), **oracle.held_inside(near)}
        out[start * 1_000_000] = {asn: (before.get(asn, set()), now) for asn, now in after.items()}
    return out


@functools.cache
def watched_prefixes() -> list[str]:
    """Prefixes watched besides all ASes: the first 8 IPv4 /8-/24s the jinx updates withdraw (each one
    costs a pass over the table per bin, ~17 ms: not all 88)."""
    lines = (line.split("|") for line in bgpdump_lines(JINX_UPDATES))
    withdrawn = {f[5] for f in lines if f[2] == "W" and ":" not in f[5] and 8 <= int(f[5].split("/")[1]) <= 24}
    return sorted(withdrawn)[:8]


def _overlapping(prefix: str) -> set[str]:
    """The texts of every prefix /8-/24 covering or inside prefix (inside: down to /24)."""
    net = ipaddress.ip_network(prefix)
    out = {str(net.supernet(new_prefix=n)) for n in range(8, net.prefixlen + 1)}
    return out | {str(sub) for n in range(net.prefixlen + 1, 25) for sub in net.subnets(new_prefix=n)}


def _origin(path: str) -> int:
    """The origin AS of a bgpdump AS path (0 for an AS_SET, as RoutingState keeps it)."""
    last = path.split(" ")[-1] if path else ""
    return int(last) if last.isdigit() else 0


def file_window(path: Path) -> tuple[int, int]:
    """First and last event time (µs) of an MRT file, per bgpdump."""
    times = [int(line.split("|")[1]) for line in bgpdump_lines(path)]
    return min(times) * 1_000_000, max(times) * 1_000_000


def apnic_countries() -> list[str]:
    with open(APNIC) as fh:
        return sorted({f[1] for f in (line.split("|") for line in fh) if len(f) > 6 and f[2] == "ipv4" and f[1]})


@dataclasses.dataclass
class Replayed:
    """What the replay found (outage records by id), its two outage detectors, and the oracle's bins."""

    records: dict[str, dict[str, Any]]  # the pipeline's outage detector (fast, every AS and country)
    fast: OutageDetector
    ioda: OutageDetector  # beside it on the same ticks: IODA's rule, every APNIC country watched
    bins: dict[int, Held]


def replay() -> tuple[OutageDetector, OutageDetector]:
    """The four files through the pipeline's detectors plus a second outage detector with the default
    method, IODA's (countries only: 47k AS windows of 1,440 bins would take a gigabyte)."""
    config = Config.load(None, [*SETTINGS, f"outage.watch={[f'prefix:{p}' for p in watched_prefixes()]}"])
    inputs = Inputs(DecodeContext(batch_size=1 << 16))
    sources = inputs.open([str(p) for p in FILES])
    detectors = build_detectors(config)
    attributor = detectors[-1]
    assert isinstance(attributor, Attributor)
    fast = attributor.outage
    watch = [f"country:{c}" for c in apnic_countries()]
    cfg = dataclasses.replace(fast.config, method="ioda", all_entities=False, watch=watch)
    ioda = OutageDetector(cfg, fast.signals.routing, fast.signals.enricher)
    Engine([*detectors, ioda], None, config.section("engine", EngineConfig)).run(sources)
    assert not inputs.failures, inputs.failures
    return fast, ioda


@pytest.fixture(scope="module")
def normal_days() -> Replayed:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # bgpdump runs while blackout replays
        oracle = pool.submit(oracle_bins)
        fast, ioda = replay()
        return Replayed({r["id"]: r for r in fast.records()}, fast, ioda, oracle.result())


def events(replayed: Replayed, window: tuple[int, int], etype: str = "asn") -> list[dict[str, Any]]:
    """The AS (or prefix) outages that started in the bins of an input file's time window."""
    lo, hi = window[0] // (BIN_S * 1_000_000) * BIN_S * 1_000_000, window[1]
    return [r for r in replayed.records.values() if r["entity_type"] == etype and lo <= r["start"] <= hi]


def key(record: dict[str, Any]) -> int | str:
    """The oracle's key of an outage's entity: the AS number, or the prefix text."""
    return int(record["entity"]) if record["entity_type"] == "asn" else str(record["entity"])


def not_real(replayed: Replayed, found: list[dict[str, Any]]) -> list[str]:
    """The outages in whose first bin the oracle sees the entity keep a visible prefix it had (or have none)."""
    bad = []
    for ev in found:
        before, after = replayed.bins.get(ev["start"], {}).get(key(ev), (set(), set()))
        if not before or after:
            bad.append(f"{ev['entity']} at {ev['start']}: held {sorted(before)}, still held {sorted(after)}")
    return bad


def test_no_country_goes_dark(normal_days: Replayed) -> None:
    """Normal days: no country-level outage, though every APNIC country's BGP signal was judged."""
    countries = normal_days.fast.signals.registries[("bgp", "country")]
    assert len(countries) > 40 and "KP" in countries.labels().to_pylist()  # judged, not absent
    assert len(normal_days.fast.signals.registries[("bgp", "asn")]) > 40_000  # every AS of the full table
    assert [r for r in normal_days.records.values() if r["entity_type"] == "country"] == []


def test_no_country_goes_dark_by_iodas_rule(normal_days: Replayed) -> None:
    """The same with the default method, IODA's: warning below 99 % of the 24 h median, after 1 h of
    warm-up, so the jinx updates and the 2015 file are judged."""
    judged = normal_days.ioda.signals.registries[("bgp", "country")]
    assert len(judged) > 40 and normal_days.ioda.trackers[("bgp", "country")].count.max() > 60  # past warm-up
    assert normal_days.ioda.records() == []


def test_every_as_outage_in_the_jinx_updates_is_real(normal_days: Replayed) -> None:
    """AS outages opened by the jinx updates: in each, the AS lost every prefix it held."""
    found = events(normal_days, file_window(JINX_UPDATES))
    assert found, "the jinx updates withdraw whole ASes (the oracle below says which): none flagged"
    assert not_real(normal_days, found) == []


def test_every_prefix_outage_is_real(normal_days: Replayed) -> None:
    """Watched prefixes: in each outage every visible route inside or covering the prefix went."""
    found = [r for r in normal_days.records.values() if r["entity_type"] == "prefix"]
    assert found, "the jinx updates withdraw watched prefixes (the oracle below says which): none flagged"
    assert not_real(normal_days, found) == []


def test_every_as_outage_in_the_ris_updates_is_real(normal_days: Replayed) -> None:
    """AS outages opened by the rrc06 updates (not full feeds): in each, the AS lost every prefix it held."""
    found = events(normal_days, file_window(RRC06_2014)) + events(normal_days, file_window(RRC06_2015))
    assert not_real(normal_days, found) == []


def test_every_as_and_prefix_that_lost_all_is_flagged_in_that_bin(normal_days: Replayed) -> None:
    """The other way round: each AS or watched prefix the oracle sees lose all it held in a bin has an
    outage starting then (fast method, so no hour of warm-up hides the jinx and 2015 bins)."""
    records, bins = normal_days.records, normal_days.bins
    since_rib = {}  # whether the entity held prefixes when the updates first touched it (the fast rule's
    for start in sorted(bins):  # level is the last hour's median: a prefix announced minutes earlier has none)
        for k, (b, _) in bins[start].items():
            since_rib.setdefault(k, bool(b))
    expected = {(t, k) for t, held in bins.items() for k, (b, a) in held.items() if b and not a and since_rib[k]}
    found = {(r["start"], key(r)) for r in records.values() if r["entity_type"] in ("asn", "prefix")}
    assert sum(isinstance(k, int) for _, k in expected) >= 5  # the jinx updates take several ASes off
    assert sum(isinstance(k, str) for _, k in expected) >= 3  # ... and several watched prefixes
    assert sorted(expected - found) == []

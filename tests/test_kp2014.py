"""Issue 8's acceptance: blackout's own output on the Dec-2014 North Korea reconstruction says what ATLAS and
Dyn published.

The scenario is generated from the table of published figures (scenario/facts.py) and replayed once per
session with the demo's settings (tests/kp_replay.py).  Every expectation comes from that table or from
truth.json (what the generator put in, which the detectors never read); what is checked is the store and
`blackout report --format json`, the outputs a user sees.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from blackout.cli.main import main
from blackout.scenario.facts import KP2014
from blackout.scenario.render import HEAVY_BPS
from kp_replay import Replayed, replayed

EDGE_S = 60  # issue 8: each edge of the 22 Dec outage within 60 s
REFLECTION = {"ntp": "ntp_amplification", "ssdp": "ssdp_amplification"}
ASN = str(KP2014.origin_asn)


@pytest.fixture(scope="session")
def kp(kp_scenario: Path) -> Replayed:
    return replayed(kp_scenario)


@pytest.fixture(scope="session")
def report(kp: Replayed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`blackout report --country KP --format json` over 18-22 Dec, as a user runs it."""
    out = tmp_path_factory.mktemp("kp-report") / "report.json"
    args = ["report", "--country", "KP", "--from", "2014-12-18", "--to", "2014-12-23", "--format", "json"]
    assert main([*args, "--db", kp.db, "--out", str(out)]) == 0
    return dict(json.loads(out.read_text()))


def sec(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def day(report: dict[str, Any], date: str) -> dict[str, Any]:
    return dict(next(d for d in report["days"] if d["day"] == date))


def as_outages(kp: Replayed) -> list[dict[str, Any]]:
    return sorted((o for o in kp.outages if o["entity_type"] == "asn" and o["entity"] == ASN), key=lambda o: o["start"])


def outage_at(kp: Replayed, start: dt.datetime) -> dict[str, Any]:
    """AS131279's outage that begins within EDGE_S of a published start."""
    (rec,) = [o for o in as_outages(kp) if abs(sec(o["start"]) - start.timestamp()) <= EDGE_S]
    return rec


def planned(kp: Replayed, attack: dict[str, Any]) -> dict[str, Any]:
    """The scenario's attack a detected one is: same target, overlapping in time."""
    lo, hi = sec(attack["start"]), sec(attack["end"] or "2014-12-29T00:00:00Z")
    (plan,) = [
        a
        for a in kp.truth["attacks"]
        if a["target"] == attack["target"] and sec(a["start"]) < hi and lo < sec(a["end"])
    ]
    return dict(plan)


def summary(rec: dict[str, Any]) -> str:
    return str(rec["verdict"]["causes"][0]["evidence"][0]["text"])


# ------------------------------------------------------------------ ATLAS: the attacks
def test_attacks_per_day_are_atlas_counts(report: dict[str, Any], kp: Replayed) -> None:
    counts = {d["day"]: d["attacks"] for d in report["days"]}
    assert counts["2014-12-18"] == KP2014.attacks_per_day["2014-12-18"] == 2
    assert counts["2014-12-19"] == KP2014.attacks_per_day["2014-12-19"] == 4
    assert counts["2014-12-20"] > 10
    for date, n in counts.items():  # and every other day too: each planned attack found once
        assert n == sum(a["start"][:10] == date for a in kp.truth["attacks"]), date


def test_peak_is_597_gbps_and_170_mpps_on_20_dec(report: dict[str, Any]) -> None:
    busiest = max(report["days"], key=lambda d: d["peak_bps"] or 0.0)
    assert busiest["day"] == KP2014.peak_day
    assert busiest["peak_bps"] == pytest.approx(KP2014.peak_bps, rel=0.02)
    assert busiest["peak_pps"] == pytest.approx(KP2014.peak_pps, rel=0.02)
    assert report["total"]["peak_bps"] == busiest["peak_bps"]


def test_vectors_shift_from_port_80_floods_to_ntp_and_ssdp_reflection_on_dns(kp: Replayed) -> None:
    """Before 21 Dec: SYN and UDP floods (the port-80 floods); from 21 Dec: NTP (source port 123) and SSDP
    (1900) reflection, toward the DNS servers (port 53).  Each detected attack's main vector is the one the
    scenario put in."""
    late_from = sec(f"{KP2014.late_vectors_from}T00:00:00Z")
    dns = {ip for ip, (role, _) in KP2014.targets.items() if role == "dns"}
    early, late = set(), set()
    for attack in kp.attacks:
        main_vector = attack["vectors"][0]["name"]
        plan = planned(kp, attack)
        if plan["vector"] == "syn_flood":
            assert plan["dst_port"] == KP2014.early_dst_port
        assert main_vector == plan["vector"], (attack["start"], attack["target"])
        if sec(attack["start"]) < late_from:
            early.add(main_vector)
        else:
            late.add(main_vector)
            assert attack["target"] in dns
    assert early == {"syn_flood", "udp_flood"}
    assert late == {REFLECTION[name] for name, _, _ in KP2014.late_vectors}


def test_six_attacks_with_the_us_as_main_source(report: dict[str, Any], kp: Replayed) -> None:
    top = report["total"]["source_countries"][0]
    assert (top["country"], top["attacks"]) == ("US", KP2014.us_main_source_attacks)
    us_attacks = [a for a in kp.attacks if a["source_countries"][0]["country"] == "US"]
    assert len(us_attacks) == KP2014.us_main_source_attacks
    assert all(planned(kp, a)["main_country"] == "US" for a in us_attacks)


def test_the_five_targets_with_their_roles(report: dict[str, Any]) -> None:
    targets = {t["target"]: t for t in report["total"]["targets"]}
    assert set(targets) == set(KP2014.targets)
    assert {ip: t["role"] for ip, t in targets.items()} == {ip: role for ip, (role, _) in KP2014.targets.items()}


# ------------------------------------------------------------------ Dyn: instability and the outages
def test_instability_from_21_dec(kp: Replayed) -> None:
    """AS131279's routes flap from 21 Dec and not before: every routing outage before the 22 Dec loss is a
    flap the scenario put in, and the 22 Dec verdict dates the instability to the first of them."""
    flaps = [d for d in kp.truth["route_downs"] if d["kind"] == "flap"]
    assert sec(flaps[0]["start"]) >= KP2014.instability_from.timestamp()
    before = [o for o in as_outages(kp) if sec(o["start"]) < KP2014.outage_1[0].timestamp() - EDGE_S]
    routing = [o for o in before if "bgp" in o["signals"]]
    assert len(routing) >= len(flaps) // 2, [o["start"] for o in routing]
    for o in routing:
        assert any(abs(sec(o["start"]) - sec(f["start"])) <= EDGE_S for f in flaps), o["start"]
    causes = outage_at(kp, KP2014.outage_1[0])["verdict"]["causes"]
    instability = next(c for c in causes if c["cause"] == "instability")["evidence"][0]
    assert abs(sec(instability["time"]) - sec(flaps[0]["start"])) <= EDGE_S
    assert instability["value"] == len(flaps)


def test_pings_lost_under_the_heaviest_attacks_are_the_only_other_outages(kp: Replayed) -> None:
    """Every outage a routing signal saw is a loss the scenario put in; the scenario also drops 60 % of the
    pings while an attack of 2 Gbps or more runs: outages seen by the probes alone, inside such an attack."""
    heavy = [a for a in kp.truth["attacks"] if a["peak_bps"] >= HEAVY_BPS]
    downs = kp.truth["route_downs"]
    for o in kp.outages:
        families = {s.split("_")[0] for s in o["signals"]}
        if "bgp" in families:
            assert any(abs(sec(o["start"]) - sec(d["start"])) <= EDGE_S for d in downs), (o["entity"], o["start"])
        elif "probing" in families:
            assert any(sec(a["start"]) <= sec(o["start"]) < sec(a["end"]) for a in heavy), (o["entity"], o["start"])


def test_no_outage_from_traffic_alone(kp: Replayed) -> None:
    alone = [o for o in kp.outages if all(s.startswith("traffic") for s in o["signals"])]
    assert not alone, [(o["entity"], o["start"], o["end"]) for o in alone]


@pytest.mark.parametrize("entity", [("asn", ASN), ("country", "KP"), ("prefix", "175.45.176.0/22")])
def test_22_dec_outage_within_60_s_at_each_edge(kp: Replayed, entity: tuple[str, str]) -> None:
    start, end = KP2014.outage_1
    (rec,) = [
        o
        for o in kp.outages
        if (o["entity_type"], o["entity"]) == entity and abs(sec(o["start"]) - start.timestamp()) <= EDGE_S
    ]
    assert rec["end"] is not None
    assert abs(sec(rec["end"]) - end.timestamp()) <= EDGE_S, rec["end"]
    assert rec["severity"] == 1.0


def test_the_two_later_outages(kp: Replayed) -> None:
    outages = [d for d in kp.truth["route_downs"] if d["kind"] == "outage"]
    for (begin, seconds), plan in zip((KP2014.outage_2, KP2014.outage_3), outages[1:], strict=True):
        rec = outage_at(kp, begin)
        assert abs(sec(rec["end"]) - sec(plan["end"])) <= EDGE_S
        assert sec(rec["end"]) - sec(rec["start"]) == pytest.approx(seconds, abs=2 * EDGE_S)


# ------------------------------------------------------------------ the verdicts
def test_22_dec_is_a_withdrawal_after_days_of_ddos_and_a_day_of_instability(kp: Replayed) -> None:
    rec = outage_at(kp, KP2014.outage_1[0])
    causes = rec["verdict"]["causes"]
    assert [c["cause"] for c in causes] == ["routing_withdrawal", "ddos", "instability"]
    text = summary(rec)
    head = f"routing withdrawal of AS{KP2014.origin_asn}'s {len(KP2014.prefixes)} prefixes"
    assert text.startswith(f"{head} (AS{KP2014.upstream_asn} still visible), after ")
    first_attack = min(a["start"] for a in kp.truth["attacks"])
    days = int((sec(rec["start"][:10] + "T00:00:00Z") - sec(first_attack[:10] + "T00:00:00Z")) // 86400)
    assert f"{days} days of DDoS peaking at " in text
    stated = float(text.split("peaking at ")[1].split(" Gbps")[0]) * 1e9
    assert stated == pytest.approx(KP2014.peak_bps, rel=0.02)
    assert "1 day of instability" in text
    for et, name in (("country", "KP"), ("prefix", "175.45.176.0/22")):
        (other,) = [
            o for o in kp.outages if (o["entity_type"], o["entity"]) == (et, name) and o["start"] == rec["start"]
        ]
        assert other["verdict"]["causes"][0]["cause"] == "routing_withdrawal"


def test_27_dec_had_no_attack_no_instability_and_is_not_the_same_cause(kp: Replayed) -> None:
    rec = outage_at(kp, KP2014.outage_3[0])
    causes = [c["cause"] for c in rec["verdict"]["causes"]]
    assert "ddos" not in causes and "instability" not in causes
    assert summary(rec) != summary(outage_at(kp, KP2014.outage_1[0]))

"""Cause attribution: labelled cases built from the real jinx RIB, and the Dec-2014 KP reconstruction end to end.

Labelled cases (real peers, real AS paths): AS131279's own rows withdrawn at every peer is a routing
withdrawal with AS4837 still visible; the same with every route AS4837 originates withdrawn too is an
upstream outage naming AS4837; four withdraw/announce cycles the day before add instability.  The KP
reconstruction is judged against the published record (tests/data/truth, scenario facts): the 22 Dec loss
is AS131279's four /24s withdrawn with AS4837 still visible, after days of DDoS and a day of flapping;
the 27 Dec loss had no attack and no instability before it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from blackout.detect.outage import OutageConfig, OutageDetector
from blackout.detect.routing_tracker import RoutingTracker
from blackout.engine import Engine, EngineConfig, Source
from blackout.enrich.country import Delegations
from blackout.enrich.enricher import RoutingEnricher
from blackout.enrich.routing import RoutingState
from blackout.explain.attributor import Attributor
from blackout.model import ElemType, Kind
from conftest import DATA
from kp_replay import Replayed, replayed
from test_outage import kp_rows, rib, stamped, us  # the real jinx RIB and its KP rows, as decoded there

APNIC = DATA / "rir" / "delegated-apnic-20141102.txt"


def origin_rows(asn: int) -> pa.Table:
    t = rib()
    return t.filter(pa.array(t.column("origin_asn").to_numpy(zero_copy_only=False) == asn))


def verdicts(routes: list[pa.Table]) -> list[dict[str, Any]]:
    """Outage records of AS131279 (fast method) from one engine run, the last version of each."""
    state = RoutingState()
    enricher = RoutingEnricher(state, Delegations.load([APNIC]))
    outage = OutageDetector(OutageConfig(watch=["asn:131279"], method="fast"), state, enricher)
    sunk: dict[str, dict[str, Any]] = {}

    def sink(batch: dict[str, Any]) -> None:
        sunk.update({r["id"]: r for r in batch.get("outages", [])})

    source = Source("routes", Kind.ROUTE, pa.concat_tables(routes).to_batches(max_chunksize=1 << 16))
    Engine([RoutingTracker(state), Attributor(outage, None, enricher)], sink, EngineConfig(tick_s=60)).run([source])
    return sorted(sunk.values(), key=lambda r: r["start"])


def summary(rec: dict[str, Any]) -> str:
    return str(rec["verdict"]["causes"][0]["evidence"][0]["text"])


def test_kp_prefixes_withdrawn_is_routing_withdrawal_with_the_upstream_still_visible() -> None:
    t0, down = us("2014-12-22T10:00:00Z"), us("2014-12-22T16:15:00Z")
    (rec,) = verdicts([stamped(rib(), t0), stamped(kp_rows(), down, ElemType.WITHDRAW)])
    causes = rec["verdict"]["causes"]
    assert causes[0]["cause"] == "routing_withdrawal"
    assert [c["cause"] for c in causes[1:]] == ["infrastructure"]  # the alternative: no attack, no flapping
    assert summary(rec) == "routing withdrawal of AS131279's 4 prefixes (AS4837 still visible)"
    upstream = next(e for e in causes[0]["evidence"] if e["signal"] == "upstream")
    visible_4837 = len(
        set(zip(*[origin_rows(4837).column(c).to_pylist() for c in ("prefix", "prefix_len")], strict=True))
    )
    assert 0 < upstream["value"] <= visible_4837


def test_upstream_routes_withdrawn_too_is_upstream_outage_naming_it() -> None:
    t0, down = us("2014-12-22T10:00:00Z"), us("2014-12-22T16:15:00Z")
    gone = pa.concat_tables([kp_rows(), origin_rows(4837)])
    (rec,) = verdicts([stamped(rib(), t0), stamped(gone, down, ElemType.WITHDRAW)])
    top = rec["verdict"]["causes"][0]
    assert top["cause"] == "upstream_outage"
    assert "AS4837 lost its routes" in summary(rec)
    upstream = next(e for e in top["evidence"] if e["signal"] == "upstream")
    assert upstream["value"] == 0.0


def test_flapping_the_day_before_is_kept_as_instability() -> None:
    t0, down = us("2014-12-21T00:00:00Z"), us("2014-12-22T16:15:00Z")
    routes = [stamped(rib(), t0)]
    for hour in (3, 7, 11, 15):  # four cycles, 10 minutes down each
        routes.append(stamped(kp_rows(), t0 + hour * 3600_000_000, ElemType.WITHDRAW))
        routes.append(stamped(kp_rows(), t0 + hour * 3600_000_000 + 600_000_000, ElemType.ANNOUNCE))
    routes.append(stamped(kp_rows(), down, ElemType.WITHDRAW))
    last = verdicts(routes)[-1]
    causes = last["verdict"]["causes"]
    assert last["start"] == down
    assert [c["cause"] for c in causes] == ["routing_withdrawal", "instability"]
    assert causes[1]["evidence"][0]["value"] == 4.0
    assert summary(last).endswith("after 1 day of instability (4 flaps)")


# ------------------------------------------------------------------ the Dec-2014 reconstruction
@pytest.fixture(scope="session")
def kp(kp_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return replayed(kp_scenario, tmp_path_factory.mktemp("kp-replay"))


def kp_outage(kp: Replayed, k: int) -> dict[str, Any]:
    """AS131279's outage in which the scenario's k-th total withdrawal begins (flaps are outages too)."""
    start = [d["start"] for d in kp.truth["route_downs"] if d["kind"] == "outage"][k]
    (rec,) = [o for o in kp.outages if o["entity"] == "131279" and o["start"] <= start < (o["end"] or "~")]
    return rec


def test_dec22_reads_as_the_published_record(kp: Replayed) -> None:
    rec = kp_outage(kp, 0)
    causes = rec["verdict"]["causes"]
    assert [c["cause"] for c in causes] == ["routing_withdrawal", "ddos", "instability"]
    text = summary(rec)
    assert text.startswith("routing withdrawal of AS131279's 4 prefixes (AS4837 still visible), after ")
    truth = kp.truth
    first = min(a["start"] for a in truth["attacks"])
    days = (us(rec["start"][:10]) - us(first[:10])) // 86_400_000_000  # calendar days: 18 -> 22 Dec is 4
    peak = max(a["peak_bps"] for a in truth["attacks"])
    assert f"{days} days of DDoS peaking at " in text
    stated = float(text.split("peaking at ")[1].split(" Gbps")[0]) * 1e9
    assert stated == pytest.approx(peak, rel=0.02)
    flaps = [d for d in truth["route_downs"] if d["kind"] == "flap"]
    n = int(next(c for c in causes if c["cause"] == "instability")["evidence"][0]["value"])
    assert n == len(flaps)  # every flap the scenario put in, and only those
    assert f"1 day of instability ({n} flaps)" in text
    for entity in ("country:KP", "prefix:175.45.176.0/22"):
        et, name = entity.split(":")
        (other,) = [
            o for o in kp.outages if (o["entity_type"], o["entity"]) == (et, name) and o["start"] == rec["start"]
        ]
        assert other["verdict"]["causes"][0]["cause"] == "routing_withdrawal"


def test_dec27_is_not_the_same_cause(kp: Replayed) -> None:
    rec = kp_outage(kp, 2)
    causes = [c["cause"] for c in rec["verdict"]["causes"]]
    assert "ddos" not in causes and "instability" not in causes
    assert causes[0] in ("routing_withdrawal", "infrastructure")
    assert summary(rec) != summary(kp_outage(kp, 0))

"""Cause attribution on labelled cases built from the real jinx RIB (real peers, real AS paths).

AS131279's own rows withdrawn at every peer is a routing withdrawal with AS4837 still visible; the same
with every route AS4837 originates withdrawn too is an upstream outage naming AS4837; four
withdraw/announce cycles the day before add instability.  The verdicts on the Dec-2014 reconstruction
are issue 8's acceptance test, tests/test_kp2014.py.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from blackout.config import Config
from blackout.detect.ddos import DdosDetector
from blackout.detect.ddos_config import DdosConfig
from blackout.detect.outage import OutageConfig, OutageDetector
from blackout.detect.routing_tracker import RoutingTracker
from blackout.engine import Engine, EngineConfig, Source
from blackout.enrich.country import Delegations
from blackout.enrich.enricher import RoutingEnricher
from blackout.enrich.routing import RoutingState
from blackout.events import dumps
from blackout.explain.attributor import AttackTap, Attributor
from blackout.model import ElemType, Kind
from conftest import DATA
from test_ddos import LOW, SYNFLOOD, pcap_flows, run
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


def test_attack_tap_passes_records_through_and_reports_the_inner_counters() -> None:
    """The tap around the real DDoS detector on the StopDDoS SYN flood plus two copies of its rows with 0 packets:
    the same attacks as the bare detector on the flood, and the detector's own count of the left-out rows
    through tap.counters()."""
    flows = pcap_flows(SYNFLOOD)
    bad = flows.slice(1000, 2)
    bad = bad.set_column(
        bad.schema.get_field_index("packets"), bad.schema.field("packets"), pa.array([0, 0], pa.uint64())
    )
    zeroed = pa.concat_tables([flows, bad]).sort_by("ts")
    inner = DdosDetector(Config.load(overrides=LOW).section("ddos", DdosConfig))
    tap = AttackTap(inner)
    got = run(zeroed, detector=tap)  # type: ignore[arg-type]
    assert dumps(got) == dumps(run(flows, LOW))
    assert sorted(tap.records) == sorted(r["id"] for r in got)
    assert tap.counters() == inner.counters() and tap.counters()["bad_rows"] == 2
    assert AttackTap(RoutingTracker(RoutingState())).counters() == {}  # type: ignore[arg-type]

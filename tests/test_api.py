"""The REST API over a store filled by replaying the real StopDDoS captures (and the 2014 KP outage).

Oracles: the CLI's own `blackout attacks --json` (the API must return the same
JSON), capinfos (attacks lie inside the captures' time span), the store's rows,
the AS names table, and the app's own OpenAPI document (schemathesis).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from blackout.enrich.asnames import AsNames
from blackout.serve.api import MAX_LIMIT, create_app
from blackout.store import open_store
from conftest import DATA, need_tool
from serve_store import KP_END, KP_START, PCAPS, US, shared

ASNAMES = str(DATA / "asn/asnames.json.gz")
TOKEN = "t0ken-for-tests"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared(tmp_path_factory)


@pytest.fixture(scope="module")
def client(db: str) -> TestClient:
    return TestClient(create_app(db, token=TOKEN, asnames=ASNAMES))


def cli_json(db: str, table: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "blackout.cli.main", table, "--json", "--db", db],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


def capture_span(path: str) -> tuple[float, float]:
    """First and last packet times (epoch s) by capinfos."""
    out = subprocess.run(
        [need_tool("capinfos"), "-a", "-e", "-S", "-T", "-r", path], capture_output=True, text=True, check=True
    )
    fields = out.stdout.strip().split("\t")
    return float(fields[1]), float(fields[2])


# ------------------------------------------------------------------ attacks
def test_attacks_are_the_cli_json_and_come_from_the_captures(client: TestClient, db: str) -> None:
    cli = cli_json(db, "attacks")
    assert cli, "replaying the StopDDoS captures found no attack"
    body = client.get("/attacks", params={"limit": MAX_LIMIT}).json()
    assert body["data"] == cli and body["total"] == len(cli)
    for rec in cli:
        assert client.get(f"/attacks/{rec['id']}").json() == rec
    spans = [capture_span(p) for p in PCAPS]
    for rec in cli:
        start = time.mktime(time.strptime(rec["start"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert any(a - 1 <= start <= b + 1 for a, b in spans), rec["start"]


def test_pagination(client: TestClient) -> None:
    full = client.get("/attacks", params={"limit": MAX_LIMIT}).json()["data"]
    pages, offset = [], 0
    while offset is not None:
        body = client.get("/attacks", params={"limit": 1, "offset": offset}).json()
        assert body["limit"] == 1 and body["total"] == len(full)
        pages += body["data"]
        offset = body["next_offset"]
    assert pages == full
    assert client.get("/attacks").json()["limit"] == 100  # the default
    for bad in ({"limit": 0}, {"limit": MAX_LIMIT + 1}, {"offset": -1}, {"limit": "ten"}):
        r = client.get("/attacks", params=bad)
        assert r.status_code == 400 and r.json()["error"], bad


def test_filters(client: TestClient) -> None:
    full = client.get("/attacks", params={"limit": MAX_LIMIT}).json()["data"]
    vector = full[0]["vectors"][0]["name"]
    got = client.get("/attacks", params={"vector": vector, "limit": MAX_LIMIT}).json()["data"]
    assert got == [a for a in full if vector in {v["name"] for v in a["vectors"]}]
    assert client.get("/attacks", params={"vector": "no_such_vector"}).json()["total"] == 0
    target = full[-1]["target"]
    got = client.get("/attacks", params={"target": target, "limit": MAX_LIMIT}).json()["data"]
    assert got == [a for a in full if a["target"] == target]


def test_time_ranges_in_iso_and_epoch(client: TestClient) -> None:
    full = client.get("/attacks", params={"limit": MAX_LIMIT}).json()["data"]
    last = full[-1]
    start_s = int(time.mktime(time.strptime(last["start"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone)
    by_epoch = client.get("/attacks", params={"from": start_s}).json()["data"]
    by_iso = client.get("/attacks", params={"from": last["start"]}).json()["data"]
    by_offset = client.get("/attacks", params={"from": last["start"].replace("Z", "+00:00")}).json()["data"]
    assert by_epoch == by_iso == by_offset and last in by_iso
    expected = [a for a in full if (a["end"] or a["start"]) >= last["start"]]
    assert by_iso == expected
    before = client.get("/attacks", params={"until": full[0]["start"]}).json()
    assert before["total"] == 0  # until is exclusive
    for params in ({"from": "yesterday-ish"}, {"from": "2021-04-02", "until": "2021-04-01"}, {"until": "1e300"}):
        r = client.get("/attacks", params=params)
        assert r.status_code == 400, params
        assert "from" in r.json()["error"] or "until" in r.json()["error"]


def test_unknown_attack_is_404(client: TestClient) -> None:
    r = client.get("/attacks/a-00000000000000000000")
    assert r.status_code == 404 and "GET /attacks" in r.json()["error"]


# ------------------------------------------------------------------ outages
def test_outage_events_in_three_formats(client: TestClient, db: str) -> None:
    stored = cli_json(db, "outages")
    raw = client.get("/outages/events", params={"format": "blackout"}).json()
    assert raw["data"] == stored
    codf = client.get("/outages/events", params={"format": "codf"}).json()["data"]
    assert {c["location"] for c in codf} == {f"{o['entity_type']}/{o['entity']}" for o in stored}
    for c in codf:
        assert set(c) >= {"location", "start", "duration", "uncertainty", "status", "fraction", "score"}
        assert c["start"] == KP_START // US and c["duration"] == (KP_END - KP_START) // US
        assert c["overlaps_window"] is False and c["status"] == 0
    # a window that cuts the event: flagged, as IODA does
    cut = client.get("/outages/events", params={"format": "codf", "until": (KP_START + 3600 * US) // US}).json()
    assert all(c["overlaps_window"] for c in cut["data"]) and cut["total"] == len(stored)
    ioda = client.get("/outages/events", params={"entityType": "asn", "entityCode": "AS131279"}).json()["data"]
    assert [e["entity"]["name"] for e in ioda] == [f"AS131279 {AsNames.load(ASNAMES).name(131279)}"]
    assert client.get("/outages/events", params={"format": "csv"}).status_code == 400


def test_summary_and_verdicts(client: TestClient, db: str) -> None:
    stored = cli_json(db, "outages")
    summary = client.get("/outages/summary").json()["data"]
    assert sum(s["event_cnt"] for s in summary) == len(stored)
    assert sum(s["scores"]["overall"] for s in summary) == pytest.approx(sum(o["score"] for o in stored))
    verdicts = client.get("/verdicts", params={"entityType": "country", "entityCode": "kp"}).json()["data"]
    kp = [o for o in stored if o["entity"] == "KP"]
    assert [v["causes"] for v in verdicts] == [o["verdict"]["causes"] for o in kp]


def test_alerts_recomputed_from_signals(client: TestClient) -> None:
    alerts = client.get("/outages/alerts", params={"entityType": "country", "entityCode": "KP"}).json()["data"]
    assert [(a["time"], a["level"]) for a in alerts] == [(KP_START // US, "critical"), (KP_END // US, "normal")]
    assert alerts[0]["value"] == 0 and alerts[0]["historyValue"] > 0
    other = {"entityType": "country", "entityCode": "KP", "datasource": "ping-slash24"}
    assert client.get("/outages/alerts", params=other).json()["data"] == []  # no probing stored
    r = client.get("/outages/alerts", params={"entityType": "planet", "entityCode": "earth"})
    assert r.status_code == 400 and "entityType" in r.json()["error"]


# ------------------------------------------------------------ signals, entities
def test_signals_raw_and_normalised(client: TestClient, db: str) -> None:
    store = open_store(db)
    stored = store.signals("country", "KP", "bgp").to_pylist()
    store.close()
    body = client.get("/signals/raw/country/KP", params={"maxPoints": 20000}).json()
    (series,) = body["data"]
    assert series["nativeStep"] == series["step"] == 60
    assert series["values"] == [r["value"] for r in stored]
    assert series["from"] == int(stored[0]["ts"].timestamp())
    norm = client.get("/signals/raw/country/KP", params={"maxPoints": 20000, "normalised": "true"}).json()["data"][0]
    assert norm["values"] == [v / series["median"] for v in series["values"]]
    coarse = client.get("/signals/raw/country/KP", params={"maxPoints": 100}).json()["data"][0]
    assert coarse["step"] % 60 == 0 and len(coarse["values"]) <= 100 and coarse["nativeStep"] == 60
    dark = client.get("/signals/raw/country/KP", params={"from": KP_START // US, "until": KP_END // US}).json()
    assert set(dark["data"][0]["values"]) == {0.0}
    assert client.get("/signals/raw/country/KP", params={"datasource": "bgp"}).json()["data"][0]["signal"] == "bgp"
    assert client.get("/signals/raw/country/KP", params={"datasource": "flows"}).json()["data"] == []
    assert client.get("/signals/raw/country/KPX").status_code == 404
    r = client.get("/signals/raw/galaxy/KP")
    assert r.status_code == 400 and "'country', 'asn' or 'prefix'" in r.json()["error"]


def test_entities_query(client: TestClient) -> None:
    handle = AsNames.load(ASNAMES).name(131279)
    found = client.get("/entities/query", params={"search": handle.lower()}).json()["data"]
    assert {"type": "asn", "code": "131279", "name": f"AS131279 {handle}", "attacks": 0, "outages": 1} in found
    kp = client.get("/entities/query", params={"search": "KP", "entityType": "country"}).json()["data"]
    assert [e["code"] for e in kp] == ["KP"]
    assert client.get("/entities/query", params={"search": "zzzz-nothing"}).json()["data"] == []


# ------------------------------------------------------------ service, security
def test_health_metrics_and_report(client: TestClient, db: str) -> None:
    assert client.get("/health").json()["status"] == "ok"
    text = client.get("/metrics").text
    assert f'blackout_store_events{{table="attacks"}} {len(cli_json(db, "attacks"))}' in text
    assert f'blackout_store_events{{table="outages"}} {len(cli_json(db, "outages"))}' in text
    r = client.get("/reports/daily", params={"entity": "country:KP", "day": "2014-12-22"})
    assert r.status_code == 200, r.text
    body = r.json()  # the same builder as `blackout report`
    assert (body["entity_type"], body["entity"], body["from"]) == ("country", "KP", "2014-12-22T00:00:00Z")
    assert client.get("/reports/daily", params={"day": "2014-12-22"}).status_code == 400  # no entity


def test_request_limits(client: TestClient) -> None:
    r = client.post("/attacks", content=b"x" * (65 * 1024))
    assert r.status_code == 413
    r = client.get("/attacks", params={"target": "1" * 5000})
    assert r.status_code == 414 and "URL" in r.json()["error"]
    r = client.post("/attacks", headers={"content-length": "lots"}, content=b"")
    assert r.status_code == 400 and "Content-Length" in r.json()["error"]


def test_changes_need_the_token(db: str, tmp_path: Path) -> None:
    copy = str(tmp_path / "copy.duckdb")
    shutil.copyfile(db, copy)
    open_client = TestClient(create_app(copy))
    victim = open_client.get("/attacks").json()["data"][0]["id"]
    assert open_client.delete(f"/attacks/{victim}").status_code == 403  # no token configured: no changes
    guarded = TestClient(create_app(copy, token=TOKEN, read_mode="direct"))
    assert guarded.delete(f"/attacks/{victim}").status_code == 401
    assert guarded.delete(f"/attacks/{victim}", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = guarded.delete(f"/attacks/{victim}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json() == {"deleted": victim}
    assert guarded.get(f"/attacks/{victim}").status_code == 404
    assert victim not in [a["id"] for a in cli_json(copy, "attacks")]


WRITER = """
import sys
from blackout.store import open_store
store = open_store(sys.argv[1])
rec = dict(store.events("attacks")[0])
store.upsert({"attacks": [{**rec, "id": "a-writer-holds-the-lock", "start": 1700000000000000, "end": None,
    "peak_bps_at": None, "peak_pps_at": None}]})
print("ready", flush=True)
sys.stdin.read()
store.close()
"""


def test_reads_while_another_process_writes(db: str, tmp_path: Path) -> None:
    copy = str(tmp_path / "shared.duckdb")
    shutil.copyfile(db, copy)
    client = TestClient(create_app(copy))
    before = client.get("/attacks").json()["total"]
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, copy], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(1.1)  # past the snapshot refresh interval
        body = client.get("/attacks").json()  # the writer holds DuckDB's lock: served from a snapshot
        assert body["total"] == before + 1
        assert client.get("/attacks/a-writer-holds-the-lock").json()["end"] is None
    finally:
        writer.communicate("", timeout=30)
    assert writer.returncode == 0
    # serve holds no lock between requests: another writer can open the store right after a read
    client.get("/attacks")
    again = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from blackout.store import open_store; open_store(sys.argv[1]).close()",
            copy,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr


# ------------------------------------------------------------- schemathesis
def test_openapi_property(client: TestClient) -> None:
    """Whatever the app's own OpenAPI document allows never makes it fail, answers match the document,
    and every error carries a message (schemathesis' checks, a few examples per operation)."""
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]

        @given(operation.as_strategy())
        @settings(
            max_examples=4, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
        )
        def check(case: Any) -> None:
            response = case.call()
            # every check but "schema-valid data is accepted": until-after-from and real calendar
            # dates are constraints OpenAPI cannot state, and their 400 is the point
            case.validate_response(response, excluded_checks=[positive_data_acceptance])
            if response.status_code >= 400:
                assert response.json()["error"]

        try:
            check()
        except Exception as exc:  # keep going: report every operation that fails
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n".join(failures)


def test_time_forms() -> None:
    from blackout.serve.params import QueryError, parse_time

    now = 1_419_264_000 * US
    assert parse_time("2014-12-22", "from") == parse_time("2014-12-22T00:00:00Z", "from") == 1_419_206_400 * US
    assert parse_time("2014-12-22T17:00:00+01:00", "from") == parse_time("1419264000", "from") == now
    assert parse_time("1419264000.5", "from") == now + US // 2
    assert parse_time("-6h", "from", now_us=now) == now - 6 * 3600 * US
    assert parse_time("-7d", "from", now_us=now) == now - 7 * 86400 * US
    for bad in ("-1e10", "nan", "99999999999999", "0001-01-01", "noon"):
        with pytest.raises(QueryError, match="from="):
            parse_time(bad, "from")


def test_metrics_export_a_collectors_stats_file(db: str, tmp_path: Path) -> None:
    stats = tmp_path / "collect.json"
    stats.write_text(json.dumps({"exporters": {"127.0.0.1": {"records": 61023, "errors": 2}}, "ok": True}))
    text = TestClient(create_app(db, stats_file=str(stats))).get("/metrics").text
    assert "blackout_collect_exporters_127_0_0_1_records 61023" in text
    assert "blackout_collect_exporters_127_0_0_1_errors 2" in text


def test_missing_store_says_how_to_make_one(tmp_path: Path) -> None:
    r = TestClient(create_app(str(tmp_path / "none.duckdb"))).get("/attacks")
    assert r.status_code == 503 and "blackout replay" in r.json()["error"]

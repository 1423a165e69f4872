"""`blackout report` on the Dec-2014 KP reconstruction, against what the scenario put in (truth.json, which
the detectors never read) and the published ATLAS figures: 2 / 4 / 11 attacks on 18 / 19 / 20 Dec, the
5.97 Gbps peak on 20 Dec, six attacks with the United States as main source; every form says the same."""

from __future__ import annotations

import csv
import html
import io
import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from blackout.cli.main import main
from blackout.scenario.facts import KP2014
from kp_replay import Replayed, replayed

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def kp(kp_scenario: Path, tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    return replayed(kp_scenario, tmp_path_factory.mktemp("kp-replay"))


@pytest.fixture(scope="session")
def names(kp: Replayed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's table of target names (address,name), from the published list of targets."""
    path = tmp_path_factory.mktemp("names") / "names.csv"
    rows = ["address,name"] + [f"{ip},{t['name']}" for ip, t in kp.truth["targets"].items()]
    path.write_text("\n".join(rows) + "\n")
    return path


def report(kp: Replayed, names: Path, fmt: str, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    args = ["report", "--country", "KP", "--from", "2014-12-18", "--to", "2014-12-22", "--format", fmt]
    assert main([*args, "--db", kp.db, "--names", str(names), *extra]) == 0
    return capsys.readouterr().out


def truth_per_day(kp: Replayed) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for a in kp.truth["attacks"]:
        out.setdefault(a["start"][:10], []).append(a)
    return out


def test_daily_counts_peak_and_sources_match_the_scenario(
    kp: Replayed, names: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rep = json.loads(report(kp, names, "json", capsys))
    per_day = truth_per_day(kp)
    assert [d["day"] for d in rep["days"]] == [f"2014-12-{n}" for n in range(18, 23)]
    assert [d["attacks"] for d in rep["days"]] == [len(per_day[d["day"]]) for d in rep["days"]]
    assert [d["attacks"] for d in rep["days"]][:3] == [KP2014.attacks_per_day[f"2014-12-{n}"] for n in (18, 19, 20)]
    peak_day = max(rep["days"], key=lambda d: d["peak_bps"] or 0)
    assert peak_day["day"] == "2014-12-20"
    assert peak_day["peak_bps"] == pytest.approx(KP2014.peak_bps, rel=0.02)
    truth_pps = max(a["peak_pps"] for a in truth_per_day(kp)["2014-12-20"])
    assert peak_day["peak_pps"] == pytest.approx(truth_pps, rel=0.02)
    main_src = Counter(
        a["main_country"] for a in kp.truth["attacks"] if "2014-12-18" <= a["start"][:10] <= "2014-12-22"
    )
    top = rep["total"]["source_countries"][0]
    assert (top["country"], top["attacks"]) == ("US", main_src["US"]) == ("US", KP2014.us_main_source_attacks)
    assert top["text"] == "6 from the United States"
    got = {c["country"]: c["attacks"] for c in rep["total"]["source_countries"]}
    assert got == dict(main_src)
    assert {t["target"] for t in rep["total"]["targets"]} == {a["target"] for a in kp.truth["attacks"]}
    for t in rep["total"]["targets"]:  # the role is what the DDoS detector inferred from the traffic
        assert t["name"] == kp.truth["targets"][t["target"]]["name"]
        assert t["role"] in ("web", "dns", "mail", "ntp", "bgp", "other")
    down = next(d["start"] for d in kp.truth["route_downs"] if d["kind"] == "outage")
    (dark,) = [o for o in rep["outages"] if o["start"] <= down < (o["end"] or "~")]
    assert dark["cause"] == "routing_withdrawal"
    assert "AS4837 still visible" in dark["verdict"]


def test_json_csv_html_md_agree(kp: Replayed, names: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rep = json.loads(report(kp, names, "json", capsys))
    rows = list(csv.DictReader(io.StringIO(report(kp, names, "csv", capsys))))
    assert [(r["day"], int(r["attacks"])) for r in rows] == [(d["day"], d["attacks"]) for d in rep["days"]]
    assert [float(r["peak_bps"] or 0) for r in rows] == [d["peak_bps"] or 0 for d in rep["days"]]
    page = report(kp, names, "html", capsys)
    embedded = page.split("<script type='application/json' id='report'>")[1].split("</script>")[0]
    assert json.loads(html.unescape(embedded)) == rep
    assert "data:image/png;base64," in page and "<table>" in page
    md = report(kp, names, "md", capsys)
    for d in rep["days"]:
        assert f"| {d['day']} | {d['attacks']} |" in md
    assert "6 from the United States" in md and "AS4837 still visible" in md


def test_timeline_png_and_svg_are_valid_images(
    kp: Replayed, names: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = tmp_path / "kp-timeline"
    report(kp, names, "md", capsys, "--plot", str(base))
    png = Path(f"{base}.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(png)) as img:
        img.verify()
    with Image.open(io.BytesIO(png)) as img:
        assert img.size == (1200, 600)
    root = ET.parse(f"{base}.svg").getroot()
    assert root.tag.endswith("svg")


def test_bad_period_is_a_clear_error(kp: Replayed, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--asn", "131279", "--from", "2014-12-22", "--to", "2014-12-18", "--db", kp.db]) == 2
    assert "--to must be after --from" in capsys.readouterr().err

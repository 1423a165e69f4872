"""`blackout report` on the Dec-2014 KP reconstruction, against what the scenario put in (truth.json, which
the detectors never read): the source countries and target names, and every form (JSON, CSV, HTML, markdown,
the plot) saying the same."""

from __future__ import annotations

import csv
import html
import io
import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from blackout.cli.main import main
from kp_replay import Replayed, replayed

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def kp(kp_scenario: Path) -> Replayed:
    return replayed(kp_scenario)


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


def test_every_source_country_and_target_name_is_the_scenarios(
    kp: Replayed, names: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report's ranking of main source countries is the scenario's, with its sentence; the targets carry
    the user's names.  (The published figures themselves — counts per day, the peak, six from the US, the
    roles, the verdicts — are issue 8's acceptance test, tests/test_kp2014.py.)"""
    rep = json.loads(report(kp, names, "json", capsys))
    main_src = Counter(
        a["main_country"] for a in kp.truth["attacks"] if "2014-12-18" <= a["start"][:10] <= "2014-12-22"
    )
    got = {c["country"]: c["attacks"] for c in rep["total"]["source_countries"]}
    assert got == dict(main_src)
    assert rep["total"]["source_countries"][0]["text"] == f"{main_src['US']} from the United States"
    for t in rep["total"]["targets"]:
        assert t["name"] == kp.truth["targets"][t["target"]]["name"]


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


def test_names_table_counts_what_it_skips(tmp_path: Path) -> None:
    """A hostile names table: header, comment, a bad address, a one-column line and bytes that are not
    UTF-8; the good lines are read and every other line but the header is reported by number."""
    from blackout.explain.report import load_names

    path = tmp_path / "names.csv"
    path.write_bytes(
        b"address,name\n175.45.176.8,DNS 1\n# comment\nnot-an-address,x\n175.45.176.9\n\xff\xfe,zz\n"
        b"2001:db8::1,v6 host\n"
    )
    names, skipped = load_names(str(path))
    assert names == {"175.45.176.8": "DNS 1", "2001:db8::1": "v6 host"}
    assert skipped == [4, 5, 6]


def test_names_table_skips_an_oversized_field(tmp_path: Path) -> None:
    """A name longer than csv's field limit raised csv.Error out of load_names (a traceback from
    `blackout report --names`); now that line is counted and the lines after it are still read."""
    import csv

    from blackout.explain.report import load_names

    path = tmp_path / "names.csv"
    huge = "x" * (csv.field_size_limit() + 1)
    path.write_text(f"address,name\n175.45.176.8,{huge}\n175.45.176.9,DNS 2\n")
    names, skipped = load_names(str(path))
    assert names == {"175.45.176.9": "DNS 2"}
    assert skipped == [2]

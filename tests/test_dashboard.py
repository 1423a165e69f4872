"""`blackout serve` as a real process, its dashboard loaded in headless Debian Chromium.

The store is the replayed StopDDoS captures plus the 2014 KP outage
(tests/serve_store.py); the DOM Chromium renders must show the events that
`blackout attacks --json` / `blackout outages --json` list.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blackout.serve.api import STATIC
from cdp import Chromium
from conftest import DATA, need_tool
from serve_store import shared

BLACKOUT = [sys.executable, "-m", "blackout.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared(tmp_path_factory)


@contextlib.contextmanager
def serving(db: str) -> Iterator[str]:
    """`blackout serve` on a free loopback port; SIGTERM at the end must exit 0."""
    port = free_port()
    cmd = [*BLACKOUT, "serve", "--db", db, "--port", str(port), "--asnames", str(DATA / "asn/asnames.json.gz")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if json.load(r)["status"] == "ok":
                    break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("blackout serve did not answer: " + proc.communicate()[1])
    yield url
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err  # SIGTERM stops it cleanly


@pytest.fixture(scope="module")
def server(db: str) -> Iterator[str]:
    with serving(db) as url:
        yield url


def cli(db: str, table: str) -> list[dict[str, Any]]:
    out = subprocess.run([*BLACKOUT, table, "--json", "--db", db], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def chromium(url: str, tmp: Path, *mode: str) -> str:
    """Run headless Chromium on the page, give its scripts time to fetch and render."""
    exe = need_tool("chromium")
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        "--window-size=1280,1000",
        "--virtual-time-budget=5000",
        *mode,
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_overview_shows_the_stored_events(server: str, db: str, tmp_path: Path) -> None:
    dom = chromium(server + "/#/", tmp_path, "--dump-dom")
    attacks, outages = cli(db, "attacks"), cli(db, "outages")
    assert attacks and outages
    for event in attacks + outages:
        assert f'data-id="{event["id"]}"' in dom
    assert re.search(rf'id="n-attacks">{len(attacks)}<', dom)
    assert re.search(rf'id="n-outages">{len(outages)}<', dom)
    shot = tmp_path / "overview.png"
    chromium(server + "/#/", tmp_path, f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_entity_page_has_signal_chart_bands_and_verdict(server: str, db: str, tmp_path: Path) -> None:
    dom = chromium(server + "/#/entity/country/KP", tmp_path, "--dump-dom")
    kp = [o for o in cli(db, "outages") if o["entity"] == "KP"]
    assert kp and f'data-id="{kp[0]["id"]}"' in dom
    assert dom.count('class="band"') == len(kp)  # one outage band per outage
    assert '<path d="M' in dom  # the BGP signal is drawn
    causes = kp[0]["verdict"]["causes"]
    assert causes[0]["cause"] in dom and causes[0]["evidence"][0]["text"] in dom


def test_attack_page_and_shareable_range(server: str, db: str, tmp_path: Path) -> None:
    attack = cli(db, "attacks")[-1]
    dom = chromium(f"{server}/#/attack/{attack['id']}", tmp_path, "--dump-dom")
    assert f"Attack on {attack['target']}" in dom and attack["id"] in dom
    for v in attack["vectors"]:
        assert v["name"] in dom
    # the range lives in the URL: a range starting after the attack's end shows it no more
    after = dt.datetime.fromisoformat(str(attack["end"])) + dt.timedelta(seconds=1)
    dom = chromium(f"{server}/#/?from={int(after.timestamp())}", tmp_path, "--dump-dom")
    assert f'data-id="{attack["id"]}"' not in dom and 'id="n-attacks">' in dom


def test_assets_are_all_local() -> None:
    """Offline: the page loads nothing from another host."""
    for path in STATIC.iterdir():
        text = path.read_text()
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (path.name, urls)


NEW_ATTACK = """
import sys
from blackout.store import open_store
store = open_store(sys.argv[1])
rec = store.events("attacks")[0]
store.upsert({"attacks": [{**rec, "id": "a-live-mode-test", "start": 1700000000000000, "end": None,
    "peak_bps_at": None, "peak_pps_at": None}]})
store.close()
"""


def test_live_mode_shows_a_new_attack_without_reload(db: str, tmp_path: Path) -> None:
    """The page stays open while another process writes an ongoing attack; live mode redraws it."""
    copy = tmp_path / "live.duckdb"
    shutil.copyfile(db, copy)
    count = "document.getElementById('n-attacks') && document.getElementById('n-attacks').textContent"
    hit = "document.getElementById('n-hit') && document.getElementById('n-hit').textContent"
    with serving(str(copy)) as url:
        browser = Chromium(need_tool("chromium"), tmp_path / "profile")
        try:
            browser.open(url + "/#/")
            before = len(cli(str(copy), "attacks"))
            assert browser.wait_for(count, str(before), 20) == str(before)
            subprocess.run([sys.executable, "-c", NEW_ATTACK, str(copy)], check=True, timeout=60)
            assert browser.wait_for(count, str(before + 1), 20) == str(before + 1)
            assert browser.eval(hit) == "1"  # the new attack has no end: under attack now
            assert browser.eval("location.hash") == "#/"  # redrawn in place, not reloaded elsewhere
        finally:
            browser.close()


def test_refuses_public_bind_without_token(db: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BLACKOUT_TOKEN"}
    out = subprocess.run(
        [*BLACKOUT, "serve", "--db", db, "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 2 and "without a token" in out.stderr


DRAG = """(() => {
  const svg = document.querySelector('.chart svg'), r = svg.getBoundingClientRect();
  const at = (f) => ({clientX: r.left + r.width * f, clientY: r.top + r.height / 2, bubbles: true});
  svg.dispatchEvent(new MouseEvent('mousedown', at(0.3)));
  svg.dispatchEvent(new MouseEvent('mousemove', at(0.6)));
  svg.dispatchEvent(new MouseEvent('mouseup', at(0.6)));
  return location.hash;
})()"""


def test_zoom_and_normalised_toggle_go_into_the_url(server: str, tmp_path: Path) -> None:
    browser = Chromium(need_tool("chromium"), tmp_path / "profile")
    try:
        browser.open(server + "/#/entity/asn/131279")
        assert browser.wait_for("document.querySelectorAll('.chart svg path.series').length", 1, 20) == 1
        page = browser.eval(DRAG)
        zoomed = dict(p.split("=") for p in page.split("?", 1)[1].split("&"))
        start, end = int(zoomed["from"]), int(zoomed["until"])
        assert start < end
        with urllib.request.urlopen(f"{server}/signals/raw/asn/131279?maxPoints=20000") as r:
            full = json.load(r)["data"][0]
        # the plot spans x = 60..988 of chart.js' 1000-wide view box, first to last point
        first, last = full["from"] + 30, full["until"] - 30  # points sit mid-bin (60 s bins)
        frac = [(f * 1000 - 60) / 928 for f in (0.3, 0.6)]
        expected = [first + f * (last - first) for f in frac]
        assert abs(start - expected[0]) <= 120 and abs(end - expected[1]) <= 120
        browser.eval("document.getElementById('norm').click()")
        assert browser.wait_for("location.hash", page + "&norm=1", 10) == page + "&norm=1"
        # normalised: values ÷ median (4 /24s) = 1, so the y axis tops at 1 + 8 % headroom
        labels = "[...document.querySelectorAll('.chart svg text')].map(t => t.textContent)"
        assert browser.wait_for(f"{labels}.includes('1.08')", True, 10) is True
    finally:
        browser.close()

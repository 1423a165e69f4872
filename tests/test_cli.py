"""The CLI contract: real subprocesses of the installed `blackout` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import DATA, need_tool

SYN = DATA / "pcap/stopddos/pkt.TCP.synflood.spoofed.pcap"
SYNACK = DATA / "pcap/stopddos/amp.TCP.reflection.SYNACK.pcap"


def blackout(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("blackout")
    env = {**os.environ, "CI": "1"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def capinfos_packets(path: Path) -> int:
    out = subprocess.run([need_tool("capinfos"), "-M", "-c", "-T", str(path)], capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1].split("\t")[-1])


def test_help_explains_each_command_with_an_example() -> None:
    for command in ("inspect", "replay", "attacks", "outages", "demo"):
        result = blackout(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: blackout " + command in result.stdout
    assert "examples:" in blackout("inspect", "--help").stdout


def test_inspect_counts_equal_capinfos_and_damage_is_one_line_exit_2(tmp_path: Path) -> None:
    unknown = tmp_path / "notes.txt"
    unknown.write_text("not telemetry\n")
    damaged = tmp_path / "cut.pcap"
    damaged.write_bytes(SYNACK.read_bytes()[:10])  # the global header itself is cut
    result = blackout("inspect", "--count", str(unknown), str(SYN), str(damaged), str(SYNACK))
    assert result.returncode == 2
    summary = json.loads(result.stdout)
    # The other files are still decoded: every frame is a record or a counted skip (4 ARP frames here).
    assert summary["records"] + summary["errors"] == capinfos_packets(SYN) + capinfos_packets(SYNACK)
    assert summary["error_reasons"] == {"non-ip frame": summary["errors"]}
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and str(unknown) in lines[0] and str(damaged) in lines[1]
    assert all(line.startswith("blackout: ") for line in lines)


def test_inspect_json_lines() -> None:
    result = blackout("inspect", str(SYN))
    assert result.returncode == 0
    first = json.loads(result.stdout.splitlines()[0])
    assert first["ts"].endswith("Z") and first["protocol"] == 6 and first["dst_addr"].startswith("10.10.10.")


def test_replay_twice_into_one_store_keeps_one_copy(tmp_path: Path) -> None:
    db = str(tmp_path / "b.duckdb")
    first = blackout("replay", "--json", "--db", db, str(SYN), str(SYNACK))
    assert first.returncode == 0, first.stderr
    again = blackout("replay", "--json", "--db", db, str(SYN), str(SYNACK))
    one, two = json.loads(first.stdout), json.loads(again.stdout)
    assert one["records"]["flow"] + one["skipped"] == capinfos_packets(SYN) + capinfos_packets(SYNACK)
    assert two["attacks_in_store"] == one["attacks_in_store"]
    listed = json.loads(blackout("attacks", "--json", "--db", db).stdout)
    assert len(listed) == one["attacks_in_store"] == len({a["id"] for a in listed})


def test_bad_set_value_is_one_line_exit_2(tmp_path: Path) -> None:
    result = blackout("replay", "--db", str(tmp_path / "x.duckdb"), "--set", "engine.tick_s=soon", str(SYN))
    assert result.returncode == 2
    assert result.stderr.strip() == "blackout: engine.tick_s: expected float, got 'soon'"

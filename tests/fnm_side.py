"""FastNetMon 1.2.4 and `blackout collect --interface` side by side on the same replayed attack.

A network namespace and a veth pair are made per run (unique names, removed
afterwards); both detectors capture on the namespace's end with AF_PACKET and
the same thresholds, tcpreplay plays a capture into the host's end (bounded in
packets and seconds), and each detector's notify script writes the wall clock
of its ban.  The delay is that clock minus the replay start.  Traffic never
leaves the veth pair.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

BLACKOUT = Path(sys.executable).with_name("blackout")
NOTIFY = """#!/bin/sh
t=$(date +%s.%N)
body=$(cat)
printf '@@ %s %s\\n%s\\n' "$t" "$*" "$body" >> {out}
"""
FNM_CONF = """disable_usage_report = on
enable_ban = on
ban_for_pps = on
ban_for_bandwidth = off
ban_for_flows = off
threshold_pps = {threshold}
networks_list_path = {dir}/networks_list
mirror_afpacket = on
interfaces = {iface}
average_calculation_time = 5
notify_script_path = {dir}/fnm_notify.sh
enable_api = off
prometheus = off
pid_path = {dir}/fnm.pid
cli_stats_file_path = {dir}/fnm.stats
"""


@dataclasses.dataclass
class Ban:
    """A detector's first ban: when (s after the replay started), whom, and the attack type or vector it named."""

    delay_s: float
    target: str
    kind: str
    pps: int


@dataclasses.dataclass
class Run:
    """The outcome of one side-by-side replay."""

    capture: str
    fnm: Ban | None
    blackout: Ban | None
    crossing_s: float | None  # when the replayed rate first exceeds the threshold over a 1 s window
    replayed: int  # packets tcpreplay sent
    replay_pps: float  # the rate tcpreplay reports
    report: dict[str, Any]  # blackout collect's final JSON report


def tools() -> dict[str, str]:
    """Paths of the Debian tools this needs (fastnetmon, tcpreplay, ip)."""
    from conftest import need_tool

    return {name: need_tool(name) for name in ("fastnetmon", "tcpreplay", "ip")}


def crossing(pcap: Path, threshold_pps: float, pps: float | None, limit: int) -> float | None:
    """Seconds from the first replayed packet until more than threshold_pps packets fell within one second."""
    if pps is None:
        from blackout.sources import DecodeContext, read_input
        from blackout.sources.pcap import PcapDecoder

        ts = np.concatenate(
            [
                b.column("ts").cast("int64").to_numpy()
                for b in PcapDecoder().read(str(pcap), read_input(str(pcap)), DecodeContext())
            ]
        )[:limit]
        ts = (ts - ts[0]) / 1e6
    else:
        ts = np.arange(limit) / pps
    inside = np.arange(len(ts)) - np.searchsorted(ts, ts - 1.0, side="right") + 1
    hot = np.flatnonzero(inside > threshold_pps)
    return float(ts[hot[0]]) if len(hot) else None


def _bans(path: Path, t0: float, vector_line: bool) -> Ban | None:
    """The first `ban` call a notify script recorded."""
    if not path.exists():
        return None
    for block in path.read_text().split("@@ ")[1:]:
        head, _, body = block.partition("\n")
        fields = head.split()
        if len(fields) < 5 or fields[4] != "ban":
            continue
        m = re.search(r"^Vectors: (\S+)" if vector_line else r"^Attack type: (\S+)", body, re.M)
        return Ban(float(fields[0]) - t0, fields[1], m.group(1) if m else "?", int(fields[3]))
    return None


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=10)


def _stop(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def side_by_side(
    pcap: Path,
    work: Path,
    *,
    threshold_pps: int = 500,
    networks: tuple[str, ...] = ("10.10.10.0/24",),
    pps: float | None = None,
    limit: int = 40000,
    max_s: float = 25.0,
    after_s: float = 0.0,
    tick_s: float = 0.25,
    topspeed: bool = False,
    loops: int = 1,
) -> Run:
    """Replay pcap (at its recorded speed, or at pps) into a fresh veth pair and time both detectors' bans.

    The replay stops at `limit` packets, after `max_s` seconds, or `after_s` seconds once both have banned.
    `topspeed` replays as fast as tcpreplay can, `loops` times over (the capture's rate limit, not a
    detection timing).
    """
    t = tools()
    work.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    ns, host_if, ns_if = f"bo-fnm-{os.getpid()}-{tag}", f"bh{tag}", f"bn{tag}"
    (work / "networks_list").write_text("\n".join(networks) + "\n")
    for who in ("fnm", "bo"):
        script = work / f"{who}_notify.sh"
        script.write_text(NOTIFY.format(out=work / f"{who}_notified.txt"))
        script.chmod(0o755)
        (work / f"{who}_notified.txt").unlink(missing_ok=True)
    (work / "fnm.conf").write_text(FNM_CONF.format(threshold=threshold_pps, dir=work, iface=ns_if))
    os.makedirs("/var/log/fastnetmon_attacks", exist_ok=True)  # FNM refuses to start without it
    fnm = bo = replay = None
    replayed, replay_pps = -1, 0.0
    report: dict[str, Any] = {}
    t0 = time.time()
    try:
        _sh(t["ip"], "netns", "add", ns)
        _sh(t["ip"], "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _sh(t["ip"], "link", "set", ns_if, "netns", ns)
        _sh(t["ip"], "link", "set", host_if, "up")
        _sh(t["ip"], "netns", "exec", ns, t["ip"], "link", "set", ns_if, "up")
        _sh(t["ip"], "netns", "exec", ns, t["ip"], "link", "set", "lo", "up")
        inside = [t["ip"], "netns", "exec", ns]
        fnm_argv = [t["fastnetmon"], "--configuration_file", str(work / "fnm.conf"), "--log_to_console"]
        with open(work / "fnm.log", "wb") as log:
            fnm = subprocess.Popen(
                [*inside, *fnm_argv, "--disable_pid_logic"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        sets = [
            f"ddos.threshold_pps={threshold_pps}",
            f"ddos.networks={list(networks)!r}",
            "ddos.ban_for_bandwidth=false",
            # no engine.lateness_s: the afpacket source's own lateness is 0 (frames arrive in order), so
            # each tick is released as soon as it ends while engine.lateness_s keeps its 120 s default
            f"engine.tick_s={tick_s}",
            f"alerts.notify_script={work / 'bo_notify.sh'}",
        ]
        argv = [*inside, str(BLACKOUT), "collect", "--interface", ns_if, "--json", "--stats-interval", "3600"]
        argv += ["--db", str(work / "bo.duckdb"), "--duration", str(max_s + 30)]
        argv += [x for s in sets for x in ("--set", s)]
        with open(work / "bo.err", "wb") as err:
            bo = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
        ready = time.monotonic() + 30
        while time.monotonic() < ready:
            fnm_up = b"AF_PACKET worker" in (work / "fnm.log").read_bytes()
            if fnm_up and b"listening" in (work / "bo.err").read_bytes():
                break
            if fnm.poll() is not None or bo.poll() is not None:
                logs = (work / "fnm.log").read_text()[-300:] + (work / "bo.err").read_text()[-1500:]
                raise RuntimeError(f"a detector exited early: {logs}")
            time.sleep(0.1)
        else:
            raise RuntimeError("FastNetMon or blackout did not start capturing within 30 s")
        time.sleep(1.0)  # let both settle (FNM's first speed calculation, blackout's first ticks)
        cmd = [t["tcpreplay"], "-i", host_if, "-L", str(limit)] + (["--pps", str(pps)] if pps else [])
        cmd += (["--topspeed"] if topspeed else []) + (["--loop", str(loops)] if loops > 1 else [])
        t0 = time.time()
        replay = subprocess.Popen([*cmd, str(pcap)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        both_at = None
        while time.time() - t0 < max_s:
            if both_at is None and all((work / f"{w}_notified.txt").exists() for w in ("fnm", "bo")):
                both_at = time.time()
            if both_at is not None and time.time() - both_at >= after_s:
                break
            if replay.poll() is not None and time.time() - t0 > 8:  # replay over: give the EWMAs time
                break
            time.sleep(0.05)
        _stop(replay, signal.SIGINT)
        out = replay.stdout.read().decode() if replay.stdout else ""
        m = re.search(r"Actual: (\d+) packets", out)
        replayed = int(m.group(1)) if m else -1
        m = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", out)
        replay_pps = float(m.group(1)) if m else 0.0
        time.sleep(0.5)
        _stop(bo)
        lines = bo.stdout.read().decode().strip().splitlines() if bo.stdout else []
        report = _json(lines[-1]) if lines else {}
        _stop(fnm)
    finally:
        for proc in (replay, bo, fnm):
            _stop(proc, signal.SIGKILL, 5)
        subprocess.run([t["ip"], "netns", "del", ns], capture_output=True, timeout=10, check=False)
        subprocess.run([t["ip"], "link", "del", host_if], capture_output=True, timeout=10, check=False)
    return Run(
        pcap.name,
        _bans(work / "fnm_notified.txt", t0, vector_line=False),
        _bans(work / "bo_notified.txt", t0, vector_line=True),
        0.0 if topspeed else crossing(pcap, threshold_pps, pps, limit),
        replayed,
        replay_pps,
        report,
    )


def _json(line: str) -> dict[str, Any]:
    import json

    try:
        out = json.loads(line)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def have_netns() -> bool:
    """True when this process may create network namespaces (root, iproute2)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None

"""blackout and FastNetMon 1.2.4 side by side on the same live traffic (AF_PACKET on a veth pair).

The oracle is FastNetMon itself (Debian's 1.2.4) watching the same interface
with the same thresholds (threshold_pps 500, ban_for_pps, 5 s average): both
must ban the victim; blackout no later than FNM (plus a tolerance: FNM's
one-second speed timer may fire right as the rate crosses, blackout bans at
the end of that tick, 0.25 s here — its average is a time constant, so the
smoothing is FNM's) and within 2 s of the replayed rate crossing the
threshold; FNM's attack type and blackout's vector are compared.
tcpreplay's own packet count checks the capture (nothing lost, nothing
invented).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from blackout.collect.afpacket import AfPacketCollector, Frames, Interface
from blackout.errors import BlackoutError
from blackout.model import FLOW_SCHEMA
from blackout.sources import DecodeContext
from conftest import DATA, need_tool
from fnm_side import have_netns, side_by_side

STOPDDOS = DATA / "pcap/stopddos"
TOLERANCE_S = 0.4  # FNM may ban right as the rate crosses; blackout at the end of that 0.25 s tick + ~0.07 s

pytestmark = pytest.mark.skipif(not have_netns(), reason="needs root to create network namespaces")


def _check(run_dir: Path, pcap: Path, fnm_type: str, vector: str) -> None:
    run = side_by_side(pcap, run_dir)
    print(
        f"\n{pcap.name}: FastNetMon {run.fnm}  blackout {run.blackout}  rate above threshold after {run.crossing_s} s"
    )
    assert run.fnm is not None, "FastNetMon never banned (see fnm.log)"
    assert run.blackout is not None, f"blackout never alerted: {run.report}"
    assert run.fnm.target == run.blackout.target == "10.10.10.10"
    assert run.fnm.kind == fnm_type
    assert run.blackout.kind == vector
    assert run.crossing_s is not None
    assert run.blackout.delay_s <= run.fnm.delay_s + TOLERANCE_S
    assert run.blackout.delay_s <= run.crossing_s + 2.0
    iface = next(iter(run.report["interfaces"].values()))
    assert iface["kernel_drops"] == 0
    # every replayed frame captured; at most a few neighbour-discovery frames of the host side besides
    assert run.replayed > 0
    assert run.replayed <= iface["packets"] <= run.replayed + 8
    # each captured frame became a flow record or was counted as skipped (ARP and the like)
    assert run.report["records"]["flow"] + sum(run.report["skipped"].values()) == iface["packets"]


def test_syn_flood_side_by_side(tmp_path: Path) -> None:
    _check(tmp_path, STOPDDOS / "pkt.TCP.synflood.spoofed.pcap", "syn_flood", "syn_flood")


def test_synack_reflection_side_by_side(tmp_path: Path) -> None:
    _check(tmp_path, STOPDDOS / "amp.TCP.reflection.SYNACK.pcap", "unknown", "synack_reflection")


LOOPBACK = """
import json, socket, sys, time
import numpy as np
from blackout.collect.afpacket import AfPacketCollector
from blackout.sources import DecodeContext
cap = AfPacketCollector(["lo"], DecodeContext())
cap.start()
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); rx.bind(("127.0.0.1", 0)); port = rx.getsockname()[1]
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for k in range(300):
    tx.sendto(k.to_bytes(2, "big") * 10, ("127.0.0.1", port))
time.sleep(0.3)
cap.stop.set()
rows = [b for b in cap.batches() if b.num_rows]
cap.close()
dst = np.concatenate([b.column("dst_port").to_numpy() for b in rows])
size = np.concatenate([b.column("bytes").to_numpy() for b in rows])[dst == port]
print(json.dumps({"sizes": size.tolist(), "stats": cap.stats()["lo"], "rows": int(len(dst))}))
"""


def test_loopback_capture_counts() -> None:
    """In a fresh namespace, datagrams to 127.0.0.1 are captured once each with their sizes; drops counted."""
    ip = need_tool("ip")
    ns = f"bo-lo-{uuid.uuid4().hex[:8]}"
    subprocess.run([ip, "netns", "add", ns], check=True, timeout=10)
    try:
        subprocess.run([ip, "netns", "exec", ns, ip, "link", "set", "lo", "up"], check=True, timeout=10)
        done = subprocess.run(
            [ip, "netns", "exec", ns, sys.executable, "-c", LOOPBACK], capture_output=True, timeout=60, check=True
        )
    finally:
        subprocess.run([ip, "netns", "del", ns], timeout=10, check=False)
    out = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert out["sizes"] == [20 + 8 + 20] * 300  # each datagram once (the outgoing copy is not captured)
    assert out["stats"]["kernel_drops"] == 0
    assert out["stats"]["packets"] == out["rows"] == out["stats"]["kernel_packets"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=hs.data())
def test_fuzz_frames(data: hs.DataObject) -> None:
    """Random and mutated frames from a real capture decode or are counted, never raise."""
    raw = (STOPDDOS / "amp.dns.RRSIG.fragmented.pcap").read_bytes()
    frames = []
    for _ in range(data.draw(hs.integers(1, 12))):
        start = data.draw(hs.integers(24, len(raw) - 1))
        chunk = bytearray(raw[start : start + data.draw(hs.integers(0, 1600))])
        for _ in range(data.draw(hs.integers(0, 6))):
            if chunk:
                chunk[data.draw(hs.integers(0, len(chunk) - 1))] = data.draw(hs.integers(0, 255))
        frames.append(bytes(chunk))
    frames.append(data.draw(hs.binary(max_size=200)))
    buf = np.frombuffer(b"".join(frames) or b"\0", dtype=np.uint8)
    lens = np.array([len(f) for f in frames], dtype=np.int64)
    off = np.concatenate([[0], np.cumsum(lens)[:-1]])
    link = data.draw(hs.sampled_from([1, 101, 100772]))
    ctx = DecodeContext()
    cap = AfPacketCollector([], ctx)
    placeholder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    placeholder.close()
    try:
        got = list(
            cap.decode(
                Frames("x", buf, off, lens, lens, np.full(len(frames), 1, np.int64), 0), _iface(placeholder, link)
            )
        )
    except BlackoutError:
        return
    assert all(b.schema == FLOW_SCHEMA for b in got)
    assert ctx.counters[("afpacket:x", "packets")] == len(frames)


def _iface(sock: socket.socket, link: int) -> Interface:
    return Interface("x", sock, 1, link)


@settings(max_examples=150, deadline=None)
@given(block=hs.binary(min_size=0, max_size=4096), seed=hs.integers(0, 2**32 - 1))
def test_fuzz_ring_block(block: bytes, seed: int) -> None:
    """A damaged ring block (random header words and frame links) lists only frames lying inside it."""
    from blackout.collect.tpacket import _walk

    raw = bytearray(block.ljust(48, b"\0"))
    rng = np.random.default_rng(seed)
    raw[12:16] = int(rng.integers(0, 200)).to_bytes(4, "little")  # a plausible frame count
    raw[16:20] = int(rng.integers(0, len(raw))).to_bytes(4, "little")  # first frame somewhere inside
    buf = np.frombuffer(bytes(raw), dtype=np.uint8)
    rows = 64
    off, cap, orig, ts = (np.zeros(rows, dtype=np.int64) for _ in range(4))
    k = _walk(buf, 0, len(buf), off, cap, orig, ts, 0)
    assert 0 <= k <= rows
    assert np.all(off[:k] >= 0) and np.all(off[:k] + cap[:k] <= len(buf))

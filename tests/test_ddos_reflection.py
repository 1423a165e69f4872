"""udp_reflection:<port>: a real DNS reflection (StopDDoS) moved to a source port outside the amplifier table.

The capture's port-53 answers are rewritten to come from port 10001 (Ubiquiti
discovery, a reflection vector the table lacks); tshark on the original file
says which packets those are, how many sources sent them and how large they are.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from blackout.detect.reflection import DYNAMIC_PORTS, MAX_PORTS, PortReflections, candidates
from blackout.detect.sketch import dense_codes
from test_ddos import DNSFRAG, pcap_flows, run, toward, victim

CONF = ["ddos.threshold_pps=100", "ddos.start_ticks=1", "ddos.average_calculation_time=0"]
MIN_BYTES = 200


def from_port(port: int | None, size: float | None = None, seed: int = 0) -> pa.Table:
    """The capture with UDP from 53 sent from `port` (None: a random port per row), optionally resized."""
    t = pcap_flows(DNSFRAG)
    sport = t.column("src_port").to_numpy().copy()
    dns = (t.column("protocol").to_numpy() == 17) & (sport == 53)
    rng = np.random.default_rng(seed)
    sport[dns] = port if port is not None else rng.integers(1024, DYNAMIC_PORTS, int(dns.sum()))
    t = t.set_column(t.schema.get_field_index("src_port"), t.schema.field("src_port"), pa.array(sport, pa.uint16()))
    if size is not None:
        sized = pc.multiply(t.column("packets"), pa.scalar(int(size), pa.uint64()))
        t = t.set_column(t.schema.get_field_index("bytes"), t.schema.field("bytes"), sized)
    return t


def tshark_reflection() -> tuple[int, int, int]:
    """(packets in the attack window, large first-fragment packets from 53, their distinct sources) per tshark."""
    (rec,) = run(pcap_flows(DNSFRAG), CONF)
    window = toward(DNSFRAG, victim(DNSFRAG), rec["start"], rec["end"])
    big = [p for p in window if p[6] == "53" and p[4] == 0 and p[3] >= MIN_BYTES]
    return len(window), len(big), len({p[1] for p in big})


def shares(recs: list[dict[str, object]]) -> dict[str, float]:
    (rec,) = recs
    return {v["name"]: v["share"] for v in rec["vectors"]}  # type: ignore[attr-defined]


def test_reflection_from_a_port_outside_the_table() -> None:
    total, big, sources = tshark_reflection()
    assert sources >= 10 and big > 0.05 * total  # the capture is a real many-reflector attack
    got = shares(run(from_port(10001), CONF))
    assert "dns_amplification" not in got
    assert got["udp_reflection:10001"] == pytest.approx(big / total)
    # exactly as many sources as tshark counts are needed, and enough
    assert "udp_reflection:10001" in shares(run(from_port(10001), [*CONF, f"ddos.amplification_min_sources={sources}"]))
    few = shares(run(from_port(10001), [*CONF, f"ddos.amplification_min_sources={sources + 1}"]))
    assert not any(name.startswith("udp_reflection") for name in few) and "udp_flood" in few


@pytest.mark.parametrize(
    ("port", "size"),
    [(10001, 60), (50000, None), (None, None)],
    ids=["small-packets", "dynamic-port", "random-ports"],
)
def test_what_is_not_a_reflection(port: int | None, size: float | None) -> None:
    got = shares(run(from_port(port, size), CONF))
    assert not any(name.startswith(("udp_reflection", "dns_amp")) for name in got)
    assert "udp_flood" in got


def _add(refl: PortReflections, port: np.ndarray, size: np.ndarray, src_key: np.ndarray, packets: np.ndarray) -> None:
    """A tick's UDP-flood rows into the state as the attack accounting feeds it: candidate rows only,
    their packets summed per port."""
    keep = candidates(port, size, refl.min_bytes)
    port = port[keep].astype(np.uint64)
    ports, code = dense_codes(port)
    refl.add_candidates(ports, np.bincount(code, weights=packets[keep], minlength=len(ports)), port, src_key[keep])


def test_port_state_is_bounded() -> None:
    """A flood from every source port keeps at most MAX_PORTS ports and their source sets."""
    rng = np.random.default_rng(5)
    refl = PortReflections(min_sources=10, min_bytes=MIN_BYTES)
    for _ in range(20):
        n = 20000
        _add(
            refl,
            rng.integers(1, DYNAMIC_PORTS, n).astype(np.uint16),
            np.full(n, 500.0),
            rng.integers(0, 2**32, n).astype(np.uint64),
            np.ones(n),
        )
        assert len(refl.ports.keys) <= MAX_PORTS and len(np.unique(refl.src_port)) <= MAX_PORTS
    light = np.arange(1000, 1100, dtype=np.uint16)  # a tick whose ports are all pruned at once (KP replay crash)
    _add(refl, light, np.full(100, 500.0), np.arange(100, dtype=np.uint64), np.full(100, 1e-9))
    assert not set(light.tolist()) & set(refl.ports.keys.tolist())
    port = np.full(100, 3478, np.uint16)  # then a real reflection from STUN still comes through
    _add(refl, port, np.full(100, 900.0), np.arange(100, dtype=np.uint64), np.full(100, 1000.0))
    assert 3478 in refl.reflected()

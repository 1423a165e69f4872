"""Hostile input for the DDoS detector: disorder, time jumps, sampling rate 0, wrapped counters, spoofed targets.

The reference is always the clean replay of the real StopDDoS SYN flood (whose
figures test_ddos checks against tshark): the damaged input must give the same
record, and what was left out must be counted.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from blackout import addr
from blackout.config import Config
from blackout.detect.base import Tick
from blackout.detect.ddos import DdosDetector
from blackout.detect.ddos_config import DdosConfig
from blackout.events import dumps
from blackout.model import FLOW_SCHEMA
from test_ddos import LOW, SYNFLOOD, US, flow_table, hot_spans, pcap_flows, run, steady, victim


def replaced(table: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    field = FLOW_SCHEMA.field(name)
    return table.set_column(table.schema.get_field_index(name), field, pa.array(values, field.type))


def ts_of(table: pa.Table) -> np.ndarray:
    return table.column("ts").cast(pa.int64()).to_numpy()


def detector(overrides: list[str]) -> DdosDetector:
    return DdosDetector(Config.load(overrides=overrides).section("ddos", DdosConfig))


def test_rows_out_of_order_give_the_same_attack() -> None:
    """Rows shuffled within 3 s windows (the engine's lateness is 5 s)."""
    flows = pcap_flows(SYNFLOOD)
    rng = np.random.default_rng(11)
    jitter = ts_of(flows) // (3 * US) * 3 * US + rng.integers(0, 3 * US, flows.num_rows)
    shuffled = flows.take(pa.array(np.argsort(jitter, kind="stable")))
    assert not np.all(np.diff(ts_of(shuffled)) >= 0)
    assert dumps(run(shuffled, LOW)) == dumps(run(flows, LOW))


def test_a_tick_far_in_the_future_or_back_in_time() -> None:
    """Ticks straight into the detector: the flood, a tick a century ahead, then one from the past again.

    The jump ends the attack at its last hot tick (not at the future time), and
    the tick from the past (the engine never sends one) is ignored and counted:
    it must not reopen the attack under the same id and overwrite its record.
    """
    flows, target = pcap_flows(SYNFLOOD), victim(SYNFLOOD)
    det = detector([*LOW, "ddos.update_every_s=1e9"])
    secs = ts_of(flows) // US
    empty = flows.slice(0, 0)
    first = int(secs.min())
    for s in range(first, int(secs.max()) + 1):
        det.on_tick(Tick(s * US, (s + 1) * US, flows.filter(pa.array(secs == s)), empty, empty))
    future = (first + 100 * 365 * 86400) * US
    det.on_tick(Tick(future, future + US, flows.slice(0, 1), empty, empty))
    det.on_tick(Tick(first * US, (first + 1) * US, flows.filter(pa.array(secs == first)), empty, empty))
    det.finish(future + 2 * US, close_open=True)
    (span,) = hot_spans(SYNFLOOD, target, 500, DdosConfig.end_ticks)
    assert [(r["target"], r["start"], r["end"]) for r in det.drain()["attacks"]] == [(target, *span)]
    assert det.counters()["stale_ticks"] == 1


def test_sampling_rate_zero_counts_as_unsampled() -> None:
    flows = pcap_flows(SYNFLOOD)
    zero = replaced(flows, "sampling_rate", np.zeros(flows.num_rows, np.uint32))
    assert dumps(run(zero, LOW)) == dumps(run(flows, LOW))
    huge = replaced(flows, "sampling_rate", np.full(flows.num_rows, 2**32 - 1, np.uint32))
    (rec,) = run(huge, LOW)
    (clean,) = run(flows, LOW)
    assert rec["peak_pps"] == clean["peak_pps"] * (2**32 - 1)  # scaled, finite, no overflow


def test_wrapped_counters_are_left_out_and_counted() -> None:
    """Rows whose counters cannot be real: a 64-bit delta across a wrap, a wrapped 32-bit octet count, 0 packets."""
    flows = pcap_flows(SYNFLOOD)
    bad = flows.slice(1000, 3)
    bad = replaced(bad, "packets", np.array([2**64 - 3, 5000, 0], np.uint64))
    bad = replaced(bad, "bytes", np.array([120, 4000, 60], np.uint64))
    det = detector(LOW)
    got = run(pa.concat_tables([flows, bad]).sort_by("ts"), detector=det)
    assert dumps(got) == dumps(run(flows, LOW))
    assert det.counters()["bad_rows"] == 3


def test_a_flood_of_spoofed_targets_evicts_cold_state() -> None:
    """4,000 new random targets a second for 30 s into 1,000 slots, beside a real flood on one host."""
    rng = np.random.default_rng(3)
    t0, n, per_s, slots = 1_700_000_000, 30, 4000, 1000
    secs = np.repeat(np.arange(n), per_s)
    dst_u32 = rng.integers(0x0A000000, 0x0AFFFFFF, len(secs)).astype(np.uint32)
    dst = addr.from_v4_u32(dst_u32)
    src = addr.from_v4_u32(np.full(len(secs), 0x0B000001, np.uint32))
    noise = flow_table((t0 + secs) * US + rng.integers(0, US, len(secs)), src, dst, np.ones(len(secs)), rng)
    flood = steady(rng, "192.0.2.99", np.full(n, 50000.0), t0)
    det = detector([*LOW, f"ddos.max_targets={slots}"])
    got = run(pa.concat_tables([noise, flood]).sort_by("ts"), detector=det)
    assert [r["target"] for r in got] == ["192.0.2.99"]  # the real victim kept its slot throughout
    counts = det.counters()
    assert len(det.state) <= slots and det.state.size <= slots
    # every target seen (hosts and their /24s, the flood's two included) is still held, was evicted or went unwatched
    distinct = len(np.unique(dst_u32)) + len(np.unique(dst_u32 >> np.uint32(8))) + 2
    assert counts["evictions"] > 0 and len(det.state) + counts["evictions"] + counts["untracked"] >= distinct
    assert det.state.collisions == 0

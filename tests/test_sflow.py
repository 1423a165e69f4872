"""sFlow v5 decoding checked against tshark's sFlow dissector on every bundled sFlow capture (see sflow_oracle)."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blackout.errors import BlackoutError
from blackout.model import FLOW_SCHEMA
from blackout.sources.base import DATAGRAM_DECODERS, FILE_DECODERS, DecodeContext
from blackout.sources.sflow import DATAGRAMS, looks_like_sflow
from conftest import DATA, need_tool
from sflow_oracle import DAMAGED, GOOD, ours, tshark_decode, tshark_sflow_frames, udp_payloads, write_sflow_pcap


# ------------------------------------------------------------------ the tests
def test_registered() -> None:
    assert DATAGRAM_DECODERS["sflow"] is DATAGRAMS
    assert FILE_DECODERS["sflow"].kind.value == "flow"


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_matches_tshark(path: Path) -> None:
    expected, counter_samples = tshark_decode(path)
    rows, ctx, _ = ours(path)
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert {k: got[k] for k in want} == want
        assert got["packets"] == 1
    assert sum(n for (_, what), n in ctx.counters.items() if what == "counter_samples") == counter_samples
    assert sum(n for (_, what), n in ctx.counters.items() if what == "records") == len(rows)


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_sniff_agrees_with_tshark(path: Path) -> None:
    """What tshark dissects as sFlow is what sniff_datagram accepts (the 30-PDU capture mixes in NetFlow v5)."""
    payloads, _, _ = udp_payloads(path)
    assert tshark_sflow_frames(path) == [looks_like_sflow(p) for p in payloads]


def test_sampled_ipv4_record_without_header(tmp_path: Path) -> None:
    """Drop the raw header record of a real expanded sample: the sampled IPv4 record is used, as tshark reads it."""
    path = DATA / "flow" / "akvorado" / "sflow" / "data-sflow-ipv4-data.pcap"
    payload = udp_payloads(path)[0][0]
    first = 28 if payload[4:8] == b"\0\0\0\1" else 40
    fmt, slen = struct.unpack_from(">II", payload, first)
    assert (fmt, payload[first - 4 : first]) == (3, b"\0\0\0\1")
    body = payload[first + 8 : first + 8 + slen]
    fixed, nrec = 44, struct.unpack_from(">I", body, 40)[0]
    q, kept = fixed, []
    for _ in range(nrec):
        rfmt, rlen = struct.unpack_from(">II", body, q)
        if rfmt != 1:
            kept.append(body[q : q + 8 + rlen])
        q += 8 + rlen
    new_body = body[:40] + struct.pack(">I", len(kept)) + b"".join(kept)
    new = payload[:first] + struct.pack(">II", 3, len(new_body)) + new_body
    out = tmp_path / "no-header.pcap"
    write_sflow_pcap(out, [new])
    expected, _ = tshark_decode(out)
    rows, _, _ = ours(out)
    assert len(expected) == 1
    assert {k: rows[0][k] for k in expected[0]} == expected[0]


@pytest.mark.parametrize("trim", [True, False])
def test_damaged_capture_counts_errors(trim: bool) -> None:
    payloads, senders, times = udp_payloads(DAMAGED, trim=trim)
    ctx = DecodeContext()
    batch = DATAGRAMS.decode(payloads, senders, times, ctx)
    errors = sum(n for (_, what), n in ctx.counters.items() if what == "decode_errors")
    assert errors >= 1
    assert ctx.errors.total == errors
    assert sum(n for (_, what), n in ctx.counters.items() if what == "datagrams") == len(payloads)
    assert batch.num_rows == 0


def test_good_samples_kept_before_damage() -> None:
    """A datagram cut inside its last sample keeps the samples before the cut and counts the cut."""
    path = DATA / "flow" / "akvorado" / "sflow" / "data-1140.pcap"
    payload = udp_payloads(path)[0][0]
    whole, _, _ = ours(path)
    ctx = DecodeContext()
    batch = DATAGRAMS.decode([payload[:-40]], ["cut"], np.array([0]), ctx)
    assert batch.num_rows == len(whole) - 1
    assert batch["src_addr"].to_pylist() == [r for r in ours(path)[2]["src_addr"].to_pylist()[:-1]]
    assert ctx.errors.by_reason() == {"sample_truncated": 1}


def test_trailing_bytes_counted() -> None:
    """Bytes after the announced samples are counted; the samples are kept."""
    path = DATA / "flow" / "akvorado" / "sflow" / "data-1140.pcap"
    payload = udp_payloads(path)[0][0]
    ctx = DecodeContext()
    batch = DATAGRAMS.decode([payload + payload[:100]], ["x"], np.array([0]), ctx)
    assert batch.num_rows == len(ours(path)[0])
    assert ctx.errors.by_reason() == {"trailing_bytes": 1}


def test_file_decoder(tmp_path: Path) -> None:
    """A file of one raw datagram decodes like the datagram, in batches of ctx.batch_size."""
    path = DATA / "flow" / "akvorado" / "sflow" / "data-1140.pcap"
    payload = udp_payloads(path)[0][0]
    raw = tmp_path / "one.sflow"
    raw.write_bytes(payload)
    dec = FILE_DECODERS["sflow"]
    assert dec.sniff(payload[:4096])
    ctx = DecodeContext(batch_size=2)
    batches = list(dec.read(str(raw), payload, ctx))
    assert [b.num_rows for b in batches] == [2, 2, 1]
    assert pa.Table.from_batches(batches)["dst_port"].to_pylist() == [r["dst_port"] for r in ours(path)[0]]


def test_counter_samples_kept_per_interface() -> None:
    payloads, senders, times = udp_payloads(DATA / "flow" / "pcap" / "sflow.pcap")
    ctx = DecodeContext()
    DATAGRAMS.decode(payloads, senders, times, ctx)
    _, counter_samples = tshark_decode(DATA / "flow" / "pcap" / "sflow.pcap")
    table = ctx.state["sflow"]["if_counters"]
    fields = ["-T", "fields", "-E", "aggregator=,", "-e", "sflow_245.ifindex", "-e", "sflow_245.ifinoct"]
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(DATA / "flow" / "pcap" / "sflow.pcap"), *fields],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    latest: dict[int, int] = {}
    for line in out.splitlines():
        idx, octets = line.split("\t")
        for i, o in zip(idx.split(","), octets.split(","), strict=True):
            if i:
                latest[int(i)] = int(o)
    assert {k[1]: v["in_octets"] for k, v in table.items()} == latest
    assert counter_samples == 8


# ------------------------------------------------------------------- hostile
SEEDS = [udp_payloads(p)[0] for p in GOOD]
SEED_BYTES = [p for group in SEEDS for p in group if looks_like_sflow(p)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEED_BYTES),
    edits=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=12),
    cut=st.integers(0, 4096),
    junk=st.binary(max_size=64),
)
def test_fuzz_never_raises(seed: bytes, edits: list[tuple[int, int]], cut: int, junk: bytes) -> None:
    data = bytearray(seed)
    for at, value in edits:
        if data:
            data[at % len(data)] = value
    mutated = bytes(data[: cut % (len(data) + 1)]) + junk
    ctx = DecodeContext()
    try:
        batch = DATAGRAMS.decode([mutated, seed, junk], ["a", "b", "c"], np.array([1, 2, 3]), ctx)
    except BlackoutError:
        return
    assert batch.schema == FLOW_SCHEMA
    assert sum(n for (_, what), n in ctx.counters.items() if what == "datagrams") == 3


def test_huge_sample_count_is_quick() -> None:
    """A header announcing 2**32-1 samples ends at the datagram's end, counted."""
    payload = SEED_BYTES[0]
    first = 28 if payload[4:8] == b"\0\0\0\1" else 40
    lying = payload[: first - 4] + b"\xff\xff\xff\xff" + payload[first:]
    ctx = DecodeContext()
    DATAGRAMS.decode([lying] * 1000, ["x"] * 1000, np.zeros(1000, dtype=np.int64), ctx)
    assert ctx.errors.by_reason() == {"samples_missing": 1000}

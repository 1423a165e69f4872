"""sFlow v5 decoding checked against tshark's sFlow dissector on every bundled sFlow capture.

The UDP payloads are taken out of the captures with dpkt (independent of
blackout's pcap decoder) and decoded in one call; tshark decodes the same
captures (PDML) and each flow sample's sampled header is matched to the IP
layers tshark found inside it (the innermost outside ICMP error quotes, so
VXLAN's inner packet; the outermost for the L3 length).
"""

from __future__ import annotations

import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import dpkt
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from blackout.addr import to_strings
from blackout.errors import BlackoutError
from blackout.model import FLOW_SCHEMA
from blackout.sources.base import DATAGRAM_DECODERS, FILE_DECODERS, DecodeContext
from blackout.sources.sflow import DATAGRAMS, looks_like_sflow
from conftest import DATA, need_tool

CAPTURES = sorted((DATA / "flow" / "akvorado" / "sflow").glob("*.pcap")) + sorted(
    (DATA / "flow" / "pcap").glob("sflow*.pcap")
)
DAMAGED = DATA / "flow" / "pcap" / "sflow_print-segv.pcap"
GOOD = [p for p in CAPTURES if p != DAMAGED]
IF_MASK = 0x3FFFFFFF


def udp_payloads(path: Path, trim: bool = True) -> tuple[list[bytes], list[str], np.ndarray]:
    """Every UDP payload of a capture (dpkt), with "ip:port" senders and capture times in µs."""
    payloads, senders, times = [], [], []
    with open(path, "rb") as fh:
        for ts, frame in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(frame).data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) or not isinstance(ip.data, dpkt.udp.UDP):
                continue
            udp = ip.data
            data = bytes(udp.data)[: max(0, udp.ulen - 8)] if trim else bytes(udp.data)
            payloads.append(data)
            senders.append(f"{path.name}:{udp.sport}")
            times.append(round(ts * 1e6))
    return payloads, senders, np.array(times, dtype=np.int64)


# ----------------------------------------------------------------- the oracle
def _fields(node: ET.Element) -> dict[str, str]:
    """Direct child fields of a PDML node, name -> show."""
    return {f.get("name", ""): f.get("show", "") for f in node.findall("field")}


def _all(root: ET.Element, name: str) -> list[ET.Element]:
    return [f for f in root.iter("field") if f.get("name") == name]


def _one(node: ET.Element, name: str) -> str:
    hits = _all(node, name)
    return hits[0].get("show", "") if hits else ""


def tshark_decode(path: Path) -> tuple[list[dict], int]:
    """Flow samples with an IP packet as tshark decodes them, and the number of counter samples."""
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(path), "-T", "pdml"], capture_output=True, check=True, timeout=120
    ).stdout
    flows: list[dict] = []
    counter_samples = 0
    for packet in ET.fromstring(out).iter("packet"):
        parent = {c: p for p in packet.iter() for c in p}
        sflow = next((p for p in packet.iter("proto") if p.get("name") == "sflow"), None)
        if sflow is None:
            continue
        agent = _one(sflow, "sflow_245.agent") or _one(sflow, "sflow_245.agent.v6")
        protos = list(packet.iter("proto"))
        for sample in sflow.iter("field"):
            kids = _fields(sample)
            if "sflow_245.sampletype" not in kids:
                continue
            kind = int(kids["sflow_245.sampletype"])
            if kind in (2, 4):
                counter_samples += 1
                continue
            if kind not in (1, 3):
                continue
            if kind == 1:
                in_if = int(kids["sflow.flow_sample.input_interface"]) & IF_MASK
            else:
                fmt = int(kids["sflow.flow_sample.input_interface_format"])
                in_if = int(kids["sflow.flow_sample.input_interface_value"]) if fmt == 0 else 0
            out_fmt = _one(sample, "sflow.flow_sample.output_interface_format") or _one(
                sample, "sflow.flow_sample.output_interface.format"
            )
            out_val = int(_one(sample, "sflow.flow_sample.output_interface_value"))
            row = {
                "exporter": agent,
                "sampling_rate": int(kids["sflow.flow_sample.sampling_rate"]),
                "in_if": in_if,
                "out_if": out_val if int(out_fmt) == 0 else 0,
            }
            header = next(iter(_all(sample, "sflow_245.header")), None)
            decoded = _header_layers(header, protos, parent) if header is not None else None
            if decoded is None:
                decoded = _sampled_ip(sample)
            if decoded is not None:
                row.update(decoded)
                flows.append(row)
    return flows, counter_samples


def _header_layers(header: ET.Element, protos: list[ET.Element], parent: dict) -> dict | None:
    """The flow fields of the layers tshark dissected inside one sampled header's byte range."""
    lo = int(header.get("pos", "0"))
    hi = lo + int(header.get("size", "0"))

    def inside(p: ET.Element) -> bool:
        return lo <= int(p.get("pos", "-1")) < hi

    def in_icmp(p: ET.Element) -> bool:
        node = parent.get(p)
        while node is not None:
            if node.tag == "proto" and node.get("name") in ("icmp", "icmpv6"):
                return True
            node = parent.get(node)
        return False

    ips = [p for p in protos if inside(p) and p.get("name") in ("ip", "ipv6") and not in_icmp(p)]
    if not ips:
        return None
    outer, inner = ips[0], ips[-1]
    f_out, f_in = _fields(outer), _fields(inner)
    v4 = inner.get("name") == "ip"
    row = {
        "src_addr": f_in["ip.src" if v4 else "ipv6.src"],
        "dst_addr": f_in["ip.dst" if v4 else "ipv6.dst"],
        "protocol": int(f_in["ip.proto" if v4 else "ipv6.nxt"]),
        "ttl": int(f_in["ip.ttl" if v4 else "ipv6.hlim"]),
        "bytes": int(f_out["ip.len"]) if outer.get("name") == "ip" else int(f_out["ipv6.plen"]) + 40,
        "src_port": 0,
        "dst_port": 0,
        "tcp_flags": 0,
        "fragment": any(_one(p, "ip.flags.mf") == "1" or _one(p, "ip.frag_offset") not in ("", "0") for p in ips),
    }
    after = [p for p in protos if inside(p) and int(p.get("pos", "0")) > int(inner.get("pos", "0"))]
    l4 = next((p for p in after if p.get("name") in ("tcp", "udp", "icmp", "icmpv6") and not in_icmp(p)), None)
    if l4 is not None:
        f = _fields(l4)
        name = l4.get("name")
        if name in ("tcp", "udp"):
            row["src_port"], row["dst_port"] = int(f[f"{name}.srcport"]), int(f[f"{name}.dstport"])
            if name == "tcp":
                row["tcp_flags"] = int(f["tcp.flags"], 16) & 0xFF
        else:
            row["dst_port"] = int(f[f"{name}.type"]) << 8 | int(f[f"{name}.code"])
    return row


def _sampled_ip(sample: ET.Element) -> dict | None:
    """A sampled IPv4/IPv6 record (no header): its addresses, ports, protocol and length."""
    src = _one(sample, "sflow_245.ipv4_src") or _one(sample, "sflow_245.ipv6_src")
    if not src:
        return None
    return {
        "src_addr": src,
        "dst_addr": _one(sample, "sflow_245.ipv4_dst") or _one(sample, "sflow_245.ipv6_dst"),
        "protocol": int(_one(sample, "sflow.ip_protocol")),
        "src_port": int(_one(sample, "sflow_245.ip.source_port")),
        "dst_port": int(_one(sample, "sflow.ip.destination_port")),
        "bytes": int(_one(sample, "sflow_245.ip.length")),
        "ttl": 0,
        "fragment": False,
    }


def ours(path: Path) -> tuple[list[dict], DecodeContext, pa.RecordBatch]:
    """Our decode of every sFlow-looking UDP payload of a capture, as rows."""
    payloads, senders, times = udp_payloads(path)
    keep = [i for i, p in enumerate(payloads) if looks_like_sflow(p)]
    ctx = DecodeContext()
    batch = DATAGRAMS.decode([payloads[i] for i in keep], [senders[i] for i in keep], times[keep], ctx)
    assert batch.schema == FLOW_SCHEMA
    rows = batch.to_pylist()
    for row, src, dst in zip(rows, to_strings(batch["src_addr"]), to_strings(batch["dst_addr"]), strict=True):
        row["src_addr"], row["dst_addr"] = src, dst
    return rows, ctx, batch


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
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(path), "-T", "fields", "-e", "frame.protocols"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split()
    payloads, _, _ = udp_payloads(path)
    assert [":sflow" in p for p in out] == [looks_like_sflow(p) for p in payloads]


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
    udp = dpkt.udp.UDP(sport=6343, dport=6343, data=new)
    udp.ulen = 8 + len(new)
    ip = dpkt.ip.IP(src=bytes([192, 0, 2, 1]), dst=bytes([192, 0, 2, 2]), p=17, data=udp)
    frame = dpkt.ethernet.Ethernet(type=0x0800, data=ip)
    out = tmp_path / "no-header.pcap"
    with open(out, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        writer.writepkt(bytes(frame), ts=1.0)
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

"""The oracle side of the sFlow tests: tshark's reading of sFlow captures, and ours, as comparable rows.

The UDP payloads are taken out of the captures with dpkt (independent of
blackout's pcap decoder) and decoded in one call; tshark decodes the same
captures (PDML) and each flow sample's sampled header is matched to the IP
layers tshark found inside it (the innermost outside ICMP error quotes, so
VXLAN's inner packet; the outermost for the L3 length).
"""

from __future__ import annotations

import functools
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import dpkt
import numpy as np
import pyarrow as pa

from blackout.addr import to_strings
from blackout.model import FLOW_SCHEMA
from blackout.sources.base import DecodeContext
from blackout.sources.sflow import DATAGRAMS, looks_like_sflow
from conftest import DATA, need_tool

CAPTURES = sorted((DATA / "flow" / "akvorado" / "sflow").glob("*.pcap")) + sorted(
    (DATA / "flow" / "pcap").glob("sflow*.pcap")
)
DAMAGED = DATA / "flow" / "pcap" / "sflow_print-segv.pcap"
GOOD = [p for p in CAPTURES if p != DAMAGED]
IF_MASK = 0x3FFFFFFF
V6_NEXT = {"ipv6.nxt", "ipv6.hopopts.nxt", "ipv6.routing.nxt", "ipv6.fraghdr.nxt", "ipv6.dstopts.nxt"}


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


@functools.lru_cache(maxsize=64)
def tshark_pdml(path: Path, options: tuple[str, ...] = ()) -> ET.Element:
    """tshark's PDML dissection of a capture (one run per capture and options)."""
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(path), *options, "-T", "pdml"], capture_output=True, check=True, timeout=120
    ).stdout
    return ET.fromstring(out)


def tshark_sflow_frames(path: Path) -> list[bool]:
    """Per frame: did tshark dissect it as sFlow."""
    return [any(p.get("name") == "sflow" for p in packet.iter("proto")) for packet in tshark_pdml(path).iter("packet")]


def tshark_decode(path: Path, options: tuple[str, ...] = ()) -> tuple[list[dict], int]:
    """Flow samples with an IP packet as tshark decodes them, and the number of counter samples."""
    flows: list[dict] = []
    counter_samples = 0
    for packet in tshark_pdml(path, options).iter("packet"):
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
        "protocol": int(f_in["ip.proto"])
        if v4
        else int([f.get("show") for f in inner.iter("field") if f.get("name") in V6_NEXT][-1]),
        "ttl": int(f_in["ip.ttl" if v4 else "ipv6.hlim"]),
        "bytes": int(f_out["ip.len"]) if outer.get("name") == "ip" else int(f_out["ipv6.plen"]) + 40,
        "src_port": 0,
        "dst_port": 0,
        "tcp_flags": 0,
        "fragment": any(_is_fragment(p) for p in ips),
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


def _is_fragment(ip: ET.Element) -> bool:
    """An IPv4 layer with MF or an offset, or an IPv6 layer with a fragment header."""
    return (
        _one(ip, "ip.flags.mf") == "1"
        or _one(ip, "ip.frag_offset") not in ("", "0")
        or bool(_all(ip, "ipv6.fraghdr.nxt"))
    )


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


def write_sflow_pcap(path: Path, payloads: list[bytes]) -> None:
    """Datagrams as UDP 6343 frames in a pcap, for tshark to dissect."""
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for i, payload in enumerate(payloads):
            udp = dpkt.udp.UDP(sport=6343, dport=6343, data=payload)
            udp.ulen = 8 + len(payload)
            ip = dpkt.ip.IP(src=bytes([192, 0, 2, 1]), dst=bytes([192, 0, 2, 2]), p=17, data=udp)
            writer.writepkt(bytes(dpkt.ethernet.Ethernet(type=0x0800, data=ip)), ts=1.0 + i)

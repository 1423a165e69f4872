"""The pcap/pcapng decoder against tshark and capinfos, on the bundled captures and rewrites of them."""

from __future__ import annotations

import importlib
import importlib.util
import random
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from blackout import addr
from blackout.errors import BlackoutError, DecodeError, Truncated
from blackout.model import FLOW_SCHEMA
from blackout.sources import DATAGRAM_DECODERS, FILE_DECODERS, DecodeContext
from blackout.sources import pcap as pcap_mod
from conftest import DATA, need_tool
from pcap_writers import LINKS, pcapng_ends, pcapng_section, read_classic, rewrite, write_classic

PCAP = FILE_DECODERS["pcap"]
ALL_CAPTURES = sorted(p for d in ("pcap", "flow") for p in (DATA / d).rglob("*.pcap*"))
ATTACKS = sorted((DATA / "pcap").rglob("*.pcap*"))
MIXED = DATA / "pcap/stopddos/amp.dns.RRSIG.fragmented.pcap"  # IPv4, IPv6, fragments, ICMP, GRE
WITH_ARP = DATA / "pcap/stopddos/amp.TCP.reflection.SYNACK.pcap"

FIELDS = [
    "frame.protocols", "frame.time_epoch", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "ip.proto", "ipv6.nxt",
    "ipv6.hopopts.nxt", "ipv6.routing.nxt", "ipv6.fraghdr.nxt", "ipv6.dstopts.nxt", "tcp.srcport", "tcp.dstport",
    "udp.srcport", "udp.dstport", "sctp.srcport", "sctp.dstport", "tcp.flags", "ip.len", "ipv6.plen", "ip.ttl",
    "ipv6.hlim", "ip.flags.mf", "ip.frag_offset", "ipv6.fraghdr.offset", "icmp.type", "icmp.code", "icmpv6.type",
    "icmpv6.code",
]  # fmt: skip
COLUMNS = ["ts", "src_addr", "dst_addr", "protocol", "src_port", "dst_port", "tcp_flags", "bytes", "ttl", "fragment"]


@pytest.fixture(scope="session")
def ng_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pcapng written by editcap from a real capture (the bundled captures are all classic pcap)."""
    out = tmp_path_factory.mktemp("ng") / "dominate.pcapng"
    src = DATA / "pcap/stopddos/pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng"
    subprocess.run([need_tool("editcap"), "-F", "pcapng", str(src), str(out)], check=True)
    return out


def cut_file(name: str, ng_file: Path) -> tuple[Path, bytes, list[int], pa.Table]:
    """An all-IP capture to damage: path, bytes, end offset of each packet record, its flows."""
    path = ng_file if name == "pcapng" else DATA / "pcap/misc/synscan.pcap"
    ends = read_classic(path)[2] if path.suffix == ".pcap" else pcapng_ends(path)
    full, _ = decode(path)
    assert full.num_rows == len(ends)  # one row per packet
    return path, path.read_bytes(), ends, full


@pytest.fixture(autouse=True)
def no_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode every packet as a 1-packet flow (the export tests below put the decoders back)."""
    monkeypatch.setattr(pcap_mod, "DATAGRAM_DECODERS", {})


def decode(path: Path, data: bytes | None = None, batch_size: int = 65536) -> tuple[pa.Table, DecodeContext]:
    ctx = DecodeContext(batch_size=batch_size)
    raw = path.read_bytes() if data is None else data
    batches = list(PCAP.read(str(path), raw, ctx))
    assert all(b.num_rows <= batch_size and b.schema == FLOW_SCHEMA for b in batches)
    return pa.Table.from_batches(batches, schema=FLOW_SCHEMA), ctx


def tshark(path: Path) -> list[dict[str, str]]:
    """tshark's view of every IP packet (outer header; no reassembly)."""
    cmd = [need_tool("tshark"), "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"]
    cmd += ["-T", "fields", "-E", "occurrence=f", "-E", "separator=/t"] + [a for f in FIELDS for a in ("-e", f)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = [dict(zip(FIELDS, line.split("\t"), strict=True)) for line in out.splitlines()]
    return [r for r in rows if {"ip", "ipv6"} & set(r["frame.protocols"].split(":"))]


def expected(rows: list[dict[str, str]]) -> dict[str, list]:
    """FLOW_SCHEMA columns as NetFlow would fill them, from tshark's fields."""
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    num = lambda r, f: int(r[f] or "0", 0)  # noqa: E731
    for r in rows:
        layers = r["frame.protocols"].split(":")
        v6 = "ipv6" in layers and ("ip" not in layers or layers.index("ipv6") < layers.index("ip"))
        sec, _, frac = r["frame.time_epoch"].partition(".")
        cols["ts"].append(int(sec) * 1_000_000 + int(frac[:6].ljust(6, "0")) if sec else -1)  # -1: no time
        if v6:
            proto = num(r, "ipv6.nxt")
            for ext, f in ((0, "hopopts"), (43, "routing"), (44, "fraghdr"), (60, "dstopts")):
                proto = num(r, f"ipv6.{f}.nxt") if proto == ext else proto
            cols["src_addr"].append(r["ipv6.src"])
            cols["dst_addr"].append(r["ipv6.dst"])
            cols["bytes"].append(num(r, "ipv6.plen") + 40)
            cols["ttl"].append(num(r, "ipv6.hlim"))
            cols["fragment"].append(r["ipv6.fraghdr.offset"] != "")
        else:
            proto = num(r, "ip.proto")
            cols["src_addr"].append(r["ip.src"])
            cols["dst_addr"].append(r["ip.dst"])
            cols["bytes"].append(num(r, "ip.len"))
            cols["ttl"].append(num(r, "ip.ttl"))
            cols["fragment"].append(num(r, "ip.flags.mf") == 1 or num(r, "ip.frag_offset") > 0)
        l4 = {6: "tcp", 17: "udp", 132: "sctp"}.get(proto)
        icmp = {1: "icmp", 58: "icmpv6"}.get(proto)
        cols["protocol"].append(proto)
        cols["src_port"].append(num(r, f"{l4}.srcport") if l4 else 0)
        dport = num(r, f"{icmp}.type") << 8 | num(r, f"{icmp}.code") if icmp else 0
        cols["dst_port"].append(num(r, f"{l4}.dstport") if l4 else dport)
        cols["tcp_flags"].append(num(r, "tcp.flags") & 0xFF if proto == 6 else 0)
    return cols


def assert_matches_tshark(path: Path, table: pa.Table, skip_ts: bool = False) -> dict[str, list]:
    """Compare whole columns with tshark's; return tshark's columns."""
    want = expected(tshark(path))
    assert table.num_rows == len(want["ts"]), "IP packet count differs from tshark"
    got = {c: table.column(c).to_pylist() for c in COLUMNS if c != "ts"}
    got["ts"] = table.column("ts").cast("int64").to_pylist()
    got["src_addr"] = addr.to_strings(table.column("src_addr"))
    got["dst_addr"] = addr.to_strings(table.column("dst_addr"))
    for c in COLUMNS:
        if c == "ts" and skip_ts:
            continue
        bad = [i for i, (a, b) in enumerate(zip(got[c], want[c], strict=True)) if a != b]
        assert not bad, (
            f"{c}: {len(bad)} rows differ, first row {bad[0]}: ours {got[c][bad[0]]} tshark {want[c][bad[0]]}"
        )
    return want


def capinfos_counts(paths: list[Path]) -> dict[str, int]:
    cmd = [need_tool("capinfos"), "-T", "-r", "-c", *map(str, paths)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {line.split("\t")[0]: int(line.split("\t")[1]) for line in out.splitlines()}


# ---------------------------------------------------------------- the bundled captures
def test_packet_counts_match_capinfos() -> None:
    counts = capinfos_counts(ALL_CAPTURES)
    assert len(counts) == len(ALL_CAPTURES) > 60
    for path in ALL_CAPTURES:
        table, ctx = decode(path)
        assert ctx.counters[(path.name, "packets")] == counts[str(path)], path
        # every packet is a row or a counted non-IP/damaged frame
        assert table.num_rows + ctx.errors.total == counts[str(path)], (path, ctx.errors.by_reason())
        assert set(ctx.errors.by_reason()) <= {"non-ip frame"}, (path, ctx.errors.examples)


@pytest.mark.parametrize("path", ATTACKS, ids=lambda p: p.name)
def test_fields_match_tshark(path: Path) -> None:
    table, _ = decode(path)
    assert_matches_tshark(path, table)
    assert set(table.column("exporter").unique().to_pylist()) == {path.name}
    assert pa.compute.all(pa.compute.equal(table.column("packets"), 1)).as_py()


def test_non_ip_frames_are_counted() -> None:
    _, ctx = decode(WITH_ARP)
    arp = sum(1 for line in tshark_protocols(WITH_ARP) if ":arp" in line)
    assert arp > 0 and ctx.errors.by_reason() == {"non-ip frame": arp}


def tshark_protocols(path: Path) -> list[str]:
    cmd = [need_tool("tshark"), "-n", "-r", str(path), "-T", "fields", "-e", "frame.protocols"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()


# ------------------------------------------------- other framings, written from real packets
def test_tool_written_variants(tmp_path: Path, ng_file: Path) -> None:
    """editcap's pcapng and nanosecond pcap, and mergecap's two-interface pcapng (Ethernet + Linux SLL)."""
    nsec = tmp_path / "nsec.pcap"
    subprocess.run([need_tool("editcap"), "-F", "nsecpcap", str(MIXED), str(nsec)], check=True)
    _, records, _ = read_classic(MIXED)
    sll = tmp_path / "sll.pcap"
    write_classic(sll, LINKS["sll"][0], rewrite(records[1::2], LINKS["sll"][1]))
    merged = tmp_path / "merged.pcapng"
    subprocess.run([need_tool("mergecap"), "-F", "pcapng", "-w", str(merged), str(WITH_ARP), str(sll)], check=True)
    for path in (ng_file, nsec, merged):
        table, ctx = decode(path)
        assert_matches_tshark(path, table)
        assert ctx.counters[(path.name, "packets")] == capinfos_counts([path])[str(path)]
    assert set(table.column("in_if").to_pylist()) == {0, 1}


@pytest.mark.parametrize("variant", ["big", "big-nano"])
def test_classic_byte_orders_and_resolutions(tmp_path: Path, variant: str) -> None:
    """Big-endian µs and ns files, whose header claims a 128-byte snaplen that most packets exceed."""
    link, records, _ = read_classic(MIXED)
    out = tmp_path / f"{variant}.pcap"
    write_classic(out, link, records, big=True, nano="nano" in variant, snaplen=128)
    table, ctx = decode(out)
    assert_matches_tshark(out, table)
    assert ctx.counters[(out.name, "packets")] == capinfos_counts([out])[str(out)]
    assert ctx.counters[(out.name, "caplen above snaplen")] == sum(len(r[2]) > 128 for r in records) > 0


def test_unknown_link_type_is_counted(tmp_path: Path) -> None:
    _, records, _ = read_classic(MIXED)
    out = tmp_path / "user0.pcap"
    write_classic(out, 147, records[:50])
    table, ctx = decode(out)
    assert table.num_rows == 0 and ctx.errors.by_reason() == {"unknown link type 147": 50}


# section 1 and 2 interfaces: (link rewrite, if_tsresol or None for the default µs, if_tsoffset seconds)
SECTION1 = [("ether", None, 0), ("raw", 9, 0), ("sll", 0x80 | 20, 0), ("ipv4", 3, 0), ("ipv6", 9, 3600), ("sll2", 6, 0)]
SECTION2 = [("qinq", 6, -7200), ("vlan", 9, 0), ("mpls", 6, 0), ("pppoe", 0x80 | 10, 0), ("loop", 6, 0)]
SECTION2 += [("null", 6, 0), ("raw12", 7, 0), ("sll-vlan", 6, 0), ("sll2-vlan", 6, 0)]


def spread(records: list, ifaces: list) -> list:
    """Deal the records over the interfaces (round robin among those whose link can carry each frame)."""
    fns = [LINKS[name][1] if name != "ether" else (lambda f: f) for name, _, _ in ifaces]
    out = []
    for k, rec in enumerate(records):
        fits = [j for j, fn in enumerate(fns) if fn(rec[2]) is not None]
        ifid = fits[k % len(fits)]
        out.append((ifid, rewrite([rec], fns[ifid])[0]))
    return out


@pytest.mark.parametrize("big", [False, True])
def test_pcapng_sections_link_types_and_resolutions(tmp_path: Path, big: bool) -> None:
    """Two sections of opposite byte order, with one interface per link type and several time resolutions."""
    _, records, _ = read_classic(MIXED)
    _, arp, _ = read_classic(DATA / "pcap/misc/tcp_scan.pcapng")  # 12 ARP frames among 30
    out = tmp_path / f"multi-{big}.pcapng"
    data = pcapng_section(
        big, [(LINKS.get(n, (1,))[0], r, o) for n, r, o in SECTION1], spread(records[:2300] + arp, SECTION1)
    )
    data += pcapng_section(
        not big, [(LINKS[n][0], r, o) for n, r, o in SECTION2], spread(records[2300:] + arp, SECTION2)
    )
    out.write_bytes(data)
    table, ctx = decode(out)
    want = assert_matches_tshark(out, table, skip_ts=True)
    assert ctx.counters[(out.name, "packets")] == capinfos_counts([out])[str(out)]
    assert ctx.errors.by_reason() == {"non-ip frame": 2 * 12}
    ours = table.column("ts").cast("int64").to_numpy()
    theirs = np.array(want["ts"])
    # the ms interface is compared to the ms; the SPB has no time (tshark: none, we: the previous packet's)
    close = np.abs(ours - theirs) <= np.where(table.column("in_if").to_numpy() == 3, 1000, 0)
    assert np.count_nonzero(~close) == 1 and theirs[~close][0] == -1
    assert set(table.column("in_if").to_pylist()) == set(range(len(SECTION2)))


# ------------------------------------------------------------------------ damage
def test_broken_headers_raise_decode_error(ng_file: Path) -> None:
    good = MIXED.read_bytes()
    with pytest.raises(Truncated):
        decode(MIXED, good[:20])
    with pytest.raises(DecodeError, match="offset 0"):
        decode(MIXED, b"\0\0\0\0" + good[4:])
    with pytest.raises(DecodeError, match="offset 4"):
        decode(MIXED, good[:4] + b"\x09\x00" + good[6:])
    ng = ng_file.read_bytes()[:4096]
    with pytest.raises(DecodeError, match="offset 8"):
        decode(MIXED, ng[:8] + b"\0\0\0\0" + ng[12:])
    with pytest.raises(DecodeError, match="offset 4"):
        decode(MIXED, ng[:4] + b"\x07\0\0\0" + ng[8:])
    with pytest.raises(Truncated):
        decode(MIXED, ng[:16])


@pytest.mark.parametrize("name", ["pcap", "pcapng"])
def test_cut_files_keep_every_packet_before_the_cut(name: str, ng_file: Path) -> None:
    path, data, ends, full = cut_file(name, ng_file)
    rng = random.Random(7)
    for cut in [rng.randrange(40, len(data)) for _ in range(25)] + [ends[100], ends[100] + 7]:
        table, ctx = decode(path, data[:cut], batch_size=500)
        whole = sum(1 for e in ends if e <= cut)
        assert table.num_rows == whole
        assert table.equals(full.slice(0, whole))
        assert (ctx.errors.total > 0) == (cut not in ends), ctx.errors.examples


@pytest.mark.parametrize("name", ["pcap", "pcapng"])
def test_damaged_records_are_counted_and_skipped(name: str, ng_file: Path) -> None:
    path, data, ends, full = cut_file(name, ng_file)
    rng = random.Random(11)
    for _ in range(20):
        at = rng.randrange(64, len(data) - 64)
        burst = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 48)))
        damaged = data[:at] + burst + data[at + len(burst) :]
        table, ctx = decode(path, damaged, batch_size=700)
        before = sum(1 for e in ends if e <= at)
        assert table.slice(0, before).equals(full.slice(0, before))
        # resync: the packets after the damage come back
        after = sum(1 for e in ends if e - 200 > at + len(burst))
        assert after == 0 or table.slice(table.num_rows - after).equals(full.slice(full.num_rows - after))
    # a record length no reader accepts is counted, and the walk resyncs on the next record
    k = 50
    bad = bytearray(data)
    if path.suffix == ".pcap":
        bad[ends[k] + 8 : ends[k] + 12] = (10**7).to_bytes(4, "little")
    else:
        bad[ends[k] + 4 : ends[k] + 8] = (10**7).to_bytes(4, "little")
    table, ctx = decode(path, bytes(bad))
    assert table.num_rows == full.num_rows - 1 and ctx.errors.by_reason() == {"damaged record, resynced": 1}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=hs.sampled_from([p for p in ALL_CAPTURES if p.stat().st_size < 40_000] + [None]),
    edits=hs.lists(hs.tuples(hs.floats(0, 1), hs.binary(min_size=1, max_size=8)), max_size=6),
    cut=hs.floats(0, 1),
    exports=hs.booleans(),
)
def test_fuzz_mutated_captures(
    ng_file: Path, source: Path | None, edits: list[tuple[float, bytes]], cut: float, exports: bool
) -> None:
    """Mutated and cut real captures (with or without the export decoders): only blackout's errors, never a crash."""
    source = source or ng_file
    data = bytearray(source.read_bytes()[:6000])
    for where, blob in edits:
        at = int(where * len(data))
        data[at : at + len(blob)] = blob
    data = data[: max(1, int(cut * len(data) * 1.2))]
    saved = pcap_mod.DATAGRAM_DECODERS
    pcap_mod.DATAGRAM_DECODERS = dict(DATAGRAM_DECODERS) if exports else {}
    try:
        table, _ = decode(source, bytes(data), batch_size=64)
    except BlackoutError:
        return
    finally:
        pcap_mod.DATAGRAM_DECODERS = saved
    assert exports or table.num_rows <= len(data) // 16


# ------------------------------------------------------------------------ exports in captures
def export_decoder(name: str) -> object:
    """The registered datagram decoder, importing its module when it exists; skip when it is not written yet."""
    if name not in DATAGRAM_DECODERS:
        if importlib.util.find_spec(f"blackout.sources.{name}") is None:
            pytest.skip(f"the {name} datagram decoder (blackout.sources.{name}) does not exist yet")
        importlib.import_module(f"blackout.sources.{name}")
    return DATAGRAM_DECODERS[name]


def udp_payloads(path: Path) -> tuple[list[bytes], list[str], list[int]]:
    cmd = [need_tool("tshark"), "-n", "-r", str(path), "-T", "fields", "-e", "udp.payload", "-e", "ip.src"]
    cmd += ["-e", "frame.time_epoch", "-E", "occurrence=f"]
    lines = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [line.split("\t") for line in lines]
    us = [int(t.split(".")[0]) * 1_000_000 + int(t.split(".")[1][:6]) for _, _, t in rows]
    return [bytes.fromhex(p) for p, _, _ in rows], [s for _, s, _ in rows], us


EXPORT_CAPTURES = {
    "netflow": ["akvorado/netflow/nfv5.pcap", "akvorado/netflow/data+templates.pcap", "pcap/netflowv9.pcap"],
    "sflow": ["akvorado/sflow/data-1140.pcap", "pcap/sflow.pcap", "pcap/sflow-print-v6.pcap"],
}


@pytest.mark.parametrize("name", sorted(EXPORT_CAPTURES))
def test_exports_in_captures_are_decoded(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Export packets give what the datagram decoder gives for the payloads tshark extracts, in their place."""
    decoder = export_decoder(name)
    monkeypatch.setattr(pcap_mod, "DATAGRAM_DECODERS", {name: decoder})
    rows = 0
    for rel in EXPORT_CAPTURES[name]:
        path = DATA / "flow" / rel
        table, _ = decode(path)
        payloads, senders, us = udp_payloads(path)
        direct = decoder.decode(payloads, senders, np.array(us, dtype=np.int64), DecodeContext())  # type: ignore[attr-defined]
        assert table.equals(pa.Table.from_batches([direct]).cast(FLOW_SCHEMA)), rel
        rows += table.num_rows
    assert rows > 3 * len(EXPORT_CAPTURES[name])


def test_exports_stay_in_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Export packets between ordinary ones: their records come out where the packets were, across small batches."""
    monkeypatch.setattr(pcap_mod, "DATAGRAM_DECODERS", {"netflow": export_decoder("netflow")})
    _, scan, _ = read_classic(DATA / "pcap/misc/synscan.pcap")
    _, nf, _ = read_classic(DATA / "flow/akvorado/netflow/nfv5.pcap")
    out = tmp_path / "mixed.pcap"
    write_classic(out, 1, scan[:10] + nf + scan[10:15] + nf + nf + scan[15:20])
    per_datagram = decode(DATA / "flow/akvorado/netflow/nfv5.pcap")[0].num_rows
    table, _ = decode(out, batch_size=7)
    plain = [e == out.name for e in table.column("exporter").to_pylist()]
    assert plain == [True] * 10 + [False] * per_datagram + [True] * 5 + [False] * 2 * per_datagram + [True] * 5


def test_templates_carry_across_captures(monkeypatch: pytest.MonkeyPatch) -> None:
    """A template capture then a data capture, read with one context, give the data's records."""
    decoder = export_decoder("netflow")
    monkeypatch.setattr(pcap_mod, "DATAGRAM_DECODERS", {"netflow": decoder})
    folder = DATA / "flow/akvorado/netflow"
    for first, then in [("template.pcap", "data.pcap"), ("ipfixprobe-templates.pcap", "ipfixprobe-data.pcap")]:
        ctx, direct_ctx = DecodeContext(), DecodeContext()
        ours, direct = [], []
        for name in (first, then):
            ours += list(PCAP.read(name, (folder / name).read_bytes(), ctx))
            payloads, senders, us = udp_payloads(folder / name)
            direct.append(decoder.decode(payloads, senders, np.array(us, dtype=np.int64), direct_ctx))  # type: ignore[attr-defined]
        table = pa.Table.from_batches(ours, schema=FLOW_SCHEMA)
        assert table.num_rows > 0 and table.equals(pa.Table.from_batches(direct).cast(FLOW_SCHEMA))


def test_netflow_v5_capture_matches_tshark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcap_mod, "DATAGRAM_DECODERS", {"netflow": export_decoder("netflow")})
    path = DATA / "flow/akvorado/netflow/nfv5.pcap"
    table, _ = decode(path)
    cmd = [need_tool("tshark"), "-n", "-r", str(path), "-d", "udp.port==9990,cflow", "-T", "fields"]
    cmd += ["-e", "cflow.srcaddr", "-e", "cflow.dstaddr"]
    src, dst = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().split("\t")
    assert sorted(addr.to_strings(table.column("src_addr"))) == sorted(src.split(","))
    assert sorted(addr.to_strings(table.column("dst_addr"))) == sorted(dst.split(","))


def test_exports_without_decoders_are_udp_flows() -> None:
    path = DATA / "flow/akvorado/netflow/nfv5.pcap"
    table, _ = decode(path)
    assert table.num_rows == 1 and table.column("protocol")[0].as_py() == 17
    assert_matches_tshark(path, table)


def test_sniff() -> None:
    for path in ALL_CAPTURES:
        assert PCAP.sniff(path.read_bytes()[:4096])
    assert not PCAP.sniff(b"\x00\x05\x00\x01" + b"\0" * 20)

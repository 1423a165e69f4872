"""The BMP decoder against tshark's bmp/bgp dissectors on akvorado's captures; damaged and chunked streams."""

from __future__ import annotations

import ipaddress
import itertools
import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dpkt
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from blackout.errors import BlackoutError, DecodeError, Truncated
from blackout.model import ROUTE_SCHEMA
from blackout.sources import FILE_DECODERS, DecodeContext, detect_format, read_input
from blackout.sources.bmp import BmpStream, rd_text
from bmp_writers import mrt_to_bmp
from conftest import DATA, need_tool

BMP = DATA / "flow" / "akvorado" / "bmp"
PCAPS = sorted(BMP.glob("*.pcap"))
ARRIVAL = 1_700_000_000_000_000
NEW_STATE = {"3": 6, "2": 1}  # Peer Up → Established, Peer Down → Idle


def segments(pcap: Path) -> tuple[list[bytes], list[int], int]:
    """TCP payloads of a capture (dpkt), their capture times in µs, and the BMP server port."""
    payloads, times, port = [], [], 0
    with pcap.open("rb") as fh:
        for ts, frame in dpkt.pcap.Reader(fh):
            tcp = dpkt.ethernet.Ethernet(frame).data.data
            if tcp.data:
                payloads.append(bytes(tcp.data))
                times.append(int(ts * 1_000_000))
                port = tcp.dport
    return payloads, times, port


def stream_bytes(pcaps: list[Path]) -> bytes:
    return b"".join(b"".join(segments(p)[0]) for p in pcaps)


ALL_BYTES = stream_bytes(PCAPS)


def rows_of(batches: Iterator[pa.RecordBatch] | list[pa.RecordBatch]) -> list[dict[str, Any]]:
    return pa.Table.from_batches(list(batches), schema=ROUTE_SCHEMA).to_pylist()


def decode_pcap(pcap: Path) -> tuple[list[dict[str, Any]], DecodeContext]:
    ctx = DecodeContext()
    stream = BmpStream("test", ctx)
    batches: list[pa.RecordBatch] = []
    for payload, ts in zip(*segments(pcap)[:2], strict=True):
        batches.extend(stream.feed(payload, ts))
    stream.finish()
    return rows_of(batches), ctx


def _leaves(node: Any, out: list[dict[str, Any]]) -> None:
    """Every dict holding a prefix field, anywhere under node."""
    if isinstance(node, list):
        for item in node:
            _leaves(item, out)
    elif isinstance(node, dict):
        if any(k.endswith("_prefix") and k.startswith("bgp.") for k in node):
            out.append(node)
        for value in node.values():
            _leaves(value, out)


def _segments(node: Any) -> list[dict[str, Any]]:
    """The AS_PATH segments under node, in order."""
    key = "bgp.update.path_attribute.as_path_segment"
    if isinstance(node, list):
        return [seg for item in node for seg in _segments(item)]
    if not isinstance(node, dict):
        return []
    if key in node:
        found = node[key]
        return found if isinstance(found, list) else [found]
    return [seg for value in node.values() for seg in _segments(value)]


def _path_text(segments: list[dict[str, Any]]) -> str:
    """bgpdump's spelling of tshark's segments: a sequence space separated, a set as {a,b}."""
    words = []
    for seg in segments:
        asns = seg.get("bgp.update.path_attribute.as_path_segment.as4", [])
        asns = asns if isinstance(asns, list) else [asns]
        if seg["bgp.update.path_attribute.as_path_segment.type"] == "1":
            words.append("{" + ",".join(asns) + "}")
        else:
            words.extend(asns)
    return " ".join(words)


def _collector(hdr: dict[str, Any]) -> tuple[str, str]:
    """The collector names blackout must give this per-peer header's peer: (for its STATE rows, for its routes)."""
    if not hdr:
        return ("", "")
    ptype, flags = int(hdr["bmp.peer.type"]), int(hdr["bmp.peer.flags"], 16)
    base = "test"
    if ptype in (1, 2):  # RD / local instance peer: the distinguisher tshark read
        base += ":rd=" + rd_text(bytes.fromhex(hdr["bmp.peer.distinguisher"].replace(":", "")))
    view = ":loc" if ptype == 3 else {0: "", 0x40: ":post", 0x10: ":out", 0x50: ":out-post"}[flags & 0x50]
    return base, base + view


def tshark_messages(pcap: Path) -> list[dict[str, Any]]:
    """One dict per BMP message as tshark dissects it: type, peer, AS, time, announced and withdrawn prefixes."""
    port = segments(pcap)[2]
    cmd = [need_tool("tshark"), "-r", str(pcap), "-d", f"tcp.port=={port},bmp", "-T", "json", "--no-duplicate-keys"]
    frames = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    out = []
    for frame in frames:
        bmps = frame["_source"]["layers"].get("bmp", [])
        for msg in bmps if isinstance(bmps, list) else [bmps]:
            hdr = msg.get("bmp.peer.header", {})
            peer = hdr.get("bmp.peer.ip.addr") or hdr.get("bmp.peer.ipv6.addr")
            leaves: list[dict[str, Any]] = []
            _leaves(msg.get("bgp", {}), leaves)
            announce, withdraw, labelled = [], [], 0
            for leaf in leaves:
                if "bgp.rd" in leaf or "bgp.label_stack" in leaf:
                    labelled += 1  # VPN / labelled unicast: a family blackout skips (and counts)
                    continue
                for key, value in leaf.items():
                    if not (key.startswith("bgp.") and key.endswith("_prefix")):
                        continue
                    item = (value, int(leaf["bgp.prefix_length"]), leaf.get("bgp.nlri_path_id"))
                    if "withdrawn" in key or "unreach" in key:
                        withdraw.append((*item, None))
                    else:
                        announce.append((*item, _path_text(_segments(msg.get("bgp", {})))))
            out.append(
                {
                    "type": msg["bmp.type"],
                    "peer": peer,
                    "collector": _collector(hdr),
                    "asn": int(hdr["bmp.peer.asn"]) if hdr else None,
                    "sec": int(hdr["bmp.peer.timestamp.sec"]) if hdr else None,
                    "announce": announce,
                    "withdraw": withdraw,
                    "labelled": labelled,
                }
            )
    return out


def text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    ip = ipaddress.ip_address(raw)
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


@pytest.mark.parametrize("pcap", PCAPS, ids=lambda p: p.stem)
def test_matches_tshark(pcap: Path) -> None:
    """Message types, peers, ASes, times, each announced (with AS path) and withdrawn prefix, as tshark has them."""
    rows, ctx = decode_pcap(pcap)
    messages = tshark_messages(pcap)
    assert messages, "tshark found no BMP message"
    types = Counter(m["type"] for m in messages)
    names = ["route_monitoring", "statistics", "peers_down", "peers_up", "initiation", "termination"]
    for t, name in enumerate(names):
        assert ctx.counters[("test", name)] == types[str(t)], name
    assert ctx.counters[("test", "bmp_messages")] == len(messages)
    # route elements: one per prefix, in the message's peer, AS and time
    want = Counter()
    for m in messages:
        for letter, items in ((1, m["announce"]), (2, m["withdraw"])):
            for prefix, plen, path_id, as_path in items:
                pid = int(path_id) if path_id is not None else None
                want[(letter, m["collector"][1], m["peer"], m["asn"], m["sec"], prefix, plen, pid, as_path)] += 1
        if m["type"] in NEW_STATE:
            want[(3, m["collector"][0], m["peer"], m["asn"], m["sec"], NEW_STATE[m["type"]])] += 1
    got = Counter()
    for r in rows:
        sec = int(r["ts"].timestamp())
        if r["elem_type"] == 3:
            got[(3, r["collector"], text(r["peer_addr"]), r["peer_asn"], sec, r["new_state"])] += 1
        else:
            key = (r["elem_type"], r["collector"], text(r["peer_addr"]), r["peer_asn"], sec)
            key += (text(r["prefix"]), r["prefix_len"])
            got[(*key, r["path_id"], r["as_path"])] += 1
            if r["as_path"]:  # the origin AS is the path's last AS (no AS_SET in these captures)
                assert r["origin_asn"] == int(r["as_path"].split()[-1])
    assert got == want
    if any(m["labelled"] for m in messages):
        assert ctx.errors.by_reason()["unsupported MP AFI/SAFI skipped"] > 0


def test_views_suffix_collector() -> None:
    """Post-policy messages (L flag) go to '<collector>:post'; the Peer Down then ends each view seen."""
    rows, _ = decode_pcap(BMP / "bmp-reach.pcap")
    assert {r["collector"] for r in rows} == {"test"}  # tshark: no post-policy flag in this capture
    payloads = b"".join(segments(BMP / "bmp-reach.pcap")[0])
    first_len = int.from_bytes(payloads[1:5], "big")
    post = bytearray(payloads[:first_len])
    post[7] |= 0x40  # the L flag of the first Route Monitoring's per-peer header
    down = b"".join(segments(BMP / "bmp-peer-down.pcap")[0])  # same peer 192.0.2.1
    ctx = DecodeContext()
    stream = BmpStream("r", ctx)
    rows = rows_of(list(stream.feed(payloads[:first_len] + bytes(post) + down, ARRIVAL)))
    announced = {r["collector"] for r in rows if r["elem_type"] == 1}
    downs = {r["collector"] for r in rows if r["elem_type"] == 3 and r["new_state"] == 1}
    assert announced == {"r", "r:post"} == downs


def test_file_decoder_and_sniff(tmp_path: Path) -> None:
    """A raw BMP stream file is detected as bmp and gives the same rows as the stream parser, named by the file."""
    path = tmp_path / "router.bmp"
    path.write_bytes(ALL_BYTES)
    assert detect_format(str(path), ALL_BYTES) == "bmp"
    others = [p for p in DATA.rglob("*") if p.is_file() and p.stat().st_size < 1 << 20]
    assert len(others) > 100
    assert not [p for p in others if FILE_DECODERS["bmp"].sniff(read_input(str(p))[:4096])]  # no other format
    ctx = DecodeContext(batch_size=7)
    batches = list(FILE_DECODERS["bmp"].read(str(path), ALL_BYTES, ctx))
    assert all(b.num_rows <= 7 for b in batches)
    rows = rows_of(batches)
    ctx2 = DecodeContext()
    want = rows_of(list(BmpStream("router.bmp", ctx2).feed(ALL_BYTES, path.stat().st_mtime_ns // 1000)))
    assert rows == want and len(rows) > 25
    assert ctx.errors.by_reason() == ctx2.errors.by_reason()


def test_truncated_file_and_stream(tmp_path: Path) -> None:
    """A stream cut anywhere gives exactly the rows of the whole messages before the cut, then Truncated."""
    whole = rows_of(list(BmpStream("t", DecodeContext()).feed(ALL_BYTES, ARRIVAL)))
    for cut in range(1, len(ALL_BYTES), 97):
        ctx = DecodeContext()
        stream = BmpStream("t", ctx)
        rows = rows_of(list(stream.feed(ALL_BYTES[:cut], ARRIVAL)))
        assert rows == whole[: len(rows)]
        if stream.pending:
            with pytest.raises(Truncated):
                stream.finish()
            assert ctx.errors.by_reason()["truncated BMP message"] == 1
    cut_file = tmp_path / "cut.bmp"
    cut_file.write_bytes(ALL_BYTES[:-10])
    ctx = DecodeContext()
    got: list[pa.RecordBatch] = []
    with pytest.raises(Truncated):
        for batch in FILE_DECODERS["bmp"].read(str(cut_file), ALL_BYTES[:-10], ctx):
            got.append(batch)
    assert len(rows_of(got)) >= len(whole) - 11


def message_starts(data: bytes) -> list[int]:
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        pos += int.from_bytes(data[pos + 1 : pos + 5], "big")
    return starts


def test_damaged_header_drops_session_but_file_resyncs(tmp_path: Path) -> None:
    """A broken version byte: a session yields what came before and raises; a file resyncs and counts it."""
    starts = message_starts(ALL_BYTES)
    bad = bytearray(ALL_BYTES)
    k = starts[len(starts) // 2]
    bad[k] = 0x77
    whole = rows_of(list(BmpStream("t", DecodeContext()).feed(ALL_BYTES, ARRIVAL)))
    before = rows_of(list(BmpStream("t", DecodeContext()).feed(ALL_BYTES[:k], ARRIVAL)))
    ctx = DecodeContext()
    stream = BmpStream("t", ctx)
    got: list[pa.RecordBatch] = []
    with pytest.raises(DecodeError) as info:
        for batch in stream.feed(bytes(bad), ARRIVAL):
            got.append(batch)
    assert info.value.offset == k and rows_of(got) == before
    assert ctx.errors.by_reason()["implausible BMP header"] == 1 and stream.dead
    ctx = DecodeContext()
    after = rows_of(list(FILE_DECODERS["bmp"].read(str(tmp_path / "x.bmp"), bytes(bad), ctx)))
    assert ctx.errors.by_reason()["resync: skipped damaged bytes"] == 1
    n_lost = len(whole) - len(after)
    assert 0 <= n_lost <= int.from_bytes(ALL_BYTES[k + 1 : k + 5], "big")


def test_damaged_body_is_counted_and_skipped() -> None:
    """A broken BGP marker inside one Route Monitoring: that message is counted and skipped, the rest decoded."""
    data = b"".join(segments(BMP / "bmp-reach.pcap")[0])
    starts = message_starts(data)
    bad = bytearray(data)
    bad[starts[1] + 6 + 42] = 0  # first marker byte of the second message's UPDATE
    whole = rows_of(list(BmpStream("t", DecodeContext()).feed(data, ARRIVAL)))
    second = rows_of(list(BmpStream("t", DecodeContext()).feed(data[starts[1] : starts[2]], ARRIVAL)))
    ctx = DecodeContext()
    rows = rows_of(list(BmpStream("t", ctx).feed(bytes(bad), ARRIVAL)))
    assert second and len(rows) == len(whole) - len(second)
    assert ctx.errors.by_reason() == {"bad BGP marker in BMP message": 1, "unsupported MP AFI/SAFI skipped": 7}
    assert ctx.counters[("t", "decode_errors")] == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=hst.lists(hst.integers(0, len(ALL_BYTES)), max_size=30))
def test_fuzz_chunking_gives_same_rows(cuts: list[int]) -> None:
    """Any split of a real stream into pieces gives the same rows and counters as one piece."""
    ctx1, ctx2 = DecodeContext(), DecodeContext()
    one = rows_of(list(BmpStream("t", ctx1).feed(ALL_BYTES, ARRIVAL)))
    stream = BmpStream("t", ctx2)
    bounds = [0, *sorted(cuts), len(ALL_BYTES)]
    pieces: list[pa.RecordBatch] = []
    for a, b in itertools.pairwise(bounds):
        pieces.extend(stream.feed(ALL_BYTES[a:b], ARRIVAL))
    assert rows_of(pieces) == one
    assert ctx1.counters == ctx2.counters and stream.pending == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=hst.lists(hst.tuples(hst.integers(0, len(ALL_BYTES) - 1), hst.integers(0, 255)), max_size=12),
    noise=hst.binary(max_size=300),
    resync=hst.booleans(),
)
def test_fuzz_damage_never_raises_foreign_errors(flips: list[tuple[int, int]], noise: bytes, resync: bool) -> None:
    """Mutated real streams and random bytes raise nothing but blackout's own errors."""
    data = bytearray(ALL_BYTES)
    for pos, value in flips:
        data[pos] = value
    for blob in (bytes(data), noise, bytes(data[:200]) + noise):
        ctx = DecodeContext()
        stream = BmpStream("f", ctx, resync=resync)
        try:
            for batch in stream.feed(blob, ARRIVAL):
                assert batch.schema == ROUTE_SCHEMA
            stream.finish()
        except BlackoutError:
            pass


@pytest.mark.parametrize(
    "name",
    ["routeviews.updates.20131201.0000.bz2", "bgpdump/updates.20070211.0141.gz", "ris.rrc06.updates.1401488100.gz"],
)
def test_same_elements_as_the_mrt_reader(name: str) -> None:
    """Real UPDATEs of MRT archives wrapped in BMP give exactly the MRT reader's (bgpdump-checked) elements."""
    path = DATA / "mrt" / name
    data = read_input(str(path))
    ctx = DecodeContext()
    want = pa.Table.from_batches(list(FILE_DECODERS["mrt"].read(str(path), data, ctx)), schema=ROUTE_SCHEMA)
    want = want.filter(pc.not_equal(want["elem_type"], 3)).drop_columns(["collector"])
    stream = b"".join(mrt_to_bmp(data))
    got = pa.Table.from_batches(list(BmpStream("t", DecodeContext()).feed(stream, ARRIVAL)), schema=ROUTE_SCHEMA)
    assert got.num_rows == want.num_rows > 1000
    assert got.drop_columns(["collector"]).equals(want)


def test_many_peers_grow_the_peer_table() -> None:
    """1,000 distinct peers (real UPDATEs given rewritten peer addresses): every row kept, each peer's address right."""
    path = DATA / "mrt" / "ris.rrc06.updates.1401488100.gz"
    msgs = [m for m in mrt_to_bmp(read_input(str(path))) if not m[7] & 0x80][:1000]  # IPv4 peers
    assert len(msgs) == 1000
    stream = b""
    for i, m in enumerate(msgs):
        stream += m[:28] + bytes([10, i >> 8 & 255, i & 255, 1]) + m[32:]  # peer address 10.x.y.1
    ctx = DecodeContext()
    parser = BmpStream("t", ctx)
    rows = rows_of(list(parser.feed(stream, ARRIVAL)))
    want = rows_of(list(BmpStream("t", DecodeContext()).feed(b"".join(msgs), ARRIVAL)))
    assert len(rows) == len(want) > 1000
    peers = {text(r["peer_addr"]) for r in rows}
    assert len(peers) == len({i for i, m in enumerate(msgs) if rows_per_message(m)})
    ends = parser.end_rows(ARRIVAL).to_pylist()
    assert len(ends) == 1000 and {r["new_state"] for r in ends} == {1}
    assert {text(r["peer_addr"]) for r in ends} == {f"10.{i >> 8}.{i & 255}.1" for i in range(1000)}


def rows_per_message(msg: bytes) -> int:
    return len(rows_of(list(BmpStream("t", DecodeContext()).feed(msg, ARRIVAL))))


def test_an_abandoned_feed_never_decodes_twice() -> None:
    """A consumer that stops after the first batch: the next feed goes on where the walk stopped, no duplicates."""
    stream_bytes = b"".join(mrt_to_bmp(read_input(str(DATA / "mrt" / "routeviews.updates.20131201.0000.bz2"))))
    whole = pa.Table.from_batches(list(BmpStream("t", DecodeContext()).feed(stream_bytes, ARRIVAL)))
    stream = BmpStream("t", DecodeContext())
    pieces = stream.feed(stream_bytes, ARRIVAL)
    first = next(pieces)
    pieces.close()
    assert 0 < first.num_rows < whole.num_rows and stream.pending > 0
    rest = list(stream.feed(b"", ARRIVAL))
    assert pa.Table.from_batches([first, *rest]).equals(whole)

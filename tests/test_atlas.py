"""RIPE Atlas ping results → probe rows, checked against RIPE's own parser (ripe.atlas.sagan)."""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ripe.atlas.sagan import PingResult

from atlas_results import ping
from blackout import addr
from blackout.errors import BlackoutError
from blackout.sources import FILE_DECODERS, DecodeContext, detect_format
from blackout.sources.atlas import DAMAGED

DEC = FILE_DECODERS["atlas"]


def results(n: int = 60, seed: int = 7) -> list[dict[str, object]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        dst = rnd.choice(["175.45.176.8", "175.45.176.67", "175.45.178.79", "2001:db8::1"])
        rtts = [rnd.choice([None, round(rnd.uniform(150, 400), 3)]) for _ in range(3)]
        out.append(ping(1000 + i % 7, dst, 1419264000 + 240 * i, rtts))
    return out


def decode(data: bytes) -> tuple[pa.Table, DecodeContext]:
    ctx = DecodeContext(batch_size=16)
    batches = list(DEC.read("atlas.json", data, ctx))
    table = pa.Table.from_batches(batches) if batches else pa.table({})
    return table, ctx


def check_against_sagan(table: pa.Table, objs: list[dict[str, object]]) -> None:
    rows = table.to_pylist()
    assert len(rows) == len(objs)
    for row, obj in zip(rows, objs, strict=True):
        ref = PingResult(obj)
        assert not ref.is_malformed
        assert row["prober"] == f"atlas:{ref.probe_id}"
        assert addr.format_one(row["target"]) == ref.destination_address
        assert int(row["ts"].timestamp()) == int(ref.created.timestamp())
        assert row["sent"] == ref.packets_sent
        assert row["received"] == ref.packets_received
        assert row["method"] == "icmp"
        if ref.packets_received:
            assert row["rtt_ms"] == pytest.approx(ref.rtt_average, abs=1e-3)
        else:
            assert row["rtt_ms"] is None


@pytest.mark.parametrize("layout", ["array", "pretty", "lines"])
def test_matches_sagan(layout: str) -> None:
    objs = results()
    if layout == "lines":
        data = "\n".join(json.dumps(o) for o in objs).encode() + b"\n"
    else:
        data = json.dumps(objs, indent=2 if layout == "pretty" else None).encode()
    assert detect_format("x", data) == "atlas"
    table, ctx = decode(data)
    check_against_sagan(table, objs)
    assert ctx.errors.total == 0


def test_damaged_objects_are_counted_and_the_rest_kept() -> None:
    objs = results(20)
    lines = [json.dumps(o) for o in objs]
    lines.insert(5, '{"prb_id": 12, "timestamp": 14192')  # cut in the middle
    lines.insert(6, '{"prb_id": 13, "result": [{"rtt": 1.5}, {"rt')  # and the next one too
    lines.insert(9, json.dumps({**objs[0], "dst_addr": "not an address"}))
    lines.insert(11, json.dumps({**objs[0], "rcvd": 9}))  # more answers than packets sent
    lines.insert(13, json.dumps({**objs[0], "type": "traceroute"}))
    table, ctx = decode("\n".join(lines).encode())
    check_against_sagan(table, objs)
    assert ctx.errors.by_reason() == {DAMAGED: 4, "not a ping result": 1}


def test_damaged_array_keeps_what_precedes_the_damage() -> None:
    objs = results(10)
    text = json.dumps(objs)
    cut = text.index('{"af"', len(text) // 2)
    table, ctx = decode((text[: cut + 40] + "\x00garbage").encode())
    assert 0 < table.num_rows < len(objs)
    check_against_sagan(table, objs[: table.num_rows])
    assert ctx.errors.examples == [f"atlas.json at offset {cut}: {DAMAGED}"]


def test_array_gives_the_rows_of_json_lines_on_the_kp_scenario(kp_scenario: Path) -> None:
    """The scenario's 64,800 Atlas results read as JSON lines and as the API's array, compact and pretty."""
    lines = (kp_scenario / "atlas-ping.jsonl").read_bytes().splitlines()
    from_lines, ctx = decode(b"\n".join(lines))
    assert from_lines.num_rows == len(lines) and ctx.errors.total == 0
    check_against_sagan(from_lines.slice(0, 300), [json.loads(line) for line in lines[:300]])
    for sep in (b",", b",\n  "):
        from_array, ctx = decode(b"[" + sep.join(lines) + b"]\n")
        assert from_array.equals(from_lines)
        assert ctx.errors.total == 0


@pytest.mark.parametrize("layout", ["lines", "array"])
def test_damage_in_a_large_file_is_found_by_halving(layout: str) -> None:
    """~1 MB (past the stretch walked value by value): damaged values first, last, adjacent and alone are
    each counted at their offset, and every other result kept, as sagan reads it.  The damage leaves the
    array's structure whole (a cut element sends the whole array value by value: damage_cases)."""
    objs = results(3000)
    items = [json.dumps(o).encode() for o in objs]
    damaged = {
        0: b'{"prb_id" 1}',
        1400: b'{"prb_id": 1 "x"}',
        1401: b'{"a": 1,}',
        2999: items[2999].replace(b"175.", b"\xff", 1),
    }
    for i, bad in damaged.items():
        items[i] = bad
    sep = b"\n" if layout == "lines" else b",\n"
    data = sep.join(items) if layout == "lines" else b"[" + sep.join(items) + b"]"
    table, ctx = decode(data)
    check_against_sagan(table, [o for i, o in enumerate(objs) if i not in damaged])
    starts = [len(data) - len(sep.join(items[i:])) - (layout == "array") for i in sorted(damaged)]
    assert ctx.errors.examples == [f"atlas.json at offset {o}: {DAMAGED}" for o in starts]


def damage_cases() -> list[tuple[str, bytes, bool]]:
    """(name, damaged element, whether the decoder sees the damage in the JSON, so knows its offset)
    for element 5 of results(20)."""
    item = json.dumps(results(20)[5]).encode()
    cuts = [(f"cut at {i}", item[:i], True) for i in range(1, len(item), 23)]
    return [
        *cuts,
        ("garbage", b"\x00garbage", True),
        ("invalid utf-8 in dst_addr", item.replace(b"175.", b"\x80\x81", 1), True),
        ("string probe id", item.replace(b'"prb_id": 1005', b'"prb_id": "x"'), False),
    ]


@pytest.mark.parametrize(("name", "bad", "located"), damage_cases(), ids=[c[0] for c in damage_cases()])
def test_damaged_array_element_is_counted_and_the_rest_kept(name: str, bad: bytes, located: bool) -> None:
    """The array path keeps what the JSON-lines path keeps (both checked by sagan) and names the element's offset."""
    objs = results(20)
    items = [json.dumps(o).encode() for o in objs]
    items[5] = bad
    data = b"\n [" + b",\n  ".join(items) + b"]"
    from_array, ctx = decode(data)
    from_lines, lines_ctx = decode(b"\n".join(items))
    check_against_sagan(from_array, objs[:5] + objs[6:])
    assert from_array.equals(from_lines)
    assert ctx.errors.by_reason() == lines_ctx.errors.by_reason() == {DAMAGED: 1}
    if located:
        offset = len(b"\n [") + sum(len(item) + len(b",\n  ") for item in items[:5])
        assert ctx.errors.examples == [f"atlas.json at offset {offset}: {DAMAGED}"]


@pytest.mark.parametrize(
    ("after", "kept", "where"),
    [
        (b"", 3, [0]),  # the file ends inside the array (the API's download was cut)
        (b",\n", 3, [0]),
        (b"]\n]\n", 3, [-2]),  # text after the array's end
        (b"]garbage", 3, [-7]),
        (b"][" + b",".join(json.dumps(o).encode() for o in results(3)) + b"]", 6, [-9000, -1]),  # two arrays
        (b"]\n \r\n", 3, []),
        (b",]", 3, []),  # a trailing comma loses nothing
    ],
)
def test_unclosed_array_or_text_after_it_is_counted(after: bytes, kept: int, where: list[int]) -> None:
    """What may have been lost at the array's end is counted at its offset (``where``: from the end of the file;
    -9000: the second array's ``[``); the results are kept (checked by sagan)."""
    objs = results(3)
    data = b"[" + b",".join(json.dumps(o).encode() for o in objs) + after
    table, ctx = decode(data)
    check_against_sagan(table, (objs * 2)[:kept])
    offsets = [len(data) + w if w != -9000 else data.index(b"][") + 1 for w in where]
    assert ctx.errors.examples == [f"atlas.json at offset {o}: {DAMAGED}" for o in offsets]


@pytest.mark.parametrize("data", [b"", b" \n", b"[]", b" [ \n ]\n", b"[\n]"])
def test_empty_input_or_array_has_no_rows_and_no_errors(data: bytes) -> None:
    table, ctx = decode(data)
    assert table.num_rows == 0 and ctx.errors.total == 0


@pytest.mark.parametrize("unit", [b'{"prb_id":[', b'{"a', b"{"])
def test_hostile_array_is_one_damaged_stretch(unit: bytes) -> None:
    """A megabyte of nesting or unclosed keys: one damaged stretch, no result, in bounded work."""
    table, ctx = decode(b'[{"prb_id": "' + unit * (1_000_000 // len(unit)))
    assert table.num_rows == 0
    assert ctx.errors.by_reason() == {DAMAGED: 1}


def test_old_firmware_without_avg_uses_the_answers() -> None:
    obj = ping(5, "175.45.176.8", 1419264000, [200.0, None, 300.0], fw=4600)
    del obj["avg"]
    table, _ = decode(json.dumps([obj]).encode())
    assert table.column("rtt_ms").to_pylist() == [pytest.approx(250.0)]


def test_sniff() -> None:
    assert DEC.sniff(b'  [{"af": 4, "prb_id": 3}]')
    assert not DEC.sniff(b'{"hello": 1}')
    assert not DEC.sniff(b"\xd4\xc3\xb2\xa1")


SEED = json.dumps(results(12)).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_never_raises_foreign_errors(data: st.DataObject) -> None:
    raw = bytearray(SEED if data.draw(st.booleans()) else b"\n".join(json.dumps(o).encode() for o in results(12)))
    for _ in range(data.draw(st.integers(0, 12))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    with contextlib.suppress(BlackoutError):
        decode(bytes(raw))


def test_invalid_utf8_inside_a_line_is_counted() -> None:
    objs = results(6)
    lines = [json.dumps(o).encode() for o in objs]
    lines.insert(2, json.dumps(objs[0]).encode().replace(b"175.", b"\x80\x81", 1))
    table, ctx = decode(b"\n".join(lines))
    check_against_sagan(table, objs)
    assert ctx.errors.by_reason() == {DAMAGED: 1}

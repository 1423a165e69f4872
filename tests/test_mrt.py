"""The MRT decoder against `bgpdump -m -l` (the oracle), line for line, in bgpdump's order."""

from __future__ import annotations

import bz2
import re
import socket
import subprocess
import zlib
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from blackout.errors import BlackoutError, DecodeError
from blackout.model import ROUTE_SCHEMA
from blackout.sources import FILE_DECODERS, DecodeContext, detect_format, read_input
from conftest import DATA, need_tool

MRT = DATA / "mrt"
ALL = sorted(p for p in MRT.rglob("*") if p.is_file())
LETTER = {0: "B", 1: "A", 2: "W", 3: "STATE"}


def load(path: Path) -> bytes:
    """Everything that decompresses, up to a cut in the compressed stream (as bgpdump's reader gets it)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        return zlib.decompressobj(wbits=47).decompress(raw)
    if raw[:3] == b"BZh":
        out, dec = bytearray(), bz2.BZ2Decompressor()
        for i in range(0, len(raw), 1 << 16):
            try:
                out += dec.decompress(raw[i : i + (1 << 16)])
            except (EOFError, OSError):
                break
        return bytes(out)
    return read_input(str(path))


def decode(path: Path, data: bytes | None = None) -> tuple[pa.Table, DecodeContext, BaseException | None]:
    ctx = DecodeContext()
    batches: list[pa.RecordBatch] = []
    exc: BaseException | None = None
    try:
        batches.extend(FILE_DECODERS["mrt"].read(str(path), load(path) if data is None else data, ctx))
    except DecodeError as e:
        exc = e
    return pa.Table.from_batches(batches, schema=ROUTE_SCHEMA), ctx, exc


def bgpdump(path: Path) -> tuple[list[str], str, int]:
    proc = subprocess.run([need_tool("bgpdump"), "-v", "-m", "-l", str(path)], capture_output=True, text=True)
    err = "\n".join(line for line in proc.stderr.splitlines() if "logging to" not in line)
    return proc.stdout.splitlines(), err, proc.returncode


MAPPED = b"\0" * 10 + b"\xff\xff"


def ip(raw: bytes | None, v6: bool = False) -> str:
    """Address text as bgpdump prints it; v6 forces the IPv6 spelling of a mapped address (an IPv6 next hop)."""
    if raw is None:
        return ""
    if raw[:12] == MAPPED and not v6:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return bgpdump_v6(raw)


def bgpdump_v6(raw: bytes) -> str:
    """bgpdump's IPv6 text: the longest run of zero words is "::" even when it is one word long."""
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, 16, 2)]
    best, best_len, i = -1, 0, 0
    while i < 8:
        if words[i] == 0:
            j = i
            while j < 8 and words[j] == 0:
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    if best == 0 and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF)):
        return ("::ffff:" if best_len == 5 else "::") + socket.inet_ntop(socket.AF_INET, raw[12:])
    parts = [format(w, "x") for w in words]
    if best < 0:
        return ":".join(parts)
    return ":".join(parts[:best]) + "::" + ":".join(parts[best + best_len :])


def ours(table: pa.Table) -> list[tuple[object, ...]]:
    """Our rows as the comparable tuple of fields bgpdump prints."""
    c = {name: table.column(name).to_pylist() for name in table.column_names if name not in ("ts", "collector")}
    ts = table.column("ts").cast(pa.int64()).to_pylist()
    out: list[tuple[object, ...]] = []
    for i in range(table.num_rows):
        t = LETTER[c["elem_type"][i]]
        head = (t, ts[i], ip(c["peer_addr"][i]), c["peer_asn"][i])
        if t == "STATE":
            out.append((*head, c["old_state"][i], c["new_state"][i]))
            continue
        pid = c["path_id"][i]
        pfx = (f"{ip(c['prefix'][i])}/{c['prefix_len'][i]}", "" if pid is None else str(pid))
        if t == "W":
            out.append(head + pfx)
            continue
        nh = c["next_hop"][i]
        out.append(
            (
                *head,
                *pfx,
                c["as_path"][i] or "",
                c["origin"][i] or "INCOMPLETE",
                ip(nh, v6=c["prefix"][i][:12] != MAPPED) if nh is not None else "255.255.255.255",
                c["local_pref"][i] or 0,
                c["med"][i] or 0,
                c["communities"][i] or "",
            )
        )
    return out


def theirs(lines: list[str]) -> list[tuple[object, ...]]:
    """bgpdump -m -l lines as the same tuples (add-path formats carry the path id after the prefix)."""
    out: list[tuple[object, ...]] = []
    for line in lines:
        f = line.split("|")
        ts = int(Decimal(f[1]) * 1_000_000)
        head = (f[2], ts, f[3], int(f[4]))
        if f[2] == "STATE":
            out.append((*head, int(f[5]), int(f[6])))
            continue
        ap = f[0].endswith("_AP")
        pfx = (f[5], f[6] if ap else "")
        if f[2] == "W":
            if f[0] == "BGP":  # type-5 withdrawals: two inet_ntoa() in one printf, the peer's text wins
                assert f[5].split("/")[0] == f[3]
                pfx = ("NTOA", f[5].split("/")[1])
            out.append(head + pfx)
            continue
        r = f[7:] if ap else f[6:]
        if f[0] == "BGP":  # bgpdump prints MED and communities of MRT type 5 glued, without a separator
            glued = r[4] if r[5] in ("AG", "NAG") and len(r) == 8 else None
            out.append((*head, *pfx, r[0], r[1], r[2], int(r[3]), "GLUED", glued))
            continue
        large = r[6] if len(r) == 10 else ""  # -l adds large communities after communities
        comm = " ".join(x for x in (r[5], large) if x)
        out.append((*head, *pfx, r[0], r[1], r[2], int(r[3]), int(r[4]), comm))
    return out


def unglue(a: tuple[object, ...], b: tuple[object, ...]) -> tuple[object, ...]:
    """Theirs, with bgpdump's two type-5 quirks checked against ours: MED and communities printed glued,
    and a withdrawal's prefix address overwritten by the peer's (only the length is printed right)."""
    if b[0] == "W" and b[-2] == "NTOA":
        return (*b[:-2], a[-2], a[-1]) if str(a[-2]).endswith("/" + str(b[-1])) else b
    if len(b) < 2 or b[-2] != "GLUED":
        return b
    return (*b[:-2], a[-2], a[-1]) if b[-1] == f"{a[-2]}{a[-1]}" else b


def clean_files() -> list[Path]:
    """Files bgpdump reads with exit 0 and nothing on stderr: those we must match line for line."""
    return [p for p in ALL if p.name != "routeviews.route-views.jinx.ribs.1401487200.bz2"]


@pytest.mark.parametrize("path", clean_files(), ids=lambda p: str(p.relative_to(MRT)))
def test_matches_bgpdump(path: Path) -> None:
    lines, err, rc = bgpdump(path)
    if rc != 0 or err:
        pytest.skip(f"bgpdump does not read it cleanly: {err.splitlines()[0] if err else rc}")
    table, _ctx, exc = decode(path)
    assert exc is None, exc
    mine, ref = ours(table), theirs(lines)
    assert len(mine) == len(ref)
    for i, (a, b) in enumerate(zip(mine, ref, strict=True)):
        assert a == unglue(a, b), f"line {i}: {lines[i]}"
    assert (table.column("collector").unique().to_pylist() or [path.name]) == [path.name]


@pytest.fixture(scope="module")
def jinx() -> tuple[pa.Table, DecodeContext, BaseException | None]:
    return decode(MRT / "routeviews.route-views.jinx.ribs.1401487200.bz2")


@pytest.mark.slow
def test_jinx_rib_all_lines(jinx: tuple[pa.Table, DecodeContext, BaseException | None]) -> None:
    lines, err, rc = bgpdump(MRT / "routeviews.route-views.jinx.ribs.1401487200.bz2")
    assert rc == 0 and not err
    table, ctx, exc = jinx
    assert exc is None and ctx.errors.total == 0
    assert table.num_rows == len(lines) == 503_590
    mine, ref = ours(table), theirs(lines)
    bad = [i for i, (a, b) in enumerate(zip(mine, ref, strict=True)) if a != unglue(a, b)]
    assert not bad, f"{len(bad)} lines differ, first: {lines[bad[0]]} vs {mine[bad[0]]}"


def test_jinx_north_korea(jinx: tuple[pa.Table, DecodeContext, BaseException | None]) -> None:
    """Published fact: AS131279 originates 175.45.176.0/22 as four /24s, seen via AS4837."""
    table = jinx[0].filter(pc.equal(jinx[0].column("as_path"), "30844 3356 1239 4837 131279"))
    pfx = {
        f"{ip(p)}/{n}"
        for p, n in zip(table.column("prefix").to_pylist(), table.column("prefix_len").to_pylist(), strict=False)
    }
    assert pfx == {f"175.45.{n}.0/24" for n in range(176, 180)}
    assert set(table.column("origin_asn").to_pylist()) == {131279}


@pytest.mark.parametrize(
    "name",
    [
        "bgpkit/ripe.bview.20000111.0032.gz",
        "bgpkit/ripe.updates.20000325.0345.gz",
        "pyasn/rib.20080501.0644_firstMB.bz2",
        "pyasn/rib.20140523.0600_firstMB.bz2",
        "pyasn/rib6.20151101.0600_firstMB.bz2",
    ],
)
def test_damaged_files(name: str) -> None:
    """Read up to the damage: every row before the first damaged record is bgpdump's, in order; the damage
    is counted with its offset; only DecodeError may end the read; more than the good part may be recovered."""
    path = MRT / name
    lines, _, _ = bgpdump(path)
    table, ctx, exc = decode(path)
    offsets = [int(m.group(1)) for e in ctx.errors.examples if (m := re.search(r" at offset (\d+):", e))]
    assert ctx.errors.total >= 1 and offsets
    before, ctx_before, exc_before = decode(path, load(path)[: min(offsets)])
    assert exc_before is None and ctx_before.errors.total == 0
    good, ref = ours(before), theirs(lines)
    assert 0 < len(good) <= len(ref)
    assert [unglue(a, b) for a, b in zip(good, ref, strict=False)] == good
    assert table.num_rows >= len(good)
    if exc is not None:
        assert isinstance(exc, DecodeError) and exc.offset > 0


def test_sniff_and_registry() -> None:
    assert detect_format("x", load(MRT / "ris.rrc06.updates.1427846400.gz")) == "mrt"
    assert not FILE_DECODERS["mrt"].sniff(b"\xd4\xc3\xb2\xa1" + b"\0" * 20)


SEEDS = [load(MRT / "ris.rrc06.updates.1427846400.gz")[:6000], load(MRT / "lab/bird6-mrtdump_rib")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=hst.sampled_from(SEEDS),
    edits=hst.lists(hst.tuples(hst.integers(0, 5999), hst.integers(0, 255)), max_size=12),
    cut=hst.integers(0, 6000),
)
def test_fuzz_mutated_records(seed: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed[: max(cut, 12)])
    for pos, val in edits:
        if pos < len(data):
            data[pos] = val
    ctx = DecodeContext(batch_size=64)
    try:
        for batch in FILE_DECODERS["mrt"].read("fuzz", bytes(data), ctx):
            assert batch.schema == ROUTE_SCHEMA and batch.num_rows <= 64
    except BlackoutError:
        pass

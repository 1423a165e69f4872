"""RIPE Atlas ping results (JSON array or JSON lines) → PROBE_SCHEMA batches.

The documented result object ("ping", all firmware since 4400) carries
``timestamp`` (s), ``prb_id``, ``dst_addr``, ``sent``, ``rcvd``, ``avg`` (ms,
-1 when nothing came back) and ``result``: one ``{"rtt": ms}`` per answer,
``{"x": "*"}`` per loss, ``{"error": ...}`` when sending failed.  Each object
becomes one row: prober ``atlas:<prb_id>``, method ``icmp``, rtt the mean of the
answers (``avg``; recomputed from ``result`` when ``avg`` is absent).

How: JSON lines are parsed by Arrow's C++ JSON reader over the whole buffer
(no Python object per result); a JSON array (what the Atlas API returns by
default) is first rewritten in place as JSON lines by a numba walk (outer
brackets and the commas between elements become whitespace and newlines), so
it takes the same path (bench/bench_atlas.py prints the cost: 1.75-2.7x the
JSON-lines time on 100k results over four runs here, mostly the copy of the
file that is rewritten and the single-threaded walk).  If Arrow refuses the buffer (a damaged line or element),
it is halved at newlines and each half read by Arrow again, down to stretches
of 64 KB whose values are decoded one by one with the standard library,
resynchronising after each damaged stretch, so the good ones survive.  An array
whose structure is broken (an element cut) is decoded value by value whole, at
about sagan's speed.  Destination addresses are parsed once per
distinct address (a measurement has few targets).  Objects without a usable
time, probe id, address or counts are counted in ``ctx.errors`` as "damaged
atlas result".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from numba import njit

from .. import addr
from ..model import PROBE_SCHEMA, TIME, Kind
from .base import DecodeContext, register_file

DAMAGED = "damaged atlas result"
NOT_PING = "not a ping result"
_FIELDS = pa.schema(
    [
        pa.field("type", pa.string()),
        pa.field("timestamp", pa.float64()),
        pa.field("prb_id", pa.float64()),
        pa.field("dst_addr", pa.string()),
        pa.field("sent", pa.float64()),
        pa.field("rcvd", pa.float64()),
        pa.field("avg", pa.float64()),
        pa.field("result", pa.list_(pa.struct([pa.field("rtt", pa.float64())]))),
    ]
)


class AtlasDecoder:
    """The "atlas" file decoder: RIPE Atlas ping results as probe rows."""

    name: ClassVar[str] = "atlas"
    kind: ClassVar[Kind] = Kind.PROBE

    def sniff(self, head: bytes) -> bool:
        """A JSON array or object near the start that mentions a probe id."""
        text = head.lstrip()
        return text[:1] in (b"[", b"{") and b'"prb_id"' in head

    def read(self, path: str, data: bytes, ctx: DecodeContext) -> Iterator[pa.RecordBatch]:
        """Yield the file's ping results as PROBE_SCHEMA batches; count damaged objects."""
        table = _parse(path, data, ctx)
        if table.num_rows == 0:
            return
        out = _rows(path, table, ctx)
        yield from out.to_batches(max_chunksize=max(1, ctx.batch_size))


def _parse(path: str, data: bytes, ctx: DecodeContext) -> pa.Table:
    """The needed fields of every result object as a table of _FIELDS (damaged objects counted, left out)."""
    text = data.lstrip()
    lead = len(data) - len(text)  # offsets in errors are the file's
    lines = _array_as_lines(text) if text[:1] == b"[" else text
    if lines is None:  # an array whose structure is broken: value by value so the good ones survive
        return _from_objects(path, _values(path, text, lead, ctx, in_array=True), ctx)
    table = _arrow_lines(pa.py_buffer(lines))
    if table is not None:
        return table
    return pa.concat_tables(_halves(path, bytes(lines), 0, len(lines), lead, ctx))


_WALK_BYTES = 1 << 16  # a refused stretch this small is walked value by value rather than halved again


def _halves(path: str, lines: bytes, start: int, end: int, lead: int, ctx: DecodeContext) -> list[pa.Table]:
    """JSON lines Arrow refused somewhere in lines[start:end]: the stretch is halved at a newline and each
    half read by Arrow again, so only small stretches around the damage are decoded value by value."""
    table = _arrow_lines(pa.py_buffer(lines).slice(start, end - start)) if start > 0 or end < len(lines) else None
    if table is not None:
        return [table]
    split = lines.find(b"\n", start + (end - start) // 2, end)
    if end - start <= _WALK_BYTES or split < 0:
        return [_from_objects(path, _values(path, lines[start:end], lead + start, ctx, in_array=False), ctx)]
    return _halves(path, lines, start, split, lead, ctx) + _halves(path, lines, split + 1, end, lead, ctx)


def _arrow_lines(buf: pa.Buffer) -> pa.Table | None:
    """JSON lines through Arrow's C++ reader; None when it refuses the buffer."""
    opts = pj.ParseOptions(explicit_schema=_FIELDS, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(pa.BufferReader(buf), parse_options=opts).select(_FIELDS.names)
        table.validate(full=True)  # Arrow's reader lets invalid UTF-8 inside strings through
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table


def _array_as_lines(text: bytes) -> np.ndarray | None:
    """A JSON array of objects rewritten as JSON lines (same length), or None when it is not one.

    The rewritten copy goes to Arrow as it is: turning it back into ``bytes``
    would copy the file a second time."""
    buf = np.frombuffer(text, dtype=np.uint8).copy()
    return buf if _unwrap_array(buf) else None


@njit(cache=True)
def _unwrap_array(buf: np.ndarray) -> bool:  # pragma: no cover - compiled
    """In place: the outer brackets become spaces, the commas between elements newlines and newlines
    inside elements spaces.  False unless the buffer is one array whose elements are all objects."""
    depth = 0
    in_str = False
    esc = False
    closed = False
    for i in range(len(buf)):
        c = buf[i]
        if in_str:
            if esc:
                esc = False
            elif c == 92:  # backslash
                esc = True
            elif c == 34:
                in_str = False
            continue
        if closed:
            if c not in (32, 9, 10, 13):
                return False
            continue
        if c == 34:
            in_str = True
        elif c == 91 or c == 123:  # [ {
            if depth == 0:
                if c != 91:
                    return False
                buf[i] = 32
            elif depth == 1 and c != 123:
                return False
            depth += 1
        elif c == 93 or c == 125:  # ] }
            depth -= 1
            if depth == 0:
                if c != 93:
                    return False
                buf[i] = 32
                closed = True
            elif depth < 0:
                return False
        elif c == 44 and depth == 1:
            buf[i] = 10
        elif (c == 10 or c == 13) and depth >= 1:
            buf[i] = 32
        elif depth == 1 and c not in (32, 9):
            return False
    return closed


def _values(path: str, text: bytes, lead: int, ctx: DecodeContext, in_array: bool) -> list[Any]:
    """The values of JSON lines or of a JSON array that Arrow refused, decoded one by one.

    At a damaged value in an array the walk resynchronises at the next ``{``
    that decodes to a result object (one with ``prb_id``), so the fragments of
    the damaged value are skipped and everything after it is kept; in JSON
    lines the next line ends the damage, as on a line-by-line reading.  A
    damaged stretch counts once, at its byte offset in the file (``lead``: the
    whitespace stripped before ``text``); so does an array that is not closed,
    or anything after its ``]``.  Values holding invalid UTF-8 are damaged, as on
    the Arrow path.  Failed attempts may examine about 8x the file: hostile
    input (a megabyte of ``{"a":[`` nesting) would otherwise take minutes;
    past that the rest of the file belongs to the damaged stretch being
    skipped."""
    body = text.decode("latin-1")  # one char per byte: positions are byte offsets
    by_line = not in_array  # JSON lines: one value per line, so a damaged line ends at its newline
    objs: list[Any] = []
    pos, lost, budget = int(in_array), False, 8 * len(body) + (1 << 16)
    while True:
        if lost:  # after damage: in an array, only a whole result object ends the skipped stretch
            pos = body.find("\n" if by_line else "{", pos)
            if pos < 0:
                break
            lost = not by_line
        if not lost:
            pos = _GAP.match(body, pos).end()  # type: ignore[union-attr]  # matches the empty string
            if pos >= len(body):
                if in_array:  # truncated: the array was never closed
                    ctx.errors.add(path, DAMAGED, pos + lead)
                break
            if in_array and body[pos] == "]":
                in_array, pos = False, _GAP.match(body, pos + 1).end()  # type: ignore[union-attr]
                if pos < len(body):  # more after the array
                    ctx.errors.add(path, DAMAGED, pos + lead)
                    lost = True
                continue
        try:
            obj, end = _decode_at(text, body, pos)
        except _Failed as failed:
            budget -= failed.cost
            if not lost:
                ctx.errors.add(path, DAMAGED, pos + lead)
                lost = True
            if budget < 0:
                break
            pos += 1
            continue
        if lost and not (isinstance(obj, dict) and "prb_id" in obj):
            pos += 1
            continue  # a fragment of the damaged value (an answer such as {"rtt": 12.3})
        objs.append(obj)
        pos, lost = end, False
    return objs


_GAP = re.compile(r"[ \t\r\n,]*")  # between values: whitespace, and commas in an array


class _Failed(Exception):
    """A value that does not decode; ``cost``: about how many characters the attempt examined."""

    def __init__(self, cost: int) -> None:
        self.cost = cost


_DECODER = json.JSONDecoder()


def _decode_at(text: bytes, body: str, pos: int) -> tuple[Any, int]:
    """The JSON value at ``pos`` of ``text`` (``body``: its bytes as latin-1) and where it ends, decoded
    from a window that widens while it may have cut the value: a decode error over the whole text
    costs a count of its newlines up to pos."""
    width = 1024
    while True:
        window = body[pos : pos + width]
        try:
            obj, end = _DECODER.raw_decode(window)
            if not window[:end].isascii():  # strings hold UTF-8: decode the bytes (invalid UTF-8 fails)
                obj = json.loads(text[pos : pos + end])
            return obj, pos + end
        except RecursionError:
            raise _Failed(len(window)) from None
        except UnicodeDecodeError:
            raise _Failed(end) from None
        except json.JSONDecodeError as e:
            cut = pos + width < len(body) and (e.pos > len(window) - 256 or e.msg.startswith("Unterminated"))
            if not cut:
                raise _Failed(e.pos + 64) from None
            width *= 4


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _rtts(result: Any) -> list[dict[str, float]] | None:
    if not isinstance(result, list):
        return None
    return [{"rtt": float(r["rtt"])} for r in result if isinstance(r, dict) and _num(r.get("rtt")) is not None]


def _from_objects(path: str, objs: list[Any], ctx: DecodeContext) -> pa.Table:
    """Gather decoded JSON objects column-wise (non-objects counted as damaged)."""
    good = [o for o in objs if isinstance(o, dict)]
    if len(good) < len(objs):
        ctx.errors.add(path, DAMAGED, None, n=len(objs) - len(good))
    cols: dict[str, list[Any]] = {
        "type": [o.get("type") if isinstance(o.get("type"), str) else None for o in good],
        "timestamp": [_num(o.get("timestamp")) for o in good],
        "prb_id": [_num(o.get("prb_id")) for o in good],
        "dst_addr": [o.get("dst_addr") if isinstance(o.get("dst_addr"), str) else None for o in good],
        "sent": [_num(o.get("sent")) for o in good],
        "rcvd": [_num(o.get("rcvd")) for o in good],
        "avg": [_num(o.get("avg")) for o in good],
        "result": [_rtts(o.get("result")) for o in good],
    }
    return pa.table(cols, schema=_FIELDS)


def _targets(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """16-byte addresses of address strings (parsed once per distinct text) and a validity mask."""
    enc = pc.dictionary_encode(texts)
    uniq = enc.dictionary.to_pylist()
    parsed = np.zeros((len(uniq), 16), dtype=np.uint8)
    ok = np.zeros(len(uniq), dtype=bool)
    for i, text in enumerate(uniq):
        try:
            parsed[i] = np.frombuffer(addr.parse(text), dtype=np.uint8)
            ok[i] = True
        except ValueError:
            pass
    idx = np.asarray(pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    valid = ~pc.is_null(enc.indices).to_numpy(zero_copy_only=False)
    if len(uniq) == 0:
        return np.zeros((len(texts), 16), dtype=np.uint8), np.zeros(len(texts), dtype=bool)
    return parsed[idx], valid & ok[idx]


def _rows(path: str, t: pa.Table, ctx: DecodeContext) -> pa.Table:
    """Validate the parsed fields (whole columns) and build the PROBE_SCHEMA table."""
    t = t.combine_chunks()

    def col(name: str) -> np.ndarray:
        return np.asarray(pc.fill_null(t.column(name), np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)

    ts, prb, sent, rcvd, avg = col("timestamp"), col("prb_id"), col("sent"), col("rcvd"), col("avg")
    kind = t.column("type")
    ping = pc.fill_null(pc.equal(kind, "ping"), True).to_numpy(zero_copy_only=False)
    target, addr_ok = _targets(t.column("dst_addr").combine_chunks())
    with np.errstate(invalid="ignore"):
        ok = (
            np.isfinite(ts)
            & (ts >= 0)
            & (ts < 2**33)
            & np.isfinite(prb)
            & (prb >= 0)
            & (prb == np.floor(prb))
            & addr_ok
            & np.isfinite(sent)
            & np.isfinite(rcvd)
            & (rcvd >= 0)
            & (sent >= rcvd)
            & (sent <= 65535)
        )
    n_not_ping = int((~ping).sum())
    if n_not_ping:
        ctx.errors.add(path, NOT_PING, None, n=n_not_ping)
    bad = int((ping & ~ok).sum())
    if bad:
        ctx.errors.add(path, DAMAGED, None, n=bad)
    keep = np.flatnonzero(ok & ping)
    rtt = _mean_rtt(t.column("result").combine_chunks(), avg)[keep]
    received = rcvd[keep]
    rtt_valid = (received > 0) & np.isfinite(rtt) & (rtt >= 0)
    ts_us = np.round(ts[keep] * 1e6).astype(np.int64)
    prober = pc.binary_join_element_wise("atlas:", pa.array(prb[keep].astype(np.int64)).cast(pa.string()), "")
    n = len(keep)
    return pa.table(
        [
            pa.array(ts_us, pa.int64()).cast(TIME),
            prober,
            addr.from_matrix(target[keep]),
            pa.repeat(pa.scalar("icmp"), n),
            pa.array(sent[keep].astype(np.uint16)),
            pa.array(received.astype(np.uint16)),
            pa.array(rtt.astype(np.float32), mask=~rtt_valid),
        ],
        schema=PROBE_SCHEMA,
    )


def _mean_rtt(result: pa.Array, avg: np.ndarray) -> np.ndarray:
    """``avg`` where given (≥ 0), else the mean of the result's rtt values (NaN when none)."""
    flat = pc.list_flatten(result)
    rtt = np.asarray(pc.fill_null(pc.struct_field(flat, [0]), np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    lengths = np.asarray(pc.fill_null(pc.list_value_length(result), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    row = np.repeat(np.arange(len(result)), lengths)
    good = np.isfinite(rtt)
    sums = np.bincount(row[good], weights=rtt[good], minlength=len(result))
    counts = np.bincount(row[good], minlength=len(result))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
    return np.where(np.isfinite(avg) & (avg >= 0), avg, mean)


register_file(AtlasDecoder())

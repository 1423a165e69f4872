"""NetFlow v5, NetFlow v9 and IPFIX: one datagram decoder and one raw-payload file decoder.

The datagram decoder dispatches on the version field (5, 9, 10) to
:mod:`.netflow_v5`, :mod:`.netflow_v9` and :mod:`.ipfix`; the last two share the
template machinery of :mod:`.flowsets` and :mod:`.templates`.  Templates, held data and
sampler tables live in ``ctx.state["netflow"]`` per (exporter, domain, template id), so
template id collisions between exporters never mix.  Rows come out grouped by
template, not in datagram order (the engine orders by ``ts``).

Per exporter, ``ctx.counters`` gets ``datagrams``, ``records`` (flows emitted),
``option_records`` (options-data records: sampler tables, system init time; applied,
never emitted as flows), ``decode_errors``, ``template_misses`` (data that waited for
its template: not an error), ``padding_bytes`` (after a data set's records: not an error)
and ``truncated_records`` (a data set's last record cut short, also a decode error; see
:mod:`.flowsets` for the rule); every damaged piece also goes to ``ctx.errors``.  Nothing
here raises on bad bytes.

The file decoder reads a file holding one raw export datagram (a UDP payload dump).
Its exporter is the file's directory, so template files and the data files that
need them share a cache when read with one context.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import pyarrow as pa

from ..addr import from_matrix
from ..model import FLOW_SCHEMA, TIME, Kind
from .base import DecodeContext, register_datagram, register_file
from .flowsets import SetBatch
from .ipfix import decode_ipfix
from .netflow_v5 import decode_v5
from .netflow_v9 import decode_v9

COLUMNS = [f.name for f in FLOW_SCHEMA]


def _plausible(payload: bytes) -> bool:
    """Version 5/9/10 with a header that fits (cheap: used to tell NetFlow from sFlow and junk)."""
    if len(payload) < 16:
        return False
    version, second = struct.unpack_from("!HH", payload)
    if version == 5:
        return 1 <= second <= 1000 and len(payload) >= 24 + 48
    if version == 9:
        return len(payload) >= 24 and second > 0
    if version == 10:
        return second >= 16 and (second == len(payload) or len(payload) > 16)
    return False


class NetflowDecoder:
    """NetFlow v5/v9 and IPFIX datagrams → FLOW_SCHEMA batches."""

    name: ClassVar[str] = "netflow"

    def sniff_datagram(self, payload: bytes) -> bool:
        return _plausible(payload)

    def decode(
        self,
        payloads: list[bytes],
        exporters: list[str],
        arrival_us: np.ndarray,
        ctx: DecodeContext,
    ) -> pa.RecordBatch:
        """Decode many datagrams into one batch (templates first seen here also release held data)."""
        batch = SetBatch(ctx)
        index: dict[str, int] = {}
        v5: tuple[list[bytes], list[int]] = ([], [])
        for payload, exporter in zip(payloads, exporters, strict=True):
            ctx.counters[(exporter, "datagrams")] += 1
            version = int.from_bytes(payload[:2], "big")
            try:
                if version == 9:
                    decode_v9(payload, exporter, batch)
                elif version == 10:
                    decode_ipfix(payload, exporter, batch)
                elif version == 5:
                    v5[0].append(payload)
                    v5[1].append(index.setdefault(exporter, len(index)))
                else:
                    batch.error(exporter, f"not NetFlow v5/v9/IPFIX (version {version})", 0)
            except (struct.error, ValueError, IndexError, OverflowError) as exc:  # damaged beyond the checks
                batch.error(exporter, f"damaged v{version} datagram: {exc}", None)
        names = list(index)
        parts = [decode_v5(v5[0], v5[1], names, batch)] if v5[0] else []
        parts += batch.finish(index)
        return to_batch(parts, list(index), ctx)


def to_batch(parts: list[dict[str, np.ndarray]], names: list[str], ctx: DecodeContext) -> pa.RecordBatch:
    """Concatenate column dicts into one FLOW_SCHEMA batch; count records per exporter."""
    parts = [p for p in parts if len(p["ts"])]
    if not parts:
        return pa.RecordBatch.from_pylist([], schema=FLOW_SCHEMA)
    cols = {c: np.concatenate([p[c] for p in parts]) for c in COLUMNS}
    exp = cols["exporter"]
    for i, n in enumerate(np.bincount(exp, minlength=len(names)).tolist()):
        if n:
            ctx.counters[(names[i], "records")] += n
    arrays = []
    for field in FLOW_SCHEMA:
        c = cols[field.name]
        if field.name == "exporter":
            arrays.append(pa.array(names, type=pa.string()).take(pa.array(exp)))
        elif field.type == TIME:
            arrays.append(pa.array(c.astype("datetime64[us]")).cast(TIME))
        elif field.name in ("src_addr", "dst_addr"):
            arrays.append(from_matrix(c))
        else:
            arrays.append(pa.array(c, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=FLOW_SCHEMA)


class NetflowFile:
    """A file holding one raw NetFlow v5/v9 or IPFIX export datagram."""

    name: ClassVar[str] = "netflow"
    kind: ClassVar[Kind] = Kind.FLOW

    def sniff(self, head: bytes) -> bool:
        return _plausible(head)

    def read(self, path: str, data: bytes, ctx: DecodeContext) -> Iterator[pa.RecordBatch]:
        """Decode the datagram; yield its flows in batches of at most ctx.batch_size rows."""
        exporter = os.path.dirname(os.path.abspath(path))
        try:
            mtime_us = int(os.stat(path).st_mtime * 1_000_000)
        except OSError:
            mtime_us = 0
        out = DATAGRAM.decode([data], [exporter], np.array([mtime_us], dtype=np.int64), ctx)
        for start in range(0, out.num_rows, max(ctx.batch_size, 1)):
            yield out.slice(start, ctx.batch_size)


DATAGRAM = NetflowDecoder()
register_datagram(DATAGRAM)
register_file(NetflowFile())

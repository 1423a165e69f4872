"""sFlow v5 datagrams → flow records (FLOW_SCHEMA), for the collector, raw files and captures.

One flow record per flow sample (compact or expanded) that carries a raw
packet header with an IP packet in it, or else a sampled IPv4/IPv6 record:

* addresses, ports, protocol, TCP flags, TTL, fragment flag come from the
  header (:mod:`.rawheader`: VLAN/QinQ/MPLS stepped over, VXLAN's inner
  5-tuple reported); from a sampled IPv4/IPv6 record when there is no usable
  header (TTL 0, fragment false: the record has neither);
* ``bytes`` is the L3 length: the outer IP length from the header, else the
  frame length less L2 and FCS, or the sampled record's length; ``packets`` 1;
* ``sampling_rate`` the sample's; ``in_if``/``out_if`` the ifIndex when the
  interface is given as one (format 0), else 0 (discards, "multiple") — the
  "internal" value 0x3FFFFFFF is kept as sent;
* ``exporter`` the agent address as text (the given exporter when the agent
  cannot be read); ``ts`` the datagram's arrival, sFlow carries only an uptime.

Counter samples are counted per agent in ``ctx.counters[(agent, "counter_samples")]``
and the latest generic interface counters kept in
``ctx.state["sflow"]["if_counters"][(agent, ifIndex)]``.  Also counted per
exporter: ``datagrams``, ``records``, ``decode_errors`` (with reasons in
``ctx.errors``), ``unknown_samples``, ``non_ip_samples``.

Speed: :func:`.sflow_walk.walk` (numba) walks all datagrams of a call into
arrays, :func:`.rawheader.decode_headers` (numba) decodes all headers, and the
rest is numpy over those arrays; Python runs per call, per exporter and per
counter record, never per flow sample.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from ..addr import format_one, from_matrix
from ..model import FLOW_SCHEMA, TIME, Kind, empty
from .base import DecodeContext, register_datagram, register_file
from .rawheader import NOT_IP, OK, decode_headers
from .sflow_walk import REASONS, walk

_HEAD = struct.Struct(">II")


def looks_like_sflow(payload: bytes) -> bool:
    """Version 5, a known agent address type and, when present, a standard first sample type."""
    if len(payload) < 28:
        return False
    version, agent_type = _HEAD.unpack_from(payload, 0)
    if version != 5 or agent_type not in (1, 2):
        return False
    first = 28 if agent_type == 1 else 40
    if len(payload) < first:
        return False
    (nsamples,) = struct.unpack_from(">I", payload, first - 4)
    if nsamples == 0 or len(payload) < first + 8:
        return nsamples == 0 and len(payload) == first
    fmt, length = _HEAD.unpack_from(payload, first)
    return fmt in (1, 2, 3, 4) and length <= len(payload) - first - 8


def _u32(mat: np.ndarray, col: int) -> np.ndarray:
    """Big-endian uint32 at byte column col of an (n, k) uint8 matrix."""
    return np.ascontiguousarray(mat[:, col : col + 4]).view(">u4").ravel().astype(np.uint32)


def _gather(buf: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """An (n, width) matrix of the bytes at each offset (all offsets were bounds-checked by the walk)."""
    return buf[offsets[:, None] + np.arange(width)]


class _Names:
    """Per-datagram exporter names: agent address text, or the given exporter when there is none."""

    def __init__(self, agent: np.ndarray, agent_ok: np.ndarray, exporters: list[str]) -> None:
        nd = len(agent_ok)
        self.code = np.zeros(nd, dtype=np.int64)
        self.names: list[str] = []
        if agent_ok.any():
            keys = np.ascontiguousarray(agent[agent_ok]).view("V16").ravel()
            uniq, inv = np.unique(keys, return_inverse=True)
            self.names = [format_one(bytes(u)) or "" for u in uniq]
            self.code[agent_ok] = inv.ravel()
        bad = ~agent_ok
        if bad.any():
            given = np.asarray(exporters, dtype=object)[bad].astype(str)
            uniq2, inv2 = np.unique(given, return_inverse=True)
            self.code[bad] = len(self.names) + inv2.ravel()
            self.names += [str(u) for u in uniq2]

    def count(self, ctx: DecodeContext, what: str, dgram: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Add per-exporter totals of one counter: one per listed datagram index (or its weight)."""
        if len(dgram) == 0:
            return
        per = np.bincount(self.code[dgram], weights=weights, minlength=len(self.names))
        for k in np.flatnonzero(per):
            ctx.counters[(self.names[k], what)] += int(per[k])


class SflowDatagrams:
    """The sFlow v5 datagram decoder (collector, captures of exports, raw datagram files)."""

    name: ClassVar[str] = "sflow"

    def sniff_datagram(self, payload: bytes) -> bool:
        """True when the payload looks like an sFlow v5 datagram."""
        return looks_like_sflow(payload)

    def decode(
        self,
        payloads: list[bytes],
        exporters: list[str],
        arrival_us: np.ndarray,
        ctx: DecodeContext,
    ) -> pa.RecordBatch:
        """Decode many datagrams into one FLOW_SCHEMA batch; damage is counted per exporter, never raised."""
        nd = len(payloads)
        if nd == 0:
            return empty(FLOW_SCHEMA)
        lengths = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=nd)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        buf = np.frombuffer(b"".join(payloads), dtype=np.uint8)
        flows, counters, errs, per_dg = walk(buf, starts, ends)
        agent, agent_ok, n_counter, n_unknown, n_nol3 = per_dg
        names = _Names(agent, agent_ok, exporters)
        every = np.arange(nd)
        names.count(ctx, "datagrams", every)
        names.count(ctx, "counter_samples", every, n_counter)
        names.count(ctx, "unknown_samples", every, n_unknown)
        names.count(ctx, "non_ip_samples", every, n_nol3)
        batch, hdr_err_dg = self._flows(buf, flows, names, np.asarray(arrival_us, dtype=np.int64), ctx)
        er_dg, er_code, er_off = errs
        if len(hdr_err_dg):
            er_dg = np.concatenate([er_dg, hdr_err_dg])
            er_code = np.concatenate([er_code, np.full(len(hdr_err_dg), len(REASONS), dtype=np.int64)])
            er_off = np.concatenate([er_off, np.zeros(len(hdr_err_dg), dtype=np.int64)])
        self._errors(ctx, names, er_dg, er_code, er_off)
        if len(counters[0]):
            self._if_counters(ctx, buf, names, counters, np.asarray(arrival_us, dtype=np.int64))
        return batch

    def _flows(
        self, buf: np.ndarray, flows: tuple, names: _Names, arrival: np.ndarray, ctx: DecodeContext
    ) -> tuple[pa.RecordBatch, np.ndarray]:
        """Flow records from the walked samples; also the datagrams of headers too short to use."""
        dg, rate, in_if, out_if, hdr, hlen, hproto, flen, ipo, ipkind = flows
        status, src, dst, sport, dport, proto, flags, ttl, frag, l3 = decode_headers(buf, hdr, hlen, hproto, flen)
        keep = status == OK
        for kind, width, alen in ((3, 32, 4), (4, 56, 16)):
            rows = np.flatnonzero(~keep & (ipkind == kind))
            if len(rows) == 0:
                continue
            m = _gather(buf, ipo[rows], width)
            if alen == 4:
                src[rows, 10:12] = 0xFF
                dst[rows, 10:12] = 0xFF
                src[rows, 12:16], dst[rows, 12:16] = m[:, 8:12], m[:, 12:16]
            else:
                src[rows], dst[rows] = m[:, 8:24], m[:, 24:40]
            at = 8 + 2 * alen
            l3[rows] = _u32(m, 0)
            proto[rows] = _u32(m, 4).astype(np.uint8)
            sport[rows] = _u32(m, at).astype(np.uint16)
            dport[rows] = _u32(m, at + 4).astype(np.uint16)
            flags[rows] = _u32(m, at + 8).astype(np.uint8)
            keep[rows] = True
        short = ~keep & (status != NOT_IP)
        names.count(ctx, "non_ip_samples", dg[~keep & (status == NOT_IP)])
        names.count(ctx, "records", dg[keep])
        k = np.flatnonzero(keep)
        kd = dg[k]
        exporter = pa.array(names.names, type=pa.string()).take(pa.array(names.code[kd]))
        cols: list[Any] = [
            pa.array(arrival[kd], type=pa.int64()).view(TIME),
            exporter,
            from_matrix(src[k]),
            from_matrix(dst[k]),
            pa.array(sport[k]),
            pa.array(dport[k]),
            pa.array(proto[k]),
            pa.array(flags[k]),
            pa.array(frag[k]),
            pa.array(ttl[k]),
            pa.array(l3[k]),
            pa.array(np.ones(len(k), dtype=np.uint64)),
            pa.array(rate[k]),
            pa.array(in_if[k]),
            pa.array(out_if[k]),
        ]
        return pa.RecordBatch.from_arrays(cols, schema=FLOW_SCHEMA), dg[short]

    @staticmethod
    def _errors(ctx: DecodeContext, names: _Names, dg: np.ndarray, code: np.ndarray, off: np.ndarray) -> None:
        """Count errors per exporter and reason (one ErrorLog call per group, not per error)."""
        if len(dg) == 0:
            return
        names.count(ctx, "decode_errors", dg)
        reasons = (*REASONS, "header_truncated")
        key = names.code[dg] * len(reasons) + code
        uniq, first, cnt = np.unique(key, return_index=True, return_counts=True)
        for u, f, c in zip(uniq.tolist(), first.tolist(), cnt.tolist(), strict=True):
            src_name = names.names[u // len(reasons)]
            ctx.errors.add(f"sflow {src_name}", reasons[u % len(reasons)], int(off[f]), n=c)

    @staticmethod
    def _if_counters(ctx: DecodeContext, buf: np.ndarray, names: _Names, counters: tuple, arrival: np.ndarray) -> None:
        """Keep the latest generic interface counters per (agent, ifIndex): few, so a dict."""
        cs_dg, cs_off = counters
        key = (names.code[cs_dg].astype(np.uint64) << np.uint64(32)) | _u32(_gather(buf, cs_off, 4), 0)
        _, last = np.unique(key[::-1], return_index=True)  # the last record of each interface in this call
        pick = len(key) - 1 - last
        cs_dg = cs_dg[pick]
        m = _gather(buf, cs_off[pick], 88)
        hi_lo = [(_u32(m, c).astype(np.uint64) << np.uint64(32)) | _u32(m, c + 4) for c in (8, 24, 56)]
        cols = {
            "if_index": _u32(m, 0),
            "if_type": _u32(m, 4),
            "speed": hi_lo[0],
            "status": _u32(m, 20),
            "in_octets": hi_lo[1],
            "in_packets": _u32(m, 32),
            "in_discards": _u32(m, 44),
            "in_errors": _u32(m, 48),
            "out_octets": hi_lo[2],
            "out_packets": _u32(m, 64),
            "out_discards": _u32(m, 76),
            "out_errors": _u32(m, 80),
        }
        table: dict[tuple[str, int], dict[str, int]] = ctx.state.setdefault("sflow", {}).setdefault("if_counters", {})
        rows = {k: v.tolist() for k, v in cols.items()}
        agents = [names.names[c] for c in names.code[cs_dg].tolist()]
        when = arrival[cs_dg].tolist()
        for i, agent in enumerate(agents):
            entry = {k: v[i] for k, v in rows.items()}
            entry["arrival_us"] = when[i]
            table[(agent, entry["if_index"])] = entry


class SflowFile:
    """A file holding one raw sFlow datagram (as a collector might dump it); ts is the file's mtime."""

    name: ClassVar[str] = "sflow"
    kind: ClassVar[Kind] = Kind.FLOW

    def sniff(self, head: bytes) -> bool:
        """True when the file starts like an sFlow v5 datagram."""
        return len(head) >= 28 and head[:8] in (b"\0\0\0\5\0\0\0\1", b"\0\0\0\5\0\0\0\2")

    def read(self, path: str, data: bytes, ctx: DecodeContext) -> Iterator[pa.RecordBatch]:
        """Decode the datagram; yield its flow records in batches of at most ctx.batch_size."""
        try:
            when = int(os.stat(path).st_mtime_ns // 1000)
        except OSError:
            when = 0
        batch = DATAGRAMS.decode([data], [path], np.array([when], dtype=np.int64), ctx)
        step = max(1, ctx.batch_size)
        for at in range(0, batch.num_rows, step):
            yield batch.slice(at, step)


DATAGRAMS = SflowDatagrams()
register_datagram(DATAGRAMS)
register_file(SflowFile())

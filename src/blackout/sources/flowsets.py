"""Template-driven flow decoding shared by NetFlow v9 and IPFIX: cache, held data, options, columns.

The protocol modules walk their datagrams' sets and call :class:`SetBatch`; it keeps
the template cache per (exporter, source id / observation domain, template id) in
``ctx.state["netflow"]``, holds data sets whose template has not arrived (bounded per
exporter, oldest dropped and counted), applies options data (sampler tables, system
init time), and at the end decodes every data set of one template in one numpy pass.

Bytes after a data set's last whole record (RFC 7011 3.3.1, RFC 3954 5.3): an exporter may
pad a set so the next one starts aligned; the padding is shorter than any record of the set
and made of zero octets (IPFIX: MUST, v9: SHOULD).  Padding, counted as ``padding_bytes``
and not an error: a zero-filled remainder, or 1-3 non-zero bytes that end the set on a
4-byte boundary of the message (MikroTik pads with stale bytes; tshark shows them as
padding too).  Any other remainder is a record cut short -- so is a variable-length record
that runs past the set end, and any remainder of a set the datagram ends inside (a snaplen
cut): ``truncated_records`` (one per set: only its last record can be cut) plus a
``decode_errors`` entry naming the template and the set's offset.  The check costs one
slice per set with a remainder, never one per record.

Column semantics (where several fields could feed one column, the first present wins):

* bytes: octetDeltaCount (1, v9 IN_BYTES), octetTotalCount (85), postOctetDeltaCount
  (23, v9 OUT_BYTES), initiatorOctets (231, Cisco ASA); packets likewise 2, 86, 24, 298.
* ts: flowStartMilliseconds/Seconds/Microseconds/Nanoseconds (152/150/154/156), else
  flowStartSysUpTime (22): v9 against the header's sysUptime and unix time, IPFIX
  against systemInitTimeMilliseconds (160, in the record or from options data), else the
  export time.
* ttl: ipTTL (192), else minimumTTL (52), else maximumTTL (53).  fragment: fragmentFlags
  (197) MF bit, or fragmentOffset (88) > 0.  ICMP (protocol 1/58) with dst_port 0:
  dst_port = icmpTypeCode (32/139) or type << 8 | code (176-179).
* sampling_rate: in the record samplingInterval (34), samplerRandomInterval (50) or
  samplingPacketInterval/Space (305/306); else the exporter's sampler table by
  samplerId/selectorId (48/302) from options data; else its sampler-less options rate; else 1.
"""

from __future__ import annotations

import collections
import dataclasses
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import DecodeContext
from .templates import Template, TemplateError, extract_fixed, extract_variable

HOLD_LIMIT = 1000  # data sets held per exporter while waiting for their template
# Templates kept per exporter: a real one defines tens to hundreds; a spoofed flood of templates under
# random domains and ids would otherwise grow the cache without bound (tests/test_hostile.py).
TEMPLATE_LIMIT = 4096
NTP_EPOCH = 2208988800
BYTES_IDS = (1, 85, 23, 231)
PACKETS_IDS = (2, 86, 24, 298)
TTL_IDS = (192, 52, 53)

# Set meta: exporter, domain, export unix seconds, sysUptime ms (-1 for IPFIX).
Meta = tuple[str, int, int, int]
# Where a data set came from: template id, offset of its set header in the datagram, the length that
# header declares (more than the set holds when the datagram ends first).
Origin = tuple[int, int, int]
# A data set waiting for its template: its meta, where it came from, its body.
Held = tuple[Meta, Origin, bytes]


@dataclasses.dataclass
class FlowState:
    """What outlives a datagram: templates, held sets, sampler tables, system init times."""

    templates: dict[tuple[str, int, int], Template] = dataclasses.field(default_factory=dict)
    template_counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    held: dict[str, collections.deque[Held]] = dataclasses.field(default_factory=dict)
    held_keys: collections.Counter[tuple[str, int, int]] = dataclasses.field(default_factory=collections.Counter)
    samplers: dict[tuple[str, int], dict[int, int]] = dataclasses.field(default_factory=dict)
    default_rate: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)
    sysinit_ms: dict[tuple[str, int], int] = dataclasses.field(default_factory=dict)


def flow_state(ctx: DecodeContext) -> FlowState:
    """This context's NetFlow/IPFIX state, created on first use."""
    state = ctx.state.get("netflow")
    if not isinstance(state, FlowState):
        state = ctx.state["netflow"] = FlowState()
    return state


class SetBatch:
    """Collects data sets of many datagrams, decodes them per template at :meth:`finish`."""

    def __init__(self, ctx: DecodeContext) -> None:
        self.ctx = ctx
        self.state = flow_state(ctx)
        self.groups: dict[Template, tuple[list[bytes], list[Meta], list[Origin]]] = {}

    def error(self, exporter: str, reason: str, offset: int | None = None) -> None:
        """Count one damaged piece of a datagram for its exporter."""
        self.ctx.counters[(exporter, "decode_errors")] += 1
        self.ctx.errors.add(exporter, reason, offset)

    # ------------------------------------------------------------ templates
    def install(self, meta: Meta, tid: int, template: Template | None) -> None:
        """Add, redefine or (None) withdraw a template, then release data held for it."""
        key = (meta[0], meta[1], tid)
        counts = self.state.template_counts
        if template is None:
            if self.state.templates.pop(key, None) is not None:
                counts[key[0]] -= 1
            return
        if key not in self.state.templates:
            if counts[key[0]] >= TEMPLATE_LIMIT:
                self.error(key[0], f"template refused: over {TEMPLATE_LIMIT} templates from one exporter")
                return
            counts[key[0]] += 1
        self.state.templates[key] = template
        if self.state.held_keys.get(key):
            self._release(key, template)

    def withdraw_all(self, meta: Meta, options: bool) -> None:
        """IPFIX withdrawal of every (options) template of one observation domain."""
        for key in [k for k, t in self.state.templates.items() if k[:2] == meta[:2] and t.options == options]:
            del self.state.templates[key]
            self.state.template_counts[key[0]] -= 1

    # ------------------------------------------------------------ data sets
    def data_set(self, meta: Meta, body: bytes, origin: Origin) -> None:
        """A data set body (after its header): decode now if its template is known, else hold it."""
        template = self.state.templates.get((meta[0], meta[1], origin[0]))
        if template is None:
            self._hold((meta, origin, body))
        elif template.options:
            self._options(meta, template, body, origin)
        else:
            chunks, metas, origins = self.groups.setdefault(template, ([], [], []))
            chunks.append(body)
            metas.append(meta)
            origins.append(origin)

    def _hold(self, item: Held) -> None:
        meta, (tid, *_), _ = item
        exporter = meta[0]
        self.ctx.counters[(exporter, "template_misses")] += 1
        queue = self.state.held.setdefault(exporter, collections.deque())
        if len(queue) >= HOLD_LIMIT:
            old_meta, (old_tid, *_), _ = queue.popleft()
            old = (exporter, old_meta[1], old_tid)
            self.state.held_keys[old] -= 1
            if self.state.held_keys[old] <= 0:
                del self.state.held_keys[old]  # a zero left behind per key would grow without bound
            self.ctx.counters[(exporter, "held_dropped")] += 1
            self.ctx.errors.add(exporter, f"data for template {old_tid} dropped: template never arrived")
        queue.append(item)
        self.state.held_keys[(exporter, meta[1], tid)] += 1

    def _release(self, key: tuple[str, int, int], template: Template) -> None:
        queue = self.state.held[key[0]]
        keep: collections.deque[Held] = collections.deque()
        for item in queue:
            meta, origin, body = item
            if (meta[1], origin[0]) == key[1:]:
                self.data_set(meta, body, origin)
            else:
                keep.append(item)
        self.state.held[key[0]] = keep
        self.state.held_keys.pop(key, None)

    # ------------------------------------------------------------ options data
    def _options(self, meta: Meta, template: Template, body: bytes, origin: Origin) -> None:
        """Sampler tables and system init time from options records (few: decoded at once).

        They describe the exporter, not traffic: applied here, never emitted as flows, and
        counted as ``option_records`` so the records a datagram held all show up somewhere.
        """
        cols, _, n = self._decode(template, [body], [meta], [origin])
        self.ctx.counters[(meta[0], "option_records")] += n
        key = meta[:2]
        if 160 in cols and n:
            self.state.sysinit_ms[key] = int(cols[160][-1]) & 0x7FFFFFFFFFFF
        rates = record_rates(cols, n)
        if rates is None:
            return
        ids = cols.get(48, cols.get(302))
        for i in range(n):
            if rates[i] == 0:
                continue
            if ids is None:
                self.state.default_rate[key] = min(int(rates[i]), 0xFFFFFFFF)
            else:
                self.state.samplers.setdefault(key, {})[int(ids[i])] = min(int(rates[i]), 0xFFFFFFFF)

    def _decode(
        self, template: Template, chunks: list[bytes], metas: list[Meta], origins: list[Origin]
    ) -> tuple[dict[int, np.ndarray], np.ndarray, int]:
        """Wanted columns of every record in chunks, and each record's chunk index; remainders checked."""
        layout = template.layout
        lens = np.array([len(c) for c in chunks], dtype=np.int64)
        if layout.reclen:
            counts = lens // layout.reclen
            used = counts * layout.reclen
            data = b"".join(c[:k] for c, k in zip(chunks, used.tolist(), strict=True))
            cols = extract_fixed(layout, data)
            self._remainders(chunks, used, lens, metas, origins)
            return cols, np.repeat(np.arange(len(chunks)), counts), int(counts.sum())
        ends = np.cumsum(lens)
        cols, set_index, stops = extract_variable(layout, b"".join(chunks), ends - lens, ends)
        self._remainders(chunks, stops - (ends - lens), lens, metas, origins)
        return cols, set_index, len(set_index)

    def _remainders(
        self, chunks: list[bytes], used: np.ndarray, lens: np.ndarray, metas: list[Meta], origins: list[Origin]
    ) -> None:
        """Bytes after each set's last whole record: zero padding, or a record cut short (module docstring)."""
        for i in np.flatnonzero(used < lens).tolist():
            tail = chunks[i][int(used[i]) :]
            exporter = metas[i][0]
            tid, offset, declared = origins[i]
            aligned = len(tail) < 4 and (offset + declared) % 4 == 0
            clipped = 4 + len(chunks[i]) < declared  # the datagram ended inside the set: no padding there
            if not clipped and (aligned or tail.count(0) == len(tail)):
                self.ctx.counters[(exporter, "padding_bytes")] += len(tail)
                continue
            self.ctx.counters[(exporter, "truncated_records")] += 1
            self.error(exporter, f"data set of template {tid}: last {len(tail)} bytes are a record cut short", offset)

    # ------------------------------------------------------------ output
    def finish(self, exporter_index: dict[str, int]) -> list[dict[str, np.ndarray]]:
        """Decode every collected data set: one dict of FLOW columns per template."""
        out = []
        for template, (chunks, metas, origins) in self.groups.items():
            try:
                cols, chunk_of, n = self._decode(template, chunks, metas, origins)
                if n:
                    out.append(self._columns(cols, chunk_of, metas, n, exporter_index))
            except (ValueError, OverflowError, IndexError) as exc:  # values no exporter sends
                for exporter in {m[0] for m in metas}:
                    self.error(exporter, f"undecodable data for template {template.fields[:4]}...: {exc}")
        self.groups = {}
        return out

    def _columns(
        self,
        cols: dict[int, np.ndarray],
        chunk_of: np.ndarray,
        metas: list[Meta],
        n: int,
        exporter_index: dict[str, int],
    ) -> dict[str, np.ndarray]:
        exp = np.array([exporter_index.setdefault(m[0], len(exporter_index)) for m in metas], dtype=np.int32)
        zero = np.zeros(n, dtype=np.uint64)
        res: dict[str, np.ndarray] = {"exporter": exp[chunk_of]}
        res["src_addr"] = address(cols.get(8), cols.get(27), n)
        res["dst_addr"] = address(cols.get(12), cols.get(28), n)
        res["src_port"] = cols.get(7, zero).astype(np.uint16)
        proto = cols.get(4, zero).astype(np.uint8)
        res["protocol"] = proto
        res["dst_port"] = dst_port(cols, proto, zero)
        res["tcp_flags"] = cols.get(6, zero).astype(np.uint8)
        res["ttl"] = first_of(cols, TTL_IDS, zero).astype(np.uint8)
        frag = (cols[197] & np.uint64(0x20)) != 0 if 197 in cols else np.zeros(n, dtype=bool)
        res["fragment"] = frag | (cols[88] > 0) if 88 in cols else frag
        res["bytes"] = first_of(cols, BYTES_IDS, zero)
        res["packets"] = first_of(cols, PACKETS_IDS, zero)
        res["in_if"] = cols.get(10, zero).astype(np.uint32)
        res["out_if"] = cols.get(14, zero).astype(np.uint32)
        res["ts"] = self._times(cols, metas, chunk_of)
        res["sampling_rate"] = self._rates(cols, n, metas, chunk_of)
        return res

    def _times(self, cols: dict[int, np.ndarray], metas: list[Meta], chunk_of: np.ndarray) -> np.ndarray:
        """Flow start in µs since the epoch (see the module docstring for the order)."""
        export_us = np.array([m[2] for m in metas], dtype=np.int64)[chunk_of] * 1_000_000
        if 152 in cols:
            return cols[152].astype(np.int64) * 1000
        if 150 in cols:
            return cols[150].astype(np.int64) * 1_000_000
        for fid in (154, 156):
            if fid in cols:
                v = cols[fid]
                frac = ((v & np.uint64(0xFFFFFFFF)) * np.uint64(1_000_000)) >> np.uint64(32)
                return ((v >> np.uint64(32)).astype(np.int64) - NTP_EPOCH) * 1_000_000 + frac.astype(np.int64)
        if 22 not in cols:
            return export_us
        first = cols[22].astype(np.int64)
        uptime = np.array([m[3] for m in metas], dtype=np.int64)[chunk_of]
        if metas[0][3] >= 0:  # NetFlow v9: relative to the header's sysUptime (32-bit ms, may wrap)
            ago = ((uptime - first) & 0xFFFFFFFF).astype(np.uint32).view(np.int32).astype(np.int64)
            return export_us - ago * 1000
        if 160 in cols:
            return (cols[160].astype(np.int64) + first) * 1000
        init = np.array([self.state.sysinit_ms.get(m[:2], -1) for m in metas], dtype=np.int64)[chunk_of]
        return np.where(init >= 0, (init + first) * 1000, export_us)

    def _rates(self, cols: dict[int, np.ndarray], n: int, metas: list[Meta], chunk_of: np.ndarray) -> np.ndarray:
        """Sampling rate per record: the record's own, else its sampler's, else the exporter's, else 1."""
        rate = np.array([self.state.default_rate.get(m[:2], 1) for m in metas], dtype=np.int64)[chunk_of]
        ids = cols.get(48, cols.get(302))
        if ids is not None:
            by_key: dict[tuple[str, int], list[int]] = {}
            for i, m in enumerate(metas):
                by_key.setdefault(m[:2], []).append(i)
            for key, chunks in by_key.items():
                table = self.state.samplers.get(key)
                if not table:
                    continue
                sel = np.isin(chunk_of, chunks) if len(by_key) > 1 else np.ones(n, dtype=bool)
                for sid in np.unique(ids[sel]).tolist():
                    if sid in table:
                        rate[sel & (ids == sid)] = table[sid]
        own = record_rates(cols, n)
        if own is not None:
            rate = np.where(own > 0, own, rate)
        return np.clip(rate, 1, 0xFFFFFFFF).astype(np.uint32)


def record_rates(cols: dict[int, np.ndarray], n: int) -> np.ndarray | None:
    """Per-record sampling rate from the record's own fields (0 where absent), or None."""
    if 305 in cols:
        interval = cols[305].astype(np.int64)
        space = cols.get(306, np.zeros(n, dtype=np.uint64)).astype(np.int64)
        return np.where(interval > 0, (interval + space) // np.maximum(interval, 1), 0)
    for fid in (34, 50):
        if fid in cols:
            return cols[fid].astype(np.int64)
    return None


def first_of(cols: dict[int, np.ndarray], ids: tuple[int, ...], default: np.ndarray) -> np.ndarray:
    """The first of several fields the template has."""
    for fid in ids:
        if fid in cols:
            return cols[fid].astype(np.uint64)
    return default


def address(v4: np.ndarray | None, v6: np.ndarray | None, n: int) -> np.ndarray:
    """(n, 16) addresses: IPv4 mapped where the template has IPv4 (and it is set or no IPv6 is)."""
    if v4 is None:
        return np.ascontiguousarray(v6) if v6 is not None else np.zeros((n, 16), dtype=np.uint8)
    words = np.zeros((n, 4), dtype=">u4")
    words[:, 2] = 0xFFFF
    words[:, 3] = v4
    mapped = words.view(np.uint8).reshape(n, 16)
    if v6 is None:
        return mapped
    return np.where((v4 != 0)[:, None], mapped, v6).astype(np.uint8)


def dst_port(cols: dict[int, np.ndarray], proto: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """Destination port; for ICMP/ICMPv6 without one, type << 8 | code as NetFlow does."""
    port = cols.get(11, zero)
    icmp: Any = None
    for code_id, type_id, code2_id in ((32, 176, 177), (139, 178, 179)):
        if code_id in cols:
            icmp = cols[code_id] if icmp is None else np.where(icmp > 0, icmp, cols[code_id])
        elif type_id in cols:
            tc = (cols[type_id] << np.uint64(8)) | cols.get(code2_id, zero)
            icmp = tc if icmp is None else np.where(icmp > 0, icmp, tc)
    if icmp is not None:
        is_icmp = ((proto == 1) | (proto == 58)) & (port == 0)
        port = np.where(is_icmp, icmp, port)
    return port.astype(np.uint16)


TemplateParser = Callable[[bytes, int, int, Meta, SetBatch], None]


def walk_sets(
    payload: bytes, pos: int, end: int, meta: Meta, batch: SetBatch, parsers: dict[int, TemplateParser]
) -> None:
    """Walk the sets of one v9/IPFIX message: template sets go to ``parsers`` by set id, data sets to the batch.

    A set that runs past the message is decoded as far as it goes and counted; a set
    length under 4 stops the walk (the rest cannot be located).
    """
    exporter = meta[0]
    while pos + 4 <= end:
        set_id, length = struct.unpack_from("!HH", payload, pos)
        if length < 4:
            if not any(payload[pos:end]):
                return  # zero fill after the last set
            batch.error(exporter, f"set length {length} < 4", pos)
            return
        set_end = pos + length
        if set_end > end:
            batch.error(exporter, f"set of {length} bytes runs past the message end", pos)
            set_end = end
        if set_id >= 256:
            batch.data_set(meta, payload[pos + 4 : set_end], (set_id, pos, length))
        elif set_id in parsers:
            try:
                parsers[set_id](payload, pos + 4, set_end, meta, batch)
            except (TemplateError, struct.error) as exc:
                batch.error(exporter, f"bad template set: {exc}", pos)
        else:
            batch.error(exporter, f"reserved set id {set_id}", pos)
        pos = set_end

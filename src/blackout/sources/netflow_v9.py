"""NetFlow v9 (RFC 3954): header, template and options template flowsets.

Data flowsets are handed to :class:`.flowsets.SetBatch`, shared with IPFIX.  Option
scope types (System, Interface, ...) are numbered like ordinary fields on the wire,
so they are moved above every field id (:data:`.templates.SCOPE_BASE`) and never
mistaken for, say, IN_BYTES.
"""

from __future__ import annotations

import struct

from .flowsets import Meta, SetBatch, TemplateParser, walk_sets
from .templates import SCOPE_BASE, TemplateError, check_template, make_template, parse_fields

HEADER = struct.Struct("!HHIIII")  # version, count, sysUptime ms, unix secs, sequence, source id


def _templates(buf: bytes, pos: int, end: int, meta: Meta, batch: SetBatch) -> None:
    """Template flowset (id 0): template id, field count, (type, length) pairs."""
    while pos + 4 <= end:
        tid, count = struct.unpack_from("!HH", buf, pos)
        if tid < 256:
            if tid == 0 and not any(buf[pos:end]):
                return  # padding
            raise TemplateError(f"template id {tid} < 256")
        fields = parse_fields(buf, pos + 4, end, count, enterprise_bit=False)
        check_template(fields)
        batch.install(meta, tid, make_template(fields))
        pos += 4 + 4 * count


def _options_templates(buf: bytes, pos: int, end: int, meta: Meta, batch: SetBatch) -> None:
    """Options template flowset (id 1): template id, scope bytes, option bytes, then the specifiers."""
    while pos + 6 <= end:
        tid, scope_len, opt_len = struct.unpack_from("!HHH", buf, pos)
        if tid == 0 and not any(buf[pos:end]):
            return  # padding
        if tid < 256 or scope_len % 4 or opt_len % 4 or opt_len == 0:
            raise TemplateError(f"options template {tid}: scope length {scope_len}, option length {opt_len}")
        scopes = parse_fields(buf, pos + 6, end, scope_len // 4, enterprise_bit=False) if scope_len else ()
        options = parse_fields(buf, pos + 6 + scope_len, end, opt_len // 4, enterprise_bit=False)
        fields = tuple((SCOPE_BASE + t, n) for t, n in scopes) + options
        check_template(fields)
        batch.install(meta, tid, make_template(fields, True))
        pos += 6 + scope_len + opt_len
        if pos + 2 <= end and buf[pos : pos + 2] == b"\0\0":
            pos += 2  # some exporters pad each record to 4 bytes


PARSERS: dict[int, TemplateParser] = {0: _templates, 1: _options_templates}


def decode_v9(payload: bytes, exporter: str, batch: SetBatch) -> None:
    """One NetFlow v9 export packet: install its templates, collect its data flowsets."""
    if len(payload) < HEADER.size:
        batch.error(exporter, f"truncated v9 header: got {len(payload)} bytes, needed {HEADER.size}", 0)
        return
    _, _, uptime, secs, _, source_id = HEADER.unpack_from(payload)
    walk_sets(payload, HEADER.size, len(payload), (exporter, source_id, secs, uptime), batch, PARSERS)

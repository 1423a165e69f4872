"""IPFIX (RFC 7011): message header, template and options template sets, withdrawals.

Data sets go to :class:`.flowsets.SetBatch`, shared with NetFlow v9.  A template record
with no fields withdraws its template (RFC 7011 8.1); template id 2 (3) withdraws every
(options) template of the observation domain.  Enterprise fields (bit 15) carry a PEN and
are stepped over; variable-length fields (65535) are walked by the shared kernel.
"""

from __future__ import annotations

import struct

from .flowsets import Meta, SetBatch, TemplateParser, walk_sets
from .templates import TemplateError, check_template, fields_size, make_template, parse_fields

HEADER = struct.Struct("!HHIII")  # version 10, message length, export time, sequence, observation domain


def _template_records(buf: bytes, pos: int, end: int, meta: Meta, batch: SetBatch, options: bool) -> None:
    """Template (set 2) or options template (set 3) records, including withdrawals."""
    head = 6 if options else 4
    while pos + 4 <= end:
        tid, count = struct.unpack_from("!HH", buf, pos)
        if tid == 0 and not any(buf[pos:end]):
            return  # padding
        if count == 0:
            if tid == (3 if options else 2):
                batch.withdraw_all(meta, options)
            elif tid >= 256:
                batch.install(meta, tid, None)
            else:
                raise TemplateError(f"withdrawal of template id {tid}")
            pos += 4
            continue
        if tid < 256:
            raise TemplateError(f"template id {tid} < 256")
        if options:
            if pos + 6 > end:
                raise TemplateError("options template header runs past its set")
            (scope_count,) = struct.unpack_from("!H", buf, pos + 4)
            if scope_count == 0 or scope_count > count:
                raise TemplateError(f"options template {tid}: {scope_count} scope fields of {count}")
        fields = parse_fields(buf, pos + head, end, count, enterprise_bit=True)
        check_template(fields)
        batch.install(meta, tid, make_template(fields, options))
        pos += head + fields_size(count, fields)


def _templates(buf: bytes, pos: int, end: int, meta: Meta, batch: SetBatch) -> None:
    _template_records(buf, pos, end, meta, batch, options=False)


def _options_templates(buf: bytes, pos: int, end: int, meta: Meta, batch: SetBatch) -> None:
    _template_records(buf, pos, end, meta, batch, options=True)


PARSERS: dict[int, TemplateParser] = {2: _templates, 3: _options_templates}


def decode_ipfix(payload: bytes, exporter: str, batch: SetBatch) -> None:
    """One IPFIX message: install its templates, collect its data sets."""
    if len(payload) < HEADER.size:
        batch.error(exporter, f"truncated IPFIX header: got {len(payload)} bytes, needed {HEADER.size}", 0)
        return
    _, length, export_time, _, domain = HEADER.unpack_from(payload)
    if length < HEADER.size:
        batch.error(exporter, f"IPFIX message length {length} < {HEADER.size}", 2)
        return
    if length > len(payload):
        batch.error(exporter, f"truncated IPFIX message: got {len(payload)} bytes, needed {length}", 0)
        length = len(payload)
    walk_sets(payload, HEADER.size, length, (exporter, domain, export_time, -1), batch, PARSERS)

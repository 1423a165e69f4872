"""The columnar data model: the Arrow schemas every part of blackout exchanges.

Decoders produce batches of these schemas, the engine slices them into ticks,
detectors read them, the store writes them.  This module depends on nothing but
pyarrow, so any part may import it.

Addresses (``src_addr``, ``dst_addr``, ``prefix``, ``peer_addr`` ...) are
``fixed_size_binary(16)`` in network byte order; IPv4 is stored IPv4-mapped
(``::ffff:a.b.c.d``).  One column type then holds both families, and a whole
column can be viewed as a ``(n, 16)`` uint8 matrix or as big-endian words
without any per-row Python (see :mod:`blackout.addr`): /24 bucketing is one
shift, longest-prefix match a ``searchsorted``.

Flow ``bytes`` and ``packets`` are the counts as exported (sampled);
``sampling_rate`` says by how much to multiply them.  Detectors scale; decoders
never do, so decoded records can be compared with reference decoders.

Times are ``timestamp[us, tz=UTC]`` everywhere.
"""

from __future__ import annotations

import enum

import pyarrow as pa

TIME = pa.timestamp("us", tz="UTC")
ADDR = pa.binary(16)


class Kind(enum.StrEnum):
    """The three kinds of telemetry the engine merges."""

    FLOW = "flow"
    ROUTE = "route"
    PROBE = "probe"


class ElemType(enum.IntEnum):
    """Route element types, as bgpdump -m spells them (B for a RIB entry)."""

    RIB = 0  # bgpdump "B"
    ANNOUNCE = 1  # "A"
    WITHDRAW = 2  # "W"
    STATE = 3  # "STATE"


ELEM_TYPE_LETTERS = {ElemType.RIB: "B", ElemType.ANNOUNCE: "A", ElemType.WITHDRAW: "W", ElemType.STATE: "STATE"}

# ---------------------------------------------------------------- flow records
FLOW_SCHEMA = pa.schema(
    [
        pa.field("ts", TIME, nullable=False),  # flow start (first packet) or packet time
        pa.field("exporter", pa.string(), nullable=False),  # exporter address or capture file name
        pa.field("src_addr", ADDR, nullable=False),
        pa.field("dst_addr", ADDR, nullable=False),
        pa.field("src_port", pa.uint16(), nullable=False),  # 0 when not TCP/UDP
        pa.field("dst_port", pa.uint16(), nullable=False),  # ICMP: type << 8 | code, as NetFlow does
        pa.field("protocol", pa.uint8(), nullable=False),
        pa.field("tcp_flags", pa.uint8(), nullable=False),  # OR of the flow's TCP flags
        pa.field("fragment", pa.bool_(), nullable=False),  # any packet was an IP fragment
        pa.field("ttl", pa.uint8(), nullable=False),  # 0 when unknown
        pa.field("bytes", pa.uint64(), nullable=False),  # L3 bytes as exported (sampled)
        pa.field("packets", pa.uint64(), nullable=False),
        pa.field("sampling_rate", pa.uint32(), nullable=False),  # 1 = unsampled
        pa.field("in_if", pa.uint32(), nullable=False),
        pa.field("out_if", pa.uint32(), nullable=False),
    ]
)

# -------------------------------------------------------------- route elements
ROUTE_SCHEMA = pa.schema(
    [
        pa.field("ts", TIME, nullable=False),
        pa.field("collector", pa.string(), nullable=False),  # archive name or BMP router
        pa.field("peer_addr", ADDR, nullable=False),
        pa.field("peer_asn", pa.uint32(), nullable=False),
        pa.field("elem_type", pa.uint8(), nullable=False),  # ElemType
        pa.field("prefix", ADDR, nullable=True),  # null for STATE
        pa.field("prefix_len", pa.uint8(), nullable=True),  # IPv4 prefixes: 0..32 (not mapped +96)
        pa.field("as_path", pa.string(), nullable=True),  # bgpdump text: "3356 1239 {4837,4808}"
        pa.field("origin_asn", pa.uint32(), nullable=True),  # last AS of the path, null for an AS_SET
        pa.field("next_hop", ADDR, nullable=True),
        pa.field("origin", pa.string(), nullable=True),  # IGP | EGP | INCOMPLETE
        pa.field("local_pref", pa.uint32(), nullable=True),
        pa.field("med", pa.uint32(), nullable=True),
        pa.field("communities", pa.string(), nullable=True),  # bgpdump text, space separated
        pa.field("path_id", pa.uint32(), nullable=True),  # add-path (RFC 7911)
        pa.field("old_state", pa.uint8(), nullable=True),  # STATE only (RFC 6396 4.4.1 codes)
        pa.field("new_state", pa.uint8(), nullable=True),
    ]
)

# --------------------------------------------------------------- probe results
PROBE_SCHEMA = pa.schema(
    [
        pa.field("ts", TIME, nullable=False),
        pa.field("prober", pa.string(), nullable=False),  # "blackout:<host>" or "atlas:<probe id>"
        pa.field("target", ADDR, nullable=False),
        pa.field("method", pa.string(), nullable=False),  # icmp | tcp
        pa.field("sent", pa.uint16(), nullable=False),
        pa.field("received", pa.uint16(), nullable=False),
        pa.field("rtt_ms", pa.float32(), nullable=True),  # mean of the answers, null when none
    ]
)

# -------------------------------------------------------------- event records
SHARE = pa.struct([pa.field("name", pa.string()), pa.field("share", pa.float64())])
COUNTRY_SHARE = pa.struct([pa.field("country", pa.string()), pa.field("share", pa.float64())])
ASN_SHARE = pa.struct([pa.field("asn", pa.uint32()), pa.field("share", pa.float64())])
ADDR_SHARE = pa.struct([pa.field("address", pa.string()), pa.field("share", pa.float64())])

ATTACK_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("target_prefix", pa.string()),
        pa.field("target_asn", pa.uint32()),
        pa.field("target_country", pa.string()),
        pa.field("target_role", pa.string()),
        pa.field("start", TIME, nullable=False),
        pa.field("end", TIME),  # null while the attack runs
        pa.field("peak_bps", pa.float64()),
        pa.field("peak_bps_at", TIME),
        pa.field("peak_pps", pa.float64()),
        pa.field("peak_pps_at", TIME),
        pa.field("total_bytes", pa.float64()),  # sampling-corrected
        pa.field("total_packets", pa.float64()),
        pa.field("vectors", pa.list_(SHARE)),
        pa.field("unique_sources", pa.uint64()),
        pa.field("source_countries", pa.list_(COUNTRY_SHARE)),
        pa.field("source_asns", pa.list_(ASN_SHARE)),
        pa.field("top_sources", pa.list_(ADDR_SHARE)),
        pa.field("spoofing", pa.float64()),  # estimated share of spoofed sources
        pa.field("rule", pa.string()),  # which rule fired, e.g. "threshold_pps>500"
    ]
)

EVIDENCE = pa.struct(
    [
        pa.field("signal", pa.string()),
        pa.field("time", TIME),
        pa.field("value", pa.float64()),
        pa.field("source", pa.string()),
        pa.field("text", pa.string()),
    ]
)
CAUSE = pa.struct(
    [
        pa.field("cause", pa.string()),
        pa.field("confidence", pa.float64()),
        pa.field("evidence", pa.list_(EVIDENCE)),
    ]
)

OUTAGE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("entity_type", pa.string(), nullable=False),  # country | asn | prefix
        pa.field("entity", pa.string(), nullable=False),
        pa.field("start", TIME, nullable=False),
        pa.field("end", TIME),  # null while ongoing
        pa.field("signals", pa.list_(pa.string())),
        pa.field("severity", pa.float64()),  # fraction lost, 0..1
        pa.field("score", pa.float64()),  # IODA alert area: drop % x minutes
        pa.field("verdict", pa.struct([pa.field("causes", pa.list_(CAUSE))])),
    ]
)

# ------------------------------------------------------------------ signals
# Per-entity time series the outage detector computes and the API serves (IODA's /signals).
SIGNAL_SCHEMA = pa.schema(
    [
        pa.field("ts", TIME, nullable=False),  # start of the bin
        pa.field("entity_type", pa.string(), nullable=False),  # country | asn | prefix
        pa.field("entity", pa.string(), nullable=False),
        pa.field("signal", pa.string(), nullable=False),  # e.g. bgp, traffic_bytes, probing_up
        pa.field("value", pa.float64(), nullable=False),
    ]
)

SCHEMAS: dict[Kind, pa.Schema] = {Kind.FLOW: FLOW_SCHEMA, Kind.ROUTE: ROUTE_SCHEMA, Kind.PROBE: PROBE_SCHEMA}


def empty(schema: pa.Schema) -> pa.RecordBatch:
    """A batch with no rows, for sources and ticks that have nothing."""
    return pa.RecordBatch.from_pylist([], schema=schema)

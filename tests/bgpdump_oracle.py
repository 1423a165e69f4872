"""Route elements from `bgpdump -m` text: the reference the routing tests compare against.

bgpdump (Debian's package) reads the real MRT files; its one-line output is
turned here into ROUTE_SCHEMA tables (what an MRT decoder must produce) and
into a plain-Python routing table (the oracle the vectorised state must equal).
Test-only code: a Python loop per line is fine here.
"""

from __future__ import annotations

import functools
import socket
import subprocess
from pathlib import Path

import pyarrow as pa

from blackout.model import ROUTE_SCHEMA, ElemType
from conftest import need_tool

COLLECTOR = "routeviews.route-views.jinx"  # what RoutingState makes of the archive names
_TYPES = {"B": ElemType.RIB, "A": ElemType.ANNOUNCE, "W": ElemType.WITHDRAW, "STATE": ElemType.STATE}
_V4 = b"\0" * 10 + b"\xff\xff"


@functools.cache
def bgpdump_lines(path: Path) -> tuple[str, ...]:
    """`bgpdump -m` of one MRT file (cached: the jinx RIB takes bgpdump about 5 s)."""
    out = subprocess.run([need_tool("bgpdump"), "-m", str(path)], capture_output=True, text=True, check=True)
    return tuple(out.stdout.splitlines())


def addr16(text: str) -> bytes:
    """An address as the model's 16 bytes."""
    if ":" in text:
        return socket.inet_pton(socket.AF_INET6, text)
    return _V4 + socket.inet_aton(text)


def routes_table(lines: tuple[str, ...] | list[str], collector: str = COLLECTOR) -> pa.Table:
    """ROUTE_SCHEMA rows from bgpdump -m lines."""
    cols: dict[str, list[object]] = {f.name: [] for f in ROUTE_SCHEMA}
    for line in lines:
        f = line.split("|")
        kind = _TYPES[f[2]]
        pfx: bytes | None = None
        plen = path = origin = old = new = None
        if kind == ElemType.STATE:
            old, new = int(f[5]), int(f[6])
        else:
            net, _, length = f[5].partition("/")
            pfx, plen = addr16(net), int(length)
            if kind != ElemType.WITHDRAW:
                path = f[6]
                last = path.split(" ")[-1] if path else ""
                origin = int(last) if last.isdigit() else None
        cols["ts"].append(int(f[1]) * 1_000_000)
        cols["collector"].append(collector)
        cols["peer_addr"].append(addr16(f[3]))
        cols["peer_asn"].append(int(f[4]))
        cols["elem_type"].append(int(kind))
        cols["prefix"].append(pfx)
        cols["prefix_len"].append(plen)
        cols["as_path"].append(path)
        cols["origin_asn"].append(origin)
        cols["old_state"].append(old)
        cols["new_state"].append(new)
        for name in ("next_hop", "origin", "local_pref", "med", "communities", "path_id"):
            cols[name].append(None)
    return pa.table({f.name: pa.array(cols[f.name], f.type) for f in ROUTE_SCHEMA}, schema=ROUTE_SCHEMA)


def oracle_table(*files: tuple[str, ...]) -> dict[tuple[str, str], tuple[int | None, str]]:
    """(peer, prefix) → (origin AS, AS path) after applying every line of the files in order."""
    table: dict[tuple[str, str], tuple[int | None, str]] = {}
    for lines in files:
        for line in lines:
            f = line.split("|")
            if f[2] == "STATE":
                if f[6] != "6":
                    for key in [k for k in table if k[0] == f[3]]:
                        del table[key]
            elif f[2] == "W":
                table.pop((f[3], f[5]), None)
            else:
                last = f[6].split(" ")[-1] if f[6] else ""
                table[(f[3], f[5])] = (int(last) if last.isdigit() else None, f[6])
    return table


MRT = Path(__file__).parent / "data" / "mrt"
JINX_RIB = MRT / "routeviews.route-views.jinx.ribs.1401487200.bz2"
JINX_UPDATES = MRT / "routeviews.route-views.jinx.updates.1401493500.bz2"


@functools.cache
def jinx_tables() -> tuple[pa.Table, pa.Table]:
    """The jinx RIB and the updates 1h45 later, as route elements (bgpdump-derived, cached per session)."""
    return routes_table(bgpdump_lines(JINX_RIB)), routes_table(bgpdump_lines(JINX_UPDATES))


def oracle_arrow(table: dict[tuple[str, str], tuple[int | None, str]], collector: str = COLLECTOR) -> pa.Table:
    """The oracle's routes in RoutingState.routes() form, sorted, for a whole-table equality check."""
    rows = sorted(
        (addr16(peer), addr16(pfx.split("/")[0]), int(pfx.split("/")[1]), origin or 0, path)
        for (peer, pfx), (origin, path) in table.items()
    )
    cols = list(zip(*rows, strict=True)) if rows else [[], [], [], [], []]
    return pa.table(
        {
            "collector": pa.array([collector] * len(rows), pa.string()),
            "peer_addr": pa.array(cols[0], pa.binary(16)),
            "prefix": pa.array(cols[1], pa.binary(16)),
            "prefix_len": pa.array(cols[2], pa.uint8()),
            "origin_asn": pa.array(cols[3], pa.uint32()),
            "as_path": pa.array(cols[4], pa.string()),
        }
    )


def state_arrow(routes: pa.Table) -> pa.Table:
    """RoutingState.routes() in the oracle's column order and row order."""
    cols = ["collector", "peer_addr", "prefix", "prefix_len", "origin_asn", "as_path"]
    return routes.select(cols).sort_by(
        [("peer_addr", "ascending"), ("prefix", "ascending"), ("prefix_len", "ascending")]
    )

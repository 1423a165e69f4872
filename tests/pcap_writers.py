"""Rewrite real Ethernet captures into the other shapes a pcap reader meets, for tests/test_pcap.py.

Each writer keeps the packets' own bytes and only changes the framing around
them (byte order, time resolution, link header, VLAN tags, pcapng sections and
interfaces), so tshark can decode the rewritten file and serve as the oracle.
Plain Python on purpose: this is test scaffolding, not a decoding path.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

Record = tuple[int, int, bytes, int]  # seconds, microseconds, frame bytes, original length


def read_classic(path: Path) -> tuple[int, list[Record], list[int]]:
    """Link type, records and each record's end offset of a little-endian µs pcap."""
    raw = path.read_bytes()
    assert raw[:4] == b"\xd4\xc3\xb2\xa1", "fixtures are little-endian µs pcaps"
    linktype = struct.unpack_from("<I", raw, 20)[0]
    out: list[Record] = []
    ends: list[int] = []
    pos = 24
    while pos + 16 <= len(raw):
        sec, usec, incl, orig = struct.unpack_from("<IIII", raw, pos)
        out.append((sec, usec, raw[pos + 16 : pos + 16 + incl], orig))
        pos += 16 + incl
        ends.append(pos)
    return linktype, out, ends


def pcapng_ends(path: Path) -> list[int]:
    """End offset of each packet block of a little-endian pcapng file."""
    raw = path.read_bytes()
    ends, pos = [], 0
    while pos + 12 <= len(raw):
        btype, blen = struct.unpack_from("<II", raw, pos)
        pos += blen
        if btype in (2, 3, 6):
            ends.append(pos)
    return ends


def write_classic(
    path: Path, linktype: int, records: list[Record], big: bool = False, nano: bool = False, snaplen: int = 65535
) -> None:
    """A classic pcap in either byte order, µs or ns (the ns variant gets 789 ns added to every packet)."""
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    parts = [struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for sec, usec, frame, orig in records:
        frac = usec * 1000 + 789 if nano else usec
        parts.append(struct.pack(e + "IIII", sec, frac, len(frame), orig) + frame)
    path.write_bytes(b"".join(parts))


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack(e + "II", btype, len(body) + 12) + body + struct.pack(e + "I", len(body) + 12)


def _option(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def pcapng_section(
    big: bool, interfaces: list[tuple[int, int | None, int]], packets: list[tuple[int, Record]]
) -> bytes:
    """One pcapng section: interfaces as (link type, if_tsresol or None, if_tsoffset), packets as (interface, record).

    The first packet of interface 0 is written as a simple packet block, and an
    unknown block and an interface statistics block are mixed in, as readers must skip them.
    """
    e = ">" if big else "<"
    out = [_block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for link, res, tsoffset in interfaces:
        opts = b""
        if res is not None:
            opts += _option(e, 9, bytes([res]))
        if tsoffset:
            opts += _option(e, 14, struct.pack(e + "q", tsoffset))
        if opts:
            opts += _option(e, 0, b"")
        out.append(_block(e, 1, struct.pack(e + "HHI", link, 0, 0) + opts))
    out.append(_block(e, 0x00000BAD, b"custom block a reader must step over"))
    spb_done = False
    for ifid, (sec, usec, frame, orig) in packets:
        link, res, tsoffset = interfaces[ifid]
        if ifid == 0 and not spb_done and res is None:
            out.append(_block(e, 3, struct.pack(e + "I", orig) + frame))
            spb_done = True
            continue
        t = _ticks(sec - tsoffset, usec, res)
        body = struct.pack(e + "IIIII", ifid, t >> 32, t & 0xFFFFFFFF, len(frame), orig) + frame
        out.append(_block(e, 6, body))
    out.append(_block(e, 5, struct.pack(e + "III", 0, 0, 0)))
    return b"".join(out)


def _ticks(sec: int, usec: int, res: int | None) -> int:
    """A time in units of if_tsresol (10^-res, or 2^-(res & 0x7f) when the top bit is set)."""
    us = sec * 1_000_000 + usec
    if res is None or res == 6:
        return us
    if res & 0x80:
        return (us << (res & 0x7F)) // 1_000_000
    if res < 6:
        return us // 10 ** (6 - res)
    return us * 10 ** (res - 6) + 123


# ------------------------------------------------------------------ link layers
def ether_parts(frame: bytes) -> tuple[int, bytes]:
    """Ethertype and payload of an untagged Ethernet frame."""
    return struct.unpack_from(">H", frame, 12)[0], frame[14:]


def _ip_family(frame: bytes) -> int:
    etype, _ = ether_parts(frame)
    return {0x0800: 4, 0x86DD: 6}.get(etype, 0)


LinkRewrite = Callable[[bytes], bytes | None]  # None: the frame cannot be carried on that link


def to_sll(frame: bytes) -> bytes:
    etype, payload = ether_parts(frame)
    return struct.pack(">HHH8sH", 0, 1, 6, frame[6:12] + b"\0\0", etype) + payload


def to_sll2(frame: bytes) -> bytes:
    etype, payload = ether_parts(frame)
    return struct.pack(">HHIHBB8s", etype, 0, 3, 1, 0, 6, frame[6:12] + b"\0\0") + payload


def to_sll_vlan(frame: bytes) -> bytes:
    """Linux cooked capture with the VLAN tag libpcap puts back after the header."""
    etype, payload = ether_parts(frame)
    return struct.pack(">HHH8sHHH", 0, 1, 6, frame[6:12] + b"\0\0", 0x8100, 42, etype) + payload


def to_sll2_vlan(frame: bytes) -> bytes:
    etype, payload = ether_parts(frame)
    return struct.pack(">HHIHBB8sHH", 0x8100, 0, 3, 1, 0, 6, frame[6:12] + b"\0\0", 42, etype) + payload


def to_raw(frame: bytes) -> bytes | None:
    return ether_parts(frame)[1] if _ip_family(frame) else None


def to_raw4(frame: bytes) -> bytes | None:
    return ether_parts(frame)[1] if _ip_family(frame) == 4 else None


def to_raw6(frame: bytes) -> bytes | None:
    return ether_parts(frame)[1] if _ip_family(frame) == 6 else None


def to_null(frame: bytes) -> bytes | None:
    fam = _ip_family(frame)
    return struct.pack("<I", 2 if fam == 4 else 30) + ether_parts(frame)[1] if fam else None


def to_loop(frame: bytes) -> bytes | None:
    fam = _ip_family(frame)
    return struct.pack(">I", 2 if fam == 4 else 24) + ether_parts(frame)[1] if fam else None


def to_vlan(frame: bytes) -> bytes:
    return frame[:12] + b"\x81\x00\x00\x2a" + frame[12:]


def to_qinq(frame: bytes) -> bytes:
    return frame[:12] + b"\x88\xa8\x00\x64\x81\x00\x00\x2a" + frame[12:]


def to_mpls(frame: bytes) -> bytes | None:
    if not _ip_family(frame):
        return None
    labels = struct.pack(">II", (1000 << 12) | 64, (2000 << 12) | 0x100 | 64)
    return frame[:12] + b"\x88\x47" + labels + ether_parts(frame)[1]


def to_pppoe(frame: bytes) -> bytes | None:
    fam = _ip_family(frame)
    if not fam:
        return None
    payload = ether_parts(frame)[1]
    ppp = struct.pack(">H", 0x0021 if fam == 4 else 0x0057)
    return frame[:12] + b"\x88\x64" + struct.pack(">BBHH", 0x11, 0, 7, len(payload) + 2) + ppp + payload


# name → (link type, rewrite)
LINKS: dict[str, tuple[int, LinkRewrite]] = {
    "sll": (113, to_sll),
    "sll2": (276, to_sll2),
    "sll-vlan": (113, to_sll_vlan),
    "sll2-vlan": (276, to_sll2_vlan),
    "raw": (101, to_raw),
    "raw12": (12, to_raw),
    "ipv4": (228, to_raw4),
    "ipv6": (229, to_raw6),
    "null": (0, to_null),
    "loop": (108, to_loop),
    "vlan": (1, to_vlan),
    "qinq": (1, to_qinq),
    "mpls": (1, to_mpls),
    "pppoe": (1, to_pppoe),
}


def rewrite(records: list[Record], fn: LinkRewrite) -> list[Record]:
    """The records re-framed for another link; frames the link cannot carry are left out."""
    out = []
    for sec, usec, frame, orig in records:
        new = fn(frame)
        if new is not None:
            out.append((sec, usec, new, orig + len(new) - len(frame)))
    return out

"""BGP path attributes: the table of what blackout reads, and a numba decoder of attribute blobs.

The table says, by type code, which attribute is read and where it is defined;
:func:`decode_blobs` turns each *distinct* attribute blob of an MRT file into
the route columns (origin, AS path text, next hops, MED, LOCAL_PREF,
communities text).  Texts are spelled exactly as ``bgpdump -m`` prints them,
because bgpdump is the reference the tests hold us to:

* AS path: sequences space separated, ``{a,b}`` for AS_SET, ``(a b)`` for
  AS_CONFED_SEQUENCE, ``[a,b]`` for AS_CONFED_SET; 2-byte AS_PATH merged with
  AS4_PATH per RFC 6793 section 4.2.3 (ignored when AGGREGATOR is not AS_TRANS
  while AS4_AGGREGATOR is present, or when AS4_PATH is the longer);
* communities: ``asn:value``, with ``no-export``, ``no-advertise``, ``local-AS``
  for the RFC 1997 well-known values; large communities (RFC 8092) follow as
  ``a:b:c`` (bgpdump prints them in a separate field with ``-l``).

Why a blob table: in a RIB the same attribute bytes repeat for thousands of
prefixes (jinx: 503,590 entries, ~100k distinct blobs), so each distinct blob is
decoded once and the columns are gathered with Arrow ``take``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# type code -> (name, defining RFC); codes not listed are skipped (counted nowhere: they are not damage).
ATTRIBUTES: dict[int, tuple[str, str]] = {
    1: ("ORIGIN", "RFC 4271"),
    2: ("AS_PATH", "RFC 4271, RFC 5065 (confederation segments)"),
    3: ("NEXT_HOP", "RFC 4271"),
    4: ("MULTI_EXIT_DISC", "RFC 4271"),
    5: ("LOCAL_PREF", "RFC 4271"),
    6: ("ATOMIC_AGGREGATE", "RFC 4271"),
    7: ("AGGREGATOR", "RFC 4271, RFC 6793"),
    8: ("COMMUNITIES", "RFC 1997"),
    14: ("MP_REACH_NLRI", "RFC 4760; abbreviated form in RIB entries: RFC 6396 4.3.4"),
    15: ("MP_UNREACH_NLRI", "RFC 4760"),
    17: ("AS4_PATH", "RFC 6793"),
    18: ("AS4_AGGREGATOR", "RFC 6793"),
    32: ("LARGE_COMMUNITY", "RFC 8092"),
}
ORIGIN_NAMES = ("IGP", "EGP", "INCOMPLETE")

A_ORIGIN, A_AS_PATH, A_NEXT_HOP, A_MED, A_LOCAL_PREF, A_AGGREGATOR = 1, 2, 3, 4, 5, 7
A_COMMUNITIES, A_MP_REACH, A_MP_UNREACH, A_AS4_PATH, A_AS4_AGGREGATOR, A_LARGE = 8, 14, 15, 17, 18, 32
AS_SET, AS_SEQUENCE, AS_CONFED_SEQUENCE, AS_CONFED_SET = 1, 2, 3, 4
AS_TRANS = 23456
ASPATH_ERROR = b"[ASPATH ERROR]"
_ASPATH_ERROR = np.frombuffer(ASPATH_ERROR, dtype=np.uint8)


@njit(cache=True)
def _put_uint(out: np.ndarray, pos: int, value: int) -> int:
    """Write value in decimal at out[pos:], return the new position."""
    if value == 0:
        out[pos] = 48
        return pos + 1
    n = 0
    v = value
    while v > 0:
        n += 1
        v //= 10
    v = value
    for i in range(n - 1, -1, -1):
        out[pos + i] = 48 + v % 10
        v //= 10
    return pos + n


@njit(cache=True)
def _parse_path(buf, start, end, asn_len, seg_type, seg_len, asns):  # type: ignore[no-untyped-def]
    """Split an AS_PATH/AS4_PATH into segments; return (segments, count) or (-1, 0) when malformed."""
    p = start
    ns = 0
    na = 0
    count = 0
    while p < end:
        if p + 2 > end:
            return -1, 0
        t = buf[p]
        n = buf[p + 1]
        if t < 1 or t > 4 or p + 2 + n * asn_len > end:
            return -1, 0
        seg_type[ns] = t
        seg_len[ns] = n
        q = p + 2
        for _ in range(n):
            if asn_len == 2:
                asns[na] = (np.int64(buf[q]) << 8) | buf[q + 1]
            else:
                asns[na] = (
                    (np.int64(buf[q]) << 24) | (np.int64(buf[q + 1]) << 16) | (np.int64(buf[q + 2]) << 8) | buf[q + 3]
                )
            na += 1
            q += asn_len
        count += n if (t in (AS_SEQUENCE, AS_CONFED_SEQUENCE)) else 1
        ns += 1
        p = q
    return ns, count


@njit(cache=True)
def _render_path(out, pos, seg_type, seg_len, asns, nseg):  # type: ignore[no-untyped-def]
    """bgpdump's AS path text; returns (new pos, origin AS or -1 when the path does not end in a sequence)."""
    prev = AS_SEQUENCE
    space = False
    a = 0
    origin = -1
    for s in range(nseg):
        t = seg_type[s]
        if prev != AS_SEQUENCE:
            out[pos] = 125 if prev == AS_SET else (93 if prev == AS_CONFED_SET else 41)
            pos += 1
        if space:
            out[pos] = 32
            pos += 1
        if t != AS_SEQUENCE:
            out[pos] = 123 if t == AS_SET else (91 if t == AS_CONFED_SET else 40)
            pos += 1
        space = False
        for _ in range(seg_len[s]):
            if space:
                out[pos] = 44 if (t in (AS_SET, AS_CONFED_SET)) else 32
                pos += 1
            space = True
            pos = _put_uint(out, pos, asns[a])
            origin = asns[a]
            a += 1
        prev = t
    if nseg > 0 and prev != AS_SEQUENCE:
        out[pos] = 125 if prev == AS_SET else (93 if prev == AS_CONFED_SET else 41)
        pos += 1
    if nseg == 0 or seg_type[nseg - 1] != AS_SEQUENCE or seg_len[nseg - 1] == 0:
        origin = -1
    return pos, origin


@njit(cache=True)
def _merge_as4(st, sl, asns, ns, count, st4, sl4, asns4, ns4, count4, mt, ml, masn):  # type: ignore[no-untyped-def]
    """RFC 6793 4.2.3: keep the first (count - count4) ASes of AS_PATH, then append AS4_PATH."""
    keep = count - count4
    got = 0
    nm = 0
    na = 0
    a = 0
    for s in range(ns):
        if got >= keep:
            break
        t = st[s]
        n = sl[s]
        take = n
        if t in (AS_SEQUENCE, AS_CONFED_SEQUENCE):
            take = min(n, keep - got)
            got += take
        else:
            got += 1
        mt[nm] = t
        ml[nm] = take
        for i in range(take):
            masn[na] = asns[a + i]
            na += 1
        a += n
        nm += 1
    a = 0
    for s in range(ns4):
        mt[nm] = st4[s]
        ml[nm] = sl4[s]
        for _ in range(sl4[s]):
            masn[na] = asns4[a]
            na += 1
            a += 1
        nm += 1
    return nm


@njit(cache=True)
def decode_blobs(buf, b_off, b_len, b_asn, nblobs):  # type: ignore[no-untyped-def]
    """Decode each attribute blob once.

    Returns per-blob arrays: origin (-1 absent), local_pref/med (+presence),
    NEXT_HOP as mapped address (+presence), MP_REACH next hop (+presence),
    origin AS (-1 none), and two text columns (AS path, communities) as
    (offsets, bytes, presence) ready for Arrow.
    """
    origin = np.full(nblobs, -1, np.int8)
    lp = np.zeros(nblobs, np.uint32)
    has_lp = np.zeros(nblobs, np.bool_)
    med = np.zeros(nblobs, np.uint32)
    has_med = np.zeros(nblobs, np.bool_)
    nh = np.zeros((nblobs, 16), np.uint8)
    has_nh = np.zeros(nblobs, np.bool_)
    mpnh = np.zeros((nblobs, 16), np.uint8)
    has_mpnh = np.zeros(nblobs, np.bool_)
    oasn = np.full(nblobs, -1, np.int64)
    total = 0
    for i in range(nblobs):
        total += b_len[i]
    path_off = np.zeros(nblobs + 1, np.int32)
    path_txt = np.empty(total * 6 + 32 * nblobs + 16, np.uint8)
    has_path = np.zeros(nblobs, np.bool_)
    comm_off = np.zeros(nblobs + 1, np.int32)
    comm_txt = np.empty(total * 4 + 16, np.uint8)
    has_comm = np.zeros(nblobs, np.bool_)
    maxlen = 1
    for i in range(nblobs):
        maxlen = max(maxlen, b_len[i])
    st = np.empty(maxlen, np.int64)
    sl = np.empty(maxlen, np.int64)
    asns = np.empty(maxlen, np.int64)
    st4 = np.empty(maxlen, np.int64)
    sl4 = np.empty(maxlen, np.int64)
    asns4 = np.empty(maxlen, np.int64)
    mt = np.empty(2 * maxlen, np.int64)
    ml = np.empty(2 * maxlen, np.int64)
    masn = np.empty(2 * maxlen, np.int64)
    ppos = 0
    cpos = 0
    for i in range(nblobs):
        p = b_off[i]
        end = p + b_len[i]
        asn_len = b_asn[i]
        path_s = -1
        path_e = -1
        p4_s = -1
        p4_e = -1
        comm_s = -1
        comm_e = -1
        large_s = -1
        large_e = -1
        aggr_as = np.int64(-1)
        has_aggr4 = False
        while p + 3 <= end:
            flag = buf[p]
            typ = buf[p + 1]
            if flag & 0x10:
                if p + 4 > end:
                    break
                alen = (np.int64(buf[p + 2]) << 8) | buf[p + 3]
                v = p + 4
            else:
                alen = np.int64(buf[p + 2])
                v = p + 3
            if v + alen > end:
                break  # attribute truncated: keep what was read before it
            if typ == A_ORIGIN and alen >= 1:
                origin[i] = buf[v]
            elif typ == A_AS_PATH:
                path_s, path_e = v, v + alen
            elif typ == A_NEXT_HOP and alen >= 4:
                nh[i, 10] = 255
                nh[i, 11] = 255
                nh[i, 12:16] = buf[v : v + 4]
                has_nh[i] = True
            elif typ == A_MED and alen >= 4:
                med[i] = (
                    (np.uint32(buf[v]) << 24)
                    | (np.uint32(buf[v + 1]) << 16)
                    | (np.uint32(buf[v + 2]) << 8)
                    | buf[v + 3]
                )
                has_med[i] = True
            elif typ == A_LOCAL_PREF and alen >= 4:
                lp[i] = (
                    (np.uint32(buf[v]) << 24)
                    | (np.uint32(buf[v + 1]) << 16)
                    | (np.uint32(buf[v + 2]) << 8)
                    | buf[v + 3]
                )
                has_lp[i] = True
            elif typ == A_AGGREGATOR and alen >= 2:
                if asn_len == 2 or alen < 8:
                    aggr_as = (np.int64(buf[v]) << 8) | buf[v + 1]
                else:
                    aggr_as = (np.int64(buf[v]) << 24) | (np.int64(buf[v + 1]) << 16)
                    aggr_as |= (np.int64(buf[v + 2]) << 8) | buf[v + 3]
            elif typ == A_AS4_AGGREGATOR:
                has_aggr4 = True
            elif typ == A_COMMUNITIES:
                comm_s, comm_e = v, v + alen
            elif typ == A_LARGE:
                large_s, large_e = v, v + alen
            elif typ == A_AS4_PATH:
                p4_s, p4_e = v, v + alen
            elif typ == A_MP_REACH and alen >= 2:
                if buf[v] != 0:  # abbreviated (RIB entries): next hop length, next hop
                    nhl = np.int64(buf[v])
                    q = v + 1
                elif alen >= 4:
                    nhl = np.int64(buf[v + 3])
                    q = v + 4
                else:
                    nhl = np.int64(0)
                    q = v
                if nhl == 4 and q + 4 <= v + alen:
                    mpnh[i, 10] = 255
                    mpnh[i, 11] = 255
                    mpnh[i, 12:16] = buf[q : q + 4]
                    has_mpnh[i] = True
                elif nhl >= 16 and q + 16 <= v + alen:
                    mpnh[i, :] = buf[q : q + 16]
                    has_mpnh[i] = True
            p = v + alen
        # AS path text
        if path_s >= 0:
            has_path[i] = True
            ns, count = _parse_path(buf, path_s, path_e, asn_len, st, sl, asns)
            if ns < 0:
                path_txt[ppos : ppos + len(_ASPATH_ERROR)] = _ASPATH_ERROR
                ppos += len(_ASPATH_ERROR)
            else:
                use_as4 = asn_len == 2 and p4_s >= 0 and not (aggr_as >= 0 and has_aggr4 and aggr_as != AS_TRANS)
                ns4 = -1
                count4 = 0
                if use_as4:
                    ns4, count4 = _parse_path(buf, p4_s, p4_e, 4, st4, sl4, asns4)
                if ns4 >= 0 and count >= count4:
                    nm = _merge_as4(st, sl, asns, ns, count, st4, sl4, asns4, ns4, count4, mt, ml, masn)
                    ppos, oasn[i] = _render_path(path_txt, ppos, mt, ml, masn, nm)
                else:
                    ppos, oasn[i] = _render_path(path_txt, ppos, st, sl, asns, ns)
        path_off[i + 1] = ppos
        # communities text
        if comm_s >= 0 or large_s >= 0:
            has_comm[i] = True
            first = True
            q = comm_s
            while comm_s >= 0 and q + 4 <= comm_e:
                if not first:
                    comm_txt[cpos] = 32
                    cpos += 1
                first = False
                hi = (np.int64(buf[q]) << 8) | buf[q + 1]
                lo = (np.int64(buf[q + 2]) << 8) | buf[q + 3]
                if hi == 0xFFFF and lo >= 0xFF01 and lo <= 0xFF03:
                    if lo == 0xFF01:
                        word = "no-export"
                    elif lo == 0xFF02:
                        word = "no-advertise"
                    else:
                        word = "local-AS"
                    for ch in word:
                        comm_txt[cpos] = ord(ch)
                        cpos += 1
                else:
                    cpos = _put_uint(comm_txt, cpos, hi)
                    comm_txt[cpos] = 58
                    cpos = _put_uint(comm_txt, cpos + 1, lo)
                q += 4
            q = large_s
            while large_s >= 0 and q + 12 <= large_e:
                if not first:
                    comm_txt[cpos] = 32
                    cpos += 1
                first = False
                for k in range(3):
                    r = q + 4 * k
                    val = (
                        (np.int64(buf[r]) << 24)
                        | (np.int64(buf[r + 1]) << 16)
                        | (np.int64(buf[r + 2]) << 8)
                        | buf[r + 3]
                    )
                    if k:
                        comm_txt[cpos] = 58
                        cpos += 1
                    cpos = _put_uint(comm_txt, cpos, val)
                q += 12
        comm_off[i + 1] = cpos
    return (
        origin,
        lp,
        has_lp,
        med,
        has_med,
        nh,
        has_nh,
        mpnh,
        has_mpnh,
        oasn,
        path_off,
        path_txt[:ppos],
        has_path,
        comm_off,
        comm_txt[:cpos],
        has_comm,
    )

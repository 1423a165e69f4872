"""The numba walk over MRT records (RFC 6396, add-path RFC 8050): one row per prefix into numpy arrays.

:func:`walk` fills preallocated arrays for up to ``cap`` elements and returns
where it stopped, so the caller can hand out batches and resume.  Attribute
blobs are deduplicated here (hash of the bytes, checked byte for byte on a hit)
and decoded later, once each, by :func:`blackout.sources.bgp_attrs.decode_blobs`.

Damage never stops the walk while the record lengths can be trusted: a record
whose body is malformed is counted and skipped.  A header that is not plausible
(length past the end, or a time more than 30 days from the last good record)
starts a resync: the walk looks for the next position where two consecutive
headers are plausible, counts the skipped bytes, and goes on; when none exists
it stops with a fatal status and the caller raises DecodeError.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.typed import Dict

# error codes -> reasons (the caller turns them into ErrorLog entries)
REASONS = (
    "truncated MRT header",  # 0
    "truncated MRT record",  # 1
    "resync: skipped damaged bytes",  # 2
    "unknown MRT type/subtype skipped",  # 3
    "malformed record body",  # 4
    "bad prefix length",  # 5
    "RIB entry names an unknown peer index",  # 6
    "bad BGP marker",  # 7
    "unsupported MP AFI/SAFI skipped",  # 8
    "implausible MRT header",  # 9
    "RIB record before any PEER_INDEX_TABLE",  # 10
    "bad state change record",  # 11
    "truncated last prefix of an NLRI list",  # 12
)
NREASONS = len(REASONS)
KEEP_ERRORS = 64

# status values in st[S_STATUS]
DONE, FULL, FATAL, TRUNC = 0, 1, 2, 3
S_POS, S_N, S_NBLOB, S_NERR, S_LASTTS, S_STATUS, S_FATALOFF, S_NPEER, S_NEED = range(9)
WINDOW = 30 * 86400
_KNOWN_TYPES = (5, 12, 13, 16, 17)


@njit(cache=True)
def _u16(b, p):  # type: ignore[no-untyped-def]
    return (np.int64(b[p]) << 8) | b[p + 1]


@njit(cache=True)
def _u32(b, p):  # type: ignore[no-untyped-def]
    return (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | b[p + 3]


@njit(cache=True)
def _err(st, err_off, err_code, counts, code, off):  # type: ignore[no-untyped-def]
    counts[code] += 1
    k = st[S_NERR]
    if k < len(err_off):
        err_off[k] = off
        err_code[k] = code
        st[S_NERR] = k + 1


@njit(cache=True)
def _plausible(b, q, n, last_ts):  # type: ignore[no-untyped-def]
    """A header at q whose type is known, whose length fits and whose time is near the last good one."""
    if q + 12 > n:
        return False
    t = _u16(b, q + 4)
    known = False
    for k in _KNOWN_TYPES:
        if t == k:
            known = True
    if not known or _u16(b, q + 6) > 16 or q + 12 + _u32(b, q + 8) > n:
        return False
    return last_ts <= 0 or abs(_u32(b, q) - last_ts) <= WINDOW


@njit(cache=True)
def _resync(b, pos, n, last_ts):  # type: ignore[no-untyped-def]
    """First q > pos where a plausible header is followed by another (or by the end); -1 if none."""
    for q in range(pos + 1, n - 11):
        if _plausible(b, q, n, last_ts):
            nxt = q + 12 + _u32(b, q + 8)
            if nxt == n or _plausible(b, nxt, n, last_ts):
                return q
    return -1


@njit(cache=True)
def _blob(b, off, ln, asn_len, table, b_off, b_len, b_asn, st):  # type: ignore[no-untyped-def]
    """Index of the distinct attribute blob with these bytes (and AS size), adding it if new."""
    h = np.uint64(14695981039346656037) ^ np.uint64(asn_len)
    for i in range(off, off + ln):
        h = (h ^ np.uint64(b[i])) * np.uint64(1099511628211)
    key = np.int64(h >> np.uint64(1))
    j = np.int64(-1)
    if key in table:
        j = table[key]
    if j >= 0 and b_len[j] == ln and b_asn[j] == asn_len:
        same = True
        o = b_off[j]
        for i in range(ln):
            if b[o + i] != b[off + i]:
                same = False
                break
        if same:
            return j
    j = st[S_NBLOB]
    b_off[j] = off
    b_len[j] = ln
    b_asn[j] = asn_len
    st[S_NBLOB] = j + 1
    table[key] = j
    return j


@njit(cache=True)
def _prefixes(b, p, end, v6, addpath, etype, blob, nhsrc, ts, peer, pasn, o, st, ec):  # type: ignore[no-untyped-def]
    """Emit one element per prefix of an NLRI list (add-path ids when asked); False if malformed."""
    (e_ts, e_peer, e_pasn, e_type, e_pfx, e_plen, e_blob, e_nhsrc, e_pid, e_haspid, _e_old, _e_new) = o
    maxbits = 128 if v6 else 32
    while p < end:
        pid = 0
        if addpath:
            if p + 4 > end:
                return False
            pid = _u32(b, p)
            p += 4
        if p >= end:
            return False
        plen = np.int64(b[p])
        nb = (plen + 7) // 8
        if plen > maxbits:
            return False
        if p + 1 + nb > end:  # a cut last prefix: keep the ones before it, as bgpdump does
            _err(st, ec[0], ec[1], ec[2], 12, p)
            return True
        k = st[S_N]
        e_ts[k] = ts
        e_peer[k, :] = peer
        e_pasn[k] = pasn
        e_type[k] = etype
        e_pfx[k, :] = 0
        if v6:
            e_pfx[k, :nb] = b[p + 1 : p + 1 + nb]
        else:
            e_pfx[k, 10] = 255
            e_pfx[k, 11] = 255
            e_pfx[k, 12 : 12 + nb] = b[p + 1 : p + 1 + nb]
        e_plen[k] = plen
        e_blob[k] = blob
        e_nhsrc[k] = nhsrc
        e_pid[k] = pid
        e_haspid[k] = addpath
        st[S_N] = k + 1
        p += 1 + nb
    return True


@njit(cache=True)
def _update(b, p, end, asn_len, addpath, ts, peer, pasn, o, table, bt, st, ec):  # type: ignore[no-untyped-def]
    """One BGP UPDATE body (from the withdrawn-routes length): withdrawals first, then announcements, as bgpdump."""
    b_off, b_len, b_asn = bt
    err_off, err_code, counts = ec
    if p + 2 > end:
        return False
    wend = p + 2 + _u16(b, p)
    if wend + 2 > end:
        return False
    aend = wend + 2 + _u16(b, wend)
    if aend > end:
        return False
    a0 = wend + 2
    blob = _blob(b, a0, aend - a0, asn_len, table, b_off, b_len, b_asn, st) if aend > a0 else -1
    if not _prefixes(b, p + 2, wend, False, addpath, 2, -1, 0, ts, peer, pasn, o, st, ec):
        return False
    for reach in (False, True):
        # the NLRI field comes between withdrawals and MP_REACH (bgpdump's order)
        if reach and not _prefixes(b, aend, end, False, addpath, 1, blob, 0, ts, peer, pasn, o, st, ec):
            return False
        q = a0
        while q + 3 <= aend:
            flag = b[q]
            typ = b[q + 1]
            if flag & 0x10:
                if q + 4 > aend:
                    return False
                alen = _u16(b, q + 2)
                v = q + 4
            else:
                alen = np.int64(b[q + 2])
                v = q + 3
            if v + alen > aend:
                return False
            if (typ == 15 and not reach) or (typ == 14 and reach):
                if alen < 3:
                    return False
                afi = _u16(b, v)
                safi = b[v + 2]
                x = v + 3
                if typ == 14:
                    if alen < 5 or b[v] != 0:
                        return False
                    x = v + 4 + b[v + 3]
                    if x >= v + alen:
                        return False
                    nsnpa = b[x]
                    x += 1
                    for _ in range(nsnpa):
                        if x >= v + alen:
                            return False
                        x += 1 + b[x]
                if (afi != 1 and afi != 2) or safi < 1 or safi > 3:
                    _err(st, err_off, err_code, counts, 8, v)
                elif not _prefixes(
                    b,
                    x,
                    v + alen,
                    afi == 2,
                    addpath,
                    1 if reach else 2,
                    blob if reach else -1,
                    1,
                    ts,
                    peer,
                    pasn,
                    o,
                    st,
                    ec,
                ):
                    return False
            q = v + alen
    return True


@njit(cache=True)
def _ip(b, p, v6, out):  # type: ignore[no-untyped-def]
    out[:] = 0
    if v6:
        out[:] = b[p : p + 16]
    else:
        out[10] = 255
        out[11] = 255
        out[12:16] = b[p : p + 4]


@njit(cache=True)
def new_table():  # type: ignore[no-untyped-def]
    """An empty int64 -> int64 typed dict (the blob dedupe table): ~5 µs from compiled code, where
    ``Dict.empty`` typed its arguments in Python for ~230 µs on every read (most of a small input's time)."""
    return Dict.empty(key_type=types.int64, value_type=types.int64)


@njit(cache=True)
def walk(b, cap, o, table, bt, ec, peers, st):  # type: ignore[no-untyped-def]
    """Walk records from st[S_POS]; stop when the arrays could overflow (FULL), at the end (DONE) or at fatal damage."""
    n = len(b)
    err_off, err_code, counts = ec
    p_addr, p_asn = peers
    e_old, e_new = o[10], o[11]
    peer = np.zeros(16, np.uint8)
    pos = st[S_POS]
    while True:
        if pos >= n:
            st[S_STATUS] = DONE
            break
        if pos + 12 > n:
            _err(st, err_off, err_code, counts, 0, pos)
            st[S_STATUS] = TRUNC
            st[S_FATALOFF] = pos
            break
        ts = _u32(b, pos)
        typ = _u16(b, pos + 4)
        sub = _u16(b, pos + 6)
        ln = _u32(b, pos + 8)
        last = st[S_LASTTS]
        if pos + 12 + ln > n or (last > 0 and abs(ts - last) > WINDOW):
            q = _resync(b, pos, n, last)
            if q < 0:
                truncated = pos + 12 + ln > n and _plausible(b, pos, pos + 12 + ln, last)
                _err(st, err_off, err_code, counts, 1 if truncated else 9, pos)
                st[S_STATUS] = TRUNC if truncated else FATAL
                st[S_FATALOFF] = pos
                break
            _err(st, err_off, err_code, counts, 2, pos)
            pos = q
            continue
        rend = pos + 12 + ln
        if (st[S_N] > 0 or st[S_NBLOB] > 0) and max(st[S_N], st[S_NBLOB]) + ln + 1 > cap:
            st[S_STATUS] = FULL
            break
        if ln + 1 > cap:
            st[S_STATUS] = FULL
            st[S_NEED] = ln + 1
            break
        st[S_LASTTS] = ts
        n0 = st[S_N]
        p = pos + 12
        tsus = ts * 1000000
        if typ == 17:
            if ln < 4:
                _err(st, err_off, err_code, counts, 4, pos)
                pos = rend
                continue
            tsus += _u32(b, p)
            p += 4
        ok = True
        if typ == 13 and sub == 1:  # PEER_INDEX_TABLE
            if p + 8 > rend:
                ok = False
            else:
                x = p + 6 + _u16(b, p + 4)
                if x + 2 > rend:
                    ok = False
                else:
                    cnt = _u16(b, x)
                    x += 2
                    st[S_NPEER] = 0
                    for i in range(cnt):
                        if x + 1 > rend:
                            ok = False
                            break
                        pt = b[x]
                        need = 5 + (16 if pt & 1 else 4) + (4 if pt & 2 else 2)
                        if x + need > rend:
                            ok = False
                            break
                        _ip(b, x + 5, pt & 1, p_addr[i])
                        y = x + 5 + (16 if pt & 1 else 4)
                        p_asn[i] = _u32(b, y) if pt & 2 else _u16(b, y)
                        st[S_NPEER] = i + 1
                        x += need
        elif typ == 13 and 2 <= sub <= 12 and sub != 7 and sub != 1:
            addpath = sub >= 8
            base = sub - 6 if addpath else sub
            if base == 6:  # RIB_GENERIC: AFI, SAFI, one NLRI prefix
                if p + 7 > rend:
                    ok = False
                    afi = 0
                else:
                    afi = _u16(b, p + 4)
                    if (afi != 1 and afi != 2) or b[p + 6] < 1 or b[p + 6] > 2:
                        _err(st, err_off, err_code, counts, 8, pos)
                        pos = rend
                        continue
                    p += 3
                v6 = afi == 2
            else:
                v6 = base >= 4
            if ok and p + 5 > rend:
                ok = False
            if ok:
                plen = np.int64(b[p + 4])
                nb = (plen + 7) // 8
                x = p + 5 + nb
                if plen > (128 if v6 else 32) or x + 2 > rend:
                    ok = False
                elif st[S_NPEER] == 0:
                    _err(st, err_off, err_code, counts, 10, pos)
                    pos = rend
                    continue
                else:
                    cnt = _u16(b, x)
                    x += 2
                    for _ in range(cnt):
                        if x + (10 if addpath else 6) > rend:
                            ok = False
                            break
                        pi = _u16(b, x)
                        pid = _u32(b, x + 6) if addpath else 0
                        x += 10 if addpath else 6
                        alen = _u16(b, x)
                        if x + 2 + alen > rend:
                            ok = False
                            break
                        if pi >= st[S_NPEER]:
                            _err(st, err_off, err_code, counts, 6, pos)
                            x += 2 + alen
                            continue
                        blob = _blob(b, x + 2, alen, 4, table, bt[0], bt[1], bt[2], st)
                        k = st[S_N]
                        o[0][k] = tsus
                        o[1][k, :] = p_addr[pi]
                        o[2][k] = p_asn[pi]
                        o[3][k] = 0
                        o[4][k, :] = 0
                        if v6:
                            o[4][k, :nb] = b[p + 5 : p + 5 + nb]
                        else:
                            o[4][k, 10] = 255
                            o[4][k, 11] = 255
                            o[4][k, 12 : 12 + nb] = b[p + 5 : p + 5 + nb]
                        o[5][k] = plen
                        o[6][k] = blob
                        o[7][k] = 1
                        o[8][k] = pid
                        o[9][k] = addpath
                        st[S_N] = k + 1
                        x += 2 + alen
        elif typ == 12 and 1 <= sub <= 4:  # TABLE_DUMP (v1); 3/4 are bgpdump's 32-bit-AS variants
            v6 = sub == 2 or sub == 4
            al = 16 if v6 else 4
            asn_len = 4 if sub >= 3 else 2
            x = p + 4 + al + 6 + al
            if x + asn_len + 2 > rend:
                ok = False
            else:
                plen = np.int64(b[p + 4 + al])
                _ip(b, p + 4 + al + 6, v6, peer)
                pasn = _u32(b, x) if asn_len == 4 else _u16(b, x)
                x += asn_len
                alen = _u16(b, x)
                if x + 2 + alen > rend or plen > al * 8:
                    ok = False
                else:
                    blob = _blob(b, x + 2, alen, asn_len, table, bt[0], bt[1], bt[2], st)
                    k = st[S_N]
                    o[0][k] = tsus
                    o[1][k, :] = peer
                    o[2][k] = pasn
                    o[3][k] = 0
                    _ip(b, p + 4, v6, o[4][k])
                    o[5][k] = plen
                    o[6][k] = blob
                    o[7][k] = 1
                    o[8][k] = 0
                    o[9][k] = False
                    st[S_N] = k + 1
        elif (typ == 16 or typ == 17) and (sub == 0 or sub == 5):  # BGP4MP STATE_CHANGE(_AS4)
            asn_len = 4 if sub == 5 else 2
            body = rend - p
            k = st[S_N]
            if body == 8 and asn_len == 2:  # zebra's 8-byte state change, read as bgpdump does
                peer[:] = 0
                peer[10] = 255
                peer[11] = 255
                pasn = _u16(b, p)
                old, new = _u16(b, p + 4), _u16(b, p + 6)
            elif body >= 2 * asn_len + 4:
                afi = _u16(b, p + 2 * asn_len + 2)
                x = p + 2 * asn_len + 4
                al = 16 if afi == 2 else 4
                if (afi != 1 and afi != 2) or x + 2 * al + 4 > rend:
                    ok = False
                    old = new = pasn = 0
                else:
                    pasn = _u32(b, p) if asn_len == 4 else _u16(b, p)
                    _ip(b, x, afi == 2, peer)
                    old, new = _u16(b, x + 2 * al), _u16(b, x + 2 * al + 2)
            else:
                ok = False
                old = new = pasn = 0
            if ok:
                o[0][k] = tsus
                o[1][k, :] = peer
                o[2][k] = pasn
                o[3][k] = 3
                o[5][k] = 0
                o[6][k] = -1
                o[9][k] = False
                e_old[k] = old
                e_new[k] = new
                st[S_N] = k + 1
            else:
                _err(st, err_off, err_code, counts, 11, pos)
                pos = rend
                continue
        elif (typ == 16 or typ == 17) and (sub == 1 or (4 <= sub <= 11 and sub != 5)):  # BGP4MP MESSAGE*
            asn_len = 4 if sub in (4, 7, 9, 11) else 2
            addpath = sub >= 8
            x = p + 2 * asn_len + 4
            if x > rend:
                ok = False
            else:
                afi = _u16(b, x - 2)
                al = 16 if afi == 2 else 4
                if (afi != 1 and afi != 2) or x + 2 * al + 19 > rend:
                    ok = False
                else:
                    pasn = _u32(b, p) if asn_len == 4 else _u16(b, p)
                    _ip(b, x, afi == 2, peer)
                    m = x + 2 * al
                    good = True
                    for i in range(16):
                        if b[m + i] != 255:
                            good = False
                    if not good:
                        _err(st, err_off, err_code, counts, 7, m)
                        pos = rend
                        continue
                    mend = min(rend, m + max(_u16(b, m + 16), 19))
                    if b[m + 18] == 2:
                        ok = _update(b, m + 19, mend, asn_len, addpath, tsus, peer, pasn, o, table, bt, st, ec)
        elif typ == 5 and (sub == 1 or sub == 3):  # deprecated MRT BGP: UPDATE / STATE_CHANGE (RFC 6396 appendix)
            if sub == 3:
                if p + 10 > rend:
                    ok = False
                else:
                    k = st[S_N]
                    _ip(b, p + 2, False, peer)
                    o[0][k] = tsus
                    o[1][k, :] = peer
                    o[2][k] = _u16(b, p)
                    o[3][k] = 3
                    o[5][k] = 0
                    o[6][k] = -1
                    o[9][k] = False
                    e_old[k] = _u16(b, p + 6)
                    e_new[k] = _u16(b, p + 8)
                    st[S_N] = k + 1
            elif p + 12 > rend:
                ok = False
            else:
                _ip(b, p + 2, False, peer)
                ok = _update(b, p + 12, rend, 2, False, tsus, peer, _u16(b, p), o, table, bt, st, ec)
        elif typ == 5 or (typ == 13 and sub == 7):
            pass  # keepalives, opens, notifications, geo peer tables: no route elements
        else:
            _err(st, err_off, err_code, counts, 3, pos)
        if not ok:  # drop what the damaged record gave before the damage showed
            st[S_N] = n0
            _err(st, err_off, err_code, counts, 4, pos)
        pos = rend
    st[S_POS] = pos

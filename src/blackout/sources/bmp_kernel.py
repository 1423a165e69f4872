"""The numba walk over a BMP byte stream (RFC 7854): one route element per prefix into numpy arrays.

Route Monitoring carries a BGP UPDATE; its body goes to the MRT reader's UPDATE
walker (:func:`blackout.sources.mrt_kernel._update`), so path attributes
and NLRI are decoded in one place for MRT and BMP, into the same row arrays and
deduplicated attribute blobs that :mod:`.mrt` assembles into Arrow columns.

Per BMP peer (peer type, distinguisher, address) the walk keeps, across calls:
the add-path state negotiated in its Peer Up (RFC 7911 capability 69 in the
sent and received OPENs, per direction and AFI) and which monitoring views
(pre/post policy, Adj-RIB-Out, Loc-RIB) it has been seen in, so a Peer Down
can end the peer's routes in every view.  Without a Peer Up (a capture that
starts mid-session) add-path is guessed per message as Wireshark does: parse
without path ids, and if that is malformed, with them.

Framing: a header whose version is not 3 or whose length is implausible means
the byte stream is lost.  A TCP session must then be dropped (status FATAL);
a file may resync on the next place where two plausible headers follow each
other.  A message whose header is sound but whose body is malformed is counted
and skipped.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import mrt_kernel as K

MAX_LEN = 1 << 18  # two extended OPENs (RFC 8654) and TLVs fit; more means a lost stream
PEER_HDR = 42

# error reasons: the MRT walker's codes (it reports some itself), then ours
E_HEADER = K.NREASONS  # implausible BMP header
E_RESYNC = K.NREASONS + 1
E_BODY = K.NREASONS + 2
E_NOT_UPDATE = K.NREASONS + 3
E_MARKER = K.NREASONS + 4
E_OPEN = K.NREASONS + 5
REASONS = (
    *K.REASONS,
    "implausible BMP header",
    "resync: skipped damaged bytes",
    "malformed BMP message",
    "Route Monitoring without an UPDATE",
    "bad BGP marker in BMP message",
    "malformed OPEN in Peer Up",
)
NREASONS = len(REASONS)

# counters per stream (ctr array); the Python side adds them to ctx.counters under these names
COUNTERS = (
    "route_monitoring",  # indexed by BMP message type 0..6
    "statistics",
    "peers_down",
    "peers_up",
    "initiation",
    "termination",
    "route_mirroring",
    "bmp_messages",
    "end_of_rib",
    "decode_errors",
)
C_MESSAGES, C_EOR, C_ERRORS = 7, 8, 9

# status in st[K.S_STATUS]: DONE = every complete message consumed (a partial one may remain)
DONE, FULL, FATAL, PEERS = 0, 1, 2, 4

# monitoring views → collector suffix (see bmp.SUFFIXES)
V_PRE, V_POST, V_OUT, V_OUT_POST, V_LOC = 0, 1, 2, 3, 4
IDLE, OPENCONFIRM, ESTABLISHED = 1, 5, 6


@njit(cache=True)
def plausible(b, q, n):  # type: ignore[no-untyped-def]
    """A BMP v3 header at q with a known type and a length that fits the type and the buffer."""
    if q + 6 > n or b[q] != 3 or b[q + 5] > 6:
        return False
    ln = K._u32(b, q + 1)
    least = 6 if b[q + 5] == 4 or b[q + 5] == 5 else 6 + PEER_HDR
    return least <= ln <= MAX_LEN and q + ln <= n


@njit(cache=True)
def _resync(b, pos, n):  # type: ignore[no-untyped-def]
    """First q > pos with a plausible header followed by another (or by the end); -1 if none."""
    for q in range(pos + 1, n - 5):
        if plausible(b, q, n):
            nxt = q + K._u32(b, q + 1)
            if nxt == n or plausible(b, nxt, n):
                return q
    return -1


@njit(cache=True)
def _peer(b, p, peers, pdict):  # type: ignore[no-untyped-def]
    """Index of the peer of the per-peer header at p (type, distinguisher, address); -1 if the table is full."""
    p_key, p_ap, p_mask, p_n = peers[0], peers[1], peers[2], peers[3]
    h = np.uint64(14695981039346656037)
    for i in range(25):
        x = b[p + 1 + i] if i > 0 else b[p]  # type, then distinguisher and address (skip the flags)
        h = (h ^ np.uint64(x)) * np.uint64(1099511628211)
    key = np.int64(h >> np.uint64(1))
    if key in pdict:
        j = pdict[key]
        same = p_key[j, 0] == b[p]
        for i in range(1, 25):
            if p_key[j, i] != b[p + 1 + i]:
                same = False
        if same:
            return j
    j = p_n[0]
    if j >= len(p_mask):
        return -1
    p_key[j, 0] = b[p]
    p_key[j, 1:25] = b[p + 2 : p + 26]
    p_ap[j, :] = -1
    p_mask[j] = 0
    p_n[0] = j + 1
    pdict[key] = j
    return j


@njit(cache=True)
def _addpath_caps(b, m, end, out):  # type: ignore[no-untyped-def]
    """Send/receive bits of the ADD-PATH capability (RFC 7911) of the OPEN at m, for AFI 1 and 2 unicast.

    Returns the end of the OPEN, or -1 when it is malformed.
    """
    out[:] = 0
    if m + 29 > end:
        return -1
    for i in range(16):
        if b[m + i] != 255:
            return -1
    mend = m + K._u16(b, m + 16)
    if b[m + 18] != 1 or mend > end or mend < m + 29:
        return -1
    q = m + 29
    plen = np.int64(b[m + 28])
    wide = False
    if plen == 255 and q + 3 <= mend and b[q] == 255:  # RFC 9072 extended optional parameters
        plen = K._u16(b, q + 1)
        q += 3
        wide = True
    pend = q + plen
    if pend > mend:
        return -1
    while q < pend:
        hl = 3 if wide else 2
        if q + hl > pend:
            return -1
        ptype = b[q]
        ln = K._u16(b, q + 1) if wide else np.int64(b[q + 1])
        v = q + hl
        if v + ln > pend:
            return -1
        if ptype == 2:  # capabilities
            c = v
            while c + 2 <= v + ln:
                code = b[c]
                cl = np.int64(b[c + 1])
                if c + 2 + cl > v + ln:
                    return -1
                if code == 69:
                    for t in range(c + 2, c + 2 + cl - 3, 4):
                        afi = K._u16(b, t)
                        if (afi == 1 or afi == 2) and b[t + 2] == 1:
                            out[afi - 1] = b[t + 3]
                c += 2 + cl
        q = v + ln
    return mend


@njit(cache=True)
def _state_rows(o, var, st, pi, mask, ts, peer, pasn, old, new):  # type: ignore[no-untyped-def]
    """One STATE element per view the peer was seen in (the pre-policy view when none yet)."""
    if mask == 0:
        mask = 1
    for v in range(5):
        if mask & (1 << v):
            k = st[K.S_N]
            o[0][k] = ts
            o[1][k, :] = peer
            o[2][k] = pasn
            o[3][k] = 3
            o[4][k, :] = 0
            o[5][k] = 0
            o[6][k] = -1
            o[7][k] = 0
            o[8][k] = 0
            o[9][k] = False
            o[10][k] = old
            o[11][k] = new
            var[k] = pi * 8 + v
            st[K.S_N] = k + 1


@njit(cache=True)
def _end_of_rib(b, u, bend):  # type: ignore[no-untyped-def]
    """An UPDATE body (from u) that is an End-of-RIB marker (RFC 4724): empty, or one empty MP_UNREACH."""
    if bend - u < 4 or K._u16(b, u) != 0:
        return False
    alen = K._u16(b, u + 2)
    if u + 4 + alen != bend:
        return False
    if alen == 0:
        return True
    if alen < 6:
        return False
    a = u + 4
    hl = 4 if b[a] & 0x10 else 3
    ln = K._u16(b, a + 2) if hl == 4 else np.int64(b[a + 2])
    return alen == hl + 3 and b[a + 1] == 15 and ln == 3


@njit(cache=True)
def _update_afi(b, u, bend):  # type: ignore[no-untyped-def]
    """AFI of an UPDATE: that of its first MP_REACH/MP_UNREACH attribute, else 1 (IPv4)."""
    if u + 4 > bend:
        return 1
    a = u + 2 + K._u16(b, u)
    if a + 2 > bend:
        return 1
    aend = min(bend, a + 2 + K._u16(b, a))
    q = a + 2
    while q + 3 <= aend:
        hl = 4 if b[q] & 0x10 else 3
        if q + hl > aend:
            break
        ln = K._u16(b, q + 2) if hl == 4 else np.int64(b[q + 2])
        if (b[q + 1] == 14 or b[q + 1] == 15) and q + hl + 2 <= aend:
            return K._u16(b, q + hl)
        q += hl + ln
    return 1


@njit(cache=True)
def _route_monitoring(b, p, rend, ts, peer, pasn, asn_len, ap, o, table, bt, st, ec):  # type: ignore[no-untyped-def]
    """The UPDATE of a Route Monitoring message; 1 rows added, 2 End-of-RIB, else an error code."""
    m = p + PEER_HDR
    if m + 19 > rend:
        return E_BODY
    for i in range(16):
        if b[m + i] != 255:
            return E_MARKER
    blen = K._u16(b, m + 16)
    if blen < 19 or m + blen > rend:
        return E_BODY
    if b[m + 18] != 2:
        return E_NOT_UPDATE
    bend = m + blen
    u = m + 19
    if _end_of_rib(b, u, bend):
        return 2
    n0, ne0 = st[K.S_N], st[K.S_NERR]  # blobs stay: the dedupe table may point at them
    saved = ec[2].copy() if ap < 0 else ec[2]
    for attempt in range(1 if ap >= 0 else 2):  # unknown add-path: without path ids, then with them
        if attempt:
            st[K.S_N], st[K.S_NERR] = n0, ne0
            ec[2][:] = saved
        addpath = ap == 1 if ap >= 0 else attempt == 1
        # one call site on purpose: each site of this large function costs seconds of compile time
        if K._update(b, u, bend, asn_len, addpath, ts, peer, pasn, o, table, bt, st, ec):
            return 1
    st[K.S_N] = n0  # drop the rows of a malformed UPDATE
    return E_BODY


@njit(cache=True)
def walk(b, cap, o, var, table, bt, ec, peers, pdict, st, ctr, arrival_us, resync):  # type: ignore[no-untyped-def]
    """Walk the messages from st[S_POS]; stop at the end of the complete ones (DONE), when full, or at fatal damage."""
    n = len(b)
    err_off, err_code, counts = ec
    p_ap, p_mask = peers[1], peers[2]
    peer = np.zeros(16, np.uint8)
    sent = np.zeros(2, np.int64)
    recv = np.zeros(2, np.int64)
    pos = st[K.S_POS]
    st[K.S_STATUS] = DONE
    while pos + 6 <= n:
        ln = K._u32(b, pos + 1)
        typ = b[pos + 5]
        if not plausible(b, pos, max(n, pos + ln)):  # a sound header whose body has not all arrived is fine
            q = _resync(b, pos, n) if resync else -1
            if q < 0:
                K._err(st, err_off, err_code, counts, E_HEADER, pos)
                ctr[C_ERRORS] += 1
                st[K.S_STATUS] = FATAL
                st[K.S_FATALOFF] = pos
                break
            K._err(st, err_off, err_code, counts, E_RESYNC, pos)
            ctr[C_ERRORS] += 1
            pos = q
            continue
        if pos + ln > n:
            q = _resync(b, pos, n) if resync else -1
            if q < 0:
                break  # the rest of this message is still to come (or, in a file, never will)
            K._err(st, err_off, err_code, counts, E_RESYNC, pos)
            ctr[C_ERRORS] += 1
            pos = q
            continue
        if st[K.S_N] + ln + 8 > cap or st[K.S_NBLOB] + 1 > cap:
            st[K.S_STATUS] = FULL
            st[K.S_NEED] = ln + 8
            break
        rend = pos + ln
        p = pos + 6
        ctr[C_MESSAGES] += 1
        ctr[typ] += 1
        if typ == 4 or typ == 5 or typ == 1 or typ == 6:
            pos = rend  # initiation, termination, statistics, route mirroring: counted only
            continue
        pi = _peer(b, p, peers, pdict)
        if pi < 0:
            ctr[C_MESSAGES] -= 1
            ctr[typ] -= 1
            st[K.S_STATUS] = PEERS
            break
        ptype = b[p]
        flags = b[p + 1]
        view = V_LOC if ptype == 3 else ((flags >> 6) & 1) + 2 * ((flags >> 4) & 1)  # L and O flags
        if flags & 0x80 and ptype != 3:
            peer[:] = b[p + 10 : p + 26]
        else:
            peer[:] = 0
            if ptype != 3:
                peer[10] = 255
                peer[11] = 255
                peer[12:16] = b[p + 22 : p + 26]
        pasn = K._u32(b, p + 26)
        peers[4][pi, :] = peer
        peers[5][pi] = pasn
        tsec = K._u32(b, p + 34)
        ts = tsec * 1000000 + min(K._u32(b, p + 38), 999999) if tsec else arrival_us
        err = 0
        if typ == 0:
            asn_len = 2 if (flags & 0x20 and ptype != 3) else 4
            afi = _update_afi(b, p + PEER_HDR + 19, rend)
            ap = p_ap[pi, (2 if flags & 0x10 else 0) + (1 if afi == 2 else 0)]
            n0 = st[K.S_N]
            r = _route_monitoring(b, p, rend, ts, peer, pasn, asn_len, ap, o, table, bt, st, ec)
            if r == 1:
                var[n0 : st[K.S_N]] = pi * 8 + view
                p_mask[pi] |= 1 << view
            elif r == 2:
                ctr[C_EOR] += 1
            else:
                err = r
        elif typ == 3:
            q = p + PEER_HDR + 20
            mend = _addpath_caps(b, q, rend, sent) if q <= rend else -1
            if mend >= 0:
                mend = _addpath_caps(b, mend, rend, recv)
            if mend < 0:
                err = E_OPEN
            else:
                for a in range(2):  # in: the peer sends, the router receives; out: the reverse
                    p_ap[pi, a] = 1 if (recv[a] & 2 and sent[a] & 1) else 0
                    p_ap[pi, 2 + a] = 1 if (sent[a] & 2 and recv[a] & 1) else 0
            _state_rows(o, var, st, pi, p_mask[pi], ts, peer, pasn, OPENCONFIRM, ESTABLISHED)
        elif typ == 2:
            if p + PEER_HDR + 1 > rend:
                err = E_BODY
            _state_rows(o, var, st, pi, p_mask[pi], ts, peer, pasn, ESTABLISHED, IDLE)
            p_ap[pi, :] = -1
        if err:
            K._err(st, err_off, err_code, counts, err, pos)
            ctr[C_ERRORS] += 1
        pos = rend
    st[K.S_POS] = pos

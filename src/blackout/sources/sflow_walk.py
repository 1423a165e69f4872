"""The numba kernel that walks sFlow v5 datagrams (sFlow.org "sFlow Version 5", July 2004).

A datagram is a header and a list of samples, each sample a list of records,
every list element carrying its own ``(enterprise << 12 | format, length)``:
a chain of variable-length items that numpy cannot index without walking it.
:func:`walk` walks all datagrams of a batch once, trusting a length only after
checking it against the enclosing item, and fills preallocated arrays:

* per flow sample: its datagram, sampling rate, input/output ifIndex and where
  its raw packet header (or sampled IPv4/IPv6 record) lies in the buffer;
* per generic interface counters record: its datagram and offset;
* per datagram: agent address, counter/unknown/no-L3 sample counts;
* per error: datagram, reason code (:data:`REASONS`) and offset in the datagram.

A lying length ends the walk of what it encloses (the sample, or for a sample
length the datagram) and is counted; samples before it are kept.  A sample
count larger than the datagram holds ends at the datagram's end, so a huge
count costs nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

REASONS = (
    "",
    "short_datagram",  # 1: shorter than the datagram header
    "bad_version",  # 2: not version 5
    "bad_agent_type",  # 3: agent address type neither IPv4 (1) nor IPv6 (2)
    "samples_missing",  # 4: the datagram ends before its announced samples
    "sample_truncated",  # 5: a sample's length runs past the datagram
    "sample_malformed",  # 6: a sample shorter than its fixed fields
    "records_missing",  # 7: a sample ends before its announced records
    "record_truncated",  # 8: a record's length runs past its sample
    "header_malformed",  # 9: a raw packet header record whose header length runs past the record
    "trailing_bytes",  # 10: bytes after the announced samples
)

# Compact ifIndex encoding (sFlow v5 section 5, "interface"): 2 format bits, 30 value bits.
IF_MASK = 0x3FFFFFFF
GENERIC_IF_COUNTERS_LEN = 88


@njit(cache=True, inline="always")
def _u32(b: np.ndarray, o: Any) -> Any:
    return (np.int64(b[o]) << 24) | (np.int64(b[o + 1]) << 16) | (np.int64(b[o + 2]) << 8) | np.int64(b[o + 3])


@njit(cache=True, inline="always")
def _record(b: np.ndarray, q: Any, se: Any) -> tuple[Any, Any, Any]:
    """(error code or 0, format, length) of the record at q, inside a sample ending at se."""
    if se - q < 8:
        return 7, 0, 0
    rlen = _u32(b, q + 4)
    if rlen > se - q - 8:
        return 8, 0, 0
    return 0, _u32(b, q), rlen


@njit(cache=True)
def walk(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple:
    """Walk datagrams buf[starts[d]:ends[d]]; see the module docstring for what is returned."""
    nd = starts.shape[0]
    total = 0
    for d in range(nd):
        total += ends[d] - starts[d]
    # Capacities: a flow sample takes >= 40 bytes, a counter record >= 96, an error >= 8 (or one per datagram).
    fcap = total // 40 + 1
    ccap = total // 96 + 1
    ecap = total // 8 + 2 * nd + 1
    agent = np.zeros((nd, 16), dtype=np.uint8)
    agent_ok = np.zeros(nd, dtype=np.bool_)
    n_counter = np.zeros(nd, dtype=np.int64)
    n_unknown = np.zeros(nd, dtype=np.int64)
    n_nol3 = np.zeros(nd, dtype=np.int64)
    fs_dg = np.empty(fcap, dtype=np.int64)
    fs_rate = np.empty(fcap, dtype=np.uint32)
    fs_in = np.empty(fcap, dtype=np.uint32)
    fs_out = np.empty(fcap, dtype=np.uint32)
    fs_hdr = np.empty(fcap, dtype=np.int64)  # offset of the header bytes, -1 when none
    fs_hlen = np.empty(fcap, dtype=np.int64)
    fs_hproto = np.empty(fcap, dtype=np.int64)
    fs_flen = np.empty(fcap, dtype=np.int64)
    fs_ip = np.empty(fcap, dtype=np.int64)  # offset of a sampled IPv4/IPv6 record, -1 when none
    fs_ipkind = np.empty(fcap, dtype=np.int64)  # 3 (IPv4) or 4 (IPv6)
    cs_dg = np.empty(ccap, dtype=np.int64)
    cs_off = np.empty(ccap, dtype=np.int64)
    er_dg = np.empty(ecap, dtype=np.int64)
    er_code = np.empty(ecap, dtype=np.int64)
    er_off = np.empty(ecap, dtype=np.int64)
    nf = 0
    nc = 0
    ne = 0
    for d in range(nd):
        s = np.int64(starts[d])
        e = np.int64(ends[d])
        p = s
        code = 0
        if e - p < 28:
            code = 1
        elif _u32(buf, p) != 5:
            code = 2
        else:
            at = _u32(buf, p + 4)
            if at == 1:
                agent[d, 10] = 0xFF
                agent[d, 11] = 0xFF
                agent[d, 12:16] = buf[p + 8 : p + 12]
                p += 12
            elif at == 2 and e - p >= 40:
                agent[d, :] = buf[p + 8 : p + 24]
                p += 24
            elif at == 2:
                code = 1
            else:
                code = 3
        if code != 0:
            if ne < ecap:
                er_dg[ne] = d
                er_code[ne] = code
                er_off[ne] = p - s
                ne += 1
            continue
        agent_ok[d] = True
        nsamples = _u32(buf, p + 12)
        p += 16
        i = 0
        while i < nsamples:
            i += 1
            if e - p < 8:
                code = 4
                break
            fmt = _u32(buf, p)
            slen = _u32(buf, p + 4)
            p += 8
            if slen > e - p:
                code = 5
                break
            q = p
            se = p + slen
            p = se
            typ = fmt & 0xFFF
            if (fmt >> 12) != 0 or typ < 1 or typ > 4:
                n_unknown[d] += 1
                continue
            scode = 0
            if typ == 2 or typ == 4:
                n_counter[d] += 1
                fixed = 12 if typ == 2 else 16
                if slen < fixed:
                    scode = 6
                else:
                    nrec = _u32(buf, q + fixed - 4)
                    q += fixed
                    for _ in range(nrec):
                        scode, rfmt, rlen = _record(buf, q, se)
                        if scode != 0:
                            break
                        q += 8
                        if rfmt == 1 and rlen >= GENERIC_IF_COUNTERS_LEN and nc < ccap:
                            cs_dg[nc] = d
                            cs_off[nc] = q
                            nc += 1
                        q += rlen
            else:
                fixed = 32 if typ == 1 else 44
                if slen < fixed:
                    scode = 6
                else:
                    if typ == 1:
                        rate = _u32(buf, q + 8)
                        inp = _u32(buf, q + 20) & IF_MASK
                        outp = _u32(buf, q + 24)
                        outp = outp & IF_MASK if (outp >> 30) == 0 else 0
                    else:
                        rate = _u32(buf, q + 12)
                        inp = _u32(buf, q + 28) if _u32(buf, q + 24) == 0 else 0
                        outp = _u32(buf, q + 36) if _u32(buf, q + 32) == 0 else 0
                    nrec = _u32(buf, q + fixed - 4)
                    q += fixed
                    hdr: Any = -1
                    hlen: Any = 0
                    hproto: Any = 0
                    flen: Any = 0
                    ipo: Any = -1
                    ipkind = 0
                    for _ in range(nrec):
                        scode, rfmt, rlen = _record(buf, q, se)
                        if scode != 0:
                            break
                        q += 8
                        if rfmt == 1 and hdr < 0:
                            if rlen < 16 or _u32(buf, q + 12) > rlen - 16:
                                scode = 9
                            else:
                                hproto = _u32(buf, q)
                                flen = _u32(buf, q + 4)
                                hlen = _u32(buf, q + 12)
                                hdr = q + 16
                        elif rfmt == 3 and rlen >= 32 and ipo < 0:
                            ipo = q
                            ipkind = 3
                        elif rfmt == 4 and rlen >= 56 and ipo < 0:
                            ipo = q
                            ipkind = 4
                        q += rlen
                    if (hdr >= 0 or ipo >= 0) and nf < fcap:
                        fs_dg[nf] = d
                        fs_rate[nf] = rate
                        fs_in[nf] = inp
                        fs_out[nf] = outp
                        fs_hdr[nf] = hdr
                        fs_hlen[nf] = hlen
                        fs_hproto[nf] = hproto
                        fs_flen[nf] = flen
                        fs_ip[nf] = ipo
                        fs_ipkind[nf] = ipkind
                        nf += 1
                    elif scode == 0:
                        n_nol3[d] += 1
            if scode != 0 and ne < ecap:
                er_dg[ne] = d
                er_code[ne] = scode
                er_off[ne] = q - s
                ne += 1
        if code == 0 and p < e:
            code = 10
        if code != 0 and ne < ecap:
            er_dg[ne] = d
            er_code[ne] = code
            er_off[ne] = p - s
            ne += 1
    flows = (
        fs_dg[:nf],
        fs_rate[:nf],
        fs_in[:nf],
        fs_out[:nf],
        fs_hdr[:nf],
        fs_hlen[:nf],
        fs_hproto[:nf],
        fs_flen[:nf],
        fs_ip[:nf],
        fs_ipkind[:nf],
    )
    per_dg = (agent, agent_ok, n_counter, n_unknown, n_nol3)
    return flows, (cs_dg[:nc], cs_off[:nc]), (er_dg[:ne], er_code[:ne], er_off[:ne]), per_dg

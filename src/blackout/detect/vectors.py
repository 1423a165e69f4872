"""Attack vectors: what kind of packets an attack is made of, named as operators name them.

Each flow row gets exactly one vector code (so the shares of an attack add up
to 1), checked in this order:

1. ``ip_fragmentation`` — a fragment without ports (a non-first fragment: its
   transport header is in the first fragment).  First fragments keep their
   ports and are classified by them, so a fragmented DNS reflection shows both
   ``dns_amplification`` (first fragments) and ``ip_fragmentation`` (the rest).
2. TCP by flags (OR of the flow's flags): SYN without ACK → ``syn_flood``;
   SYN+ACK without data flags (PSH/FIN) → ``synack_reflection``; RST → ``rst_flood``;
   ACK (±PSH) without SYN/RST/FIN → ``ack_flood``; anything else → ``tcp_flood``.
3. UDP from a known amplifier source port → ``<service>_amplification``
   (US-CERT TA14-017A names), other UDP → ``udp_flood``, or, when many
   sources send large packets from one other service port,
   ``udp_reflection:<port>`` (decided per attack in :mod:`.reflection`).
4. ICMP and ICMPv6 → ``icmp_flood``; any other protocol → ``ip_flood`` (sflow-rt's name).

Reflection vectors (``synack_reflection`` and the amplifications) also need
many sources: with fewer than ``amplification_min_sources`` distinct sources
in the attack, their packets are reported as ``tcp_flood`` / ``udp_flood``
(one DNS server answering a client is not a reflection attack).

FastNetMon 1.2.4 only names syn_flood, icmp_flood, ip_fragmentation and
udp_flood (>90 % of packets), and reports SYN-ACK reflection as ``unknown``;
here every packet counts toward a named vector and all vectors ≥ 5 % are kept.
"""

from __future__ import annotations

import numpy as np

TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

BASE_VECTORS = (
    "syn_flood",
    "synack_reflection",
    "ack_flood",
    "rst_flood",
    "tcp_flood",
    "udp_flood",
    "icmp_flood",
    "ip_fragmentation",
    "ip_flood",
)
(SYN_FLOOD, SYNACK_REFLECTION, ACK_FLOOD, RST_FLOOD, TCP_FLOOD, UDP_FLOOD, ICMP_FLOOD, IP_FRAGMENTATION, IP_FLOOD) = (
    range(len(BASE_VECTORS))
)

# UDP source port -> service, for <service>_amplification (US-CERT TA14-017A and its later updates).
AMPLIFIERS: dict[int, str] = {
    17: "qotd",
    19: "chargen",
    53: "dns",
    69: "tftp",
    111: "rpcbind",
    123: "ntp",
    137: "netbios",
    161: "snmp",
    389: "cldap",
    427: "slp",
    520: "ripv1",
    1900: "ssdp",
    3283: "ard",
    3702: "wsd",
    5353: "mdns",
    5683: "coap",
    11211: "memcached",
    26000: "quake",
    27015: "steam",
}
_AMP_PORTS = sorted(AMPLIFIERS)
VECTORS: tuple[str, ...] = BASE_VECTORS + tuple(f"{AMPLIFIERS[p]}_amplification" for p in _AMP_PORTS)
N_VECTORS = len(VECTORS)
REFLECTED = np.zeros(N_VECTORS, dtype=bool)
REFLECTED[SYNACK_REFLECTION] = True
REFLECTED[len(BASE_VECTORS) :] = True
# where a reflection vector's packets go when it has too few sources
FALLBACK = np.arange(N_VECTORS)
FALLBACK[SYNACK_REFLECTION] = TCP_FLOOD
FALLBACK[len(BASE_VECTORS) :] = UDP_FLOOD
# vectors whose destination port says something about the victim (direct, port-carrying traffic)
DIRECT_PORTED = np.zeros(N_VECTORS, dtype=bool)
DIRECT_PORTED[[SYN_FLOOD, ACK_FLOOD, RST_FLOOD, TCP_FLOOD, UDP_FLOOD]] = True

_UDP_LUT = np.full(65536, UDP_FLOOD, dtype=np.uint8)
for _i, _port in enumerate(_AMP_PORTS):
    _UDP_LUT[_port] = len(BASE_VECTORS) + _i


def classify(
    protocol: np.ndarray,
    tcp_flags: np.ndarray,
    src_port: np.ndarray,
    dst_port: np.ndarray,
    fragment: np.ndarray,
) -> np.ndarray:
    """One vector code (index into VECTORS) per flow row, all columns at once."""
    code = np.full(len(protocol), IP_FLOOD, dtype=np.uint8)
    flags = tcp_flags.astype(np.uint8)
    syn = (flags & SYN) != 0
    ack = (flags & ACK) != 0
    rst = (flags & RST) != 0
    data = (flags & (PSH | FIN)) != 0
    tcp = protocol == TCP
    tcp_code = np.full(len(protocol), TCP_FLOOD, dtype=np.uint8)
    tcp_code[ack & ~syn & ~rst & ((flags & FIN) == 0)] = ACK_FLOOD
    tcp_code[rst & ~syn] = RST_FLOOD
    tcp_code[syn & ack & ~data & ~rst] = SYNACK_REFLECTION
    tcp_code[syn & ~ack] = SYN_FLOOD
    code[tcp] = tcp_code[tcp]
    udp = protocol == UDP
    code[udp] = _UDP_LUT[src_port[udp].astype(np.int64)]
    code[(protocol == ICMP) | (protocol == ICMP6)] = ICMP_FLOOD
    code[fragment & (src_port == 0) & (dst_port == 0)] = IP_FRAGMENTATION
    return code


def vector_shares(
    packets: np.ndarray, other_ports: dict[int, float] | None = None, min_share: float = 0.05
) -> list[dict[str, object]]:
    """[{name, share}] of the vectors with at least min_share of the packets, largest first.

    ``other_ports`` adds ``udp_reflection:<port>`` vectors (packets by source port, see :mod:`.reflection`).
    """
    extra = sorted((other_ports or {}).items())
    names = [*VECTORS, *(f"udp_reflection:{port}" for port, _ in extra)]
    values = np.concatenate([packets, np.array([v for _, v in extra], dtype=np.float64)])
    total = float(values.sum())
    if total <= 0:
        return []
    shares = values / total
    order = np.lexsort((np.arange(len(shares)), -shares))
    return [{"name": names[i], "share": float(shares[i])} for i in order if shares[i] >= min_share]

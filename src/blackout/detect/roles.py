"""Target roles (web, dns, mail, ntp, bgp, other): what a host *serves*, learnt from its own traffic.

An attack's destination port says what the attacker aimed at, not what the
host is: the December 2014 port-80 floods hit North Korea's DNS and mail
servers too.  So every tracked host keeps, in two small per-slot arrays of
:class:`~.baseline.TargetState` (reset when the slot is evicted), how many
packets it

* **served**: sent from a service port (DNS answers from 53, SMTP from 25,
  HTTP from 80/443, BGP from 179; TCP only with ACK set, i.e. an answer), and
* **was asked on**: received on a service port (TCP with ACK: an established
  exchange, not a SYN anyone can spoof) in ticks where it was neither under
  attack nor hot, so a flood never teaches a role.

The role is the served evidence's main port if there is any, else the asked
evidence's, else (:func:`role_of`) the destination port of the attack's
direct traffic.  Only hosts that already have a slot gather evidence: answers
from untracked addresses (a reflection's thousands of amplifiers) cost nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .vectors import ACK, TCP, UDP

# service port -> role of the host that serves it
ROLE_PORTS: dict[int, str] = {
    80: "web",
    443: "web",
    8080: "web",
    8443: "web",
    53: "dns",
    25: "mail",
    465: "mail",
    587: "mail",
    123: "ntp",
    179: "bgp",
}
ROLES: tuple[str, ...] = ("web", "dns", "mail", "ntp", "bgp")
N_ROLES = len(ROLES)
ROLE_MIN_SHARE = 0.2  # attack fallback: the top port must carry this share of direct packets to name a role
EVIDENCE_MIN_SHARE = 0.5  # a host's evidence names a role when one role has at least this share of it

ROLE_LUT = np.full(65536, -1, dtype=np.int8)  # port -> role code, -1 none
for _port, _role in ROLE_PORTS.items():
    ROLE_LUT[_port] = ROLES.index(_role)


def service_rows(port: np.ndarray, protocol: np.ndarray, tcp_flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, their role codes) of the rows that are real exchanges (UDP, or TCP with ACK) on a service port."""
    return _service_rows(port, protocol, tcp_flags, ROLE_LUT)


@njit(cache=True)
def _service_rows(
    port: np.ndarray, protocol: np.ndarray, flags: np.ndarray, lut: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """One pass, no temporaries: 0.84 -> 0.13 ms on a tick of 200k rows (numpy's masks and where)."""
    rows = np.empty(len(port), dtype=np.int64)
    roles = np.empty(len(port), dtype=np.int8)
    m = 0
    for r in range(len(port)):
        role = lut[port[r]]
        p = protocol[r]
        if role >= 0 and (p == UDP or (p == TCP and (flags[r] & ACK) != 0)):
            rows[m] = r
            roles[m] = role
            m += 1
    return rows[:m], roles[:m]


def add_evidence(table: np.ndarray, slots: np.ndarray, roles: np.ndarray, packets: np.ndarray) -> None:
    """table[slot, role] += packets for every row (rows with role -1 or slot -1 skipped), unbuffered."""
    ok = (slots >= 0) & (roles >= 0)
    if ok.any():
        np.add.at(table, (slots[ok], roles[ok]), packets[ok].astype(table.dtype))


def evidence_role(served: np.ndarray, asked: np.ndarray) -> str | None:
    """The role one host's evidence names (served first, then asked), None if it names none."""
    for counts in (served, asked):
        total = float(counts.sum())
        if total > 0:
            top = int(np.argmax(counts))  # ties: the first role in ROLES
            return ROLES[top] if counts[top] / total >= EVIDENCE_MIN_SHARE else None
    return None


def role_of(ports: np.ndarray, packets: np.ndarray) -> str:
    """The target's role from the destination ports of the direct attack traffic (the fallback).

    The most-hit port must carry at least ROLE_MIN_SHARE of those packets (a
    flood to random ports names no role).  Reflected traffic is left out by
    the caller: its destination port is whatever the attacker spoofed as the
    requests' source port, random in practice, so it says nothing about the victim.
    """
    total = float(packets.sum())
    if total <= 0:
        return "other"
    order = np.lexsort((ports, -packets))
    top = int(order[0])
    if packets[top] / total < ROLE_MIN_SHARE:
        return "other"
    return ROLE_PORTS.get(int(ports[top]), "other")

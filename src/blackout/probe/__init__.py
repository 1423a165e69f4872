"""Active probing, Trinocular-style: a belief per /24 kept by adaptive ICMP or TCP probing.

:mod:`.trinocular` holds the model (belief update, availability, which block
probes again), :mod:`.icmp` sends waves of probes, :mod:`.prober` runs rounds
and turns results into PROBE_SCHEMA rows (and RIPE Atlas JSON lines).
"""

from __future__ import annotations

from .icmp import IcmpPinger, Pacer, ProbeError, TcpPinger
from .prober import Prober, Targets, write_atlas
from .trinocular import BELIEF_DOWN, Blocks, ProbeConfig, availability, update

__all__ = [
    "BELIEF_DOWN",
    "Blocks",
    "IcmpPinger",
    "Pacer",
    "ProbeConfig",
    "ProbeError",
    "Prober",
    "Targets",
    "TcpPinger",
    "availability",
    "update",
    "write_atlas",
]

"""blackout: is it dark, who is attacking it, and why did it go dark.

Outage detection, DDoS detection and cause attribution for any country, AS or
prefix, from flow exports, packet captures, BGP archives and probes.
"""

from __future__ import annotations

__version__ = "0.1.0"

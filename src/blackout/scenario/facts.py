"""What was published about North Korea's Internet in December 2014: the one table the scenario draws from.

Every figure appears here once, with who measured it and where it was
published (tests/data/truth/kp_dec2014_events.csv keeps the full citations).
The generator reads these values and nothing else; where the record is silent
(how long an attack lasted, the normal traffic level) the generator's own
assumptions are named in kp2014.py, not here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

ATLAS = "Arbor Networks ATLAS (ASERT, 'North Korea goes offline'; eweek.com, cso.com.au, 2014-12-23)"
DYN = "Dyn Research ('Someone disconnects North Korea — who?', 2014-12-22; Reuters 2014-12-23)"
PRESS = "press reports of the attacks' sources (2014-12-23)"
XINHUA = "Xinhua via Reuters; Dyn Research (2014-12-27)"


def utc(text: str) -> dt.datetime:
    """A UTC time from 'YYYY-MM-DDTHH:MM'."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class Published:
    """The published figures, typed; `SOURCES` says who published each."""

    prefixes: tuple[str, ...]  # AS131279's four /24s
    origin_asn: int  # Star Joint Venture (STAR-KP)
    upstream_asn: int  # China Unicom, the single upstream
    attacks_per_day: dict[str, int]  # 2 Thu, 4 Fri, "more than 10" Sat (11 taken), continuing 21-22
    peak_bps: float  # 5.97 Gbps on Saturday 20 Dec
    peak_pps: float  # 1.70 Mpps at the peak
    peak_day: str
    targets: dict[str, tuple[str, str]]  # address -> (role, name)
    early_dst_port: int  # port 80 floods from 18 Dec
    late_vectors: tuple[tuple[str, int, int], ...]  # (name, source port, destination port): reflection
    late_vectors_from: str
    long_attack_s: int  # one attack on 22 Dec had run 55 min 53 s and was still going
    us_main_source_attacks: int  # six of the attacks came from the United States
    instability_from: dt.datetime  # routes up and down for more than 24 h before the loss
    outage_1: tuple[dt.datetime, dt.datetime]  # 9 h 31 min, all four withdrawn
    outage_2: tuple[dt.datetime, int]  # second blackout (start per Dyn's tweet; about 30 min taken)
    outage_3: tuple[dt.datetime, int]  # Internet and 3G down ~5 h, no instability before


KP2014 = Published(
    prefixes=("175.45.176.0/24", "175.45.177.0/24", "175.45.178.0/24", "175.45.179.0/24"),
    origin_asn=131279,
    upstream_asn=4837,
    attacks_per_day={"2014-12-18": 2, "2014-12-19": 4, "2014-12-20": 11, "2014-12-21": 3, "2014-12-22": 2},
    peak_bps=5.97e9,
    peak_pps=1.70e6,
    peak_day="2014-12-20",
    targets={
        "175.45.176.8": ("dns", "ns1 (DNS)"),
        "175.45.176.9": ("dns", "ns2 (DNS)"),
        "175.45.176.10": ("mail", "mail server"),
        "175.45.176.67": ("web", "naenara.com.kp"),
        "175.45.176.79": ("web", "ryongnamsan.edu.kp (Kim Il Sung University)"),
    },
    early_dst_port=80,
    late_vectors=(("ntp", 123, 53), ("ssdp", 1900, 53)),
    late_vectors_from="2014-12-21",
    long_attack_s=55 * 60 + 53,
    us_main_source_attacks=6,
    instability_from=utc("2014-12-21T00:00"),
    outage_1=(utc("2014-12-22T16:15"), utc("2014-12-23T01:46")),
    outage_2=(utc("2014-12-23T15:41"), 30 * 60),
    outage_3=(utc("2014-12-27T10:30"), 5 * 3600),
)

SOURCES: dict[str, str] = {
    "prefixes": DYN,
    "origin_asn": DYN,
    "upstream_asn": DYN,
    "attacks_per_day": ATLAS,
    "peak_bps": ATLAS,
    "peak_pps": ATLAS,
    "peak_day": ATLAS,
    "targets": ATLAS,
    "early_dst_port": ATLAS,
    "late_vectors": ATLAS,
    "late_vectors_from": ATLAS,
    "long_attack_s": ATLAS,
    "us_main_source_attacks": PRESS,
    "instability_from": DYN,
    "outage_1": DYN,
    "outage_2": DYN,
    "outage_3": XINHUA,
}

# The period the scenario covers.
PERIOD = (utc("2014-12-17T00:00"), utc("2014-12-29T00:00"))

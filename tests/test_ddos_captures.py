"""The CIC-DDoS2019 captures and StopDDoS's DOMINATE SYN flood, each against tshark.

CIC-DDoS2019: Sharafaldin et al., "Developing Realistic Distributed Denial of
Service (DDoS) Attack Dataset and Taxonomy", ICCST 2019.  In those captures one
attacking machine talks to the victim, which answers it: the attacker's
address receives traffic too.  The threshold is therefore set per capture just
under the victim's busiest second (``FRACTION`` of it, per tshark) — as low as
it goes without flagging the attacker's own answers, which tshark shows peak
below it — with 1 s ticks and no smoothing.  Each capture must give exactly
one attack, on the victim (tshark's most frequent destination), with the
vector its file name says, tshark's busiest second as peak, tshark's count of
sources inside the attack, and nothing on any other address.

Not here: StopDDoS's slow SYN-ACK capture (532 SYN-ACKs from port 21 over
818 s, under 1 pps): its busiest second is a 17-packet port scan from one
host, so no per-second threshold isolates the reflection.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from test_ddos import DATA, hot_spans, pcap_flows, run, toward, tshark_packets, victim

FRACTION = 0.9
CAPTURES = {  # file -> (main vector its name says, target role)
    "cicddos2019/CIC-DDoS-2019-SynFlood.pcap": ("syn_flood", None),
    "cicddos2019/CIC-DDoS-2019-WebDDoS.pcap": ("ack_flood", "web"),  # HTTP requests: established TCP to port 80
    "stopddos/pkt.TCP.DOMINATE.syn.ecn.cwr.pcapng": ("syn_flood", None),
}


def busiest(path: Path, dst: str) -> int:
    """Packets in the busiest second toward dst, per tshark."""
    return max(Counter(p[0] for p in tshark_packets(path) if p[2] == dst).values())


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_gives_one_attack_on_its_victim(name: str) -> None:
    path = DATA / "pcap" / name
    target = victim(path)
    threshold = FRACTION * busiest(path, target)
    others = {p[2] for p in tshark_packets(path)} - {target}
    assert all(busiest(path, o) <= threshold for o in others)  # the threshold flags only the victim
    conf = [f"ddos.threshold_pps={threshold}", "ddos.ban_for_bandwidth=off", "ddos.baseline=false"]
    (rec,) = run(pcap_flows(path), [*conf, "ddos.start_ticks=1", "ddos.average_calculation_time=0"])
    assert rec["target"] == target
    (span,) = hot_spans(path, target, threshold, 30)
    assert (rec["start"], rec["end"]) == span
    window = toward(path, target, *span)
    second, count = max(Counter(p[0] for p in window).items(), key=lambda kv: (kv[1], -kv[0]))
    assert (rec["peak_pps"], rec["peak_pps_at"]) == (count, second * 1_000_000)
    assert rec["unique_sources"] == len({p[1] for p in window})
    assert rec["total_packets"] == len(window)
    vector, role = CAPTURES[name]
    assert rec["vectors"][0]["name"] == vector
    if role is not None:
        assert rec["target_role"] == role

"""Target roles from what a host serves, not from where the attack aimed.

Real captures: CIC-DDoS2019's web server answers HTTP (tshark names it), then a
real SYN flood to a port nobody serves is replayed at it and at its client.
The KP scenario: its DNS and mail servers, flooded on port 80, must come out
as dns and mail (their normal traffic holds their answers from 53 and 25).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from blackout import addr
from blackout.cli.demo import demo_defaults
from blackout.config import Config
from blackout.detect.ddos import DdosDetector
from blackout.detect.ddos_config import DdosConfig
from blackout.detect.roles import ROLE_PORTS, evidence_role
from blackout.engine import Engine, EngineConfig, Source
from blackout.model import Kind
from conftest import DATA, need_tool
from test_ddos import LOW, SYNFLOOD, US, pcap_flows, run

WEBDDOS = DATA / "pcap/cicddos2019/CIC-DDoS-2019-WebDDoS.pcap"


def tshark_sources(path: Path, display_filter: str) -> set[str]:
    """Source addresses of the packets matching a display filter, per tshark."""
    out = subprocess.run(
        [need_tool("tshark"), "-n", "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", "ip.src"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return set(out.split())


def readdressed(table: pa.Table, dst: str, after_us: int) -> pa.Table:
    """The rows sent to dst instead, shifted in time to start after after_us."""
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    shifted = pa.array(ts - ts.min() + after_us, pa.int64()).cast(table.schema.field("ts").type)
    table = table.set_column(table.schema.get_field_index("ts"), table.schema.field("ts"), shifted)
    dsts = pa.array([addr.parse(dst)] * table.num_rows, addr.ADDR)
    return table.set_column(table.schema.get_field_index("dst_addr"), table.schema.field("dst_addr"), dsts)


def test_a_web_server_flooded_on_another_port_is_still_web() -> None:
    web = pcap_flows(WEBDDOS)
    (server,) = tshark_sources(WEBDDOS, "tcp.srcport==80 && tcp.flags.ack==1")  # answers from port 80
    (client,) = tshark_sources(WEBDDOS, "tcp.dstport==80")
    end = int(web.column("ts").cast(pa.int64()).to_numpy().max()) + 10 * US
    table = pa.concat_tables([web, readdressed(pcap_flows(SYNFLOOD), server, end)])
    (rec,) = run(table, LOW)
    assert rec["target"] == server and rec["target_role"] == "web"
    # the same flood at the client, which only asked port 80: its role comes from the flood (port 25565)
    table = pa.concat_tables([web, readdressed(pcap_flows(SYNFLOOD), client, end)])
    (rec,) = run(table, LOW)
    assert rec["target"] == client and rec["target_role"] == "other"
    # and without the history the server is "other" too: the role above came from its answers
    (rec,) = run(readdressed(pcap_flows(SYNFLOOD), server, end), LOW)
    assert rec["target_role"] == "other"


def test_evidence_role_prefers_what_is_served() -> None:
    served, asked = np.zeros(5, np.float32), np.zeros(5, np.float32)
    assert evidence_role(served, asked) is None
    asked[0] = 100.0  # asked on port 80 a lot
    assert evidence_role(served, asked) == "web"
    served[1] = 1.0  # answered once from 53
    assert evidence_role(served, asked) == "dns"
    served[[0, 2]] = 1.0  # web, dns, mail answered equally: no role stands out
    assert evidence_role(served, asked) is None


def test_kp_dns_and_mail_servers_under_port_80_floods(kp_scenario: Path) -> None:
    """Up to the end of the first port-80 flood on each DNS and mail server, with `blackout demo`'s settings."""
    truth = json.loads((kp_scenario / "truth.json").read_text())
    port80 = [a for a in truth["attacks"] if a["dst_port"] == 80]
    ends: dict[str, float] = {}
    for a in port80:
        ends.setdefault(a["target"], dt.datetime.fromisoformat(a["end"]).timestamp())
    last = max(end for target, end in ends.items() if truth["targets"][target]["role"] != "web")
    flows = pcap_flows(kp_scenario / "flows.ipfix.pcap")
    flows = flows.filter(pc.less(flows.column("ts").cast(pa.int64()), int((last + 600) * US)))
    settings = Config(demo_defaults(DATA))
    det = DdosDetector(settings.section("ddos", DdosConfig))
    latest: dict[str, dict[str, Any]] = {}
    sink = lambda ev: latest.update({r["id"]: r for r in ev["attacks"]})  # noqa: E731
    Engine([det], sink=sink, config=settings.section("engine", EngineConfig)).run(
        [Source("kp", Kind.FLOW, flows.to_batches(65536))]
    )
    want = {a["target"]: a["role"] for a in port80 if dt.datetime.fromisoformat(a["end"]).timestamp() <= last}
    assert {"dns", "mail"} <= set(want.values())
    assert all(ROLE_PORTS[80] == "web" != want[t] for t in ("175.45.176.8", "175.45.176.9", "175.45.176.10"))
    got = Counter((r["target"], r["target_role"]) for r in latest.values())
    assert {t for t, _ in got} == set(want)
    assert all(role == want[target] for target, role in got)


def test_service_rows_are_the_exchanges_on_service_ports() -> None:
    """The compiled pass picks exactly the rows numpy's masks pick: UDP, or TCP with ACK, from a port in
    ROLE_PORTS (SYN-only TCP, ICMP and other ports left out), with the role of that port."""
    from blackout.detect.roles import ROLE_LUT, ROLE_PORTS, ROLES, service_rows

    rng = np.random.default_rng(4)
    n = 50_000
    port = np.where(rng.random(n) < 0.5, rng.choice(list(ROLE_PORTS), n), rng.integers(0, 65536, n)).astype(np.uint16)
    protocol = rng.choice(np.array([1, 6, 17, 47], np.uint8), n)
    flags = rng.integers(0, 256, n).astype(np.uint8)
    rows, roles = service_rows(port, protocol, flags)
    exchange = (protocol == 17) | ((protocol == 6) & ((flags & 0x10) != 0))
    want = np.flatnonzero(exchange & (ROLE_LUT[port] >= 0))
    assert np.array_equal(rows, want) and 0 < len(want) < n
    assert [ROLES[r] for r in roles.tolist()] == [ROLE_PORTS[int(p)] for p in port[want]]

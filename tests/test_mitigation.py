"""Mitigation against real BGP speakers on loopback: ExaBGP (through `blackout mitigate --exabgp`) and GoBGP.

ExaBGP (127.0.0.71) runs blackout's relay as its API process and peers with a
gobgpd (127.0.0.72) that accepts IPv4 unicast and IPv4 FlowSpec; the gobgpd's
RIB is the oracle: after an attack starts it holds the victim's /32 with the
RFC 7999 BLACKHOLE community (65535:666 = 4294902426) and NO_EXPORT, or the
FlowSpec rule for the attack's vector; after the end plus the hold time the
route is gone.  The GoBGP backend drives the same gobgpd through its CLI.
The attacks are the records of a real replay of the StopDDoS SYN flood and
DNS amplification captures (victim from tshark, see test_alerts).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from blackout.cli import mitigate
from blackout.config import Config
from blackout.detect.ddos import DdosDetector
from blackout.detect.ddos_config import DdosConfig
from blackout.engine import Engine
from blackout.errors import ConfigError
from blackout.pipeline import Inputs
from blackout.serve.alerts import EventRouter, router_for
from blackout.serve.mitigation import MitigationConfig, Mitigator, parse_groups
from blackout.serve.mitigation_bgp import ExaBgpFifo, exabgp_line, relay
from blackout.serve.worker import Alert
from blackout.sources import DecodeContext
from conftest import DATA, need_tool
from test_alerts import attack_records, tshark_victim

EXA, GOBGP = "127.0.0.71", "127.0.0.72"
BLACKHOLE, NO_EXPORT = 65535 << 16 | 666, 65535 << 16 | 65281  # RFC 7999, RFC 1997
DNSFRAG = DATA / "pcap/stopddos/amp.dns.RRSIG.fragmented.pcap"


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until check() holds; return the seconds it took (fail after timeout)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if check():
            return time.monotonic() - began
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Speakers:
    """The running gobgpd (receiver, oracle) and ExaBGP (announcer) and how to read the gobgpd RIB."""

    def __init__(self, api: int, fifo: Path) -> None:
        self.api = api
        self.fifo = fifo

    def rib(self, family: str) -> dict[str, Any]:
        args = [need_tool("gobgp"), "-u", "127.0.0.1", "-p", str(self.api), "global", "rib", "-a", family, "-j"]
        out = subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
        try:
            return json.loads(out) or {}
        except json.JSONDecodeError:
            return {}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def speakers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Speakers]:
    gobgpd, exabgp = need_tool("gobgpd"), need_tool("exabgp")
    need_tool("gobgp")
    d = tmp_path_factory.mktemp("bgp")
    port, api = free_port(GOBGP), free_port("127.0.0.1")
    (d / "g.toml").write_text(
        f"""[global.config]
  as = 65072
  router-id = "{GOBGP}"
  port = {port}
  local-address-list = ["{GOBGP}"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{EXA}"
    peer-as = 65071
  [neighbors.transport.config]
    local-address = "{GOBGP}"
    passive-mode = true
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-flowspec"
"""
    )
    fifo = d / "exabgp.fifo"
    helper = d / "blackout-mitigate"  # what `blackout mitigate --exabgp --fifo FIFO` runs
    helper.write_text(
        f"#!{sys.executable}\nimport argparse, sys\nfrom blackout.cli import mitigate\n"
        "p = argparse.ArgumentParser(); mitigate.add_parser(p.add_subparsers())\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
    )
    helper.chmod(0o755)
    (d / "exa.conf").write_text(
        f"process blackout {{ run {helper} mitigate --exabgp --fifo {fifo}; encoder text; }}\n"
        f"neighbor {GOBGP} {{ router-id {EXA}; local-address {EXA}; local-as 65071; peer-as 65072; connect {port};\n"
        "  family { ipv4 unicast; ipv4 flow; } api { processes [ blackout ]; } }\n"
    )
    env = dict(
        os.environ,
        exabgp_daemon_user="root" if os.geteuid() == 0 else os.environ.get("USER", "nobody"),
        exabgp_daemon_daemonize="false",
        exabgp_log_destination="stdout",
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with open(d / "gobgpd.log", "wb") as glog, open(d / "exabgp.log", "wb") as elog:
            procs.append(
                subprocess.Popen(
                    [gobgpd, "-f", str(d / "g.toml"), "--api-hosts", f"127.0.0.1:{api}"], stdout=glog, stderr=glog
                )
            )
            procs.append(
                subprocess.Popen([exabgp, "--root", str(d), str(d / "exa.conf")], stdout=elog, stderr=elog, env=env)
            )
        sp = Speakers(api, fifo)

        def established() -> bool:
            args = [need_tool("gobgp"), "-u", "127.0.0.1", "-p", str(api), "neighbor", EXA, "-j"]
            out = subprocess.run(args, capture_output=True, text=True, timeout=10).stdout
            return '"session_state":6' in out.replace(" ", "")

        wait_for(established, 30, "the ExaBGP session to come up")
        wait_for(lambda: relay_reading(fifo), 30, "ExaBGP's `blackout mitigate --exabgp` to open the FIFO")
        yield sp
    finally:
        for proc in reversed(procs):
            _stop(proc)


def relay_reading(fifo: Path) -> bool:
    """Whether a process has the FIFO open for reading (opening it to write without blocking succeeds)."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        return False
    return True


def mitigation_config(speakers: Speakers, backend: str, action: str, hold_s: float) -> Config:
    group = f'mitigation.groups={{lab = {{networks = ["10.10.10.0/24"], action = "{action}", hold_s = {hold_s}}}}}'
    return Config.load(
        overrides=[
            "mitigation.enabled=true",
            f"mitigation.backend={backend}",
            group,
            f"mitigation.exabgp_fifo={speakers.fifo}",
            f'mitigation.gobgp_args=["-u", "127.0.0.1", "-p", "{speakers.api}"]',
            "mitigation.retry_s=0.5",
        ]
    )


def run_attack(
    speakers: Speakers, config: Config, records: tuple[dict[str, Any], ...], family: str, present: Callable[..., bool]
) -> None:
    """Start the attack, see the rule in the receiver's RIB, end it, see it stay for the hold, then go."""
    hold = config.section("mitigation", MitigationConfig).groups["lab"]["hold_s"]
    router = router_for(config, None)
    try:
        router({"attacks": [records[0]]})
        wait_for(lambda: present(speakers.rib(family)), 15, f"the rule in gobgpd's {family} RIB")
        ended = time.monotonic()
        router({"attacks": [records[-1]]})
        time.sleep(hold / 2)
        assert present(speakers.rib(family)), "withdrawn before the hold time"
        wait_for(lambda: not present(speakers.rib(family)), hold + 15, "the withdrawal")
        assert time.monotonic() - ended >= hold
        # the RIB can empty before the mitigator has counted its last withdrawal (one CLI call per rule)
        wait_for(lambda: router.stats()["mitigation"]["active"] == 0, 10, "the mitigator's own count")
        stats = router.stats()["mitigation"]
        assert stats["announced"] == stats["withdrawn"] >= 1 and stats["active"] == 0
        assert stats["failed"] == 0, stats["last_error"]
    finally:
        router.close()


def rtbh_present(victim: str, local: bool) -> Callable[[dict[str, Any]], bool]:
    def check(rib: dict[str, Any]) -> bool:
        paths = rib.get(f"{victim}/32") or []
        for path in paths:
            attrs = {a["type"]: a for a in path["attrs"]}
            communities = attrs.get(8, {}).get("communities", [])
            hop = attrs.get(3, {}).get("nexthop")
            from_exabgp = any(a.get("as_paths") for a in path["attrs"] if a["type"] == 2)
            if BLACKHOLE in communities and NO_EXPORT in communities and hop == "192.0.2.1" and from_exabgp != local:
                return True
        return False

    return check


def flow_present(*keys: str) -> Callable[[dict[str, Any]], bool]:
    """All these FlowSpec rules (gobgp's text of the NLRI) are in the RIB."""

    def check(rib: dict[str, Any]) -> bool:
        return all(key in rib for key in keys)

    return check


def test_exabgp_rtbh(speakers: Speakers) -> None:
    victim, _ = tshark_victim()
    config = mitigation_config(speakers, "exabgp", "rtbh", 2.0)
    run_attack(speakers, config, attack_records(), "ipv4", rtbh_present(victim, local=False))


def test_exabgp_flowspec_syn_flood(speakers: Speakers) -> None:
    victim, syn_share = tshark_victim()
    assert syn_share > 0.9  # the capture is a SYN flood: one rule, TCP with SYN and without ACK
    rule = flow_present(f"[destination: {victim}/32][protocol: ==tcp][tcp-flags: =S&!A]")
    run_attack(
        speakers, mitigation_config(speakers, "exabgp", "flowspec", 1.0), attack_records(), "ipv4-flowspec", rule
    )


@functools.cache
def dns_records() -> tuple[dict[str, Any], ...]:
    config = Config.load(overrides=["ddos.threshold_pps=100", "ddos.start_ticks=1", "ddos.average_calculation_time=0"])
    batches: list[dict[str, Any]] = []
    Engine([DdosDetector(config.section("ddos", DdosConfig))], batches.append).run(
        Inputs(DecodeContext()).open([str(DNSFRAG)])
    )
    return tuple(r for b in batches for r in b["attacks"])


def test_gobgp_backend_rtbh_and_amplification_flowspec(speakers: Speakers) -> None:
    victim, _ = tshark_victim()
    run_attack(
        speakers,
        mitigation_config(speakers, "gobgp", "rtbh", 1.0),
        attack_records(),
        "ipv4",
        rtbh_present(victim, True),
    )
    # DNS reflection with fragments and an ACK flood beside it: one rule per vector with >= 10 % of the packets
    records = dns_records()
    shares = {v["name"]: v["share"] for v in records[0]["vectors"]}
    assert records[0]["target"] == victim and min(shares[n] for n in MATCHES) >= 0.1
    rules = flow_present(*(f"[destination: {victim}/32]{MATCHES[name]}" for name in MATCHES))
    run_attack(speakers, mitigation_config(speakers, "gobgp", "flowspec", 1.0), records, "ipv4-flowspec", rules)


def test_reflection_from_an_unlisted_port_gets_a_rule_and_spoofed_vectors_none(speakers: Speakers) -> None:
    """udp_reflection:<port> matches UDP from that source port; a telescope's spoofed_* vector gets no rule
    (its victim is elsewhere): gobgpd ends up holding exactly the one reflection rule."""
    victim, _ = tshark_victim()
    vectors = [{"name": "udp_reflection:8080", "share": 0.6}, {"name": "spoofed_syn_flood", "share": 0.4}]
    records = tuple({**r, "vectors": vectors} for r in attack_records())
    only = f"[destination: {victim}/32][protocol: ==udp][source-port: ==8080]"
    run_attack(
        speakers,
        mitigation_config(speakers, "gobgp", "flowspec", 1.0),
        records,
        "ipv4-flowspec",
        lambda rib: set(rib) == {only},
    )


# what each vector must match besides the victim, as gobgp prints the NLRI (RFC 8955 components)
MATCHES = {
    "dns_amplification": "[protocol: ==udp][source-port: ==53]",
    "ip_fragmentation": "[fragment: is-fragment]",
    "ack_flood": "[protocol: ==tcp][tcp-flags: =A&!S&!R&!F]",
}


# ------------------------------------------------------------------ without daemons
def test_relay_and_retries(tmp_path: Path) -> None:
    fifo = tmp_path / "x.fifo"
    group = {"lab": {"networks": ["10.10.10.0/24"], "action": "rtbh", "hold_s": 0.2}}
    cfg = MitigationConfig(enabled=True, groups=group, exabgp_fifo=str(fifo), retry_s=0.1)
    mitigator = Mitigator(cfg, parse_groups(cfg), ExaBgpFifo(cfg))
    first, last = attack_records()
    mitigator.on_alert(Alert("started", "attack", "attacks", first))
    wait_for(lambda: mitigator.counters["failed"] >= 1, 5, "a failure while nothing reads the FIFO")
    out_r, out_w = os.pipe()
    in_r, in_w = os.pipe()
    thread = threading.Thread(target=relay, args=(str(fifo), out_w, in_r), daemon=True)
    thread.start()
    wait_for(lambda: mitigator.counters["announced"] == 1, 5, "the announcement once the relay reads")
    mitigator.on_alert(Alert("ended", "attack", "attacks", last))
    wait_for(lambda: mitigator.counters["withdrawn"] == 1, 5, "the withdrawal after the hold")
    mitigator.close()
    os.close(in_w)  # ExaBGP going away ends the relay
    thread.join(5)
    assert not thread.is_alive()
    lines = os.read(out_r, 65536).decode().splitlines()
    rule = parse_rule_key(mitigator, first)
    assert lines == [exabgp_line(rule, cfg, True), exabgp_line(rule, cfg, False)]
    assert mitigator.rules() == []


def parse_rule_key(mitigator: Mitigator, record: dict[str, Any]) -> Any:
    from blackout.serve.mitigation import build_rules, group_of

    found = group_of(mitigator.groups, record["target"])
    assert found is not None
    return build_rules(record, found[0], found[1], mitigator.cfg)[0]


def test_shared_rules_outside_groups_and_close() -> None:
    class Memory(ExaBgpFifo):
        def __init__(self, cfg: MitigationConfig) -> None:
            super().__init__(cfg)
            self.lines: list[str] = []

        def _write(self, line: str) -> None:
            self.lines.append(line)

    group = {"lab": {"networks": ["10.10.10.0/24"], "action": "rtbh", "hold_s": 3600}}
    cfg = MitigationConfig(enabled=True, groups=group)
    backend = Memory(cfg)
    mitigator = Mitigator(cfg, parse_groups(cfg), backend)
    router = EventRouter(None, subscribers=[mitigator.on_alert])
    first, last = attack_records()
    second = {**first, "id": "a-second"}
    small = {**first, "id": "a-small", "target": "10.10.10.11", "peak_pps": 10.0}
    mitigator.cfg.min_peak_pps = 100.0
    router({"attacks": [first, second, {**first, "id": "a-prefix", "target": "10.10.10.0/24"}, small]})
    router({"attacks": [last]})  # one of two attacks on the victim ended: the rule stays, no hold yet
    wait_for(lambda: mitigator.counters["announced"] == 1, 5, "one shared announcement")
    held = mitigator.rules()
    assert len(held) == 1 and held[0]["attacks"] == ["a-second"] and held[0]["withdraw_in_s"] is None
    assert mitigator.counters["skipped_no_group"] == 1 and mitigator.counters["skipped_small"] == 1
    router({"attacks": [{**second, "end": last["end"]}]})
    wait_for(lambda: mitigator.rules()[0]["withdraw_in_s"] is not None, 5, "the hold to start")
    mitigator.close()  # shutting down: rules of ended attacks go now rather than stay announced
    assert len(backend.lines) == 2 and backend.lines[1].startswith("withdraw route 10.10.10.10/32")


def test_sections_known_to_the_cli(tmp_path: Path) -> None:
    """A fresh `blackout` process knows [alerts] and [mitigation] before it reads a configuration file."""
    conf = tmp_path / "blackout.toml"
    conf.write_text('[alerts]\nmin_peak_pps = 1000\n[mitigation]\nenabled = false\nbackend = "gobgp"\n')
    code = (
        "import sys; from blackout.cli.main import main; from blackout.config import Config; "
        "print(Config.load(sys.argv[1]).values); sys.exit(main(['config', '--defaults']))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(conf)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "'backend': 'gobgp'" in out.stdout and "\n[alerts]\n" in out.stdout and "\n[mitigation]\n" in out.stdout


def test_config_errors() -> None:
    def load(*sets: str) -> None:
        router_for(Config.load(overrides=["mitigation.enabled=true", *sets]), None)

    with pytest.raises(ConfigError, match="no groups"):
        load()
    with pytest.raises(ConfigError, match="action"):
        load('mitigation.groups={a = {networks = ["10.0.0.0/8"], action = "nullroute"}}')
    with pytest.raises(ConfigError, match="networks"):
        load('mitigation.groups={a = {networks = ["10.0.0.300/8"]}}')
    with pytest.raises(ConfigError, match="backend"):
        load("mitigation.backend=bird", 'mitigation.groups={a = {networks = ["10.0.0.0/8"]}}')
    assert isinstance(router_for(Config.load(), None), EventRouter)  # off by default
    parser = argparse.ArgumentParser()
    mitigate.add_parser(parser.add_subparsers())
    assert parser.parse_args(["mitigate", "--exabgp", "--fifo", "f"]).fifo == "f"

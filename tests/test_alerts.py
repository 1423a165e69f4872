"""Alerts from a real replay of the StopDDoS SYN flood to real receivers: HTTP, UDP syslog, a notify script.

The attack comes from replaying tests/data/pcap/stopddos/pkt.TCP.synflood.spoofed.pcap
through blackout's pcap decoder, the engine and the DDoS detector, with the
EventRouter as the engine's sink in front of a DuckDB store.  Oracles: tshark
(the victim and the share of pure SYN packets in the capture; the syslog
messages, decoded by tshark's RFC 5424 dissector), the store's own read path
(the webhook's data is the stored row's JSON), FastNetMon's documented notify
script arguments, and the HTTP receiver's own log of requests.
"""

from __future__ import annotations

import functools
import http.server
import json
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from blackout import pipeline
from blackout.config import Config
from blackout.detect.ddos import DdosDetector
from blackout.detect.ddos_config import DdosConfig
from blackout.engine import Engine
from blackout.errors import ConfigError
from blackout.pipeline import Inputs
from blackout.serve.alerts import AlertsConfig, Channel, EventRouter, router_for
from blackout.serve.notify import WebhookChannel
from blackout.serve.worker import Alert, event_json
from blackout.sources import DecodeContext
from blackout.store import DuckDBStore
from conftest import DATA, need_tool

SYNFLOOD = DATA / "pcap/stopddos/pkt.TCP.synflood.spoofed.pcap"
LOW = ["ddos.threshold_pps=500", "ddos.ban_for_bandwidth=off", "ddos.baseline=false"]


# ------------------------------------------------------------------ oracles and receivers
@functools.cache
def tshark_victim() -> tuple[str, float]:
    """The capture's most frequent destination and the share of its packets with exactly SYN set (tshark)."""
    out = subprocess.run(
        [need_tool("tshark"), "-r", str(SYNFLOOD), "-T", "fields", "-e", "ip.dst", "-e", "tcp.flags"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    rows = [line.split("\t") for line in out if line]
    victim = Counter(r[0] for r in rows).most_common(1)[0][0]
    mine = [r for r in rows if r[0] == victim]
    return victim, sum(int(r[1], 16) == 0x002 for r in mine) / len(mine)


class Receiver(http.server.BaseHTTPRequestHandler):
    """Records every POST; answers 503 to the first `fail_first` requests, optionally slowly."""

    log: ClassVar[list[dict[str, Any]]]
    fail_first: ClassVar[int] = 0
    delay_s: ClassVar[float] = 0.0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        cls = type(self)
        cls.log.append({"body": json.loads(body), "type": self.headers["Content-Type"], "t": time.monotonic()})
        time.sleep(cls.delay_s)
        status = 503 if len(cls.log) <= cls.fail_first else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def http_receiver(fail_first: int = 0, delay_s: float = 0.0) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    handler = type("R", (Receiver,), {"log": [], "fail_first": fail_first, "delay_s": delay_s})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler.log
    finally:
        server.shutdown()
        server.server_close()


def replay(overrides: list[str], store: DuckDBStore | None = None) -> None:
    """Replay the SYN flood with `pipeline.replay`: real decoder, engine, detectors, and the router from config."""
    _stats, inputs = pipeline.replay([str(SYNFLOOD)], store, Config.load(overrides=LOW + overrides))
    assert not inputs.failures


def tshark_syslog(datagrams: list[bytes], tmp: Path) -> list[list[str]]:
    """Decode received datagrams with tshark's syslog dissector (written as raw-IP UDP/514 packets)."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)  # LINKTYPE_RAW
    for payload in datagrams:
        udp = struct.pack("!HHHH", 40000, 514, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\x7f\0\0\1", b"\x7f\0\0\1")
        total = sum(struct.unpack("!10H", ip))
        total = (total & 0xFFFF) + (total >> 16)
        ip = ip[:10] + struct.pack("!H", ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF) + ip[12:]
        packet = ip + udp
        out += struct.pack("<IIII", 0, 0, len(packet), len(packet)) + packet
    path = tmp / "syslog.pcap"
    path.write_bytes(out)
    fields = ["facility", "level", "version", "hostname", "appname", "procid", "msgid"]
    args = [need_tool("tshark"), "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for f in fields:
        args += ["-e", f"syslog.{f}"]
    text = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in text.splitlines()]


# ------------------------------------------------------------------ the replay, every channel at once
def test_replayed_attack_reaches_webhook_syslog_and_notify_script(tmp_path: Path) -> None:
    victim, syn_share = tshark_victim()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(5)
    out = tmp_path / "notify.out"
    script = tmp_path / "notify.sh"
    script.write_text(f'#!/bin/sh\n{{ echo "ARGS $*"; cat; echo "END"; }} >> {out}\n')
    script.chmod(0o755)
    store = DuckDBStore(":memory:")
    with http_receiver() as (url, log):
        replay(
            [
                f'alerts.webhooks=["{url}"]',
                f"alerts.syslog=127.0.0.1:{sink.getsockname()[1]}",
                f"alerts.notify_script={script}",
            ],
            store,
        )
    stored = store.events("attacks")
    assert [r["target"] for r in stored] == [victim]
    # webhook: started then ended, the data being the stored row as the store's readers print it
    events = [(m["body"]["event"], m["body"]["kind"]) for m in log]
    assert events == [("started", "attack"), ("ended", "attack")]
    assert all(m["type"] == "application/json" for m in log)
    assert log[-1]["body"]["data"] == stored[0]
    started = log[0]["body"]["data"]
    assert started["target"] == victim and started["end"] is None
    assert started["vectors"][0]["name"] == "syn_flood" and syn_share > 0.9
    # syslog: RFC 5424 as tshark reads it
    datagrams = [sink.recv(4096) for _ in range(2)]
    sink.close()
    rows = tshark_syslog(datagrams, tmp_path)
    host = socket.gethostname()
    assert [r[:6] for r in rows] == [["3", "4", "1", host, "blackout", r[5]] for r in rows[:1]] + [
        ["3", "6", "1", host, "blackout", r[5]] for r in rows[1:]
    ]
    assert [r[6].split(" ")[0] for r in rows] == ["attack-started", "attack-ended"]
    assert f'target="{victim}"' in rows[0][6]
    # notify script: FastNetMon's arguments, details on stdin
    calls = out.read_text().split("END\n")[:-1]
    args = [c.splitlines()[0].split() for c in calls]
    pps = str(int(stored[0]["peak_pps"]))
    assert args == [["ARGS", victim, "incoming", pps, "ban"], ["ARGS", victim, "incoming", pps, "unban"]]
    details = dict(line.split(": ", 1) for line in calls[0].splitlines()[1:])
    assert details["IP"] == victim and details["Attack type"] == "syn_flood"  # FNM's own verdict on this capture
    assert details["Attack direction"] == "incoming" and details["Attack protocol"] == "tcp"
    assert details["Peak attack power"] == f"{pps} packets per second"


def test_thresholds_keep_small_attacks_quiet() -> None:
    peak = attack_records()[-1]["peak_pps"]
    with http_receiver() as (url, log):
        replay([f'alerts.webhooks=["{url}"]', f"alerts.min_peak_pps={peak + 1}"])
        assert log == []
        replay([f'alerts.webhooks=["{url}"]', f"alerts.min_peak_pps={peak}"])
    assert [m["body"]["event"] for m in log] == ["started", "ended"]


# ------------------------------------------------------------------ webhook delivery
@functools.cache
def attack_records() -> tuple[dict[str, Any], ...]:
    """The attack records the detector drains for the SYN flood (its first and last versions)."""
    batches: list[dict[str, Any]] = []
    config = Config.load(overrides=LOW)
    Engine([DdosDetector(config.section("ddos", DdosConfig))], batches.append).run(
        Inputs(DecodeContext()).open([str(SYNFLOOD)])
    )
    return tuple(r for b in batches for r in b["attacks"])


def _alert(event: str = "started") -> Alert:
    return Alert(event, "attack", "attacks", dict(attack_records()[0]))


def test_webhook_retries_until_the_receiver_recovers() -> None:
    with http_receiver(fail_first=2) as (url, log):
        cfg = AlertsConfig(webhooks=[url], webhook_backoff_s=0.05)
        channel = WebhookChannel(url, cfg)
        channel.submit(_alert())
        channel.close(10)
    assert len(log) == 3 and log[0]["body"] == log[2]["body"]
    assert log[1]["t"] - log[0]["t"] >= 0.05 and log[2]["t"] - log[1]["t"] >= 0.1  # the backoff doubles
    stats = channel.stats()
    assert stats["sent"] == 1 and stats["retries"] == 2 and stats["failed"] == 0


def test_webhook_failures_are_bounded_and_counted() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there
    cfg = AlertsConfig(webhook_retries=2, webhook_backoff_s=0.01, webhook_timeout_s=0.5)
    channel = WebhookChannel(f"http://127.0.0.1:{port}/", cfg)
    began = time.monotonic()
    channel.submit(_alert())
    channel.close(10)
    assert time.monotonic() - began < 5
    assert channel.stats()["failed"] == 1 and channel.stats()["retries"] == 2
    assert "Connection refused" in str(channel.last_error)
    with http_receiver(fail_first=99) as (url, log):  # 503 for ever: retried, then failed
        channel = WebhookChannel(url, AlertsConfig(webhook_retries=1, webhook_backoff_s=0.01))
        channel.submit(_alert())
        channel.close(10)
    assert len(log) == 2 and channel.stats()["failed"] == 1 and "503" in str(channel.last_error)


def test_a_slow_receiver_never_holds_the_engine() -> None:
    with http_receiver(delay_s=1.0) as (url, log):
        cfg = AlertsConfig(webhooks=[url], webhook_timeout_s=5, queue_size=2)
        channel = WebhookChannel(url, cfg)
        began = time.monotonic()
        for _ in range(10):
            channel.submit(_alert())
        submitted = time.monotonic() - began
        channel.close(0.5)  # shutting down: what could not go out in time is counted, not waited for
    assert submitted < 0.2
    stats = channel.stats()
    assert stats["dropped"] >= 7 and stats["sent"] + stats["dropped"] + stats["failed"] <= 10
    assert 1 <= len(log) <= 3


# ------------------------------------------------------------------ transitions
class Collect(Channel):
    """A channel that keeps what it is given (the router's output, seen from a real channel)."""

    name: ClassVar[str] = "collect"

    def __init__(self) -> None:
        super().__init__(100)
        self.got: list[Alert] = []

    def deliver(self, alert: Alert) -> None:
        self.got.append(alert)


def test_changed_is_debounced_per_event() -> None:
    first, last = attack_records()
    now = [0.0]
    channel = Collect()
    router = EventRouter(None, [channel], AlertsConfig(changed_every_s=60), clock=lambda: now[0])
    running = dict(first)
    router({"attacks": [running]})
    for step in range(1, 8):  # a rising peak, re-drained every 20 s
        now[0] = 20.0 * step
        running = {**running, "peak_pps": first["peak_pps"] * (1 + step)}
        router({"attacks": [running]})
    router({"attacks": [running]})  # the same version again: nothing to say
    now[0] = 200.0
    router({"attacks": [last]})
    router({"attacks": [last]})  # an ended event drained again is not new
    channel.close(5)
    assert [a.event for a in channel.got] == ["started", "changed", "changed", "ended"]
    assert router.counters["debounced"] == 5
    # changes came at 60 and 120 s: never two within changed_every_s
    assert [a.record["peak_pps"] for a in channel.got[1:3]] == [first["peak_pps"] * 4, first["peak_pps"] * 7]


def test_an_event_crossing_the_threshold_starts_then() -> None:
    first, last = attack_records()
    channel = Collect()
    cfg = AlertsConfig(min_peak_pps=first["peak_pps"] * 2)
    router = EventRouter(None, [channel], cfg)
    router({"attacks": [first]})
    router({"attacks": [{**first, "peak_pps": first["peak_pps"] * 3}]})
    router({"attacks": [last]})
    channel.close(5)
    assert [a.event for a in channel.got] == ["started", "ended"]
    assert channel.got[0].record["peak_pps"] == first["peak_pps"] * 3


def test_outage_records_and_json_form() -> None:
    outage = {
        "id": "o-1",
        "entity_type": "country",
        "entity": "KP",
        "start": 1419206400_000000,
        "end": None,
        "signals": ["bgp"],
        "severity": 0.97,
        "score": 1000.0,
        "verdict": {"causes": [{"cause": "routing_withdrawal", "confidence": 0.9, "evidence": []}]},
    }
    channel = Collect()
    router = EventRouter(None, [channel], AlertsConfig(kinds=["outage"], min_severity=0.5))
    router({"outages": [outage], "attacks": list(attack_records()[:1])})
    router({"outages": [{**outage, "end": 1419296400_000000}]})
    channel.close(5)
    assert [(a.kind, a.event) for a in channel.got] == [("outage", "started"), ("outage", "ended")]
    data = event_json("outages", channel.got[1].record)
    assert data["start"] == "2014-12-22T00:00:00Z" and data["end"] == "2014-12-23T01:00:00Z"
    with pytest.raises(ConfigError, match="kinds"):
        router_for(Config.load(overrides=['alerts.kinds=["attack", "ddos"]']), None)
    with pytest.raises(ConfigError, match="syslog"):
        router_for(Config.load(overrides=["alerts.syslog=nowhere"]), None)


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.tuples(hs.integers(0, 3), hs.booleans(), hs.floats(0, 1e7), hs.floats(0, 100)), max_size=40))
def test_any_sequence_of_versions_gives_well_formed_transitions(steps: list[tuple[int, bool, float, float]]) -> None:
    """Whatever order versions arrive in: per event, one start first, at most one end, last."""
    base = attack_records()[0]
    now = [0.0]
    channel = Collect()
    router = EventRouter(None, [channel], AlertsConfig(changed_every_s=10, min_peak_pps=1e6), clock=lambda: now[0])
    for eid, ended, pps, dt_s in steps:
        now[0] += dt_s
        router({"attacks": [{**base, "id": f"a-{eid}", "peak_pps": pps, "end": base["start"] + 1 if ended else None}]})
    channel.close(5)
    by_id: dict[str, list[str]] = {}
    for alert in channel.got:
        by_id.setdefault(alert.record["id"], []).append(alert.event)
    for events in by_id.values():
        assert events[0] == "started" and events.count("started") == 1
        assert events.count("ended") <= 1 and "ended" not in events[:-1]

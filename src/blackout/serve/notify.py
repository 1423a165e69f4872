"""The built-in alert channels: webhook, syslog (RFC 5424) and a FastNetMon-compatible notify script.

Each is a :class:`~.alerts.Channel` (own worker thread, bounded queue, counters)
registered in :data:`~.alerts.CHANNELS` from the ``[alerts]`` section.

* **webhook** — POST ``{"event", "kind", "data"}`` as JSON; connection errors,
  timeouts, 5xx, 408 and 429 are retried with doubling backoff (bounded by
  ``webhook_retries``); other 4xx fail at once.  Proxies from the environment
  are not used: alert receivers are reached directly.
* **syslog** — one RFC 5424 message per alert over UDP (RFC 5426) or a local
  datagram socket such as ``/dev/log``.  Structured data goes under the SD-ID
  ``blackout@32473`` (32473 is the enterprise number RFC 5612 reserves for
  documentation: blackout has no number of its own).
* **notify script** — called exactly as FastNetMon 1.2 calls its
  ``notify_script_path``: ``SCRIPT IP incoming PPS ban|attack_details|unban``
  (started, changed, ended) with FNM-style "Key: value" details on stdin, so
  existing FNM scripts keep working.  Only attacks on a single host address are
  passed (FNM has no prefix or outage calls).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import subprocess
import urllib.error
import urllib.request
from typing import Any, ClassVar

from .. import __version__
from ..errors import ConfigError
from ..events import dumps, iso
from .alerts import AlertsConfig, Channel, register_channel
from .worker import Alert

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}  # fmt: skip
SEVERITY = {"started": 4, "changed": 5, "ended": 6}  # warning, notice, informational
FNM_ACTION = {"started": "ban", "changed": "attack_details", "ended": "unban"}
# blackout vector -> the attack type FastNetMon 1.2 would report (it names only these four)
FNM_TYPE = {"syn_flood": "syn_flood", "icmp_flood": "icmp_flood", "ip_fragmentation": "ip_fragmentation"}
_BACKOFF_CAP_S = 30.0
_SYSLOG_MAX = 2048  # RFC 5426: receivers should accept at least 2048 octets


class WebhookChannel(Channel):
    """POST each alert as JSON to one URL, with bounded retries."""

    name: ClassVar[str] = "webhook"

    def __init__(self, url: str, cfg: AlertsConfig) -> None:
        super().__init__(cfg.queue_size)
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"alerts.webhooks: {url!r} is not an http:// or https:// URL")
        self.label = f"webhook:{url}"
        self.url = url
        self.timeout = cfg.webhook_timeout_s
        self.retries = max(0, cfg.webhook_retries)
        self.backoff = max(0.0, cfg.webhook_backoff_s)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def deliver(self, alert: Alert) -> None:
        body = dumps(alert.payload()).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"blackout/{__version__}"}
        delay = self.backoff
        error: Exception = RuntimeError("no attempt made")
        for attempt in range(self.retries + 1):
            if attempt:
                self.counters["retries"] += 1
                if self.stopping.wait(delay):
                    break
                delay = min(delay * 2, _BACKOFF_CAP_S)
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with self.opener.open(request, timeout=self.timeout) as response:
                    response.read()
                return
            except urllib.error.HTTPError as exc:
                if exc.code < 500 and exc.code not in (408, 429):
                    raise
                error = exc
            except (urllib.error.URLError, OSError) as exc:
                error = exc
        raise error


class SyslogChannel(Channel):
    """RFC 5424 messages over UDP (HOST:PORT) or a local datagram socket (a path such as /dev/log)."""

    name: ClassVar[str] = "syslog"

    def __init__(self, target: str, cfg: AlertsConfig) -> None:
        super().__init__(cfg.queue_size)
        if cfg.syslog_facility not in FACILITIES:
            raise ConfigError(f"alerts.syslog_facility: {cfg.syslog_facility!r}; allowed: {', '.join(FACILITIES)}")
        self.label = f"syslog:{target}"
        self.facility = FACILITIES[cfg.syslog_facility]
        self.hostname = socket.gethostname() or "-"
        self.address: str | tuple[str, int]
        if target.startswith("/"):
            self.family, self.address = socket.AF_UNIX, target
        else:
            host, port = _host_port(target.removeprefix("udp://"))
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            self.family, self.address = info[0], (str(info[4][0]), int(info[4][1]))
        self.sock: socket.socket | None = None

    def deliver(self, alert: Alert) -> None:
        message = format_rfc5424(alert, self.facility, self.hostname)
        if self.sock is None:
            self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            self.sock.sendto(message, self.address)
        except OSError:
            self.sock.close()
            self.sock = None
            raise

    def close(self, timeout: float) -> None:
        super().close(timeout)
        if self.sock is not None:
            self.sock.close()


class NotifyScriptChannel(Channel):
    """Run a FastNetMon notify script: SCRIPT IP incoming PPS ban|attack_details|unban, details on stdin."""

    name: ClassVar[str] = "notify_script"

    def __init__(self, script: str, cfg: AlertsConfig) -> None:
        super().__init__(cfg.queue_size)
        self.label = f"notify_script:{script}"
        self.script = script
        self.timeout = cfg.notify_timeout_s

    def wants(self, alert: Alert) -> bool:
        if alert.kind != "attack":
            return False
        try:
            ipaddress.ip_address(alert.record["target"])
        except ValueError:
            self.counters["skipped_not_host"] += 1
            return False
        return True

    def deliver(self, alert: Alert) -> None:
        rec = alert.record
        argv = [self.script, rec["target"], "incoming", str(int(rec.get("peak_pps") or 0)), FNM_ACTION[alert.event]]
        try:
            done = subprocess.run(
                argv,
                input=fnm_details(rec).encode(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self.counters["timeouts"] += 1
            raise
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip()[-200:]
            raise RuntimeError(f"{self.script} exited {done.returncode}: {tail}")


def format_rfc5424(alert: Alert, facility: int, hostname: str, now: dt.datetime | None = None) -> bytes:
    """<PRI>1 TIMESTAMP HOSTNAME blackout PROCID MSGID [SD] MSG, cut to 2048 octets."""
    rec = alert.record
    moment = now or dt.datetime.now(dt.UTC)
    stamp = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
    pri = facility * 8 + SEVERITY[alert.event]
    target = rec.get("target") or f"{rec.get('entity_type')}:{rec.get('entity')}"
    params = {"id": rec["id"], "event": alert.event, "kind": alert.kind, "target": target, "start": iso(rec["start"])}
    if rec.get("end") is not None:
        params["end"] = iso(rec["end"])
    sd = "[blackout@32473 " + " ".join(f'{k}="{_sd_escape(str(v))}"' for k, v in params.items()) + "]"
    header = f"<{pri}>1 {stamp} {_printable(hostname, 255)} blackout {os.getpid()} {alert.kind}-{alert.event} {sd} "
    return (header + summary(alert)).encode()[:_SYSLOG_MAX]


def summary(alert: Alert) -> str:
    """One line a person reads: what, where, how big."""
    rec = alert.record
    if alert.kind == "attack":
        vectors = ", ".join(f"{v['name']} {v['share']:.0%}" for v in rec.get("vectors") or []) or "unknown"
        pps, bps = rec.get("peak_pps") or 0.0, rec.get("peak_bps") or 0.0
        return f"attack {alert.event} on {rec['target']}: {vectors}; peak {pps:,.0f} pps {bps / 1e6:,.1f} Mbps"
    severity = rec.get("severity")
    lost = f"{severity:.0%} lost" if severity is not None else "loss unknown"
    signals = ", ".join(rec.get("signals") or [])
    return f"outage {alert.event} for {rec['entity_type']} {rec['entity']}: {lost} ({signals})"


def fnm_details(rec: dict[str, Any]) -> str:
    """The attack as FastNetMon 1.2 writes it to its notify script's stdin ("Key: value" lines).

    FNM's per-protocol lines are estimated from the peak rate and the vector
    shares (blackout keeps shares, not per-protocol peaks).  Initial and peak
    power are both the peak so far: the record does not keep the first rate.
    blackout's own facts follow the FNM lines.
    """
    pps, bps = rec.get("peak_pps") or 0.0, rec.get("peak_bps") or 0.0
    vectors = rec.get("vectors") or []
    share: dict[str, float] = {}
    for v in vectors:
        proto = _protocol(v["name"])
        share[proto] = share.get(proto, 0.0) + v["share"]
        if v["name"] in ("syn_flood", "ip_fragmentation"):
            share[v["name"]] = share.get(v["name"], 0.0) + v["share"]
    main = vectors[0]["name"] if vectors else "unknown"
    fnm_type = FNM_TYPE.get(main, "udp_flood" if _protocol(main) == "udp" else "unknown")
    lines = [
        f"IP: {rec['target']}",
        f"Attack uuid: {rec['id']}",
        f"Attack type: {fnm_type}",
        f"Initial attack power: {int(pps)} packets per second",
        f"Peak attack power: {int(pps)} packets per second",
        "Attack direction: incoming",
        f"Attack protocol: {_protocol(main)}",
        f"Total incoming traffic: {int(bps / 1e6)} mbps",
        f"Total incoming pps: {int(pps)} packets per second",
        f"Incoming ip fragmented traffic: {int(bps * share.get('ip_fragmentation', 0.0) / 1e6)} mbps",
        f"Incoming ip fragmented pps: {int(pps * share.get('ip_fragmentation', 0.0))} packets per second",
    ]
    for proto, label in (("tcp", "tcp"), ("syn_flood", "syn tcp"), ("udp", "udp"), ("icmp", "icmp")):
        lines.append(f"Incoming {label} traffic: {int(bps * share.get(proto, 0.0) / 1e6)} mbps")
        lines.append(f"Incoming {label} pps: {int(pps * share.get(proto, 0.0))} packets per second")
    lines += [
        f"Attack start: {iso(rec['start'])}",
        f"Attack end: {iso(rec.get('end')) or 'ongoing'}",
        "Vectors: " + (", ".join(f"{v['name']} {v['share']:.1%}" for v in vectors) or "unknown"),
        f"Unique sources: {rec.get('unique_sources')}",
        f"Rule: {rec.get('rule')}",
    ]
    return "\n".join(lines) + "\n"


def _protocol(vector: str) -> str:
    if vector in ("syn_flood", "synack_reflection", "ack_flood", "rst_flood", "tcp_flood"):
        return "tcp"
    if vector == "udp_flood" or vector.endswith("_amplification"):
        return "udp"
    if vector == "icmp_flood":
        return "icmp"
    return "other"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _printable(value: str, limit: int) -> str:
    """RFC 5424 header fields: printable US-ASCII, no spaces; "-" when empty."""
    out = "".join(ch for ch in value if 33 <= ord(ch) <= 126)[:limit]
    return out or "-"


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"alerts.syslog: {text!r} is neither HOST:PORT nor a socket path such as /dev/log")
    return host.strip("[]"), int(port)


register_channel("webhook", lambda cfg: [WebhookChannel(url, cfg) for url in cfg.webhooks])
register_channel("syslog", lambda cfg: [SyslogChannel(cfg.syslog, cfg)] if cfg.syslog else [])
register_channel(
    "notify_script", lambda cfg: [NotifyScriptChannel(cfg.notify_script, cfg)] if cfg.notify_script else []
)

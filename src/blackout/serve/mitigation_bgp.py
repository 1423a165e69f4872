"""Mitigation backends: ExaBGP through its process API (a FIFO and a relay), GoBGP through its CLI.

**ExaBGP.**  ExaBGP runs a helper process and reads API commands from its
stdout (``announce route ...``, ``announce flow route { match {...} then {...} }``).
The rules are decided in the process that runs the engine (``collect``),
which owns the attacks and their hold timers, so blackout writes the command
lines to a FIFO and the helper ExaBGP runs only relays them::

    process blackout { run /usr/bin/blackout mitigate --exabgp --fifo /var/lib/blackout/exabgp.fifo; encoder text; }
    neighbor 192.0.2.254 { ... family { ipv4 unicast; ipv4 flow; } api { processes [ blackout ]; } }

Why a FIFO and not the relay polling the store: the store is one DuckDB file
a running collector holds open for writing, which another process cannot
open meanwhile.  The relay opens the FIFO read-write, so writers may come and
go without it seeing end-of-file, and it exits when ExaBGP closes its stdin.
If the relay is not running, writes fail and the mitigator retries.

**GoBGP.**  ``gobgp global rib [-a ipv4-flowspec] add|del ...`` against the
gobgpd API (``gobgp_args``: ``-u HOST -p PORT``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import stat
import subprocess
from collections.abc import Callable

from .mitigation import Backend, MitigationConfig, MitigationError, Rule

_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp"}
_GOBGP_FLAGS = {"fin": "F", "syn": "S", "rst": "R", "push": "P", "ack": "A", "urgent": "U", "ece": "E", "cwr": "C"}


def exabgp_line(rule: Rule, cfg: MitigationConfig, announce: bool) -> str:
    """The ExaBGP API command announcing or withdrawing a rule."""
    verb = "announce" if announce else "withdraw"
    if rule.kind == "rtbh":
        next_hop = cfg.next_hop_v6 if rule.v6 else cfg.next_hop
        line = f"{verb} route {rule.prefix} next-hop {next_hop}"
        return f"{line} community [{' '.join(cfg.communities)}]" if announce else line
    match = [f"destination {rule.prefix}/0;" if rule.v6 else f"destination {rule.prefix};"]
    if rule.protocol is not None:
        name = _PROTO_NAMES.get(rule.protocol, str(rule.protocol))
        match.append(f"{'next-header' if rule.v6 else 'protocol'} {name};")
    if rule.tcp_flags:
        match.append("tcp-flags [ " + "&".join(f if f.startswith("!") else f"={f}" for f in rule.tcp_flags) + " ];")
    if rule.source_port is not None:
        match.append(f"source-port ={rule.source_port};")
    if rule.fragment:
        match.append("fragment [ is-fragment ];")
    body = f"match {{ {' '.join(match)} }}"
    if not announce:
        return f"withdraw flow route {{ {body} }}"
    then = "discard;" if rule.rate_limit is None else f"rate-limit {rule.rate_limit:g};"
    return f"announce flow route {{ {body} then {{ {then} }} }}"


def gobgp_args(rule: Rule, cfg: MitigationConfig, announce: bool) -> list[str]:
    """The `gobgp global rib ...` arguments announcing or withdrawing a rule."""
    verb = "add" if announce else "del"
    if rule.kind == "rtbh":
        family = "ipv6" if rule.v6 else "ipv4"
        args = ["-a", family, verb, rule.prefix]
        if announce:
            args += ["nexthop", cfg.next_hop_v6 if rule.v6 else cfg.next_hop, "community", ",".join(cfg.communities)]
        return args
    args = ["-a", "ipv6-flowspec" if rule.v6 else "ipv4-flowspec", verb, "match", "destination", rule.prefix]
    if rule.protocol is not None:
        # numbers, not names: gobgp 3.10 reads "ipv6-icmp" as tcp
        args += ["protocol", str(rule.protocol)]
    if rule.tcp_flags:
        flags = [f"!{_GOBGP_FLAGS[f[1:]]}" if f.startswith("!") else f"={_GOBGP_FLAGS[f]}" for f in rule.tcp_flags]
        args += ["tcp-flags", "&".join(flags)]
    if rule.source_port is not None:
        args += ["source-port", f"=={rule.source_port}"]
    if rule.fragment:
        args += ["fragment", "is-fragment"]
    if announce:
        args += ["then", "discard"] if rule.rate_limit is None else ["then", "rate-limit", f"{rule.rate_limit:g}"]
    return args


def ensure_fifo(path: str) -> None:
    """Create the FIFO (mode 600) if missing; refuse a path that is something else."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkfifo(path, 0o600)
        return
    if not stat.S_ISFIFO(mode):
        raise MitigationError(f"{path} exists and is not a FIFO: remove it or set mitigation.exabgp_fifo")


class ExaBgpFifo(Backend):
    """Writes ExaBGP API lines to the FIFO the ExaBGP helper (`blackout mitigate --exabgp`) relays."""

    def __init__(self, cfg: MitigationConfig) -> None:
        self.cfg = cfg
        self.path = cfg.exabgp_fifo
        self.fd: int | None = None

    def announce(self, rule: Rule) -> None:
        self._write(exabgp_line(rule, self.cfg, True))

    def withdraw(self, rule: Rule) -> None:
        self._write(exabgp_line(rule, self.cfg, False))

    def _write(self, line: str) -> None:
        data = (line + "\n").encode()
        if self.fd is None:
            ensure_fifo(self.path)
            try:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    raise MitigationError(
                        f"nothing reads {self.path}: is ExaBGP running `blackout mitigate --exabgp --fifo {self.path}`?"
                    ) from exc
                raise MitigationError(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            os.write(self.fd, data)  # one line < PIPE_BUF: written whole or not at all
        except OSError as exc:
            self.close()
            raise MitigationError(f"cannot write to {self.path}: {exc.strerror}") from exc

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class GoBgpCli(Backend):
    """Runs `gobgp [-u HOST -p PORT] global rib ...` for each rule."""

    def __init__(self, cfg: MitigationConfig) -> None:
        self.cfg = cfg

    def announce(self, rule: Rule) -> None:
        self._run(gobgp_args(rule, self.cfg, True))

    def withdraw(self, rule: Rule) -> None:
        self._run(gobgp_args(rule, self.cfg, False))

    def _run(self, args: list[str]) -> None:
        argv = [self.cfg.gobgp_cli, *self.cfg.gobgp_args, "global", "rib", *args]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=self.cfg.command_timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MitigationError(f"{' '.join(argv)}: {exc}") from exc
        if done.returncode != 0:
            text = (done.stderr or done.stdout).decode(errors="replace").strip()[-300:]
            raise MitigationError(f"{' '.join(argv)} exited {done.returncode}: {text}")


BACKENDS: dict[str, Callable[[MitigationConfig], Backend]] = {"exabgp": ExaBgpFifo, "gobgp": GoBgpCli}


def relay(path: str, out_fd: int = 1, in_fd: int = 0) -> int:
    """Copy whole lines from the FIFO to ExaBGP (our stdout) until ExaBGP closes our stdin or stdout."""
    ensure_fifo(path)
    fifo = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # read-write: no end-of-file when writers leave
    poller = select.poll()
    poller.register(fifo, select.POLLIN)
    watch_stdin = stat.S_ISFIFO(os.fstat(in_fd).st_mode) or stat.S_ISSOCK(os.fstat(in_fd).st_mode)
    if watch_stdin:
        poller.register(in_fd, select.POLLIN | select.POLLHUP)
    pending = b""
    try:
        while True:
            for fd, _event in poller.poll(1000):
                if fd == in_fd:
                    if not os.read(in_fd, 65536):
                        return 0  # ExaBGP is gone
                    continue
                try:
                    pending += os.read(fifo, 65536)
                except BlockingIOError:
                    continue
                cut = pending.rfind(b"\n") + 1
                if cut:
                    lines, pending = memoryview(pending[:cut]), pending[cut:]
                    try:
                        while lines:
                            lines = lines[os.write(out_fd, lines) :]
                    except BrokenPipeError:
                        return 0
    finally:
        os.close(fifo)

"""Sending one wave of probes and collecting the answers: ICMP echo or TCP connect (IPv4).

ICMP uses an unprivileged ICMP datagram socket (``SOCK_DGRAM, IPPROTO_ICMP``:
allowed when the group is inside ``net.ipv4.ping_group_range``; the kernel
sets the identifier and hands us only our own replies) or, failing that, a
raw socket (root or CAP_NET_RAW; every ICMP packet of the host arrives, so
replies are matched on identifier, sequence and source).  The echo requests
of a wave are built at once as a numpy matrix, checksums included; sends are
paced by the global rate limit.

TCP (``method = "tcp"``) opens non-blocking connections: an accept (SYN-ACK)
or a refusal (RST) both prove the host is there; silence until the timeout is
a loss.

A wave returns per target: answered, round-trip time (ms, NaN when none) and
the send time (µs since the epoch).
"""

from __future__ import annotations

import errno
import os
import random
import selectors
import socket
import time

import numpy as np

from ..errors import BlackoutError

ECHO_REQUEST, ECHO_REPLY = 8, 0
PAYLOAD = b"blackout"  # 8 bytes: the request is 16 bytes, an even length for the checksum
CONNECTIONS = 256  # TCP probes in flight at once
Wave = tuple[np.ndarray, np.ndarray, np.ndarray]  # answered, rtt_ms, sent_us


class ProbeError(BlackoutError):
    """Probing cannot start: no socket of the wanted kind can be opened (say which and how to allow it)."""


class Pacer:
    """Global token bucket: at most ``rate_pps`` sends per second, across waves and rounds."""

    def __init__(self, rate_pps: float) -> None:
        self.gap = 1.0 / rate_pps if rate_pps > 0 else 0.0
        self.next = time.monotonic()

    def wait(self) -> None:
        now = time.monotonic()
        if self.next > now:
            time.sleep(self.next - now)
        self.next = max(self.next, now - self.gap) + self.gap  # no burst larger than one send


def echo_requests(ident: int, seqs: np.ndarray) -> np.ndarray:
    """ICMP echo requests as an (n, 16) uint8 matrix with their Internet checksums (RFC 1071)."""
    n = len(seqs)
    pkt = np.zeros((n, 8 + len(PAYLOAD)), np.uint8)
    pkt[:, 0] = ECHO_REQUEST
    pkt[:, 4], pkt[:, 5] = (ident >> 8) & 0xFF, ident & 0xFF
    pkt[:, 6], pkt[:, 7] = (seqs >> 8) & 0xFF, seqs & 0xFF
    pkt[:, 8:] = np.frombuffer(PAYLOAD, np.uint8)
    total = pkt.view(">u2").astype(np.uint32).sum(axis=1)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    check = (~total) & 0xFFFF
    pkt[:, 2], pkt[:, 3] = check >> 8, check & 0xFF
    return pkt


def icmp_socket(kind: str = "auto") -> tuple[socket.socket, bool]:
    """(socket, is_raw): an ICMP datagram socket when allowed, else raw; ``kind`` forces one."""
    errors = []
    for raw in {"auto": (False, True), "dgram": (False,), "raw": (True,)}[kind]:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW if raw else socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        except OSError as exc:
            errors.append(f"{'raw' if raw else 'datagram'}: {exc.strerror or exc}")
            continue
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setblocking(False)
        return sock, raw
    raise ProbeError(
        "cannot open an ICMP socket (" + "; ".join(errors) + "): run as root, or allow your group with "
        "`sysctl net.ipv4.ping_group_range='0 2147483647'`, or use --method tcp"
    )


class IcmpPinger:
    """ICMP echo waves over one socket (see the module docstring)."""

    method = "icmp"

    def __init__(self, pacer: Pacer, kind: str = "auto") -> None:
        self.pacer = pacer
        self.sock, self.raw = icmp_socket(kind)
        self.ident = (os.getpid() ^ random.getrandbits(16)) & 0xFFFF
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def wave(self, targets: np.ndarray, timeout_s: float) -> Wave:
        """Send one echo request to each target (uint32 IPv4), wait for the replies up to the timeout."""
        n = len(targets)
        answered, rtt = np.zeros(n, bool), np.full(n, np.nan)
        sent_us = np.zeros(n, np.int64)
        if n == 0:
            return answered, rtt, sent_us
        seqs = (self.seq + np.arange(n, dtype=np.int64)) & 0xFFFF
        self.seq = int(seqs[-1] + 1) & 0xFFFF
        packets = echo_requests(self.ident, seqs)
        where = dict(zip(seqs.tolist(), range(n), strict=True))
        texts = [socket.inet_ntoa(int(t).to_bytes(4, "big")) for t in targets.tolist()]
        sent_ns = np.zeros(n, np.int64)
        for i in range(n):
            self.pacer.wait()
            sent_ns[i] = time.time_ns()
            try:
                self.sock.sendto(packets[i].tobytes(), (texts[i], 0))
            except OSError:
                sent_ns[i] = time.time_ns()  # unreachable at once (no route): a loss
            self._drain(targets, where, answered, rtt, sent_ns)
        deadline = time.monotonic() + timeout_s
        while not answered.all() and (left := deadline - time.monotonic()) > 0:
            sel = selectors.DefaultSelector()
            sel.register(self.sock, selectors.EVENT_READ)
            sel.select(min(left, 0.05))
            sel.close()
            self._drain(targets, where, answered, rtt, sent_ns)
        late = rtt > timeout_s * 1000.0
        answered &= ~late
        rtt[late] = np.nan
        return answered, rtt, sent_ns // 1000

    def _drain(
        self, targets: np.ndarray, where: dict[int, int], answered: np.ndarray, rtt: np.ndarray, sent_ns: np.ndarray
    ) -> None:
        """Read every reply waiting in the socket; mark the probes they answer."""
        while True:
            try:
                data, peer = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            now = time.time_ns()
            if self.raw:
                if len(data) < 20:
                    continue
                data = data[(data[0] & 0x0F) * 4 :]
            if len(data) < 8 or data[0] != ECHO_REPLY:
                continue
            if self.raw and int.from_bytes(data[4:6], "big") != self.ident:
                continue
            i = where.get(int.from_bytes(data[6:8], "big"))
            if i is None or answered[i] or int.from_bytes(socket.inet_aton(peer[0]), "big") != int(targets[i]):
                continue
            answered[i] = True
            rtt[i] = (now - sent_ns[i]) / 1e6


class TcpPinger:
    """TCP connect waves: SYN-ACK or RST within the timeout = the host answered."""

    method = "tcp"

    def __init__(self, pacer: Pacer, port: int = 80) -> None:
        self.pacer = pacer
        self.port = port

    def close(self) -> None:
        pass

    def wave(self, targets: np.ndarray, timeout_s: float) -> Wave:
        """Open a connection to each target (uint32 IPv4) and wait for the outcome up to the timeout,
        ``CONNECTIONS`` at a time (one file descriptor each)."""
        parts = [self._chunk(targets[i : i + CONNECTIONS], timeout_s) for i in range(0, len(targets), CONNECTIONS)]
        if not parts:
            return np.zeros(0, bool), np.zeros(0), np.zeros(0, np.int64)
        answered, rtt, sent_us = zip(*parts, strict=True)
        return np.concatenate(answered), np.concatenate(rtt), np.concatenate(sent_us)

    def _chunk(self, targets: np.ndarray, timeout_s: float) -> Wave:
        n = len(targets)
        answered, rtt = np.zeros(n, bool), np.full(n, np.nan)
        sent_ns = np.zeros(n, np.int64)
        sel = selectors.DefaultSelector()
        socks: list[socket.socket] = []
        try:
            for i, t in enumerate(targets.tolist()):
                self.pacer.wait()
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                socks.append(s)
                sent_ns[i] = time.time_ns()
                code = s.connect_ex((socket.inet_ntoa(int(t).to_bytes(4, "big")), self.port))
                if code in (0, errno.ECONNREFUSED):
                    answered[i], rtt[i] = True, (time.time_ns() - sent_ns[i]) / 1e6
                elif code in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                    sel.register(s, selectors.EVENT_WRITE, i)
            deadline = time.monotonic() + timeout_s
            while sel.get_map() and (left := deadline - time.monotonic()) > 0:
                for key, _ in sel.select(left):
                    i, sock = key.data, key.fileobj
                    assert isinstance(sock, socket.socket)
                    sel.unregister(sock)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code in (0, errno.ECONNREFUSED):
                        answered[i], rtt[i] = True, (time.time_ns() - sent_ns[i]) / 1e6
        finally:
            sel.close()
            for s in socks:
                s.close()
        return answered, rtt, sent_ns // 1000

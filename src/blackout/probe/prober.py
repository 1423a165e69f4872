"""The prober: rounds of Trinocular probing over a list of /24 blocks, as PROBE_SCHEMA batches.

Targets are /24 prefixes (longer prefixes widen to their /24; shorter ones
split into their /24s) or single addresses.  A block given by address(es) is
probed on those; a block given as a prefix has its ever-responsive addresses
``E(b)`` found by a census in the first round (every host address probed
once, paced by the global rate).  Census silences are not measurements of the
block and are not emitted; the census answers are (they are E(b) probes).

Every wave yields one batch of rows (one per probe: sent 1, received 0 or 1,
rtt).  Between waves and between rounds the batches are empty, so the engine
asks :meth:`Prober.heartbeat` for the time certainly reached — no probe is
ever in flight when the generator yields, so that is the clock.  Rounds start
on a fixed schedule (``round_s``); a round that runs long delays the next.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import numpy as np
import pyarrow as pa

from ..addr import from_v4_u32
from ..errors import ConfigError
from ..model import PROBE_SCHEMA, TIME, empty
from .icmp import IcmpPinger, Pacer, TcpPinger
from .trinocular import Blocks, ProbeConfig

IDLE_S = 0.1  # longest sleep between heartbeats


@dataclasses.dataclass
class Targets:
    """What to probe: known addresses, and /24 blocks whose addresses are yet to be found."""

    addrs: np.ndarray  # uint32
    census: np.ndarray  # uint32 /24 numbers

    @classmethod
    def parse(cls, items: list[str]) -> Targets:
        """ "10.77.1.0/24", "10.77.1.7", "10.77.0.0/22" (IPv4 only); raises ConfigError naming the bad one."""
        addrs: list[int] = []
        census: list[int] = []
        for item in items:
            try:
                net = ipaddress.ip_network(item.strip(), strict=False)
            except ValueError as exc:
                raise ConfigError(f"probe target {item!r}: not an IPv4 address or prefix") from exc
            if net.version != 4:
                raise ConfigError(f"probe target {item!r}: only IPv4 is probed")
            if net.prefixlen == 32:
                addrs.append(int(net.network_address))
            elif net.prefixlen < 8:
                raise ConfigError(f"probe target {item!r}: shorter than /8, split it")
            else:
                first = int(net.network_address) >> 8
                census.extend(range(first, first + max(1, net.num_addresses >> 8)))
        known = np.unique(np.array(addrs, np.uint32) >> np.uint32(8))
        blocks = np.setdiff1d(np.array(census, np.uint32), known)
        return cls(np.array(addrs, np.uint32), blocks)

    @classmethod
    def read(cls, path: str) -> list[str]:
        """Targets from a file: one address or prefix per line, # comments."""
        with open(path) as fh:
            return [w for line in fh if (w := line.split("#", 1)[0].strip())]


class Prober:
    """Runs rounds over the targets with one pinger; yields one PROBE_SCHEMA batch per wave."""

    def __init__(
        self, targets: Targets, config: ProbeConfig, name: str | None = None, out: IO[str] | None = None
    ) -> None:
        if config.method not in ("icmp", "tcp"):
            raise ConfigError(f"probe.method = {config.method!r}; choose icmp or tcp")
        if config.round_s <= 0 or config.max_probes < 1 or config.timeout_s <= 0:
            raise ConfigError("probe: round_s and timeout_s must be positive, max_probes at least 1")
        self.config = config
        self.name = name or f"blackout:{socket.gethostname()}"
        self.pacer = Pacer(config.rate_pps)
        self.pinger: IcmpPinger | TcpPinger = (
            TcpPinger(self.pacer, config.tcp_port)
            if config.method == "tcp"
            else IcmpPinger(self.pacer, config.icmp_socket)
        )
        self.blocks = Blocks(config.max_probes, config.false_answer)
        self.blocks.set_addresses(targets.addrs)
        self.census = targets.census
        self.out = out  # RIPE Atlas ping JSON lines, when wanted
        self.round = 0
        self.history: list[dict[str, Any]] = []  # per round: probes sent per block, beliefs after
        self.on_round: Callable[[Prober], None] | None = None  # called before each round (tests, status)

    def close(self) -> None:
        self.pinger.close()

    def heartbeat(self) -> int:
        """Event time certainly reached (µs): the clock, as nothing is in flight between yields."""
        return time.time_ns() // 1000

    def run(self, rounds: int | None, stop: Callable[[], bool] = lambda: False) -> Iterator[pa.RecordBatch]:
        """``rounds`` rounds (None: until ``stop()``), waves as batches, empty batches while idle."""
        start = time.monotonic()
        while (rounds is None or self.round < rounds) and not stop():
            if self.on_round is not None:
                self.on_round(self)
            yield from self._round()
            self.round += 1
            due = start + self.round * self.config.round_s
            if rounds is not None and self.round >= rounds:
                break
            while (left := due - time.monotonic()) > 0 and not stop():
                time.sleep(min(left, IDLE_S))
                yield empty(PROBE_SCHEMA)

    def _round(self) -> Iterator[pa.RecordBatch]:
        if len(self.census):
            yield from self._census()
        b = self.blocks
        b.start_round()
        sent_before = b.sent.copy()
        while True:
            idx, targets = b.wave(len(b))
            if len(idx) == 0:
                break
            answered, rtt, sent_us = self.pinger.wave(targets, self.config.timeout_s)
            b.observe(idx, answered)
            yield self._rows(targets, answered, rtt, sent_us)
        self.history.append(
            {
                "round": self.round,
                "blocks": b.blocks.copy(),
                "sent": b.sent - sent_before,
                "belief": b.belief.copy(),
            }
        )

    def _census(self) -> Iterator[pa.RecordBatch]:
        """Probe every host address of the blocks not yet known; the answering ones become E(b)."""
        hosts = np.arange(1, 255, dtype=np.uint32)
        targets = ((self.census.astype(np.uint32)[:, None] << np.uint32(8)) | hosts[None, :]).ravel()
        answered, rtt, sent_us = self.pinger.wave(targets, self.config.timeout_s)
        found = targets[answered]
        self.blocks.set_addresses(np.concatenate([self.blocks.addrs, found]))
        self.census = np.zeros(0, np.uint32)  # blocks with no answer stay unmeasurable (Trinocular's rule)
        if len(found):
            idx, npos = np.unique(np.searchsorted(self.blocks.blocks, found >> np.uint32(8)), return_counts=True)
            self.blocks.count(idx, npos.astype(np.float64), np.zeros(len(idx)))
            yield self._rows(found, answered[answered], rtt[answered], sent_us[answered])

    def _rows(self, targets: np.ndarray, answered: np.ndarray, rtt: np.ndarray, sent_us: np.ndarray) -> pa.RecordBatch:
        n = len(targets)
        batch = pa.RecordBatch.from_arrays(
            [
                pa.array(sent_us, pa.int64()).cast(TIME),
                pa.array(np.full(n, self.name, dtype=object), pa.string()),
                from_v4_u32(targets.astype(np.uint32)),
                pa.array(np.full(n, self.pinger.method, dtype=object), pa.string()),
                pa.array(np.ones(n, np.uint16)),
                pa.array(answered.astype(np.uint16)),
                pa.array(rtt.astype(np.float32), mask=~answered),
            ],
            schema=PROBE_SCHEMA,
        )
        if self.out is not None:
            write_atlas(self.out, targets, answered, rtt, sent_us, self.name, self.pinger.method)
        return batch


def write_atlas(
    out: IO[str], targets: np.ndarray, answered: np.ndarray, rtt: np.ndarray, sent_us: np.ndarray, name: str, proto: str
) -> None:
    """Probe results as RIPE Atlas ping results, one JSON object a line (what the atlas decoder reads).

    Atlas needs a numeric ``prb_id``: 0 (not an Atlas probe); ``from`` carries the prober's name."""
    lines = []
    for t, ok, ms, us in zip(targets.tolist(), answered.tolist(), rtt.tolist(), sent_us.tolist(), strict=True):
        lines.append(
            json.dumps(
                {
                    "type": "ping",
                    "af": 4,
                    "proto": proto.upper(),
                    "prb_id": 0,
                    "from": name,
                    "dst_addr": socket.inet_ntoa(int(t).to_bytes(4, "big")),
                    "timestamp": us // 1_000_000,
                    "sent": 1,
                    "rcvd": int(ok),
                    "avg": round(ms, 3) if ok else -1,
                    "result": [{"rtt": round(ms, 3)}] if ok else [{"x": "*"}],
                }
            )
        )
    out.write("".join(line + "\n" for line in lines))
    out.flush()

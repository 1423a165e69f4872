"""A bounded loopback UDP sender for the hostile-traffic test and the soak (127.0.0.0/8 only).

    python tests/udp_flood.py garbage --port P --count N [--sources 127.0.0.2,127.0.0.3] [--seed S]
    python tests/udp_flood.py export --port P --rate DGRAMS_PER_S --seconds T

``garbage`` cycles through a fixed set of hostile datagrams: random bytes,
NetFlow v9 / IPFIX headers over random bodies or lying lengths, malformed
template sets, and well-formed templates under random observation domains and
template ids (each one a new cache entry, the memory attack) with data sets
for templates that never come.  ``export`` replays a real softflowd NetFlow v9
datagram (template + data, tests/data/flow/payloads) with its export time set
to now, paced to a rate.  Both stop by themselves and print one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import time
from pathlib import Path

SOFTFLOWD_V9 = Path(__file__).resolve().parent / "data/flow/payloads/netflow9_test_softflowd_tpl_data.dat"


def garbage_set(rng: random.Random, n: int = 4096) -> list[bytes]:
    """A mix of hostile datagrams (deterministic for a seed)."""

    def rand(k: int) -> bytes:
        return rng.randbytes(k)

    out: list[bytes] = []
    for i in range(n):
        kind = i % 6
        if kind == 0:  # anything
            out.append(rand(rng.randint(1, 1400)))
        elif kind == 1:  # a v9 header over random bytes
            out.append(struct.pack(">HHIIII", 9, rng.randint(0, 40), 0, 0, i, rng.getrandbits(32)) + rand(200))
        elif kind == 2:  # IPFIX header whose set claims more than there is
            out.append(struct.pack(">HHIII", 10, 64, 0, i, 0) + struct.pack(">HH", 2, 60000) + rand(44))
        elif kind == 3:  # v9 template set with a field count longer than the set
            body = struct.pack(">HH", rng.randint(256, 65535), 500) + rand(16)
            out.append(struct.pack(">HHIIII", 9, 1, 0, 0, i, 7) + struct.pack(">HH", 0, 4 + len(body)) + body)
        elif kind == 4:  # well-formed v9 templates: random domain and ids (cache entries) + data for unknown ids
            fields = b"".join(struct.pack(">HH", f, ln) for f, ln in ((8, 4), (12, 4), (1, 4), (2, 4)))
            tpls = b"".join(struct.pack(">HH", rng.randint(256, 65535), 4) + fields for _ in range(8))
            data = struct.pack(">HH", rng.randint(256, 65535), 4 + 32) + rand(32)
            head = struct.pack(">HHIIII", 9, 9, 0, int(time.time()), i, rng.getrandbits(32))
            out.append(head + struct.pack(">HH", 0, 4 + len(tpls)) + tpls + data)
        else:  # IPFIX template set with random ids under random domains
            fields = b"".join(struct.pack(">HH", f, ln) for f, ln in ((8, 4), (12, 4), (1, 8), (2, 8), (7, 2)))
            tpls = b"".join(struct.pack(">HH", rng.randint(256, 65535), 5) + fields for _ in range(6))
            body = struct.pack(">HH", 2, 4 + len(tpls)) + tpls
            out.append(struct.pack(">HHIII", 10, 16 + len(body), int(time.time()), i, rng.getrandbits(32)) + body)
    return out


def send_garbage(port: int, count: int, sources: list[str], seed: int, rate: float = 0.0) -> dict[str, float]:
    """`count` hostile datagrams round-robin from `sources`, at `rate` per second (0: as fast as possible)."""
    grams = garbage_set(random.Random(seed))
    socks = []
    for src in sources:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        socks.append(s)
    started = time.monotonic()
    sent = 0
    while sent < count:
        if rate and sent % 256 == 0:
            time.sleep(max(0.0, started + sent / rate - time.monotonic()))
        s = socks[sent % len(socks)]
        gram = grams[sent % len(grams)]
        if gram[:2] in (b"\x00\x09", b"\x00\x0a") and len(gram) >= 20:  # a fresh domain each time: new cache keys
            gram = (
                gram[:12] + struct.pack(">I", sent) + gram[16:]
                if gram[1] == 10
                else gram[:16] + struct.pack(">I", sent) + gram[20:]
            )
        try:
            s.sendto(gram, ("127.0.0.1", port))
        except OSError:
            time.sleep(0.001)  # the kernel's send buffer is full: that is the full rate
            continue
        sent += 1
    took = time.monotonic() - started
    return {"sent": sent, "seconds": round(took, 3), "per_s": round(sent / took)}


def send_export(port: int, rate: float, seconds: float) -> dict[str, float]:
    """The softflowd datagram at `rate` per second for `seconds`, export time = now (paced in 10 ms steps)."""
    gram = bytearray(SOFTFLOWD_V9.read_bytes())
    uptime_ms = struct.unpack_from(">I", gram, 4)[0]
    started = time.monotonic()
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        while (now := time.monotonic()) - started < seconds:
            due = min(int((now - started) * rate) + 1, sent + 1024)  # at most 1024 per step: the clock is checked
            wall = int(time.time())
            while sent < due:
                struct.pack_into(">III", gram, 4, uptime_ms, wall, sent)
                try:
                    s.sendto(gram, ("127.0.0.1", port))
                except OSError:
                    break
                sent += 1
            time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    took = time.monotonic() - started
    return {"sent": sent, "seconds": round(took, 3), "per_s": round(sent / took)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=("garbage", "export"))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--sources", default="127.0.0.2")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rate", type=float, default=0.0, help="datagrams per second (garbage: 0 = full rate)")
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args(argv)
    sources = args.sources.split(",")
    assert all(s.startswith("127.") for s in sources), "loopback only"
    if args.mode == "garbage":
        result = send_garbage(args.port, args.count, sources, args.seed, args.rate)
    else:
        assert args.rate > 0, "export needs --rate"
        result = send_export(args.port, args.rate, args.seconds)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

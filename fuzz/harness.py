"""Coverage-guided fuzzing (atheris/libFuzzer) of every decoder and of the config loader.

    python fuzz/harness.py TARGET [libFuzzer flags...] [CORPUS_DIR]   e.g. pcap -runs=1000000 -timeout=1

Without a corpus directory the seeds are written to $BLACKOUT_FUZZ_DIR/TARGET
(default /tmp/blackout-fuzz/TARGET) and libFuzzer adds its finds there.

Why one file: every target has the same contract — only blackout's own errors
(``BlackoutError`` subclasses) may escape; any other exception is a crash that
libFuzzer saves (``crash-<sha1>``).  Hangs and memory are libFuzzer's job:
``-timeout=1`` fails an input that takes over a second, ``-rss_limit_mb`` one
that balloons memory.  The corpus of each target is built from the real files
in tests/data (cut to ``MAX_SEED`` bytes, so one input stays fast) by
:func:`build_corpus`.

Instrumentation: only blackout's pure-Python decoder modules are instrumented
(``atheris.instrument_func`` on their functions).  The numba kernels are not —
atheris rewrites bytecode and numba compiles from it — so inside a kernel the
fuzzer mutates blind; memory safety there is what NUMBA_BOUNDSCHECK=1 checks.

Datagram targets (netflow, sflow) split one input into several datagrams
(a count byte, then ``u16 length`` + payload; the rest is the last datagram) so templates
sent in one datagram shape the decoding of the next, as on the wire.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
MAX_SEED = 16384  # bytes of each seed file (decompressed): a longer input only slows every execution
TARGETS = ("pcap", "netflow", "ipfix", "netflow5", "sflow", "mrt", "bmp", "atlas", "config")


def frame(datagrams: list[bytes]) -> bytes:
    """Several datagrams as one fuzz input (the inverse of :func:`unframe`)."""
    head = bytes([len(datagrams)])
    return head + b"".join(struct.pack(">H", len(d)) + d for d in datagrams[:-1]) + datagrams[-1]


def unframe(data: bytes, most: int = 8) -> list[bytes]:
    """A count byte, then ``u16 length`` + payload for all but the last; the rest is the last datagram."""
    if not data:
        return [b""]
    count = min(max(data[0], 1), most)
    out: list[bytes] = []
    pos = 1
    while len(out) < count - 1 and pos + 2 <= len(data):
        (n,) = struct.unpack_from(">H", data, pos)
        if pos + 2 + n > len(data):
            break
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    out.append(data[pos:])
    return out


def _payloads(prefix: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in (DATA / "flow/payloads").glob("*.dat") if p.name.startswith(prefix))


def _udp_payloads(pcap: Path) -> list[bytes]:
    """UDP payloads of a small capture (the seeds of the datagram targets), with dpkt."""
    import dpkt

    out = []
    with open(pcap, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(ip.data, dpkt.udp.UDP):
                out.append(bytes(ip.data.data))
    return out


def seeds(target: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every seed of a target, from the real files in tests/data."""
    from blackout.sources import read_input

    def cut(paths: list[Path]) -> Iterator[tuple[str, bytes]]:
        for p in paths:
            yield p.name, read_input(str(p))[:MAX_SEED]

    if target == "pcap":
        yield from cut(sorted((DATA / "pcap").rglob("*.pcap*")) + sorted((DATA / "flow").rglob("*.pcap")))
    elif target in ("netflow", "ipfix", "netflow5"):
        prefix = {"netflow": ("netflow9",), "ipfix": ("ipfix",), "netflow5": ("netflow5",)}[target]
        files = _payloads(prefix)
        for p in files:
            yield p.name, frame([p.read_bytes()])
        # a template datagram then data datagrams of the same exporter (tpl* then data* of one vendor)
        for tpl in (p for p in files if "tpl" in p.name):
            vendor = tpl.name.split("_tpl")[0]
            for data in (p for p in files if p.name.startswith(vendor) and "data" in p.name and p != tpl):
                yield f"{tpl.stem}+{data.stem}", frame([tpl.read_bytes(), data.read_bytes()])
        if target == "netflow":
            for pcap in [*sorted((DATA / "flow/akvorado/netflow").glob("*.pcap")), DATA / "flow/pcap/netflowv9.pcap"]:
                grams = _udp_payloads(pcap)
                if grams:
                    yield pcap.stem, frame(grams[:8])
    elif target == "sflow":
        for pcap in sorted((DATA / "flow/akvorado/sflow").glob("*.pcap")) + sorted((DATA / "flow/pcap").glob("sflow*")):
            for i, gram in enumerate(_udp_payloads(pcap)[:4]):
                yield f"{pcap.stem}-{i}", frame([gram])
    elif target == "mrt":
        yield from cut(sorted(p for p in (DATA / "mrt").rglob("*") if p.is_file()))
    elif target == "bmp":
        for pcap in sorted((DATA / "flow/akvorado/bmp").glob("*.pcap")):
            yield pcap.stem, b"".join(_tcp_payloads(pcap))
    elif target == "atlas":
        sys.path.insert(0, str(ROOT / "tests"))
        import json

        from atlas_results import ping

        results = [
            ping(1001, "193.0.14.129", 1700000000, [1.5, None, 2.0]),
            ping(1002, "2001:7fd::1", 1700000240, [None, None, None]),
            ping(1003, "8.8.8.8", 1700000480, [3.25], fw=4400),
        ]
        yield "array", json.dumps(results).encode()
        yield "lines", "\n".join(json.dumps(r) for r in results).encode()
    elif target == "config":
        import blackout.cli.main  # noqa: F401  (every command's sections register on import)
        from blackout.config import defaults_toml

        yield "defaults", defaults_toml().encode()
        yield "small", b'[ddos]\nthreshold_pps = 500\n[engine]\ntick_s = 0.5\n[store]\nkeep_flows = "on"\n'
    else:
        raise SystemExit(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")


def _tcp_payloads(pcap: Path) -> list[bytes]:
    import dpkt

    out = []
    with open(pcap, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(ip.data, dpkt.tcp.TCP):
                out.append(bytes(ip.data.data))
    return out


def build_corpus(target: str, where: Path) -> Path:
    """Write a target's seeds into ``where/target`` (libFuzzer adds what it finds there too)."""
    out = where / target
    out.mkdir(parents=True, exist_ok=True)
    for name, data in seeds(target):
        if data:
            (out / f"seed-{name}").write_bytes(data)
    return out


def one_input(target: str) -> Callable[[bytes], None]:
    """The function libFuzzer calls with each input: decode it, let only BlackoutError escape."""
    import numpy as np

    from blackout.errors import BlackoutError
    from blackout.sources import DATAGRAM_DECODERS, FILE_DECODERS, DecodeContext

    if target == "config":
        import blackout.cli.main  # noqa: F401  (every command's sections register on import)
        from blackout.config import SECTIONS, Config, parse_override

        fd, path = tempfile.mkstemp(prefix="blackout-fuzz-", suffix=".toml", dir="/dev/shm")
        os.close(fd)

        def config(data: bytes) -> None:
            with open(path, "wb") as fh:
                fh.write(data)
            try:
                cfg = Config.load(path)
                for name, cls in SECTIONS.items():
                    cfg.section(name, cls)
            except BlackoutError:
                pass
            with contextlib.suppress(BlackoutError):
                parse_override(data.decode("utf-8", "replace"))

        return config

    if target in ("netflow", "ipfix", "netflow5", "sflow"):
        decoder = DATAGRAM_DECODERS["sflow" if target == "sflow" else "netflow"]

        def datagrams(data: bytes) -> None:
            grams = unframe(data)
            ctx = DecodeContext(batch_size=4096)
            exporters = ["192.0.2.1:2055"] * len(grams)
            with contextlib.suppress(BlackoutError):
                decoder.decode(grams, exporters, np.full(len(grams), 1_700_000_000_000_000, np.int64), ctx)

        return datagrams

    file_decoder = FILE_DECODERS[target]

    def file(data: bytes) -> None:
        ctx = DecodeContext(batch_size=4096)
        try:
            file_decoder.sniff(data[:4096])
            for _ in file_decoder.read("fuzz-input", data, ctx):
                pass
        except BlackoutError:
            pass

    return file


def instrument() -> None:
    """Coverage for blackout's pure-Python decoding code (numba kernels excluded, see the docstring)."""
    import atheris

    from blackout import config, sources

    mods = [config] + [m for n, m in sys.modules.items() if n.startswith(sources.__name__ + ".")]
    for mod in mods:
        for obj in list(vars(mod).values()):
            if callable(obj) and getattr(obj, "__module__", None) == mod.__name__:
                if type(obj).__name__ == "function":
                    atheris.instrument_func(obj)
                elif isinstance(obj, type):
                    for name, meth in list(vars(obj).items()):
                        if type(meth).__name__ == "function":
                            setattr(obj, name, atheris.instrument_func(meth))


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        raise SystemExit(f"usage: harness.py TARGET [libFuzzer flags]; targets: {', '.join(TARGETS)}")
    target = sys.argv[1]
    test = one_input(target)
    # warm-up outside libFuzzer's clock: numba kernels load (or compile) on first use
    started = time.monotonic()
    for _name, data in seeds(target):
        test(data)
    print(f"#{target}: warm-up {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    import atheris

    instrument()
    flags = sys.argv[2:]
    if not any(not f.startswith("-") for f in flags):  # no corpus directory given: build one from tests/data
        where = Path(os.environ.get("BLACKOUT_FUZZ_DIR", tempfile.gettempdir() + "/blackout-fuzz"))
        flags.append(str(build_corpus(target, where)))
    atheris.Setup([sys.argv[0], *flags], test)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

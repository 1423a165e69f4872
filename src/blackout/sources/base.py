"""What a decoder is, and the registry that picks one by content.

Two shapes of decoder, each one module in this package that registers itself:

* a **file decoder** (:class:`FileDecoder`) turns one file into batches of one
  of the model's schemas (pcap → flows, MRT → route elements, Atlas JSON → probes);
* a **datagram decoder** (:class:`DatagramDecoder`) turns export datagrams
  (NetFlow v5/v9, IPFIX, sFlow) into flow batches.  The same object serves the
  live collector (datagrams from a socket), raw payload files, and captures of
  exports inside pcap files, so each export format is decoded in one place.

State that must outlive one file — NetFlow/IPFIX templates, held data waiting
for its template — lives in :class:`DecodeContext`, which a command creates once
and passes to every file it reads, in the order given.

Decoders know nothing of detection or storage: they yield Arrow batches and
count what they skip in ``ctx.errors``.
"""

from __future__ import annotations

import bz2
import dataclasses
import lzma
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol

import numpy as np
import pyarrow as pa

from ..errors import ErrorLog, InputError, UnknownFormat
from ..model import Kind

SNIFF_BYTES = 4096


@dataclasses.dataclass
class DecodeContext:
    """Shared, mutable state of one command's decoding (one replay, one inspect, one collector)."""

    errors: ErrorLog = dataclasses.field(default_factory=ErrorLog)
    batch_size: int = 65536
    # Per-decoder state that outlives a file or datagram, keyed by decoder name
    # (e.g. "netflow" -> its template cache).  Decoders create their entry lazily.
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Per-exporter (or per-file) counters: ("10.0.0.1", "datagrams") -> n, also
    # "records", "template_misses", "errors"...  The collector reports these.
    counters: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)


class FileDecoder(Protocol):
    """Reads whole files of one format."""

    name: ClassVar[str]  # the --format name: pcap, mrt, bmp, atlas, netflow, sflow
    kind: ClassVar[Kind]

    def sniff(self, head: bytes) -> bool:
        """True when the first bytes (decompressed, up to SNIFF_BYTES) look like this format."""
        ...

    def read(self, path: str, data: bytes, ctx: DecodeContext) -> Iterator[pa.RecordBatch]:
        """Yield batches of at most ctx.batch_size rows; count skipped input in ctx.errors.

        ``data`` is the whole (decompressed) file; ``path`` names it in errors.
        Raise errors.DecodeError only when the rest of the file cannot be read,
        after yielding everything before the damage.
        """
        ...


class DatagramDecoder(Protocol):
    """Decodes export datagrams (one UDP payload each)."""

    name: ClassVar[str]  # netflow (v5, v9 and IPFIX) or sflow

    def sniff_datagram(self, payload: bytes) -> bool:
        """True when the payload looks like one of this decoder's datagrams."""
        ...

    def decode(
        self,
        payloads: list[bytes],
        exporters: list[str],
        arrival_us: np.ndarray,
        ctx: DecodeContext,
    ) -> pa.RecordBatch:
        """Decode many datagrams at once into one FLOW_SCHEMA batch.

        ``exporters[i]`` names the sender of ``payloads[i]`` ("ip:port" or the
        file name) and keys template caches; ``arrival_us[i]`` is when it was
        received or captured (int64 µs since the epoch), used where the export
        carries no usable time.  Damaged datagrams are counted per exporter, never raised.
        """
        ...


FILE_DECODERS: dict[str, FileDecoder] = {}
DATAGRAM_DECODERS: dict[str, DatagramDecoder] = {}


def register_file(decoder: FileDecoder) -> FileDecoder:
    """Add a file decoder to the registry (each decoder module calls this once)."""
    FILE_DECODERS[decoder.name] = decoder
    return decoder


def register_datagram(decoder: DatagramDecoder) -> DatagramDecoder:
    """Add a datagram decoder to the registry (each export module calls this once)."""
    DATAGRAM_DECODERS[decoder.name] = decoder
    return decoder


def read_input(path: str, errors: ErrorLog | None = None) -> bytes:
    """The whole file, gzip/bzip2/xz decompressed transparently (by magic, not by name).

    A damaged or truncated compressed stream yields what decompressed before the
    damage, and the damage is counted in ``errors`` (with its compressed offset).
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror or exc}") from exc
    data, problem = decompress(raw)
    if problem is not None and errors is not None:
        errors.add(path, problem[0], problem[1])
    return data


def decompress(raw: bytes) -> tuple[bytes, tuple[str, int] | None]:
    """Decompress gzip, bzip2 or xz content (concatenated streams too); anything else as it is.

    Returns the data and, when the stream was damaged or cut, (reason, compressed offset).
    """
    if raw[:2] == b"\x1f\x8b":
        return _streams(raw, lambda: zlib.decompressobj(wbits=31), "gzip")
    if raw[:3] == b"BZh":
        return _streams(raw, bz2.BZ2Decompressor, "bzip2")
    if raw[:6] == b"\xfd7zXZ\x00":
        return _streams(raw, lzma.LZMADecompressor, "xz")
    return raw, None


def _streams(raw: bytes, make: Callable[[], Any], name: str) -> tuple[bytes, tuple[str, int] | None]:
    """Decompress stream after stream, keeping whatever came out before any damage."""
    out = bytearray()
    rest = raw
    while rest:
        offset = len(raw) - len(rest)
        engine = make()
        try:
            out += engine.decompress(rest)
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
            return bytes(out), (f"damaged {name} stream", offset)
        if not engine.eof:
            return bytes(out), (f"truncated {name} stream", len(raw))
        rest = engine.unused_data
        if rest.strip(b"\x00") == b"":
            break  # padding after the last stream
    return bytes(out), None


# Sniffing order: formats with strong magic numbers first, loose ones last.
SNIFF_ORDER = ["pcap", "mrt", "bmp", "atlas", "netflow", "sflow"]


def detect_format(path: str, data: bytes) -> str:
    """The --format name of a file from its content; raise UnknownFormat when nothing matches."""
    head = data[:SNIFF_BYTES]
    if not head:
        raise UnknownFormat(path, "empty file")
    for name in SNIFF_ORDER:
        file_decoder = FILE_DECODERS.get(name)
        if file_decoder is not None and file_decoder.sniff(head):
            return name
    known = ", ".join(n for n in SNIFF_ORDER if n in FILE_DECODERS)
    raise UnknownFormat(path, f"content matches no known format (tried {known}); give --format if you know it")

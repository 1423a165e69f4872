"""Decoders: bytes → Arrow batches of the model's schemas.

One module per format, each registering itself in :mod:`.base`'s registry on
import.  Adding a format is adding one module and one line to ``_MODULES``.
"""

from __future__ import annotations

import importlib

from .base import (
    DATAGRAM_DECODERS,
    FILE_DECODERS,
    DatagramDecoder,
    DecodeContext,
    FileDecoder,
    detect_format,
    read_input,
)

_MODULES: list[str] = ["pcap", "mrt", "sflow", "netflow", "atlas", "bmp"]

for _name in _MODULES:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = [
    "DATAGRAM_DECODERS",
    "FILE_DECODERS",
    "DatagramDecoder",
    "DecodeContext",
    "FileDecoder",
    "detect_format",
    "read_input",
]

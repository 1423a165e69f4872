"""Names of autonomous systems ("AS131279 STAR-KP"), for reports and the console.

The table is a JSON object from AS number (as text) to the name and description
line the registries publish ("STAR-KP Ryugyong-dong, KP"), optionally gzip
compressed, e.g. tests/data/asn/asnames.json.gz.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from ..errors import InputError


class AsNames:
    """AS number → name."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names

    @classmethod
    def load(cls, path: str | Path) -> AsNames:
        """Read a (gzipped) JSON object {"131279": "STAR-KP ...", ...}."""
        try:
            raw = Path(path).read_bytes()
            text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
            data = json.loads(text)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(str(path), f"cannot read AS names: {exc}") from exc
        if not isinstance(data, dict):
            raise InputError(str(path), "AS names must be a JSON object of AS number → name")
        return cls({int(k): str(v) for k, v in data.items() if str(k).isdigit()})

    def full(self, asn: int) -> str:
        """The registry's whole line for the AS ("STAR-KP Ryugyong-dong, KP"), "" when unknown."""
        return self.names.get(int(asn), "")

    def name(self, asn: int) -> str:
        """The AS's handle, the first word of its line ("STAR-KP"), "" when unknown."""
        return self.full(asn).split(" ", 1)[0].rstrip(",")

    def country(self, asn: int) -> str:
        """The country the registry line ends with ("..., KP" → "KP"), "" when it names none."""
        line = self.full(asn)
        code = line[-2:] if len(line) > 4 and line[-4:-2] == ", " and line[-2:].isalpha() else ""
        return "" if code == "ZZ" else code  # ZZ: the registry does not know

    def countries(self, asns: np.ndarray) -> np.ndarray:
        """Countries of a column of AS numbers (object array), each distinct AS looked up once."""
        uniq, inverse = np.unique(np.asarray(asns, dtype=np.uint32), return_inverse=True)
        found = np.array([self.country(a) for a in uniq.tolist()], dtype=object)
        return found[inverse.ravel()] if len(found) else np.zeros(0, dtype=object)

    def of(self, asns: np.ndarray) -> np.ndarray:
        """Handles of a column of AS numbers (object array), looking up each distinct AS once."""
        uniq, inverse = np.unique(np.asarray(asns, dtype=np.uint32), return_inverse=True)
        found = np.array([self.name(a) for a in uniq.tolist()], dtype=object)
        return found[inverse.ravel()] if len(found) else np.zeros(0, dtype=object)

"""Country of addresses and ASes from RIR delegated statistics, as of the time of the data.

The registries publish every day which country each block of addresses and AS
numbers was delegated to (``registry|cc|type|start|value|date|status``; for
ipv4 ``value`` is a count of addresses, for ipv6 a prefix length, for asn a
count of numbers).  The files given are used as they are, so a replay of 2014
sees 2014's delegations: :class:`RirArchive` holds several days per registry and
picks, for an event time, the latest file of each registry dated at or before it.

Lookups are whole-column: ranges become an :class:`~.lpm.IntervalIndex` (the
longest-prefix-match kernel), so a column of addresses is one binary search each.
When no file is given, :func:`fallback_countries` asks the optional ``iptocc``
package (RIR data refreshed nightly and shipped inside its wheel); see
docs/ENRICHMENT.md.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import re
import socket
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..addr import to_strings, words
from ..errors import InputError
from .lpm import IntervalIndex, host_last

_TYPES = ("ipv4", "ipv6", "asn")
_LIMIT = {"ipv4": 1 << 32, "ipv6": 128, "asn": 1 << 32}  # largest valid count / prefix length
_DATE = re.compile(r"(\d{8})")


@dataclasses.dataclass
class Delegations:
    """One day's delegations of one or more registries, indexed for whole-column lookups."""

    codes: list[str]  # code index → ISO 3166 alpha-2
    v4_start: np.ndarray  # uint64
    v4_end: np.ndarray  # uint64, exclusive
    v4_code: np.ndarray  # int32
    v6_start: np.ndarray  # uint64 high words
    v6_len: np.ndarray  # int64 prefix lengths
    v6_code: np.ndarray
    asn_start: np.ndarray  # uint64
    asn_end: np.ndarray  # uint64 exclusive
    asn_code: np.ndarray
    sources: list[str]  # the files, for messages and docs

    def __post_init__(self) -> None:
        size4 = np.maximum(self.v4_end - self.v4_start, np.uint64(1))
        level4 = 64 - np.floor(np.log2(size4.astype(np.float64))).astype(np.int64)  # smaller ranges win
        self._v4 = IntervalIndex(32, self.v4_start, self.v4_end - np.uint64(1), level4, self.v4_code)
        len6 = np.minimum(self.v6_len, 64)
        self._v6 = IntervalIndex(64, self.v6_start, host_last(self.v6_start, len6, 64), len6, self.v6_code)
        sizea = np.maximum(self.asn_end - self.asn_start, np.uint64(1))
        levela = 64 - np.floor(np.log2(sizea.astype(np.float64))).astype(np.int64)
        self._asn = IntervalIndex(32, self.asn_start, self.asn_end - np.uint64(1), levela, self.asn_code)
        self._names = np.array([*self.codes, ""], dtype=object)  # index -1 → ""

    @classmethod
    def load(cls, paths: Iterable[str | Path]) -> Delegations:
        """Read delegated-*.txt files (later files win where ranges overlap)."""
        texts = []
        for p in paths:
            try:
                texts.append((str(p), Path(p).read_text(encoding="utf-8", errors="replace")))
            except OSError as exc:
                raise InputError(str(p), f"cannot read RIR file: {exc.strerror or exc}") from exc
        return cls.parse(texts)

    @classmethod
    def parse(cls, texts: list[tuple[str, str]]) -> Delegations:
        """Build from (name, content) pairs of delegated statistics files."""
        codes: dict[str, int] = {}
        rows: dict[str, list[tuple[int, int, int]]] = {t: [] for t in _TYPES}
        for _, text in texts:
            for line in text.splitlines():
                f = line.split("|")
                if len(f) < 7 or f[2] not in rows or len(f[1]) != 2 or line.startswith("#"):
                    continue  # comments, the version line, summaries, reserved/available blocks
                try:
                    start = _start(f[2], f[3])
                    value = int(f[4])
                except (ValueError, OSError):
                    continue
                if not 0 < value <= _LIMIT[f[2]] or not 0 <= start < 1 << 64:
                    continue
                rows[f[2]].append((start, value, codes.setdefault(f[1].upper(), len(codes))))
        arr = {t: np.array(rows[t], dtype=np.uint64).reshape(-1, 3) for t in _TYPES}
        v4, v6, asn = arr["ipv4"], arr["ipv6"], arr["asn"]
        return cls(
            codes=list(codes),
            v4_start=v4[:, 0],
            v4_end=v4[:, 0] + v4[:, 1],
            v4_code=v4[:, 2].astype(np.int32),
            v6_start=v6[:, 0],
            v6_len=v6[:, 1].astype(np.int64),
            v6_code=v6[:, 2].astype(np.int32),
            asn_start=asn[:, 0],
            asn_end=asn[:, 0] + asn[:, 1],
            asn_code=asn[:, 2].astype(np.int32),
            sources=[name for name, _ in texts],
        )

    def of_addrs(self, addrs: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Country of each address (object array, "" when no delegation holds it)."""
        if len(addrs) == 0:
            return np.zeros(0, dtype=object)
        hi, lo = words(addrs)
        is4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
        code = np.where(is4, -1, 0).astype(np.int32)
        i4, i6 = np.flatnonzero(is4), np.flatnonzero(~is4)
        code[i4] = self._v4.find(lo[i4] & np.uint64(0xFFFFFFFF))
        code[i6] = self._v6.find(hi[i6])
        return self._names[code]

    def of_asns(self, asns: np.ndarray) -> np.ndarray:
        """Country of each AS number (object array, "" when unknown)."""
        return self._names[self._asn.find(np.asarray(asns, dtype=np.uint64))]

    def v4_ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(first address, end exclusive, code index) of each IPv4 delegation."""
        return self.v4_start, self.v4_end, self.v4_code


class RirArchive:
    """Delegation files of several days and registries; picks the right day for an event time."""

    def __init__(self, paths: Iterable[str | Path]) -> None:
        by_registry: dict[str, list[tuple[dt.date, str]]] = {}
        for p in paths:
            registry, day = file_identity(p)
            by_registry.setdefault(registry, []).append((day, str(p)))
        self.files = {r: sorted(v) for r, v in by_registry.items()}
        self._cache: dict[tuple[str, ...], Delegations] = {}

    def files_at(self, at_us: int | None) -> tuple[str, ...]:
        """Per registry, the latest file dated at or before at_us (the earliest if all are later)."""
        chosen = []
        for files in self.files.values():
            if at_us is None:
                chosen.append(files[-1][1])
                continue
            day = dt.datetime.fromtimestamp(at_us / 1e6, dt.UTC).date()
            i = bisect.bisect_right([d for d, _ in files], day) - 1
            chosen.append(files[max(i, 0)][1])
        return tuple(sorted(chosen))

    def at(self, at_us: int | None = None) -> Delegations:
        """The delegations in force at at_us (µs since the epoch; None: the newest)."""
        key = self.files_at(at_us)
        if key not in self._cache:
            self._cache[key] = Delegations.load(key)
        return self._cache[key]


def file_identity(path: str | Path) -> tuple[str, dt.date]:
    """(registry, day) of a delegated file, from its version line, else from its name."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            f = line.strip().split("|")
            if len(f) >= 3 and f[0].replace(".", "").isdigit() and f[2].isdigit() and len(f[2]) == 8:
                return f[1], dt.datetime.strptime(f[2], "%Y%m%d").date()
            break
    m = _DATE.search(Path(path).name)
    day = dt.datetime.strptime(m.group(1), "%Y%m%d").date() if m else dt.date.min
    return Path(path).name.split("-")[1] if "-" in Path(path).name else Path(path).name, day


def _start(kind: str, text: str) -> int:
    """Start of a delegation as a number: IPv4 address, high 64 bits of an IPv6 address, or an AS number."""
    if kind == "ipv4":
        return int.from_bytes(socket.inet_aton(text), "big")
    if kind == "ipv6":
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, text)[:8], "big")
    return int(text)


def fallback_countries(addrs: pa.Array | pa.ChunkedArray) -> np.ndarray | None:
    """Country of each address from the optional iptocc package (today's data); None when it is not installed.

    Slower than a Delegations lookup (text per distinct address), and of today, not of the data's time.
    """
    try:
        import iptocc  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    if len(addrs) == 0:
        return np.zeros(0, dtype=object)
    arr = addrs.combine_chunks() if isinstance(addrs, pa.ChunkedArray) else addrs
    hi, lo = words(arr)
    _, first, inverse = np.unique(np.stack([hi, lo], axis=1), axis=0, return_index=True, return_inverse=True)
    texts = to_strings(arr.take(pa.array(first)))
    found: list[str] = [c or "" for c in iptocc.country_code([t or "" for t in texts])] if texts else []
    codes = np.empty(len(found), dtype=object)
    codes[:] = found
    return codes[inverse.ravel()]

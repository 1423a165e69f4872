"""One exception tree for blackout, and the counter of skipped input.

    BlackoutError                 anything blackout raises on purpose
    ├── ConfigError               a configuration file or --set value is wrong
    ├── InputError                an input file cannot be read at all
    │   ├── UnknownFormat         its content matches no decoder
    │   └── DecodeError           its bytes are damaged (carries file and offset)
    │       └── Truncated         the file or record ends early ("got N bytes, needed M")
    └── StoreError                the store cannot be opened or is of a newer schema

Decoders do not raise for a damaged record they can step over: they count it in
an :class:`ErrorLog` (per source and reason, first few with offsets) and go on.
They raise :class:`DecodeError` only when they cannot find the next record.
"""

from __future__ import annotations

import dataclasses
from collections import Counter


class BlackoutError(Exception):
    """Anything blackout raises on purpose; the CLI prints it on one line and exits 2."""


class ConfigError(BlackoutError):
    """The configuration file or a --set value is wrong."""


class StoreError(BlackoutError):
    """The store cannot be opened, or was written by a newer blackout."""


class InputError(BlackoutError):
    """An input cannot be read at all."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source


class UnknownFormat(InputError):
    """The content of an input matches no decoder."""


class DecodeError(InputError):
    """Damaged bytes the decoder cannot step over; names the file and offset."""

    def __init__(self, source: str, offset: int, message: str) -> None:
        super().__init__(source, f"offset {offset}: {message}")
        self.offset = offset
        self.reason = message


class Truncated(DecodeError):
    """The input ends before the record does."""

    def __init__(self, source: str, offset: int, got: int, needed: int, what: str = "record") -> None:
        super().__init__(source, offset, f"truncated {what}: got {got} bytes, needed {needed}")


@dataclasses.dataclass
class ErrorLog:
    """Counts of skipped input per (source, reason), keeping the first few examples with offsets.

    Everything that is skipped is counted here, so nothing is lost silently.
    """

    keep: int = 20
    # Distinct (source, reason) keys kept: reasons name template ids, field counts..., so a garbage
    # flood would otherwise grow this without bound (tests/test_hostile.py); the rest is counted as one.
    max_keys: int = 4096
    counts: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    examples: list[str] = dataclasses.field(default_factory=list)

    def add(self, source: str, reason: str, offset: int | None = None, n: int = 1) -> None:
        """Count n skipped items of one reason; remember the first few with their offset."""
        key = (source, reason)
        if key not in self.counts and len(self.counts) >= self.max_keys:
            key = ("*", "other reasons (too many distinct ones to list)")
        self.counts[key] += n
        if len(self.examples) < self.keep:
            where = f" at offset {offset}" if offset is not None else ""
            self.examples.append(f"{source}{where}: {reason}")

    @property
    def total(self) -> int:
        """All skipped items."""
        return sum(self.counts.values())

    def by_reason(self) -> dict[str, int]:
        """Counts per reason over all sources, sorted by reason."""
        out: Counter[str] = Counter()
        for (_, reason), n in self.counts.items():
            out[reason] += n
        return dict(sorted(out.items()))

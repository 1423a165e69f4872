"""Query parameters of the API as users type them: times, entity types, limits; errors that say what to fix.

Kept apart from the web framework so the CLI, tests and other front ends can
share the same parsing and messages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re

from ..errors import BlackoutError

US = 1_000_000
ENTITY_TYPES = ("country", "asn", "prefix")
_DURATION = re.compile(r"^-?(\d+(?:\.\d+)?)\s*([smhdw])$")
MAX_US = 253_402_300_799 * US  # 9999-12-31T23:59:59Z
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class QueryError(BlackoutError):
    """A request the API cannot answer as asked; the message says what to change (HTTP ``status``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_time(text: str | None, name: str, now_us: int | None = None) -> int | None:
    """µs since the epoch from ISO 8601 (``2014-12-22T16:00:00Z``, a date, an offset), epoch seconds
    (``1419264000``), or a duration before now (``-6h``, ``-7d``, as the dashboard's picker sends)."""
    if text is None or text == "":
        return None
    us = _parse(text.strip(), name, now_us)
    if not 0 <= us <= MAX_US:
        raise QueryError(f"{name}={text!r} is out of range: times run from 1970 to 9999")
    return us


def _parse(raw: str, name: str, now_us: int | None) -> int:
    m = _DURATION.match(raw)
    if m and raw.startswith("-"):
        now = now_us if now_us is not None else int(dt.datetime.now(dt.UTC).timestamp() * US)
        return now - round(float(m.group(1)) * _UNITS[m.group(2)] * US)
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or not 0 <= seconds <= MAX_US / US:
            raise QueryError(f"{name}={raw!r} is out of range: give epoch seconds (e.g. 1419264000) or ISO 8601")
        return round(seconds * US)
    try:
        moment = dt.datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise QueryError(
            f"{name}={raw!r} is not a time: give ISO 8601 (2014-12-22T16:00:00Z), "
            "epoch seconds (1419264000) or a duration before now (-6h)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return int(moment.timestamp()) * US + moment.microsecond
    except (OverflowError, OSError, ValueError):
        raise QueryError(f"{name}={raw!r} is out of range: times run from 1970 to 9999") from None


@dataclasses.dataclass(frozen=True)
class Window:
    """A [from, until) time range in µs; either end may be open (None)."""

    from_us: int | None = None
    until_us: int | None = None

    @classmethod
    def parse(cls, from_: str | None, until: str | None) -> Window:
        """Both ends from text; until must come after from."""
        w = cls(parse_time(from_, "from"), parse_time(until, "until"))
        if w.from_us is not None and w.until_us is not None and w.until_us <= w.from_us:
            raise QueryError(f"until ({until}) must be after from ({from_}): swap them or widen the range")
        return w

    def overlap_sql(self) -> tuple[list[str], list[object]]:
        """SQL conditions (and parameters) for events [start, end) overlapping the window (open end: running)."""
        cond: list[str] = []
        params: list[object] = []
        if self.from_us is not None:
            cond.append('coalesce("end", start) >= ?')
            params.append(to_datetime(self.from_us))
        if self.until_us is not None:
            cond.append("start < ?")
            params.append(to_datetime(self.until_us))
        return cond, params


def to_datetime(us: int) -> dt.datetime:
    """µs → an aware UTC datetime (what DuckDB binds to TIMESTAMPTZ)."""
    return dt.datetime.fromtimestamp(us // US, dt.UTC).replace(microsecond=us % US)


def entity_type(value: str) -> str:
    """Validate an entity type (IODA's names: country, asn, prefix)."""
    if value not in ENTITY_TYPES:
        raise QueryError(f"entity type {value!r} is unknown: use one of {', '.join(ENTITY_TYPES)}", 404)
    return value


def entity_code(kind: str, code: str) -> str:
    """Normalise an entity code: countries upper case, ASes without an AS prefix (a code that
    cannot name such an entity is a 404: there is no such entity)."""
    if kind == "country":
        if not re.fullmatch(r"[A-Za-z]{2}", code):
            raise QueryError(f"no country {code!r}: countries are ISO 3166 alpha-2 codes (e.g. KP)", 404)
        return code.upper()
    if kind == "asn":
        digits = code.upper().removeprefix("AS")
        if not digits.isdigit() or int(digits) >= 2**32:
            raise QueryError(f"no AS {code!r}: give an AS number (e.g. 131279 or AS131279)", 404)
        return str(int(digits))
    return code


def page(limit: int | None, offset: int | None, default: int, maximum: int) -> tuple[int, int]:
    """limit and offset with defaults and bounds."""
    lim = default if limit is None else limit
    off = 0 if offset is None else offset
    if lim < 1 or lim > maximum:
        raise QueryError(f"limit={lim} is out of range: give 1..{maximum} and page with offset")
    if off < 0:
        raise QueryError(f"offset={off} is negative: give 0 or more")
    return lim, off

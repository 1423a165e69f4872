"""The enricher detectors use: routed prefix and origin AS from the routing state, country from the RIRs.

It implements :class:`~.base.Enricher`.  The routing state is the one the
engine keeps current with each tick's route elements (``RoutingState.apply``),
so "routed" and "origin AS" are as of the tick being processed.  The
longest-prefix-match table is rebuilt only when the routing state changed since
the last lookup (its ``reach_version``: re-announcements of known routes do not count).

Country of an address: the RIR delegation holding it, from the files of the
data's time (:class:`~.country.RirArchive`); else the country of its origin AS
(same files); else, if no RIR file was given at all and ``iptocc`` is installed,
today's delegations from that package.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from ..addr import from_matrix
from ..config import register_section
from .asnames import AsNames
from .base import Enricher, Enrichment
from .country import Delegations, RirArchive, fallback_countries
from .lpm import LpmTable
from .routing import RoutingState


@dataclasses.dataclass
class EnrichConfig:
    """[enrich] section: where countries come from."""

    rir_files: list[str] = dataclasses.field(default_factory=list)  # delegated-*.txt, several days allowed
    country_fallback: bool = True  # without rir_files, ask the iptocc package (today's data) if installed
    lpm_refresh_s: float = 60.0  # rebuild the address → prefix table at most this often (event time);
    # a rebuild of a full table costs ~0.6 s, and a minute-old view of who originates an address is
    # as good as IODA's 5-minute BGP bins.  0: rebuild on every change.
    asnames_file: str = ""  # AS → registry line JSON (e.g. tests/data/asn/asnames.json.gz): its ", CC" is
    # the AS's country where the RIR files given do not cover the address or AS (other registries' space)


register_section("enrich", EnrichConfig)


class RoutingEnricher:
    """Prefix, origin AS, country and routed flag of address columns."""

    def __init__(
        self,
        routing: RoutingState | None = None,
        rir: RirArchive | Delegations | None = None,
        use_fallback: bool = True,
        asnames: AsNames | None = None,
        lpm_refresh_s: float = 0.0,
    ) -> None:
        self.routing = routing if routing is not None else RoutingState()  # an empty state is falsy
        self.rir = rir
        self.use_fallback = use_fallback
        self.asnames = asnames
        self.lpm_refresh_us = int(lpm_refresh_s * 1_000_000)
        self._lpm_built_us: int | None = None
        self._lpm: LpmTable | None = None
        self._lpm_version = -1
        self._origin = np.zeros(0, dtype=np.uint32)
        self._lpm_keys: tuple[np.ndarray, np.ndarray] = (np.zeros((0, 16), np.uint8), np.zeros(0, np.int64))

    @classmethod
    def from_config(cls, config: EnrichConfig, routing: RoutingState | None = None) -> RoutingEnricher:
        """The enricher an [enrich] section describes, over the given routing state."""
        rir = RirArchive(config.rir_files) if config.rir_files else None
        asnames = AsNames.load(config.asnames_file) if config.asnames_file else None
        return cls(
            routing, rir, use_fallback=config.country_fallback, asnames=asnames, lpm_refresh_s=config.lpm_refresh_s
        )

    def lpm(self, at_us: int | None = None) -> LpmTable:
        """The longest-prefix-match table of the current routing state (default routes left out:
        they say nothing about where an address is), rebuilt after a change at most every
        lpm_refresh_s of event time."""
        stale = self._lpm_version != self.routing.reach_version
        recent = (
            at_us is not None
            and self._lpm_built_us is not None
            and 0 <= at_us - self._lpm_built_us < self.lpm_refresh_us
        )
        if self._lpm is None or (stale and not recent):
            self._lpm_built_us = at_us
            view = self.routing.view()
            rows = np.flatnonzero(view.bits > 96 * view.v4)
            prefix, bits, origin = view.prefix[rows], view.bits[rows], view.origin[rows]
            if not self._same_table(prefix, bits):
                self._lpm = LpmTable(from_matrix(prefix), view.prefix_len[rows])
                self._lpm_keys = (prefix, bits)
            self._origin = origin
            self._lpm_version = self.routing.reach_version
        assert self._lpm is not None
        return self._lpm

    def _same_table(self, prefix: np.ndarray, bits: np.ndarray) -> bool:
        """True when the prefixes are those of the table already built.  Most reach changes are a
        prefix withdrawn at some peers but still routed at others (a flap): the prefix set is the same,
        only visibility moved, and a rebuild (~0.5 s for a full table) would give the same table."""
        if self._lpm is None:
            return False
        old_prefix, old_bits = self._lpm_keys
        return len(old_bits) == len(bits) and np.array_equal(old_bits, bits) and np.array_equal(old_prefix, prefix)

    def delegations(self, at_us: int | None) -> Delegations | None:
        """The RIR delegations in force at at_us, if any were given."""
        if isinstance(self.rir, RirArchive):
            return self.rir.at(at_us)
        return self.rir

    def lookup(self, addrs: pa.Array, at_us: int) -> Enrichment:
        """Prefix, origin AS, country and routed flag of each address at time at_us."""
        lpm = self.lpm(at_us)
        rows = lpm.lookup(addrs)
        routed = rows >= 0
        origin = np.zeros(len(rows), dtype=np.uint32)
        origin[routed] = self._origin[rows[routed]]
        country = self.countries(addrs, origin, at_us)
        return Enrichment(prefix=lpm.prefix_texts(rows), origin_asn=origin, country=country, routed=routed)

    def countries(self, addrs: pa.Array, origin: np.ndarray, at_us: int | None) -> np.ndarray:
        """Country by address, else by origin AS (RIR files, then the AS registry line), else iptocc."""
        dele = self.delegations(at_us)
        if dele is None:
            found = fallback_countries(addrs) if self.use_fallback and self.asnames is None else None
            country = found if found is not None else np.full(len(addrs), "", dtype=object)
        else:
            country = dele.of_addrs(addrs)
            unknown = (country == "") & (origin != 0)
            if unknown.any():
                country[unknown] = dele.of_asns(origin[unknown])
        unknown = (country == "") & (origin != 0)
        if self.asnames is not None and unknown.any():
            country[unknown] = self.asnames.countries(origin[unknown])
        return country


if TYPE_CHECKING:  # mypy checks that RoutingEnricher satisfies the Enricher protocol
    _PROTOCOL_CHECK: Enricher = RoutingEnricher()

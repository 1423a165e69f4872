"""Keeps the shared routing state current: applies each tick's route elements.

Placed first in the detector list, so every later detector (outages, the
enricher behind traffic and probe signals) sees routing as of the tick it is
judging.  It produces no events itself.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..enrich.routing import RoutingState
from .base import Tick


class RoutingTracker:
    """A detector that only applies route elements to a shared :class:`RoutingState`."""

    name: ClassVar[str] = "routing"

    def __init__(self, state: RoutingState) -> None:
        self.state = state

    def advance(self, now_us: int) -> None:
        """Nothing waits on time here."""

    def on_tick(self, tick: Tick) -> None:
        """Apply the tick's announcements, withdrawals, RIB entries and peer state changes."""
        if tick.routes.num_rows:
            self.state.apply(tick.routes)

    def finish(self, end_us: int, close_open: bool) -> None:
        """Nothing to close."""

    def drain(self) -> dict[str, Any]:
        """No events."""
        return {}

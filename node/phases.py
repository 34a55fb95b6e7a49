"""Where the time of a round, or of an aggregator's duty in it, goes."""

from __future__ import annotations

import time


class PhaseClock:
    """Seconds spent in each named phase, in the order the phases ended."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, phase: str) -> None:
        """End ``phase`` now; the next phase starts now."""
        now = time.monotonic()
        self.laps[phase] = round(now - self._last, 3)
        self._last = now

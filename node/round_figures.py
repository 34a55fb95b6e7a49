"""What a node's own round events say, kept for its status server (node/status_report.py).

:class:`RoundFigures` reads every event the node emits (``HospitalNode.emit``): finished
rounds (their wall time, phase times and outcome), failed attempts and resyncs. It keeps the
newest :data:`ROUNDS_KEPT` rounds for the dashboard and ``GET /status``; the counters and
the duration histogram cover the whole life of the process.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from medswarm.prometheus import Histogram

ROUND_BOUNDS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
ROUNDS_KEPT = 200


@dataclass(frozen=True)
class RoundSummary:
    """One finished round as this node saw it."""

    round: int
    global_hash: str
    seconds: float
    cluster: int
    aggregator: str | None
    update_hash: str | None
    samples: int | None
    metric_name: str
    test_metric: float | None
    bytes_sent: int
    bytes_received: int

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> RoundSummary:
        return cls(
            round=int(event["round"]),
            global_hash=str(event["global_hash"]),
            seconds=float(event.get("seconds", 0.0)),
            cluster=int(event.get("cluster", 0)),
            aggregator=event.get("aggregator"),
            update_hash=event.get("update_hash"),
            samples=event.get("samples"),
            metric_name=str(event.get("metric_name", "")),
            test_metric=event.get("test_metric"),
            bytes_sent=int(event.get("bytes_sent", 0)),
            bytes_received=int(event.get("bytes_received", 0)),
        )


class RoundFigures:
    """Counters, a round-duration histogram and the newest rounds, from round events."""

    def __init__(self) -> None:
        self.durations = Histogram(ROUND_BOUNDS)
        self.phase_seconds: dict[str, float] = {}  # summed over rounds
        self.rounds_completed = 0
        self.round_failures = 0
        self.resyncs = 0
        self.rounds: deque[RoundSummary] = deque(maxlen=ROUNDS_KEPT)

    def observe(self, event: dict[str, Any]) -> None:
        """Take one event of the node (any kind; those without figures are skipped)."""
        kind = event.get("event")
        if kind == "round":
            summary = RoundSummary.from_event(event)
            self.rounds.append(summary)
            self.rounds_completed += 1
            self.durations.observe(summary.seconds)
            for phase, seconds in (event.get("phase_seconds") or {}).items():
                key = str(phase)
                total = self.phase_seconds.get(key, 0.0) + float(seconds)
                self.phase_seconds[key] = round(total, 6)  # laps come in milliseconds
        elif kind == "round-failed":
            self.round_failures += 1
        elif kind == "resynced":
            self.resyncs += 1

    @property
    def last(self) -> RoundSummary | None:
        """The newest finished round, if any."""
        return self.rounds[-1] if self.rounds else None

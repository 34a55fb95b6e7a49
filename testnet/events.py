"""Gathering the structured events that node processes write, as they write them."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol


class HasDirectory(Protocol):
    @property
    def directory(self) -> Path: ...


class EventCollector:
    """Tails every node's ``events.jsonl`` and keeps the launcher's own events beside them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._offsets: dict[Path, int] = {}
        self.malformed = 0

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def poll(self, nodes: Iterable[HasDirectory]) -> None:
        """Read whatever complete lines the nodes appended since the last poll."""
        for node in nodes:
            source = node.directory / "events.jsonl"
            if not source.exists():
                continue
            offset = self._offsets.get(source, 0)
            with source.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            self._offsets[source] = offset + len(complete)
            for line in complete.splitlines():
                try:
                    self.events.append(json.loads(line))
                except json.JSONDecodeError:
                    self.malformed += 1

    def rounds(self, round_number: int) -> dict[str, dict[str, Any]]:
        """The latest ``round`` event of each node for one round."""
        latest: dict[str, dict[str, Any]] = {}
        for event in self.events:
            if event.get("event") == "round" and event.get("round") == round_number:
                latest[str(event["node"])] = event
        return latest

    def finished_nodes(self) -> set[str]:
        """Nodes that reported reaching the federation's last round."""
        return {str(e["node"]) for e in self.events if e.get("event") == "node-finished"}

    def mean_metric(self, round_number: int) -> tuple[str, float | None]:
        """The task's metric name and its mean over the nodes' events of a round."""
        events = list(self.rounds(round_number).values())
        name = str(events[0].get("metric_name", "accuracy")) if events else "accuracy"
        values = [float(e.get("test_metric", e["test_accuracy"])) for e in events]
        return name, statistics.fmean(values) if values else None

    def write(self) -> None:
        """All events, ordered by time, to ``events.jsonl``."""
        ordered = sorted(self.events, key=lambda e: float(e.get("ts", 0.0)))
        with self.path.open("w") as handle:
            for event in ordered:
                handle.write(json.dumps(event, sort_keys=True) + "\n")

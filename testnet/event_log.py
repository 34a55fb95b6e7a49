"""Reading a run's ``events.jsonl``: round metrics, exclusions, faults and node processes.

Unknown event kinds and unknown fields are ignored; a line that is not a JSON object, or a
known kind whose required fields are missing or of the wrong type, is counted as malformed
and skipped, so one bad line never hides the rest of the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RoundEvent:
    """One node's report at the end of one round."""

    ts: float | None
    round: int
    node: str
    test_accuracy: float
    test_loss: float | None = None
    site: str | None = None
    display_name: str | None = None
    address: str | None = None
    global_hash: str | None = None
    seconds: float | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None


@dataclass(frozen=True)
class ExcludedUpdate:
    """A member's update that a node left out of a round."""

    ts: float | None
    round: int
    by: str
    member: str
    reason: str


@dataclass(frozen=True)
class FaultEvent:
    """A fault the launcher injected (crash, restart, straggler, partition, ...)."""

    ts: float | None
    kind: str
    node: str
    round: int | None
    detail: str


@dataclass(frozen=True)
class ProcessEvent:
    """A node process starting or stopping."""

    ts: float | None
    event: str  # "node-started", "node-finished" (reached the last round) or "node-stopped"
    node: str
    pid: int | None
    rss_mb: float | None
    startup_seconds: float | None


@dataclass
class RunEvents:
    """Everything the report needs from ``events.jsonl``."""

    rounds: list[RoundEvent] = field(default_factory=list)
    excluded: list[ExcludedUpdate] = field(default_factory=list)
    faults: list[FaultEvent] = field(default_factory=list)
    processes: list[ProcessEvent] = field(default_factory=list)
    malformed_lines: int = 0
    first_malformed_line: int | None = None
    start_ts: float | None = None
    end_ts: float | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.rounds or self.excluded or self.faults or self.processes)


def read_events(path: Path) -> RunEvents:
    """Parse ``events.jsonl``; a missing file gives an empty :class:`RunEvents`."""
    events = RunEvents()
    if not path.exists():
        return events
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                _add_line(events, line)
            except (ValueError, TypeError):
                events.malformed_lines += 1
                if events.first_malformed_line is None:
                    events.first_malformed_line = number
    return events


def _add_line(events: RunEvents, line: str) -> None:
    raw = json.loads(line)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    kind = raw.get("event")
    if not isinstance(kind, str):
        raise ValueError("no event kind")
    ts = _optional_float(raw, "ts")
    parsed = _parse(kind, raw, ts)
    if ts is not None:
        events.start_ts = ts if events.start_ts is None else min(events.start_ts, ts)
        events.end_ts = ts if events.end_ts is None else max(events.end_ts, ts)
    if isinstance(parsed, RoundEvent):
        events.rounds.append(parsed)
    elif isinstance(parsed, ExcludedUpdate):
        events.excluded.append(parsed)
    elif isinstance(parsed, FaultEvent):
        events.faults.append(parsed)
    elif isinstance(parsed, ProcessEvent):
        events.processes.append(parsed)


def _parse(
    kind: str, raw: dict[str, Any], ts: float | None
) -> RoundEvent | ExcludedUpdate | FaultEvent | ProcessEvent | None:
    if kind == "round":
        return RoundEvent(
            ts=ts,
            round=_int(raw, "round"),
            node=_str(raw, "node"),
            test_accuracy=_float(raw, "test_accuracy"),
            test_loss=_optional_float(raw, "test_loss"),
            site=_optional_str(raw, "site"),
            display_name=_optional_str(raw, "display_name"),
            address=_optional_str(raw, "address"),
            global_hash=_optional_str(raw, "global_hash"),
            seconds=_optional_float(raw, "seconds"),
            bytes_sent=_optional_int(raw, "bytes_sent"),
            bytes_received=_optional_int(raw, "bytes_received"),
        )
    if kind == "excluded":
        reason = raw.get("reason")
        return ExcludedUpdate(
            ts=ts,
            round=_int(raw, "round"),
            by=_str(raw, "node"),
            member=_str(raw, "member"),
            reason="" if reason is None else str(reason),
        )
    if kind == "fault":
        detail = raw.get("detail")
        return FaultEvent(
            ts=ts,
            kind=_str(raw, "kind"),
            node=_optional_str(raw, "node") or "",
            round=_optional_int(raw, "round"),
            detail="" if detail is None else _text(detail),
        )
    if kind in ("node-started", "node-finished", "node-stopped"):
        return ProcessEvent(
            ts=ts,
            event=kind,
            node=_str(raw, "node"),
            pid=_optional_int(raw, "pid"),
            rss_mb=_optional_float(raw, "rss_mb"),
            startup_seconds=_optional_float(raw, "startup_seconds"),
        )
    return None


def parse_fault(raw: Any) -> FaultEvent:
    """A fault from ``summary.json``'s ``faults`` list (same fields as the event)."""
    if not isinstance(raw, dict):
        raise ValueError("fault is not a JSON object")
    detail = raw.get("detail")
    return FaultEvent(
        ts=_optional_float(raw, "ts"),
        kind=_str(raw, "kind"),
        node=_optional_str(raw, "node") or "",
        round=_optional_int(raw, "round"),
        detail="" if detail is None else _text(detail),
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _optional_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return None if value is None else _str(raw, key)


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer")
    return value


def _optional_int(raw: dict[str, Any], key: str) -> int | None:
    return None if raw.get(key) is None else _int(raw, key)


def _float(raw: dict[str, Any], key: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number")
    return float(value)


def _optional_float(raw: dict[str, Any], key: str) -> float | None:
    return None if raw.get(key) is None else _float(raw, key)

"""A run directory read back for the report: ``summary.json`` plus ``events.jsonl``.

Figures the summary lacks (an interrupted run has none) are worked out from the events.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testnet.errors import TestnetError
from testnet.event_log import FaultEvent, RunEvents, parse_fault, read_events


@dataclass(frozen=True)
class HospitalRow:
    """One hospital's line in the report's table (fields absent from the summary are None)."""

    name: str
    site: str
    samples: int | None
    local_only_accuracy: float | None
    federated_accuracy: float | None
    contribution: float | None
    reward_wei: int | None
    reward_eth: float | None
    reputation: float | None


@dataclass(frozen=True)
class RunData:
    """What the report shows about one run."""

    run_dir: Path
    scenario: str | None
    nodes_agree: bool | None
    final_global_hash: str | None
    final_mean_accuracy: float | None
    rounds: int | None
    seconds: float | None
    node_count: int
    hospitals: list[HospitalRow]
    faults: list[FaultEvent]
    events: RunEvents
    has_summary: bool
    epsilon: float | None = None  # differential privacy spent per hospital, if noised
    delta: float | None = None


def load_run(run_dir: Path) -> RunData:
    """Read a run directory; raises :class:`TestnetError` if there is nothing to report."""
    if not run_dir.is_dir():
        raise TestnetError(
            f"run directory {run_dir} does not exist; pass the --out directory of a "
            "'medswarm testnet run'"
        )
    summary_path = run_dir / "summary.json"
    summary = _read_summary(summary_path) if summary_path.exists() else {}
    events = read_events(run_dir / "events.jsonl")
    if not summary and events.is_empty:
        raise TestnetError(
            f"run directory {run_dir} has no summary.json and no events in events.jsonl; "
            "nothing to report (was the run started with --out pointing here?)"
        )
    hospitals = [_hospital(raw) for raw in _list(summary.get("hospitals"))]
    last_round = _last_round_hashes(events)
    agree = summary.get("nodes_agree")
    final_hash = summary.get("final_global_hash")
    seconds = _number(summary.get("seconds"))
    if seconds is None and events.start_ts is not None and events.end_ts is not None:
        seconds = events.end_ts - events.start_ts
    rounds = summary.get("rounds")
    return RunData(
        run_dir=run_dir,
        scenario=_string(summary.get("scenario")),
        nodes_agree=agree if isinstance(agree, bool) else _agree_from(last_round),
        final_global_hash=_string(final_hash) or _hash_from(last_round),
        final_mean_accuracy=_final_mean(_number(summary.get("final_mean_accuracy")), events),
        rounds=rounds if isinstance(rounds, int) else _rounds_from(events),
        seconds=seconds,
        node_count=len(hospitals) or len({r.node for r in events.rounds}),
        hospitals=hospitals,
        faults=_merge_faults(events.faults, _list(summary.get("faults"))),
        events=events,
        has_summary=bool(summary),
        epsilon=_number(summary.get("epsilon")),
        delta=_number(summary.get("delta")),
    )


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TestnetError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise TestnetError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def _hospital(raw: Any) -> HospitalRow:
    item: dict[str, Any] = raw if isinstance(raw, dict) else {}
    reward_wei = item.get("reward_wei")
    reward_wei = reward_wei if isinstance(reward_wei, int) else None
    reward_eth = _number(item.get("reward_eth"))
    if reward_eth is None and reward_wei is not None:
        reward_eth = reward_wei / 10**18
    samples = item.get("samples")
    return HospitalRow(
        name=str(item.get("name", "?")),
        site=str(item.get("site", "")),
        samples=samples if isinstance(samples, int) else None,
        local_only_accuracy=_number(item.get("local_only_accuracy")),
        federated_accuracy=_number(item.get("federated_accuracy")),
        contribution=_number(item.get("contribution")),
        reward_wei=reward_wei,
        reward_eth=reward_eth,
        reputation=_number(item.get("reputation")),
    )


def _merge_faults(from_events: list[FaultEvent], from_summary: list[Any]) -> list[FaultEvent]:
    """Faults from the event log, plus any the summary lists that the log does not."""
    seen = {(f.kind, f.node, f.round) for f in from_events}
    merged = list(from_events)
    for raw in from_summary:
        try:
            fault = parse_fault(raw)
        except (ValueError, TypeError):
            continue
        if (fault.kind, fault.node, fault.round) not in seen:
            merged.append(fault)
    return merged


def _last_round_hashes(events: RunEvents) -> set[str]:
    if not events.rounds:
        return set()
    last = max(r.round for r in events.rounds)
    return {r.global_hash for r in events.rounds if r.round == last and r.global_hash}


def _agree_from(hashes: set[str]) -> bool | None:
    return len(hashes) == 1 if hashes else None


def _hash_from(hashes: set[str]) -> str | None:
    return next(iter(hashes)) if len(hashes) == 1 else None


def _final_mean(from_summary: float | None, events: RunEvents) -> float | None:
    return from_summary if from_summary is not None else _final_mean_from(events)


def _final_mean_from(events: RunEvents) -> float | None:
    if not events.rounds:
        return None
    last = max(r.round for r in events.rounds)
    return statistics.fmean(r.test_accuracy for r in events.rounds if r.round == last)


def _rounds_from(events: RunEvents) -> int | None:
    return max((r.round for r in events.rounds), default=None)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)

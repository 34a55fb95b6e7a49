"""The report's HTML tables: hospitals, fault timeline, node processes, excluded updates.

Every function returns an HTML fragment with all run data escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from testnet.event_log import ExcludedUpdate, FaultEvent, ProcessEvent, RoundEvent
from testnet.run_data import HospitalRow


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """A table; columns whose index is in ``numeric`` are right-aligned."""
    head = "".join(
        f'<th class="num">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "\n".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(cell)}</td>' if i in numeric else f"<td>{escape(cell)}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def hospitals_table(hospitals: Sequence[HospitalRow]) -> str:
    """One row per hospital: data size, accuracy alone and federated, contribution, reward."""
    headers = [
        "hospital",
        "site",
        "samples",
        "local-only accuracy",
        "federated accuracy",
        "contribution",
        "reward (ETH)",
    ]
    with_reputation = any(h.reputation is not None for h in hospitals)
    if with_reputation:
        headers.append("reputation")
    rows = []
    for h in hospitals:
        row = [
            h.name,
            h.site,
            _int(h.samples),
            _fixed(h.local_only_accuracy, 3),
            _fixed(h.federated_accuracy, 3),
            _int(h.contribution),
            _fixed(h.reward_eth, 6),
        ]
        if with_reputation:
            row.append(_fixed(h.reputation, 3))
        rows.append(row)
    return table(headers, rows, numeric=set(range(2, len(headers))))


def faults_table(faults: Sequence[FaultEvent], start_ts: float | None) -> str:
    """The injected faults in time order, timed from the start of the run."""
    ordered = sorted(faults, key=lambda f: (f.ts is None, f.ts or 0.0, f.round or 0))
    rows = [[_since(f.ts, start_ts), _plain(f.round), f.kind, f.node, f.detail] for f in ordered]
    return table(["time since start", "round", "kind", "node", "detail"], rows, numeric={0, 1})


def processes_table(processes: Sequence[ProcessEvent], start_ts: float | None) -> str:
    """One row per node process: when it started and stopped, start-up time, memory."""
    starts = [p for p in processes if p.event == "node-started"]
    stops = [p for p in processes if p.event in ("node-finished", "node-stopped")]
    rows: list[list[str]] = []
    for start in starts:
        stop = _matching_stop(start, stops)
        if stop is not None:
            stops.remove(stop)
        rows.append(_process_row(start.node, start, stop, start_ts))
    rows += [_process_row(stop.node, None, stop, start_ts) for stop in stops]
    headers = [
        "node",
        "pid",
        "started",
        "start-up (s)",
        "RSS at start (MB)",
        "stopped",
        "RSS at stop (MB)",
    ]
    return table(headers, rows, numeric={1, 2, 3, 4, 5, 6})


def excluded_table(excluded: Sequence[ExcludedUpdate], rounds: Sequence[RoundEvent]) -> str:
    """Updates left out of a round, with the member's node name when the events give it."""
    names = {r.address.lower(): r.node for r in rounds if r.address}
    rows = []
    for item in sorted(excluded, key=lambda e: (e.round, e.by, e.member)):
        name = names.get(item.member.lower())
        member = f"{name} ({item.member})" if name else item.member
        rows.append([str(item.round), item.by, member, item.reason])
    return table(["round", "excluded by", "member", "reason"], rows, numeric={0})


def _matching_stop(start: ProcessEvent, stops: Sequence[ProcessEvent]) -> ProcessEvent | None:
    for stop in stops:
        same_process = start.pid is None or stop.pid is None or start.pid == stop.pid
        later = start.ts is None or stop.ts is None or stop.ts >= start.ts
        if stop.node == start.node and same_process and later:
            return stop
    return None


def _process_row(
    node: str, start: ProcessEvent | None, stop: ProcessEvent | None, start_ts: float | None
) -> list[str]:
    pid = start.pid if start is not None else stop.pid if stop is not None else None
    return [
        node,
        _plain(pid),
        _since(start.ts, start_ts) if start else "",
        _fixed(start.startup_seconds, 2) if start else "",
        _fixed(start.rss_mb, 1) if start else "",
        _since(stop.ts, start_ts) if stop else "",
        _fixed(stop.rss_mb, 1) if stop else "",
    ]


def _since(ts: float | None, start_ts: float | None) -> str:
    if ts is None or start_ts is None:
        return "–"
    return f"+{ts - start_ts:.1f} s"


def _fixed(value: float | None, places: int) -> str:
    return "–" if value is None else f"{value:.{places}f}"


def _int(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _plain(value: int | None) -> str:
    return "–" if value is None else str(value)

"""Reading a run directory back: events.jsonl tolerance and the summary's fault list."""

from __future__ import annotations

import json
from pathlib import Path

from testnet.event_log import read_events
from testnet.run_data import load_run


def test_bad_lines_are_counted_and_unknown_kinds_skipped(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"ts": 10.0, "event": "fault", "kind": "crash", "node": "a-1", "round": null}',
                "",
                "[1, 2]",  # not an object
                '{"ts": 11.0, "event": "round", "round": "two", "node": "a-1", '
                '"test_accuracy": 0.5}',  # round is not an integer
                '{"ts": 12.0, "event": "peer-score", "node": "a-1", "score": 3}',  # unknown kind
                '{"ts": 13.0, "event": "round", "round": 2, "node": "a-1", "test_accuracy": 0.5,'
                ' "new_field": {"x": 1}}',
            ]
        )
        + "\n"
    )
    events = read_events(path)
    assert events.malformed_lines == 2
    assert events.first_malformed_line == 3
    assert [(f.kind, f.node, f.round) for f in events.faults] == [("crash", "a-1", None)]
    assert [(r.round, r.test_accuracy, r.bytes_sent) for r in events.rounds] == [(2, 0.5, None)]
    # the unknown kind still counts towards the run's time span
    assert (events.start_ts, events.end_ts) == (10.0, 13.0)


def test_summary_faults_fill_in_what_the_log_lacks(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(
        '{"ts": 5.0, "event": "fault", "kind": "crash", "node": "b-2", "round": 3}\n'
    )
    summary = {
        "nodes_agree": True,
        "final_global_hash": "00" * 32,
        "hospitals": [],
        "faults": [
            {"kind": "crash", "node": "b-2", "round": 3, "detail": "dup of the log's"},
            {"kind": "heal", "node": "b-2", "round": 5},
        ],
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    run = load_run(tmp_path)
    assert [(f.kind, f.round, f.ts) for f in run.faults] == [("crash", 3, 5.0), ("heal", 5, None)]
    assert run.nodes_agree is True
    assert run.final_mean_accuracy is None

"""EventLog: chain order, JSON lines round trip, thread safety."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from incentive.events import EventLog, EventRecord

ADDRESS = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"


def event(block: int, index: int, **args: object) -> EventRecord:
    return EventRecord(
        contract="Ledger",
        event="Attested",
        args=dict(args),
        address=ADDRESS,
        block_number=block,
        block_hash="0x" + f"{block:064x}",
        transaction_hash="0x" + f"{block * 100 + index:064x}",
        log_index=index,
    )


def test_records_come_out_in_chain_order_and_survive_a_round_trip(tmp_path: Path) -> None:
    log = EventLog()
    log.extend([event(5, 1, round=2), event(5, 0, round=1)])
    log.extend([event(3, 0, globalHash="0x" + "ab" * 32)])

    path = log.write_jsonl(tmp_path / "chain" / "events.jsonl")
    again = EventLog.read_jsonl(path)

    assert [r.position for r in log.records()] == [(3, 0), (5, 0), (5, 1)]
    assert again.records() == log.records()
    assert not (tmp_path / "chain" / "events.jsonl.tmp").exists()


def test_concurrent_appends_are_all_kept() -> None:
    log = EventLog()

    def append(thread: int) -> None:
        for i in range(200):
            log.extend([event(thread * 1000 + i, 0)])

    threads = [threading.Thread(target=append, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    assert len(log) == 800


def test_malformed_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"contract": "Ledger"}\n')

    with pytest.raises(ValueError, match=r"events.jsonl:1: not an event record"):
        EventLog.read_jsonl(path)

"""The federation's event history: records decoded from receipts or logs, and a JSON-lines log.

On the embedded chain the history dies with the process, so every client appends the events
of each receipt it gets to an :class:`EventLog`, which the node writes next to its run
(``EventLog.write_jsonl``). On a live chain :func:`read_events_from_chain` rebuilds the same
records from ``eth_getLogs`` in narrow block ranges. One record per line::

    {"contract": "Ledger", "event": "ClusterRecorded", "args": {...}, "address": "0x..",
     "blockNumber": 12, "blockHash": "0x..", "transactionHash": "0x..", "logIndex": 0}

Argument values: addresses checksummed, ``bytes32`` as 0x-prefixed lowercase hex, integers
as JSON integers.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from incentive.abi_codec import EventDecoder
from incentive.deployment import Deployment, event_decoder

logger = logging.getLogger(__name__)


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text


@dataclass(frozen=True)
class EventRecord:
    """One decoded contract event with where it happened on the chain."""

    contract: str
    event: str
    args: Mapping[str, Any] = field(hash=False)
    address: str
    block_number: int
    block_hash: str
    transaction_hash: str
    log_index: int

    @property
    def position(self) -> tuple[int, int]:
        """Sort key: (block number, log index)."""
        return (self.block_number, self.log_index)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``events.jsonl``."""
        return {
            "contract": self.contract,
            "event": self.event,
            "args": dict(self.args),
            "address": self.address,
            "blockNumber": self.block_number,
            "blockHash": self.block_hash,
            "transactionHash": self.transaction_hash,
            "logIndex": self.log_index,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventRecord:
        """Parse the JSON form; raises KeyError/TypeError/ValueError when malformed."""
        args = data["args"]
        if not isinstance(args, dict):
            raise TypeError("args must be an object")
        return cls(
            contract=str(data["contract"]),
            event=str(data["event"]),
            args=args,
            address=to_checksum_address(data["address"]),
            block_number=int(data["blockNumber"]),
            block_hash=str(data["blockHash"]),
            transaction_hash=str(data["transactionHash"]),
            log_index=int(data["logIndex"]),
        )


def decode_logs(decoder: EventDecoder, logs: Iterable[Mapping[str, Any]]) -> list[EventRecord]:
    """Decode receipt or ``eth_getLogs`` entries; logs of unknown contracts are skipped."""
    records = []
    for log in logs:
        decoded = decoder.decode(str(log["address"]), log["topics"], bytes(log["data"]))
        if decoded is None:
            continue
        records.append(
            EventRecord(
                contract=decoded.contract,
                event=decoded.event,
                args=decoded.args,
                address=to_checksum_address(log["address"]),
                block_number=int(log["blockNumber"]),
                block_hash=_hex(log["blockHash"]),
                transaction_hash=_hex(log["transactionHash"]),
                log_index=int(log["logIndex"]),
            )
        )
    return records


class EventLog:
    """A thread-safe, append-only collection of event records, written as JSON lines."""

    def __init__(self, records: Iterable[EventRecord] = ()) -> None:
        self._lock = threading.Lock()
        self._records: list[EventRecord] = list(records)

    def extend(self, records: Iterable[EventRecord]) -> None:
        """Append records (clients call this with the events of each receipt)."""
        new = list(records)
        with self._lock:
            self._records.extend(new)

    def records(self) -> list[EventRecord]:
        """All records in chain order (block number, then log index)."""
        with self._lock:
            return sorted(self._records, key=lambda r: r.position)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def write_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Write all records, in chain order, to ``path`` (atomically replaced)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for record in self.records():
                out.write(json.dumps(record.to_dict(), sort_keys=True) + "\n")
        tmp.replace(target)
        return target

    @classmethod
    def read_jsonl(cls, path: str | os.PathLike[str]) -> EventLog:
        """Read a file written by :meth:`write_jsonl`.

        Raises OSError when unreadable and ValueError naming the line when malformed.
        """
        records = []
        with Path(path).open(encoding="utf-8") as src:
            for number, line in enumerate(src, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(EventRecord.from_dict(json.loads(line)))
                except (KeyError, TypeError, ValueError) as exc:
                    raise ValueError(f"{path}:{number}: not an event record ({exc})") from exc
        return cls(records)


def read_events_from_chain(
    w3: Any,
    deployment: Deployment,
    from_block: int | None = None,
    to_block: int | None = None,
    *,
    lock: AbstractContextManager[Any] | None = None,
    chunk_blocks: int = 500,
) -> list[EventRecord]:
    """Fetch and decode the federation's events between two blocks (inclusive).

    ``from_block`` defaults to the registry's deployment block, ``to_block`` to the latest.
    Logs are requested ``chunk_blocks`` blocks at a time, so the query stays cheap on nodes
    (and on the in-process chain, whose whole-chain ``get_logs`` is slow).
    """
    if chunk_blocks < 1:
        raise ValueError("chunk_blocks must be at least 1")
    decoder = event_decoder(deployment)
    guard = lock if lock is not None else nullcontext()
    if from_block is None:
        from_block = deployment.start_block
    if to_block is None:
        with guard:
            to_block = int(w3.eth.block_number)
    addresses: Sequence[str] = decoder.addresses
    records: list[EventRecord] = []
    start = from_block
    while start <= to_block:
        end = min(start + chunk_blocks - 1, to_block)
        with guard:
            logs = w3.eth.get_logs({"fromBlock": start, "toBlock": end, "address": addresses})
        records.extend(decode_logs(decoder, logs))
        start = end + 1
    logger.debug("read %d events from blocks %d-%d", len(records), from_block, to_block)
    return sorted(records, key=lambda r: r.position)

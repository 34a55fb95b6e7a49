"""Audit a federation from its event history: trace models to rounds, updates and payouts.

The history comes from a run directory (``RUN/chain/deployment.json`` and
``RUN/chain/events.jsonl``, see :mod:`incentive.rundir`) or from a live chain given its RPC URL
and Registry address. :func:`build_audit` replays the events and checks, independently of the
contracts' own arithmetic:

* each round's ``recordsHash`` equals keccak256 of its packed member records
  (address 20 bytes | update hash 32 | samples uint64 big-endian | score uint64 big-endian),
  rebuilt from the round's ``UpdateRecorded`` events;
* rounds run 1, 2, ... and each names the previous round's global hash as its previous hash;
* each round was recorded by its expected aggregator (members[round % count]);
* a round is final exactly when ceil(2/3 of the members) have attested it;
* every reward credit equals floor(pot × contribution / total contribution) of its epoch, where
  the pot is everything funded minus everything credited before, and the dust is the rest.

:func:`verify_model` finds the round whose global hash is the SHA-256 of a model file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_utils import keccak

from incentive.audit_report import AuditReport, EpochEntry, MemberTotals, RoundEntry, UpdateEntry
from incentive.deployment import Deployment
from incentive.errors import AuditError
from incentive.events import EventRecord, read_events_from_chain
from incentive.hashes import hash_bytes, hash_hex
from incentive.rundir import read_chain_record


@dataclass(frozen=True)
class AuditSource:
    """A federation's deployment and its complete event history, in chain order."""

    description: str
    deployment: Deployment
    events: list[EventRecord]


def source_from_run_dir(run_dir: str | os.PathLike[str]) -> AuditSource:
    """Read the chain record a run left in its directory (raises AuditError)."""
    deployment, events = read_chain_record(run_dir)
    return AuditSource(f"run directory {run_dir}", deployment, events)


def source_from_chain(
    w3: Any,
    registry: str,
    description: str | None = None,
    lock: AbstractContextManager[Any] | None = None,
) -> AuditSource:
    """Read the deployment and all events of the federation whose Registry is ``registry``."""
    deployment = Deployment.discover(w3, registry, lock)
    events = read_events_from_chain(w3, deployment, lock=lock)
    return AuditSource(description or f"chain {deployment.chain_id}", deployment, events)


def pack_records(updates: Iterable[UpdateEntry]) -> bytes:
    """The preimage of a round's ``recordsHash``."""
    return b"".join(
        bytes.fromhex(u.member[2:])
        + hash_bytes(u.update_hash)
        + u.samples.to_bytes(8, "big")
        + u.score.to_bytes(8, "big")
        for u in updates
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes as bare lowercase hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as src:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_model(path: str | os.PathLike[str], report: AuditReport) -> RoundEntry | None:
    """The earliest recorded round whose global hash is the file's SHA-256, or None."""
    digest = file_sha256(path)
    return next((r for r in report.rounds if r.global_hash == digest), None)


@dataclass
class _Round:
    entry: dict[str, Any]
    updates: list[UpdateEntry]
    attesters: list[str] = field(default_factory=list)
    finalized: bool = False
    due_final_in_tx: str | None = None


class _Replay:
    """Replays events in chain order, rebuilding state and noting what does not add up."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.problems: list[str] = []
        self.order: list[str] = []
        self.names: dict[str, str] = {}
        self.peer_ids: dict[str, str] = {}
        self.contribution: dict[str, int] = {}
        self.accounted: dict[str, int] = {}
        self.credited: dict[str, int] = {}
        self.withdrawn: dict[str, int] = {}
        self.funded = 0
        self.updates: dict[int, list[UpdateEntry]] = {}
        self.rounds: dict[int, _Round] = {}
        self.pending_credits: dict[str, tuple[int, int]] = {}
        self.epochs: list[EpochEntry] = []

    def name(self, address: str) -> str:
        return self.names.get(address, "(not a member)")

    def run(self, events: Iterable[EventRecord]) -> None:
        for event in events:
            if event.address != self.deployment.address_of(event.contract):
                self.problems.append(
                    f"{event.event} in tx {event.transaction_hash} comes from {event.address}, "
                    f"which is not this federation's {event.contract}"
                )
                continue
            handler = getattr(self, f"on_{event.event}", None)
            if handler is None:
                continue
            try:
                handler(event.args, event)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise AuditError(
                    f"{event.contract}.{event.event} in tx {event.transaction_hash} (block "
                    f"{event.block_number}) has malformed arguments ({exc!r}); the event "
                    "record is garbled"
                ) from exc
        for number, rnd in sorted(self.rounds.items()):
            if rnd.due_final_in_tx is not None:
                self.problems.append(
                    f"round {number} reached its quorum but no RoundFinalized was emitted"
                )
        for number in sorted(set(self.updates) - set(self.rounds)):
            self.problems.append(f"UpdateRecorded events for round {number}, never recorded")

    def on_MemberAdmitted(self, args: dict[str, Any], event: EventRecord) -> None:
        self.order.append(args["member"])
        self.names[args["member"]] = args["name"]

    def on_MemberRegistered(self, args: dict[str, Any], event: EventRecord) -> None:
        self.peer_ids[args["member"]] = args["peerId"]

    def on_UpdateRecorded(self, args: dict[str, Any], event: EventRecord) -> None:
        member = args["member"]
        update = UpdateEntry(
            member=member,
            name=self.name(member),
            update_hash=hash_hex(args["updateHash"]),
            samples=int(args["samples"]),
            score=int(args["score"]),
        )
        self.updates.setdefault(int(args["round"]), []).append(update)
        self.contribution[member] = self.contribution.get(member, 0) + update.score

    def on_RoundRecorded(self, args: dict[str, Any], event: EventRecord) -> None:
        number = int(args["round"])
        updates = self.updates.get(number, [])
        entry = {
            "round": number,
            "global_hash": hash_hex(args["globalHash"]),
            "previous_hash": hash_hex(args["previousGlobalHash"]),
            "records_hash": hash_hex(args["recordsHash"]),
            "aggregator": args["aggregator"],
            "aggregator_name": self.name(args["aggregator"]),
            "block_number": event.block_number,
            "transaction_hash": event.transaction_hash,
        }
        recomputed = keccak(pack_records(updates)).hex()
        if recomputed != entry["records_hash"]:
            self.problems.append(
                f"round {number}: recordsHash on chain {entry['records_hash']} differs from "
                f"{recomputed} rebuilt from its {len(updates)} UpdateRecorded events"
            )
        expected_number = max(self.rounds, default=0) + 1
        if number != expected_number:
            self.problems.append(f"round {number} recorded where round {expected_number} was due")
        previous = self.rounds.get(number - 1)
        if previous is not None and previous.entry["global_hash"] != entry["previous_hash"]:
            self.problems.append(
                f"round {number} names previous hash {entry['previous_hash']}, but round "
                f"{number - 1} produced {previous.entry['global_hash']}"
            )
        if self.order:
            expected = self.order[number % len(self.order)]
            if args["aggregator"] != expected:
                self.problems.append(
                    f"round {number} recorded by {args['aggregator']}, expected aggregator was "
                    f"{expected}"
                )
        self.rounds[number] = _Round(entry=entry, updates=updates)

    def on_Attested(self, args: dict[str, Any], event: EventRecord) -> None:
        rnd = self.rounds.get(int(args["round"]))
        if rnd is None:
            self.problems.append(f"attestation of unrecorded round {args['round']}")
            return
        rnd.attesters.append(args["member"])
        quorum = (2 * len(self.order) + 2) // 3
        if not rnd.finalized and rnd.due_final_in_tx is None and len(rnd.attesters) >= quorum:
            rnd.due_final_in_tx = event.transaction_hash

    def on_RoundFinalized(self, args: dict[str, Any], event: EventRecord) -> None:
        number = int(args["round"])
        rnd = self.rounds.get(number)
        if rnd is None or rnd.due_final_in_tx != event.transaction_hash:
            self.problems.append(
                f"round {number} finalized in tx {event.transaction_hash} without its quorum "
                "being reached there"
            )
        if rnd is not None:
            rnd.finalized = True
            rnd.due_final_in_tx = None

    def on_Funded(self, args: dict[str, Any], event: EventRecord) -> None:
        self.funded += int(args["amount"])

    def on_RewardCredited(self, args: dict[str, Any], event: EventRecord) -> None:
        self.pending_credits[args["member"]] = (int(args["amount"]), int(args["contribution"]))

    def on_RewardsDistributed(self, args: dict[str, Any], event: EventRecord) -> None:
        epoch = int(args["epoch"])
        if epoch != len(self.epochs) + 1:
            self.problems.append(f"reward epoch {epoch} follows epoch {len(self.epochs)}")
        pot = self.funded - sum(self.credited.values())
        deltas = {
            m: self.contribution.get(m, 0) - self.accounted.get(m, 0)
            for m in self.order
            if self.contribution.get(m, 0) > self.accounted.get(m, 0)
        }
        total = sum(deltas.values())
        expected = {m: pot * d // total for m, d in deltas.items()} if total else {}
        actual = self.pending_credits
        for member in sorted(set(expected) | set(actual)):
            want_amount, want_delta = expected.get(member, 0), deltas.get(member, 0)
            got_amount, got_delta = actual.get(member, (0, 0))
            if (want_amount, want_delta) != (got_amount, got_delta):
                self.problems.append(
                    f"epoch {epoch}: {self.name(member)} ({member}) credited {got_amount} wei "
                    f"for contribution {got_delta}; expected {want_amount} wei for {want_delta} "
                    f"(pot {pot} wei, total contribution {total})"
                )
        paid = sum(amount for amount, _ in actual.values())
        if (int(args["amount"]), int(args["dust"])) != (paid, pot - sum(expected.values())):
            self.problems.append(
                f"epoch {epoch}: event says {args['amount']} wei credited and {args['dust']} "
                f"dust; replay gives {paid} credited and {pot - sum(expected.values())} dust "
                "(ETH sent to the pool without fund() would explain a larger pot)"
            )
        for member, (amount, delta) in actual.items():
            self.credited[member] = self.credited.get(member, 0) + amount
            self.accounted[member] = self.accounted.get(member, 0) + delta
        self.epochs.append(
            EpochEntry(
                epoch=epoch,
                amount=int(args["amount"]),
                dust=int(args["dust"]),
                block_number=event.block_number,
                credits={m: a for m, (a, _) in actual.items()},
                contributions={m: d for m, (_, d) in actual.items()},
            )
        )
        self.pending_credits = {}

    def on_Withdrawn(self, args: dict[str, Any], event: EventRecord) -> None:
        member = args["member"]
        self.withdrawn[member] = self.withdrawn.get(member, 0) + int(args["amount"])
        if self.withdrawn[member] > self.credited.get(member, 0):
            self.problems.append(f"{member} withdrew more than it was credited")


def build_audit(source: AuditSource) -> AuditReport:
    """Replay the source's events into a report, with every check's problems listed."""
    replay = _Replay(source.deployment)
    replay.run(source.events)
    rounds = [
        RoundEntry(
            **rnd.entry,
            finalized=rnd.finalized,
            attestations=len(rnd.attesters),
            attesters=list(rnd.attesters),
            updates=list(rnd.updates),
        )
        for _, rnd in sorted(replay.rounds.items())
    ]
    members = [
        MemberTotals(
            address=m,
            name=replay.names[m],
            peer_id=replay.peer_ids.get(m, ""),
            contribution=replay.contribution.get(m, 0),
            credited=replay.credited.get(m, 0),
            withdrawn=replay.withdrawn.get(m, 0),
        )
        for m in replay.order
    ]
    d = source.deployment
    return AuditReport(
        source=source.description,
        chain_id=d.chain_id,
        registry=d.registry,
        ledger=d.ledger,
        rewards=d.rewards,
        rounds=rounds,
        members=members,
        epochs=replay.epochs,
        funded=replay.funded,
        credited=sum(replay.credited.values()),
        withdrawn=sum(replay.withdrawn.values()),
        problems=replay.problems,
    )


def audit_run_dir(run_dir: str | os.PathLike[str]) -> AuditReport:
    """Shortcut: build the audit of a run directory."""
    return build_audit(source_from_run_dir(run_dir))

"""Audit a federation from its event history: trace models to rounds, clusters, updates, payouts.

The history comes from a run directory (``RUN/chain/deployment.json`` and
``RUN/chain/events.jsonl``, see :mod:`incentive.rundir`) or from a live chain given its RPC URL
and Registry address. :func:`build_audit` replays the events and checks, independently of the
contracts' own arithmetic:

* each cluster record's ``recordsHash`` equals keccak256 of its packed member records
  (address 20 bytes | update hash 32 | samples uint64 big-endian | score uint64 big-endian),
  rebuilt from the ``UpdateRecorded`` events of the same transaction, and its
  ``totalSamples`` their sum; every record names a member of that cluster;
* clusters are recorded once per round, only in the open round (the one after the last final
  round), and each names as previous hash the genesis hash (round 1) or the final hash of the
  round before;
* each cluster's aggregator belongs to it, and its ``candidateRank`` is its place in the
  failover order keccak256(round, cluster, member) ascending (:mod:`incentive.candidates`);
* attestations come after all clusters are recorded, once per member; a round is final
  exactly when one hash's attestations reach ceil(2/3 of the members), with that hash, and
  later attestations name the final hash;
* every reward credit equals floor(pot × contribution / total contribution) of its epoch, where
  the pot is everything funded minus everything credited before, and the dust is the rest.

:func:`verify_model` finds the round whose final hash is the SHA-256 of a model file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incentive.audit_replay import LedgerReplay, Membership
from incentive.audit_report import AuditReport, MemberTotals, RoundEntry
from incentive.audit_rewards import RewardReplay
from incentive.deployment import Deployment
from incentive.errors import AuditError
from incentive.events import EventRecord, read_events_from_chain
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


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes as bare lowercase hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as src:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_model(path: str | os.PathLike[str], report: AuditReport) -> RoundEntry | None:
    """The earliest final round whose final hash is the file's SHA-256, or None."""
    digest = file_sha256(path)
    return next((r for r in report.rounds if r.final_hash == digest), None)


def replay_events(
    deployment: Deployment, events: Iterable[EventRecord]
) -> tuple[Membership, LedgerReplay, RewardReplay, list[str]]:
    """Feed the events in chain order to the membership, ledger and reward replays."""
    problems: list[str] = []
    members = Membership()
    ledger = LedgerReplay(members, problems)
    rewards = RewardReplay(members, ledger.contribution, problems)
    for event in events:
        if event.address != deployment.address_of(event.contract):
            problems.append(
                f"{event.event} in tx {event.transaction_hash} comes from {event.address}, "
                f"which is not this federation's {event.contract}"
            )
            continue
        for replay in (members, ledger, rewards):
            handler = getattr(replay, f"on_{event.event}", None)
            if handler is not None:
                _handle(handler, event)
    ledger.finish()
    return members, ledger, rewards, problems


def _handle(handler: Any, event: EventRecord) -> None:
    try:
        handler(event.args, event)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AuditError(
            f"{event.contract}.{event.event} in tx {event.transaction_hash} (block "
            f"{event.block_number}) has malformed arguments ({exc!r}); the event record is "
            "garbled"
        ) from exc


def build_audit(source: AuditSource) -> AuditReport:
    """Replay the source's events into a report, with every check's problems listed."""
    members, ledger, rewards, problems = replay_events(source.deployment, source.events)
    totals = [
        MemberTotals(
            address=m,
            name=members.names[m],
            peer_id=members.peer_ids.get(m, ""),
            cluster=members.cluster_of[m],
            contribution=ledger.contribution.get(m, 0),
            credited=rewards.credited.get(m, 0),
            withdrawn=rewards.withdrawn.get(m, 0),
        )
        for m in members.order
    ]
    d = source.deployment
    return AuditReport(
        source=source.description,
        chain_id=d.chain_id,
        registry=d.registry,
        ledger=d.ledger,
        rewards=d.rewards,
        genesis_hash=ledger.genesis,
        rounds=ledger.entries(),
        members=totals,
        epochs=rewards.epochs,
        funded=rewards.funded,
        credited=sum(rewards.credited.values()),
        withdrawn=sum(rewards.withdrawn.values()),
        problems=problems,
    )


def audit_run_dir(run_dir: str | os.PathLike[str]) -> AuditReport:
    """Shortcut: build the audit of a run directory."""
    return build_audit(source_from_run_dir(run_dir))

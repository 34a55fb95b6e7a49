"""Replaying Registry and Ledger events: membership, cluster records, votes and finality.

Each replay object has ``on_<Event>(args, event)`` handlers, is fed the federation's events
in chain order, and appends what does not add up to a shared ``problems`` list. The checks
are made independently of the contracts' own arithmetic (see :mod:`incentive.audit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak

from incentive.audit_report import ClusterEntry, RoundEntry, UpdateEntry
from incentive.candidates import candidate_rank
from incentive.errors import InvalidPrivacyBudget
from incentive.events import EventRecord
from incentive.hashes import hash_hex
from incentive.privacy_budget import PrivacyBudget, budget_problems
from incentive.records import pack_record

NOT_A_MEMBER = "(not a member)"


class Membership:
    """Members in admission order, their names, peer ids and clusters."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.names: dict[str, str] = {}
        self.peer_ids: dict[str, str] = {}
        self.cluster_of: dict[str, int] = {}
        self.clusters: dict[int, list[str]] = {}

    def name(self, address: str) -> str:
        return self.names.get(address, NOT_A_MEMBER)

    def quorum(self) -> int:
        """ceil(2/3 of the current member count)."""
        return (2 * len(self.order) + 2) // 3

    def on_MemberAdmitted(self, args: dict[str, Any], event: EventRecord) -> None:
        member, cluster = args["member"], int(args["cluster"])
        self.order.append(member)
        self.names[member] = args["name"]
        self.cluster_of[member] = cluster
        self.clusters.setdefault(cluster, []).append(member)

    def on_MemberRegistered(self, args: dict[str, Any], event: EventRecord) -> None:
        self.peer_ids[args["member"]] = args["peerId"]


@dataclass
class _Round:
    clusters: dict[int, ClusterEntry] = field(default_factory=dict)
    votes: dict[str, list[str]] = field(default_factory=dict)
    attesters: set[str] = field(default_factory=set)
    final_hash: str | None = None
    finalized_block: int | None = None
    due: tuple[str, str] | None = None  # (hash, tx) that reached the quorum, until finalized
    # each attester's privacy budget (None: its event has none, or one the record cannot hold)
    budgets: dict[str, PrivacyBudget | None] = field(default_factory=dict)
    due_budget: PrivacyBudget | None = None  # the quorum-reaching attestation's
    privacy: PrivacyBudget | None = None  # stored with the round when it became final

    def entry(self, number: int) -> RoundEntry:
        clusters = [c for _, c in sorted(self.clusters.items())]
        final = self.final_hash
        privacy = self.privacy.as_dict() if self.privacy is not None else {}
        return RoundEntry(
            round=number,
            final_hash=final,
            previous_hash=clusters[0].previous_hash if clusters else "",
            finalized=final is not None,
            finalized_block=self.finalized_block,
            attestations=len(self.votes.get(final, [])) if final else 0,
            attesters=list(self.votes.get(final, [])) if final else [],
            votes={h: len(v) for h, v in self.votes.items()},
            clusters=clusters,
            **privacy,
        )


class LedgerReplay:
    """Rebuilds rounds from Ledger events and checks records, the hash chain and finality."""

    def __init__(self, members: Membership, problems: list[str]) -> None:
        self.members = members
        self.problems = problems
        self.genesis: str | None = None
        self.contribution: dict[str, int] = {}
        self.rounds: dict[int, _Round] = {}
        self.last_final = 0
        self._pending: dict[str, list[tuple[int, UpdateEntry]]] = {}

    def entries(self) -> list[RoundEntry]:
        return [rnd.entry(n) for n, rnd in sorted(self.rounds.items())]

    def finish(self) -> None:
        """Checks that need the whole history."""
        for number, rnd in sorted(self.rounds.items()):
            if rnd.due is not None:
                self.problems.append(
                    f"round {number} reached its quorum but no RoundFinalized was emitted"
                )
        for tx in self._pending:
            self.problems.append(f"UpdateRecorded events in tx {tx} without a ClusterRecorded")
        history = []
        for number, rnd in sorted(self.rounds.items()):
            if rnd.final_hash is None:
                continue
            named = {m: b for m in rnd.votes.get(rnd.final_hash, []) if (b := rnd.budgets.get(m))}
            if len(set(named.values())) > 1:
                told = ", ".join(f"{self.members.name(m)} {b.describe()}" for m, b in named.items())
                self.problems.append(
                    f"round {number}: the attesters of the final hash record different privacy "
                    f"budgets ({told}); members of one federation count the same rounds"
                )
            if rnd.privacy is not None:
                history.append((number, rnd.privacy))
        self.problems.extend(budget_problems(history))

    def on_GenesisSet(self, args: dict[str, Any], event: EventRecord) -> None:
        if self.genesis is not None:
            self.problems.append(f"genesis set a second time in tx {event.transaction_hash}")
        self.genesis = hash_hex(args["genesisHash"])

    def on_UpdateRecorded(self, args: dict[str, Any], event: EventRecord) -> None:
        member = args["member"]
        update = UpdateEntry(
            member=member,
            name=self.members.name(member),
            update_hash=hash_hex(args["updateHash"]),
            samples=int(args["samples"]),
            score=int(args["score"]),
        )
        self._pending.setdefault(event.transaction_hash, []).append((int(args["round"]), update))
        self.contribution[member] = self.contribution.get(member, 0) + update.score

    def on_ClusterRecorded(self, args: dict[str, Any], event: EventRecord) -> None:
        number, cluster = int(args["round"]), int(args["cluster"])
        where = f"round {number} cluster {cluster}"
        pending = self._pending.pop(event.transaction_hash, [])
        if any(r != number for r, _ in pending):
            self.problems.append(f"{where}: UpdateRecorded events of another round in its tx")
        updates = [u for _, u in pending]
        entry = ClusterEntry(
            cluster=cluster,
            aggregate_hash=hash_hex(args["aggregateHash"]),
            previous_hash=hash_hex(args["previousGlobalHash"]),
            records_hash=hash_hex(args["recordsHash"]),
            aggregator=args["aggregator"],
            aggregator_name=self.members.name(args["aggregator"]),
            candidate_rank=int(args["candidateRank"]),
            total_samples=int(args["totalSamples"]),
            block_number=event.block_number,
            transaction_hash=event.transaction_hash,
            updates=updates,
        )
        self._check_records(where, entry)
        self._check_place(where, number, entry)
        self._check_aggregator(where, number, entry)
        rnd = self.rounds.setdefault(number, _Round())
        if cluster in rnd.clusters:
            self.problems.append(f"{where} recorded twice")
        else:
            rnd.clusters[cluster] = entry

    def _check_records(self, where: str, entry: ClusterEntry) -> None:
        packed = b"".join(
            pack_record(u.member, u.update_hash, u.samples, u.score) for u in entry.updates
        )
        recomputed = bytes(keccak(packed)).hex()
        if recomputed != entry.records_hash:
            self.problems.append(
                f"{where}: recordsHash on chain {entry.records_hash} differs from {recomputed} "
                f"rebuilt from its {len(entry.updates)} UpdateRecorded events"
            )
        samples = sum(u.samples for u in entry.updates)
        if samples != entry.total_samples:
            self.problems.append(
                f"{where}: totalSamples {entry.total_samples}, but its records add up to {samples}"
            )
        for u in entry.updates:
            if self.members.cluster_of.get(u.member) != entry.cluster:
                self.problems.append(f"{where}: record of {u.member}, not in that cluster")

    def _check_place(self, where: str, number: int, entry: ClusterEntry) -> None:
        if number != self.last_final + 1:
            self.problems.append(
                f"{where} recorded while round {self.last_final + 1} was the open round"
            )
        if number == 1:
            expected, what = self.genesis, "the genesis hash"
        else:
            previous = self.rounds.get(number - 1)
            expected = previous.final_hash if previous is not None else None
            what = f"round {number - 1}'s final hash"
        if expected != entry.previous_hash:
            self.problems.append(
                f"{where} names previous hash {entry.previous_hash}, but {what} is "
                f"{expected or '(none)'}"
            )

    def _check_aggregator(self, where: str, number: int, entry: ClusterEntry) -> None:
        cluster_members = self.members.clusters.get(entry.cluster, [])
        try:
            rank = candidate_rank(number, entry.cluster, cluster_members, entry.aggregator)
        except ValueError:
            self.problems.append(f"{where} recorded by {entry.aggregator}, not in that cluster")
            return
        if rank != entry.candidate_rank:
            self.problems.append(
                f"{where}: aggregator {entry.aggregator_name} is candidate {rank}, the event "
                f"says {entry.candidate_rank}"
            )

    def on_Attested(self, args: dict[str, Any], event: EventRecord) -> None:
        number, member = int(args["round"]), args["member"]
        digest = hash_hex(args["globalHash"])
        rnd = self.rounds.get(number)
        clusters = len(self.members.clusters)
        if rnd is None or (rnd.final_hash is None and len(rnd.clusters) < clusters):
            self.problems.append(f"{member} attested round {number} before all clusters recorded")
            rnd = self.rounds.setdefault(number, _Round())
        if rnd.final_hash is not None and digest != rnd.final_hash:
            self.problems.append(
                f"{member} attested {digest} for round {number} after it was final with "
                f"{rnd.final_hash}"
            )
        if member in rnd.attesters:
            self.problems.append(f"{member} attested round {number} twice")
        rnd.attesters.add(member)
        rnd.budgets[member] = self._budget(number, member, args)
        voters = rnd.votes.setdefault(digest, [])
        voters.append(member)
        reached = len(voters) >= self.members.quorum()
        if rnd.final_hash is None and rnd.due is None and reached:
            rnd.due = (digest, event.transaction_hash)
            rnd.due_budget = rnd.budgets[member]

    def _budget(self, number: int, member: str, args: dict[str, Any]) -> PrivacyBudget | None:
        if "epsilonE6" not in args:
            return None  # an event from before budgets were recorded
        try:
            return PrivacyBudget(int(args["epsilonE6"]), int(args["deltaE18"]))
        except InvalidPrivacyBudget as exc:
            self.problems.append(f"{member}'s attestation of round {number}: {exc}")
            return None

    def on_RoundFinalized(self, args: dict[str, Any], event: EventRecord) -> None:
        number, digest = int(args["round"]), hash_hex(args["globalHash"])
        rnd = self.rounds.setdefault(number, _Round())
        if rnd.due != (digest, event.transaction_hash):
            self.problems.append(
                f"round {number} finalized with {digest} in tx {event.transaction_hash} "
                "without that hash reaching the quorum there"
            )
        if int(args["attestations"]) != len(rnd.votes.get(digest, [])):
            self.problems.append(
                f"round {number} finalized with {args['attestations']} attestation(s); the "
                f"replay counts {len(rnd.votes.get(digest, []))}"
            )
        if rnd.final_hash is not None:
            self.problems.append(f"round {number} finalized twice")
        if number != self.last_final + 1:
            self.problems.append(f"round {number} finalized after round {self.last_final}")
        rnd.final_hash, rnd.finalized_block, rnd.due = digest, event.block_number, None
        rnd.privacy = rnd.due_budget
        self.last_final = max(self.last_final, number)

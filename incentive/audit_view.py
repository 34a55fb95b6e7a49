"""One shape for what the auditors' dashboard shows, from either kind of audit.

:func:`view_of_consortium` takes a :class:`~incentive.consortium_audit.ConsortiumAudit`
(rounds kept by the Consortium contract), :func:`view_of_ledger` an
:class:`~incentive.audit_report.AuditReport` (the Registry/Ledger contracts). Both give an
:class:`AuditView`: rounds with their global hashes, clusters, aggregates and updates;
hospitals with contribution, reputation (Consortium only) and rewards, and their history
over rounds and epochs; and the audit's problems. ``document`` is what ``medswarm audit
--json`` prints for the same source. Hashes are bare lowercase hex, addresses checksummed,
amounts in wei. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from incentive.audit_report import AuditReport
from incentive.consortium_audit import ConsortiumAudit


@dataclass(frozen=True)
class UpdateView:
    """One hospital's recorded update in a cluster of a round."""

    account: str
    name: str
    update_hash: str
    samples: int
    score: int
    rejected: bool = False


@dataclass(frozen=True)
class ClusterView:
    """One cluster's aggregate in a round and the updates it was built from."""

    cluster: int
    aggregate_hash: str
    aggregator: str
    aggregator_name: str
    records_root: str
    total_samples: int
    updates: list[UpdateView]


@dataclass(frozen=True)
class RoundView:
    """A round: its global hash (None while not final) and what went into it.

    ``signatures`` counts the quorum's signatures (Consortium) or the attestations of the
    final hash (Ledger); ``transaction`` is the finalizing transaction (Consortium only).
    """

    round: int
    global_hash: str | None
    previous_hash: str
    final: bool
    block: int | None
    transaction: str | None
    signatures: int
    clusters: list[ClusterView]
    epsilon: float | None = None
    delta: float | None = None
    privacy_recorded: bool = False


@dataclass(frozen=True)
class MemberView:
    """A hospital's standing and its history (``reputation`` None on the Ledger)."""

    account: str
    name: str
    cluster: int
    standing: str  # active, excluded, removed, auditor
    contribution: int
    reputation: int | None
    credited: int
    withdrawn: int
    contribution_history: list[tuple[int, int]] = field(default_factory=list)  # (round, total)
    reputation_history: list[tuple[int, int]] = field(default_factory=list)  # (round, value)


@dataclass(frozen=True)
class EpochView:
    """A reward distribution: what was paid, the dust left, and each hospital's credit."""

    epoch: int
    paid: int
    dust: int
    credits: dict[str, int]  # account -> wei
    matches_rule: bool = True


@dataclass(frozen=True)
class AuditView:
    """Everything the dashboard shows about one federation."""

    kind: str  # "consortium" or "ledger"
    source: str
    chain_id: int | None
    contracts: dict[str, str]
    genesis_hash: str | None
    rounds: list[RoundView]
    members: list[MemberView]
    epochs: list[EpochView]
    funded: int
    problems: list[str]
    document: dict[str, Any]

    @property
    def ok(self) -> bool:
        """True when every check of the audit passed."""
        return not self.problems

    def round_of_model(self, model_hash: str) -> RoundView | None:
        """The earliest round whose global hash is ``model_hash`` (any case, 0x or not)."""
        wanted = bare_hex(model_hash)
        return next((r for r in self.rounds if r.global_hash == wanted), None)

    def round_by_number(self, number: int) -> RoundView | None:
        """Round ``number``, if anything was recorded for it."""
        return next((r for r in self.rounds if r.round == number), None)

    def member(self, account: str) -> MemberView | None:
        """The hospital with this account (any case)."""
        return next((m for m in self.members if m.account.lower() == account.lower()), None)

    def uses_of(self, digest: str) -> list[tuple[RoundView, ClusterView, UpdateView | None]]:
        """Where a hash appears as a cluster aggregate (update None) or a hospital's update."""
        wanted = bare_hex(digest)
        found: list[tuple[RoundView, ClusterView, UpdateView | None]] = []
        for r in self.rounds:
            for c in r.clusters:
                if c.aggregate_hash == wanted:
                    found.append((r, c, None))
                found += [(r, c, u) for u in c.updates if u.update_hash == wanted]
        return found

    def ancestry(self, round_view: RoundView) -> list[RoundView]:
        """``round_view`` and the final rounds it builds on, newest first, back to genesis."""
        chain = [round_view]
        by_hash = {r.global_hash: r for r in self.rounds if r.final}
        while (parent := by_hash.get(chain[-1].previous_hash)) is not None:
            if parent in chain or len(chain) > len(self.rounds):
                break  # a forged history may loop; the audit's problems say so
            chain.append(parent)
        return chain


def bare_hex(value: str) -> str:
    """A hash as bare lowercase hex."""
    text = value.strip().lower()
    return text[2:] if text.startswith("0x") else text


def view_of_consortium(
    audit: ConsortiumAudit,
    source: str,
    chain_id: int | None = None,
    contracts: dict[str, str] | None = None,
) -> AuditView:
    """The view of a Consortium audit."""
    accounts = {m.index: m.account for m in audit.members.values()}
    rounds = [
        RoundView(
            round=r.round,
            global_hash=r.global_hash,
            previous_hash=r.previous_hash,
            final=True,
            block=r.block,
            transaction=r.transaction,
            signatures=r.signatures,
            clusters=[
                ClusterView(
                    cluster=c.cluster,
                    aggregate_hash=c.aggregate_hash,
                    aggregator=accounts[c.aggregator],
                    aggregator_name=audit.members[c.aggregator].name,
                    records_root=c.records_root,
                    total_samples=c.total_samples,
                    updates=[
                        UpdateView(
                            x.account,
                            audit.members[x.member].name,
                            x.update_hash,
                            x.samples,
                            x.score,
                            x.rejected,
                        )
                        for x in c.records
                    ],
                )
                for c in r.clusters
            ],
            epsilon=r.epsilon,
            delta=r.delta,
            privacy_recorded=r.epsilon_e6 is not None,
        )
        for r in audit.rounds
    ]
    members = [
        MemberView(
            account=m.account,
            name=m.name,
            cluster=m.cluster,
            standing=(
                "auditor"
                if m.role != 1
                else "excluded"
                if m.excluded
                else "active"
                if m.active
                else "removed"
            ),
            contribution=m.contribution,
            reputation=m.reputation,
            credited=m.credited,
            withdrawn=m.withdrawn,
            contribution_history=_cumulative(rounds, m.account),
            reputation_history=list(m.reputation_history),
        )
        for m in audit.members.values()
    ]
    epochs = [
        EpochView(
            e.epoch,
            e.paid,
            e.dust,
            {accounts[i]: v for i, v in e.credits.items()},
            e.credits == e.expected,
        )
        for e in audit.epochs
    ]
    return AuditView(
        kind="consortium",
        source=source,
        chain_id=chain_id,
        contracts=dict(contracts or {}),
        genesis_hash=audit.genesis_hash,
        rounds=rounds,
        members=members,
        epochs=epochs,
        funded=audit.funded,
        problems=list(audit.problems),
        document=audit.as_dict(),
    )


def view_of_ledger(report: AuditReport) -> AuditView:
    """The view of a Registry/Ledger audit report."""
    rounds = [
        RoundView(
            round=r.round,
            global_hash=r.final_hash,
            previous_hash=r.previous_hash,
            final=r.finalized,
            block=r.finalized_block,
            transaction=None,
            signatures=r.attestations,
            clusters=[
                ClusterView(
                    cluster=c.cluster,
                    aggregate_hash=c.aggregate_hash,
                    aggregator=c.aggregator,
                    aggregator_name=c.aggregator_name,
                    records_root=c.records_hash,
                    total_samples=c.total_samples,
                    updates=[
                        UpdateView(u.member, u.name, u.update_hash, u.samples, u.score)
                        for u in c.updates
                    ],
                )
                for c in r.clusters
            ],
            epsilon=r.epsilon,
            delta=r.delta,
            privacy_recorded=r.epsilon_e6 is not None,
        )
        for r in report.rounds
    ]
    members = [
        MemberView(
            account=m.address,
            name=m.name,
            cluster=m.cluster,
            standing="active",
            contribution=m.contribution,
            reputation=None,
            credited=m.credited,
            withdrawn=m.withdrawn,
            contribution_history=_cumulative(rounds, m.address),
        )
        for m in report.members
    ]
    epochs = [EpochView(e.epoch, e.amount, e.dust, dict(e.credits)) for e in report.epochs]
    return AuditView(
        kind="ledger",
        source=report.source,
        chain_id=report.chain_id,
        contracts={
            "Registry": report.registry,
            "Ledger": report.ledger,
            "RewardPool": report.rewards,
        },
        genesis_hash=report.genesis_hash,
        rounds=rounds,
        members=members,
        epochs=epochs,
        funded=report.funded,
        problems=list(report.problems),
        document=report.to_dict(),
    )


def _cumulative(rounds: list[RoundView], account: str) -> list[tuple[int, int]]:
    """The hospital's total score of accepted updates after each round."""
    total = 0
    history = []
    for r in rounds:
        for c in r.clusters:
            total += sum(u.score for u in c.updates if u.account == account and not u.rejected)
        history.append((r.round, total))
    return history

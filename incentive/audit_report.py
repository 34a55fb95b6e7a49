"""The audit report: what each round recorded, who earned what, and what did not add up.

Hashes are shown as 64 lowercase hex digits without ``0x``, the form ``sha256sum`` prints, so a
model or update file can be compared by eye; addresses are checksummed; amounts are in wei.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class UpdateEntry:
    """One member's recorded update in a round."""

    member: str
    name: str
    update_hash: str
    samples: int
    score: int


@dataclass(frozen=True)
class ClusterEntry:
    """One cluster's recorded aggregate in a round, with the updates it was built from.

    ``candidate_rank`` is the aggregator's place in the round's failover order (0 = first
    choice; higher means earlier candidates stayed silent).
    """

    cluster: int
    aggregate_hash: str
    previous_hash: str
    records_hash: str
    aggregator: str
    aggregator_name: str
    candidate_rank: int
    total_samples: int
    block_number: int
    transaction_hash: str
    updates: list[UpdateEntry] = field(default_factory=list)


@dataclass(frozen=True)
class RoundEntry:
    """One round: its clusters, the votes per global hash and, once final, the final hash.

    ``attestations`` and ``attesters`` count the final hash only; ``votes`` maps every
    attested hash to its number of attestations (competing hashes show up there).
    ``epsilon_e6`` and ``delta_e18`` are the recorded fixed-point figures
    (:mod:`incentive.privacy_budget`), ``epsilon`` and ``delta`` the same as numbers.
    """

    round: int
    final_hash: str | None
    previous_hash: str
    finalized: bool
    finalized_block: int | None
    attestations: int
    attesters: list[str] = field(default_factory=list)
    votes: dict[str, int] = field(default_factory=dict)
    clusters: list[ClusterEntry] = field(default_factory=list)
    # the privacy budget stored with the round when it became final (the finalizing
    # attestation's): epsilon and delta None without a guarantee; all None when not recorded
    epsilon: float | None = None
    delta: float | None = None
    epsilon_e6: int | None = None
    delta_e18: int | None = None


@dataclass(frozen=True)
class MemberTotals:
    """A member's standing: cluster, contribution score and rewards (wei)."""

    address: str
    name: str
    peer_id: str
    cluster: int
    contribution: int
    credited: int
    withdrawn: int

    @property
    def outstanding(self) -> int:
        """Credited and not yet withdrawn."""
        return self.credited - self.withdrawn


@dataclass(frozen=True)
class EpochEntry:
    """One reward distribution."""

    epoch: int
    amount: int
    dust: int
    block_number: int
    credits: dict[str, int] = field(default_factory=dict)
    contributions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditReport:
    """Everything an auditor needs about one federation, plus the problems found."""

    source: str
    chain_id: int
    registry: str
    ledger: str
    rewards: str
    genesis_hash: str | None
    rounds: list[RoundEntry]
    members: list[MemberTotals]
    epochs: list[EpochEntry]
    funded: int
    credited: int
    withdrawn: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems

    def round_by_number(self, number: int) -> RoundEntry | None:
        """The round ``number``, if anything was recorded for it."""
        return next((r for r in self.rounds if r.round == number), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (what ``medswarm audit --json`` prints)."""
        data = asdict(self)
        data["ok"] = self.ok
        for totals, member in zip(data["members"], self.members, strict=True):
            totals["outstanding"] = member.outstanding
        return data


def render_text(report: AuditReport) -> str:
    """A human-readable report: members, then per round and cluster each hospital's update."""
    lines = [
        f"Federation on chain {report.chain_id} (from {report.source})",
        f"  registry {report.registry}",
        f"  ledger   {report.ledger}",
        f"  rewards  {report.rewards}",
        f"  genesis  {report.genesis_hash or '(not set)'}",
        "",
        "Members",
        f"  {'HOSPITAL':<20} {'CLUSTER':>7} {'ADDRESS':<42} {'CONTRIBUTION':>14} "
        f"{'CREDITED wei':>24} {'WITHDRAWN wei':>24}",
    ]
    for m in report.members:
        lines.append(
            f"  {m.name:<20} {m.cluster:>7} {m.address:<42} {m.contribution:>14} "
            f"{m.credited:>24} {m.withdrawn:>24}"
        )
    names = {m.address: m.name for m in report.members}
    for r in report.rounds:
        lines += ["", *_round_lines(r, names)]
    lines += [
        "",
        f"Rewards: funded {report.funded} wei, credited {report.credited} wei, "
        f"withdrawn {report.withdrawn} wei",
    ]
    for e in report.epochs:
        lines.append(f"  epoch {e.epoch}: credited {e.amount} wei, dust {e.dust} wei left in pool")
    lines.append("")
    if report.problems:
        lines.append(f"PROBLEMS ({len(report.problems)}):")
        lines += [f"  - {p}" for p in report.problems]
    else:
        lines.append(
            "Checks passed: records hashes, round chain, aggregator candidates, quorum, "
            "privacy budgets, rewards."
        )
    return "\n".join(lines) + "\n"


def _round_lines(r: RoundEntry, names: dict[str, str]) -> list[str]:
    if r.finalized:
        status = f"final in block {r.finalized_block}, {r.attestations} attestation(s)"
        head = f"Round {r.round}  final {r.final_hash}"
    else:
        status = "NOT final"
        head = f"Round {r.round}  (no final hash)"
    lines = [
        head,
        f"  previous {r.previous_hash}",
        f"  {status}; attested by {', '.join(names.get(a, a) for a in r.attesters) or 'nobody'}",
    ]
    if r.epsilon_e6 is not None:
        privacy = (
            f"epsilon {r.epsilon:.6f} at delta {r.delta:g}"
            if r.epsilon is not None
            else "no guarantee (updates not noised)"
        )
        lines.append(f"  differential privacy: {privacy}")
    for digest, count in r.votes.items():
        if digest != r.final_hash:
            lines.append(f"  other hash {digest}: {count} vote(s)")
    for c in r.clusters:
        lines += [
            f"  Cluster {c.cluster}  aggregate {c.aggregate_hash}",
            f"    aggregator {c.aggregator_name} ({c.aggregator}), candidate rank "
            f"{c.candidate_rank}, block {c.block_number}, {c.total_samples} samples",
            f"    {'HOSPITAL':<20} {'UPDATE HASH':<64} {'SAMPLES':>10} {'SCORE':>14}",
        ]
        for u in c.updates:
            lines.append(f"    {u.name:<20} {u.update_hash:<64} {u.samples:>10} {u.score:>14}")
    return lines

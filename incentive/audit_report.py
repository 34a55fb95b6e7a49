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
class RoundEntry:
    """One recorded round: its commitment, its updates and its attestations."""

    round: int
    global_hash: str
    previous_hash: str
    records_hash: str
    aggregator: str
    aggregator_name: str
    block_number: int
    transaction_hash: str
    finalized: bool
    attestations: int
    attesters: list[str] = field(default_factory=list)
    updates: list[UpdateEntry] = field(default_factory=list)


@dataclass(frozen=True)
class MemberTotals:
    """A member's standing: contribution score and rewards (wei)."""

    address: str
    name: str
    peer_id: str
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
        """The recorded round ``number``, if any."""
        return next((r for r in self.rounds if r.round == number), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (what ``medswarm audit --json`` prints)."""
        data = asdict(self)
        data["ok"] = self.ok
        for totals, member in zip(data["members"], self.members, strict=True):
            totals["outstanding"] = member.outstanding
        return data


def render_text(report: AuditReport) -> str:
    """A human-readable report: members, then per round each hospital's update."""
    lines = [
        f"Federation on chain {report.chain_id} (from {report.source})",
        f"  registry {report.registry}",
        f"  ledger   {report.ledger}",
        f"  rewards  {report.rewards}",
        "",
        "Members",
        f"  {'HOSPITAL':<20} {'ADDRESS':<42} {'CONTRIBUTION':>14} {'CREDITED wei':>24} "
        f"{'WITHDRAWN wei':>24}",
    ]
    for m in report.members:
        lines.append(
            f"  {m.name:<20} {m.address:<42} {m.contribution:>14} {m.credited:>24} "
            f"{m.withdrawn:>24}"
        )
    names = {m.address: m.name for m in report.members}
    for r in report.rounds:
        status = "final" if r.finalized else "not final"
        lines += [
            "",
            f"Round {r.round}  global {r.global_hash}",
            f"  previous {r.previous_hash}",
            f"  aggregator {r.aggregator_name} ({r.aggregator}), block {r.block_number}, "
            f"{status}, {r.attestations} attestation(s)",
            f"  attested by {', '.join(names.get(a, a) for a in r.attesters) or 'nobody'}",
            f"  {'HOSPITAL':<20} {'UPDATE HASH':<64} {'SAMPLES':>10} {'SCORE':>14}",
        ]
        for u in r.updates:
            lines.append(f"  {u.name:<20} {u.update_hash:<64} {u.samples:>10} {u.score:>14}")
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
        lines.append("Checks passed: records hashes, round chain, aggregators, quorum, rewards.")
    return "\n".join(lines) + "\n"

"""Replaying RewardPool events: every credit and the dust checked against the formula.

pot       = everything funded − everything credited before
delta(m)  = contribution(m) − contribution already paid for by earlier epochs
share(m)  = floor(pot × delta(m) / Σ delta),  dust = pot − Σ share
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from incentive.audit_replay import Membership
from incentive.audit_report import EpochEntry
from incentive.events import EventRecord


class RewardReplay:
    """Rebuilds funding, credits and withdrawals; ``contribution`` is the Ledger replay's."""

    def __init__(
        self, members: Membership, contribution: Mapping[str, int], problems: list[str]
    ) -> None:
        self.members = members
        self.contribution = contribution
        self.problems = problems
        self.funded = 0
        self.accounted: dict[str, int] = {}
        self.credited: dict[str, int] = {}
        self.withdrawn: dict[str, int] = {}
        self.epochs: list[EpochEntry] = []
        self._pending: dict[str, tuple[int, int]] = {}

    def on_Funded(self, args: dict[str, Any], event: EventRecord) -> None:
        self.funded += int(args["amount"])

    def on_RewardCredited(self, args: dict[str, Any], event: EventRecord) -> None:
        self._pending[args["member"]] = (int(args["amount"]), int(args["contribution"]))

    def on_RewardsDistributed(self, args: dict[str, Any], event: EventRecord) -> None:
        epoch = int(args["epoch"])
        if epoch != len(self.epochs) + 1:
            self.problems.append(f"reward epoch {epoch} follows epoch {len(self.epochs)}")
        pot = self.funded - sum(self.credited.values())
        deltas = {
            m: self.contribution.get(m, 0) - self.accounted.get(m, 0)
            for m in self.members.order
            if self.contribution.get(m, 0) > self.accounted.get(m, 0)
        }
        total = sum(deltas.values())
        expected = {m: pot * d // total for m, d in deltas.items()} if total else {}
        actual = self._pending
        for member in sorted(set(expected) | set(actual)):
            want_amount, want_delta = expected.get(member, 0), deltas.get(member, 0)
            got_amount, got_delta = actual.get(member, (0, 0))
            if (want_amount, want_delta) != (got_amount, got_delta):
                self.problems.append(
                    f"epoch {epoch}: {self.members.name(member)} ({member}) credited "
                    f"{got_amount} wei for contribution {got_delta}; expected {want_amount} wei "
                    f"for {want_delta} (pot {pot} wei, total contribution {total})"
                )
        paid = sum(amount for amount, _ in actual.values())
        dust = pot - sum(expected.values())
        if (int(args["amount"]), int(args["dust"])) != (paid, dust):
            self.problems.append(
                f"epoch {epoch}: event says {args['amount']} wei credited and {args['dust']} "
                f"dust; replay gives {paid} credited and {dust} dust "
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
        self._pending = {}

    def on_Withdrawn(self, args: dict[str, Any], event: EventRecord) -> None:
        member = args["member"]
        self.withdrawn[member] = self.withdrawn.get(member, 0) + int(args["amount"])
        if self.withdrawn[member] > self.credited.get(member, 0):
            self.problems.append(f"{member} withdrew more than it was credited")

"""The contracts a testnet keeps its rounds in, as the launchers see them.

``federation.ledger`` picks one: :class:`LedgerKeeper` (Registry, Ledger, RewardPool) or
:class:`ConsortiumKeeper` (Consortium, EpochRewards; docs/ledger.md). Both launchers, the
in-process one (:mod:`testnet.local`) and the one with a process per node
(:mod:`testnet.multiproc`), deploy through a keeper, admit hospitals, watch rounds become
final, pay out after the last round and write the chain's record into the run directory. The
launcher's account is the federation's admin (on the Consortium: its only governor, threshold
1, so each action runs when proposed).
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from incentive.candidates import aggregator_candidates
from incentive.clients import AdminClient, MemberClient
from incentive.consortium import ROLE_HOSPITAL, ConsortiumClient
from incentive.deploy import deploy_federation
from incentive.deployment import ConsortiumDeployment
from incentive.epoch_rewards import RewardsClient
from incentive.errors import ContractReverted
from incentive.events import EventLog, read_events_from_chain
from incentive.retry import DEFAULT_RETRY, RetryPolicy
from incentive.rundir import write_chain_record
from node.consortium_book import ConsortiumBook
from node.round_book import LedgerBook, RoundBook
from testnet.consortium_setup import deploy_consortium_federation, write_consortium_record

log = logging.getLogger(__name__)

Lock = AbstractContextManager[Any] | None


class Keeper:
    """What a launcher does with the contracts (see the module doc)."""

    kind = ""

    def __init__(
        self, w3: Any, admin_key: str, pool_wei: int, lock: Lock, retry: RetryPolicy
    ) -> None:
        self.w3, self.admin_key, self.pool_wei, self.lock = w3, admin_key, pool_wei, lock
        self.retry = retry

    def deploy(self, genesis: bytes) -> None:
        raise NotImplementedError

    def admit(self, account: str, name: str, cluster: int) -> None:
        raise NotImplementedError

    def deployment_json(self) -> str:
        raise NotImplementedError

    def book(self, member_key: str, submit_stagger: float) -> RoundBook:
        """A member's round book, for a node run in the launcher's process."""
        raise NotImplementedError

    def aggregator_candidates(self, round_number: int, cluster: int) -> list[str]:
        raise NotImplementedError

    def last_finalized_round(self) -> int:
        raise NotImplementedError

    def final_hash(self, round_number: int) -> str | None:
        raise NotImplementedError

    def contribution(self, account: str) -> int:
        raise NotImplementedError

    def reputation(self, account: str) -> int | None:
        """The member's reputation (0..10,000), where the contracts keep one."""
        return None

    def pay_out(self, member_keys: list[str]) -> dict[str, int]:
        """Distribute the pool and let every member withdraw; credit in wei by account."""
        raise NotImplementedError

    def write_record(self, out_dir: Path) -> None:
        """``chain/deployment.json`` and ``chain/events.jsonl`` in the run directory."""
        raise NotImplementedError

    def addresses(self) -> dict[str, Any]:
        """The contracts' addresses for ``summary.json``."""
        raise NotImplementedError

    def prober(self) -> Keeper:
        """A keeper of the same contracts whose reads give up after half a second while the
        chain is down (for a supervisor loop that must keep running)."""
        raise NotImplementedError


PROBE_RETRY = RetryPolicy(total=0.5)


def make_keeper(ledger: str, w3: Any, admin_key: str, pool_wei: int, lock: Lock = None) -> Keeper:
    """The keeper ``federation.ledger`` names."""
    if ledger == "consortium":
        return ConsortiumKeeper(w3, admin_key, pool_wei, lock, DEFAULT_RETRY)
    return LedgerKeeper(w3, admin_key, pool_wei, lock, DEFAULT_RETRY)


class LedgerKeeper(Keeper):
    kind = "ledger"

    def deploy(self, genesis: bytes) -> None:
        self.deployment = deploy_federation(self.w3, self.admin_key, self.lock)
        self.admin = AdminClient(
            self.w3, self.deployment, self.admin_key, self.lock, retry=self.retry
        )
        self.admin.set_genesis(genesis)
        if self.pool_wei:
            self.admin.fund_rewards(self.pool_wei)

    def admit(self, account: str, name: str, cluster: int) -> None:
        self.admin.admit(account, name, cluster)

    def deployment_json(self) -> str:
        return self.deployment.to_json()

    def book(self, member_key: str, submit_stagger: float) -> RoundBook:
        return LedgerBook(MemberClient(self.w3, self.deployment, member_key, self.lock))

    def aggregator_candidates(self, round_number: int, cluster: int) -> list[str]:
        return self.admin.aggregator_candidates(round_number, cluster)

    def last_finalized_round(self) -> int:
        return self.admin.last_finalized_round()

    def final_hash(self, round_number: int) -> str | None:
        return self.admin.final_hash(round_number)

    def contribution(self, account: str) -> int:
        return self.admin.contribution(account)

    def pay_out(self, member_keys: list[str]) -> dict[str, int]:
        credits: dict[str, int] = {}
        if self.pool_wei:
            try:
                credits = dict(self.admin.distribute().credits)
            except ContractReverted as exc:
                _nothing_earned(exc)
        for key in member_keys:
            member = MemberClient(self.w3, self.deployment, key, self.lock)
            if member.credit(member.address):
                member.withdraw()
        return credits

    def write_record(self, out_dir: Path) -> None:
        events = read_events_from_chain(self.w3, self.deployment, lock=self.lock)
        write_chain_record(out_dir, self.deployment, EventLog(events))

    def prober(self) -> Keeper:
        probe = LedgerKeeper(self.w3, self.admin_key, self.pool_wei, self.lock, PROBE_RETRY)
        probe.deployment = self.deployment
        probe.admin = AdminClient(
            self.w3, self.deployment, self.admin_key, self.lock, retry=PROBE_RETRY
        )
        return probe

    def addresses(self) -> dict[str, Any]:
        return {
            "chain_id": self.deployment.chain_id,
            "registry": self.deployment.registry,
            "ledger": self.deployment.ledger,
            "rewards": self.deployment.rewards,
        }


class ConsortiumKeeper(Keeper):
    kind = "consortium"

    def deploy(self, genesis: bytes) -> None:
        self.deployment: ConsortiumDeployment = deploy_consortium_federation(
            self.w3, self.admin_key, genesis, self.pool_wei, self.lock
        )
        self.admin = ConsortiumClient(
            self.w3, self.deployment.consortium, self.admin_key, self.lock, retry=self.retry
        )

    def admit(self, account: str, name: str, cluster: int) -> None:
        self.admin.propose_admit(account, name, cluster, ROLE_HOSPITAL)

    def deployment_json(self) -> str:
        return self.deployment.to_json()

    def book(self, member_key: str, submit_stagger: float) -> RoundBook:
        client = ConsortiumClient(self.w3, self.deployment.consortium, member_key, self.lock)
        return ConsortiumBook(client, member_key, submit_stagger)

    def aggregator_candidates(self, round_number: int, cluster: int) -> list[str]:
        rows = self.admin.member_rows()
        members = [m.account for m in rows if m.cluster == cluster and m.votes]
        return aggregator_candidates(round_number, cluster, members)

    def last_finalized_round(self) -> int:
        return self.admin.last_finalized_round()

    def final_hash(self, round_number: int) -> str | None:
        found = self.admin.final_hash(round_number)
        return None if found is None else found.hex()

    def contribution(self, account: str) -> int:
        index = self._index(account)
        return 0 if index is None else self.admin.contribution(index)

    def reputation(self, account: str) -> int | None:
        index = self._index(account)
        return None if index is None else self.admin.reputation(index)

    def _index(self, account: str) -> int | None:
        try:
            return self.admin.index_of(account)
        except ContractReverted as exc:  # never admitted (a late joiner whose turn never came)
            if exc.error_name != "NotMember":
                raise
            return None

    def pay_out(self, member_keys: list[str]) -> dict[str, int]:
        rewards = self.deployment.rewards
        if self.pool_wei:
            try:
                RewardsClient(self.w3, rewards, self.admin_key, self.lock).distribute()
            except ContractReverted as exc:
                _nothing_earned(exc)
        credits = {}
        for key in member_keys:
            pool = RewardsClient(self.w3, rewards, key, self.lock)
            credits[pool.account] = pool.credit(pool.account)
            if credits[pool.account]:
                pool.withdraw()
        return credits

    def write_record(self, out_dir: Path) -> None:
        if self.lock is None:
            write_consortium_record(out_dir, self.w3, self.deployment)
            return
        with self.lock:
            write_consortium_record(out_dir, self.w3, self.deployment)

    def prober(self) -> Keeper:
        probe = ConsortiumKeeper(self.w3, self.admin_key, self.pool_wei, self.lock, PROBE_RETRY)
        probe.deployment = self.deployment
        probe.admin = ConsortiumClient(
            self.w3, self.deployment.consortium, self.admin_key, self.lock, retry=PROBE_RETRY
        )
        return probe

    def addresses(self) -> dict[str, Any]:
        return {
            "chain_id": self.deployment.chain_id,
            "consortium": self.deployment.consortium,
            "rewards": self.deployment.rewards,
        }


def _nothing_earned(exc: ContractReverted) -> None:
    """A pay-out no member earned a share of (every score 0, say under heavy privacy noise):
    the pool stays undistributed, and the run's record is still written."""
    if exc.error_name != "NothingToDistribute":
        raise exc
    log.warning(
        "no member has a positive contribution times reputation: the reward pool is left "
        "undistributed (%s)",
        exc,
    )

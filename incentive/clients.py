"""Clients of a deployed federation: what a member node and the consortium admin can do.

Every client signs with its own key and takes the shared ``lock`` around each chain request
(required for :class:`incentive.chain.EmbeddedChain`, whose EVM is not thread-safe), and
appends the events of its receipts to the shared :class:`EventLog` if one is given. A client
sends its transactions one at a time (safe to share between threads); use one client per key,
since two clients signing with the same key can pick the same nonce.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from eth_utils import to_checksum_address

from incentive.deployment import LEDGER, REGISTRY, REWARD_POOL, Deployment, bind_contracts
from incentive.deployment import event_decoder as _event_decoder
from incentive.events import EventLog
from incentive.hashes import hash_bytes, hash_hex
from incentive.records import DistributionResult, MemberInfo, MemberRecord, RoundInfo
from incentive.retry import DEFAULT_RETRY, RetryPolicy
from incentive.tx import TransactionSender, TxOutcome

MULTIADDR_SEPARATOR = ","
_ZERO_ADDRESS = "0x" + "00" * 20


class FederationClient:
    """Read access to a federation, plus the signing account used by subclasses."""

    def __init__(
        self,
        w3: Any,
        deployment: Deployment,
        private_key: str | bytes,
        lock: AbstractContextManager[Any] | None = None,
        event_log: EventLog | None = None,
        *,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.w3 = w3
        self.deployment = deployment
        self._contracts = bind_contracts(w3, deployment)
        self._sender = TransactionSender(
            w3, private_key, lock, event_log, _event_decoder(deployment), retry=retry
        )

    @property
    def address(self) -> str:
        """Checksummed address of this client's account."""
        return self._sender.address

    def _call(self, contract: str, function: str, *args: Any) -> Any:
        fn = getattr(self._contracts[contract].functions, function)(*args)
        return self._sender.call(contract, function, fn)

    def _transact(self, contract: str, function: str, *args: Any, value: int = 0) -> TxOutcome:
        fn = getattr(self._contracts[contract].functions, function)(*args)
        return self._sender.transact(contract, function, fn, value=value)

    def members(self) -> list[MemberInfo]:
        """All admitted members in admission order."""
        result = []
        for address in self._call(REGISTRY, "members"):
            name, peer_id, multiaddrs, active, admitted_at = self._call(
                REGISTRY, "memberInfo", address
            )
            result.append(
                MemberInfo(
                    address=to_checksum_address(address),
                    name=name,
                    peer_id=peer_id,
                    multiaddrs=[a for a in multiaddrs.split(MULTIADDR_SEPARATOR) if a],
                    active=bool(active),
                    admitted_at=int(admitted_at),
                )
            )
        return result

    def is_member(self, address: str) -> bool:
        """Whether ``address`` is an admitted member."""
        return bool(self._call(REGISTRY, "isMember", to_checksum_address(address)))

    def expected_aggregator(self, round: int) -> str:
        """The member allowed to record ``round`` (members[round % count])."""
        return str(to_checksum_address(self._call(LEDGER, "expectedAggregator", round)))

    def quorum(self) -> int:
        """Attestations needed to finalize a round now: ceil(2/3 of the member count)."""
        return int(self._call(LEDGER, "quorum"))

    def last_recorded_round(self) -> int:
        """Highest recorded round (0 before the first)."""
        return int(self._call(LEDGER, "lastRecordedRound"))

    def contribution(self, address: str) -> int:
        """Cumulative contribution score of a member."""
        return int(self._call(LEDGER, "contribution", to_checksum_address(address)))

    def total_contribution(self) -> int:
        """Sum of all recorded scores."""
        return int(self._call(LEDGER, "totalContribution"))

    def round_info(self, round: int) -> RoundInfo | None:
        """The commitment of ``round``, or None if it is not recorded."""
        info = self._call(LEDGER, "roundInfo", round)
        global_hash, previous, records, aggregator, block, attestations, finalized = info
        if aggregator == _ZERO_ADDRESS:
            return None
        return RoundInfo(
            round=round,
            global_hash=hash_hex(global_hash),
            previous_hash=hash_hex(previous),
            records_hash=hash_hex(records),
            aggregator=to_checksum_address(aggregator),
            block_number=int(block),
            attestations=int(attestations),
            finalized=bool(finalized),
        )

    def is_final(self, round: int) -> bool:
        """Whether ``round`` reached its attestation quorum."""
        return bool(self._call(LEDGER, "isFinal", round))

    def has_attested(self, round: int, address: str) -> bool:
        """Whether ``address`` attested ``round``."""
        return bool(self._call(LEDGER, "hasAttested", round, to_checksum_address(address)))

    def credit(self, address: str) -> int:
        """Reward credited to ``address`` and not yet withdrawn, in wei."""
        return int(self._call(REWARD_POOL, "credit", to_checksum_address(address)))

    def unallocated_rewards(self) -> int:
        """Pool balance not yet credited to anyone (the next epoch's pot), in wei."""
        return int(self._call(REWARD_POOL, "unallocated"))


class MemberClient(FederationClient):
    """What a member hospital's node does on chain."""

    def register(self, peer_id: str, multiaddrs: Sequence[str]) -> TxOutcome:
        """Bind this member's libp2p peer id and listen addresses to its account."""
        for addr in multiaddrs:
            if MULTIADDR_SEPARATOR in addr or not addr:
                raise ValueError(f"multiaddr {addr!r} is empty or contains a comma")
        return self._transact(REGISTRY, "register", peer_id, MULTIADDR_SEPARATOR.join(multiaddrs))

    def record_round(
        self,
        round: int,
        global_hash: bytes | str,
        previous_hash: bytes | str,
        records: Sequence[MemberRecord],
    ) -> TxOutcome:
        """Record a round as its expected aggregator; records are sent sorted by address."""
        ordered = sorted(records, key=lambda r: int(r.address, 16))
        return self._transact(
            LEDGER,
            "recordRound",
            round,
            hash_bytes(global_hash),
            hash_bytes(previous_hash),
            [r.address for r in ordered],
            [hash_bytes(r.update_hash) for r in ordered],
            [r.samples for r in ordered],
            [r.score for r in ordered],
        )

    def attest(self, round: int, global_hash: bytes | str) -> TxOutcome:
        """Attest the global hash of ``round``; the outcome holds RoundFinalized if it closed."""
        return self._transact(LEDGER, "attest", round, hash_bytes(global_hash))

    def withdraw(self) -> int:
        """Withdraw this member's whole credit; returns the wei paid out."""
        outcome = self._transact(REWARD_POOL, "withdraw")
        return sum(int(e.args["amount"]) for e in outcome.named("Withdrawn"))


class AdminClient(FederationClient):
    """What the consortium admin (the deployer) does on chain."""

    def admit(self, address: str, name: str) -> TxOutcome:
        """Admit a hospital's account under a human-readable name."""
        return self._transact(REGISTRY, "admit", to_checksum_address(address), name)

    def fund_rewards(self, wei: int) -> TxOutcome:
        """Send ``wei`` to the reward pool."""
        return self._transact(REWARD_POOL, "fund", value=wei)

    def distribute(self) -> DistributionResult:
        """Credit the pool's unallocated balance by contribution since the last epoch."""
        outcome = self._transact(REWARD_POOL, "distribute")
        (summary,) = outcome.named("RewardsDistributed")
        credited = outcome.named("RewardCredited")
        return DistributionResult(
            epoch=int(summary.args["epoch"]),
            amount=int(summary.args["amount"]),
            dust=int(summary.args["dust"]),
            credits={e.args["member"]: int(e.args["amount"]) for e in credited},
            contributions={e.args["member"]: int(e.args["contribution"]) for e in credited},
            tx_hash=outcome.tx_hash,
        )

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

from incentive.chain_stats import ChainCallStats
from incentive.deployment import LEDGER, REGISTRY, REWARD_POOL, Deployment, bind_contracts
from incentive.deployment import event_decoder as _event_decoder
from incentive.errors import ChainError
from incentive.events import EventLog, decode_logs
from incentive.hashes import hash_bytes, hash_hex
from incentive.privacy_budget import NO_GUARANTEE, PrivacyBudget
from incentive.records import (
    ClusterInfo,
    DistributionResult,
    MemberInfo,
    MemberRecord,
    RoundStatus,
    sort_records,
)
from incentive.retry import DEFAULT_RETRY, RetryPolicy
from incentive.tx import TransactionSender, TxOutcome

MULTIADDR_SEPARATOR = ","
_ZERO_ADDRESS = "0x" + "00" * 20
_ZERO_HASH = bytes(32)


def _hash_or_none(value: bytes) -> str | None:
    return None if bytes(value) == _ZERO_HASH else hash_hex(value)


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
        self._events = _event_decoder(deployment)
        self._sender = TransactionSender(
            w3, private_key, lock, event_log, self._events, retry=retry
        )

    @property
    def address(self) -> str:
        """Checksummed address of this client's account."""
        return self._sender.address

    @property
    def chain_stats(self) -> ChainCallStats:
        """Latency of this client's chain requests and its transactions in flight."""
        return self._sender.stats

    def _call(self, contract: str, function: str, *args: Any) -> Any:
        fn = getattr(self._contracts[contract].functions, function)(*args)
        return self._sender.call(contract, function, fn)

    def _transact(self, contract: str, function: str, *args: Any, value: int = 0) -> TxOutcome:
        fn = getattr(self._contracts[contract].functions, function)(*args)
        return self._sender.transact(contract, function, fn, value=value)

    def members(self) -> list[MemberInfo]:
        """All admitted members in admission order."""
        return [self.member_info(address) for address in self._call(REGISTRY, "members")]

    def member_info(self, address: str) -> MemberInfo:
        """What the Registry holds about ``address`` (``active`` False for a non-member)."""
        checksummed = to_checksum_address(address)
        name, peer_id, multiaddrs, active, admitted_at, cluster = self._call(
            REGISTRY, "memberInfo", checksummed
        )
        return MemberInfo(
            address=checksummed,
            name=name,
            peer_id=peer_id,
            multiaddrs=[a for a in multiaddrs.split(MULTIADDR_SEPARATOR) if a],
            active=bool(active),
            admitted_at=int(admitted_at),
            cluster=int(cluster),
        )

    def block_number(self) -> int:
        """The number of the chain's newest block."""
        return int(self._sender.read(lambda: self.w3.eth.block_number, "eth_blockNumber"))

    def registry_logged(self, first_block: int, last_block: int) -> bool:
        """Whether the Registry emitted an event in blocks ``first_block`` .. ``last_block``
        (every change of a member's entry does)."""
        registry = self.deployment.address_of(REGISTRY)
        query = {"fromBlock": first_block, "toBlock": last_block, "address": registry}
        return bool(self._sender.read(lambda: self.w3.eth.get_logs(query), "eth_getLogs"))

    def is_member(self, address: str) -> bool:
        """Whether ``address`` is an admitted member."""
        return bool(self._call(REGISTRY, "isMember", to_checksum_address(address)))

    def cluster_of(self, address: str) -> int:
        """The cluster of member ``address`` (ContractReverted NotMember for others)."""
        return int(self._call(REGISTRY, "clusterOf", to_checksum_address(address)))

    def cluster_count(self) -> int:
        """Number of clusters; they are numbered 0..cluster_count()-1."""
        return int(self._call(REGISTRY, "clusterCount"))

    def cluster_members(self, cluster: int) -> list[str]:
        """Members of ``cluster`` in admission order."""
        return [to_checksum_address(a) for a in self._call(REGISTRY, "clusterMembers", cluster)]

    def aggregator_candidates(self, round: int, cluster: int) -> list[str]:
        """The cluster's members in failover order for ``round`` (index 0 aggregates)."""
        found = self._call(LEDGER, "aggregatorCandidates", round, cluster)
        return [to_checksum_address(a) for a in found]

    def quorum(self) -> int:
        """Attestations of one hash needed to finalize a round now: ceil(2/3 of members)."""
        return int(self._call(LEDGER, "quorum"))

    def genesis_hash(self) -> str | None:
        """Hash of the shared initial model (round 1's previous hash); None until set."""
        return _hash_or_none(self._call(LEDGER, "genesisHash"))

    def last_finalized_round(self) -> int:
        """Highest final round (0 before the first); round this + 1 is the open one."""
        return int(self._call(LEDGER, "lastFinalizedRound"))

    def final_hash(self, round: int) -> str | None:
        """The final global hash of ``round``, or None while it is not final."""
        return _hash_or_none(self._call(LEDGER, "finalHash", round))

    def cluster_record(self, round: int, cluster: int) -> ClusterInfo | None:
        """The commitment of ``cluster`` in ``round``, or None if it is not recorded."""
        aggregate, previous, records, aggregator, samples, block = self._call(
            LEDGER, "clusterRecord", round, cluster
        )
        if aggregator == _ZERO_ADDRESS:
            return None
        return ClusterInfo(
            round=round,
            cluster=cluster,
            aggregate_hash=hash_hex(aggregate),
            previous_hash=hash_hex(previous),
            records_hash=hash_hex(records),
            aggregator=to_checksum_address(aggregator),
            total_samples=int(samples),
            block_number=int(block),
        )

    def cluster_inputs(self, info: ClusterInfo) -> tuple[tuple[str, str, int], ...]:
        """The updates recorded with ``info``'s aggregate, in the order they were averaged:
        (member, update hash, samples) from the ``UpdateRecorded`` events of the transaction
        that emitted its ``ClusterRecorded`` (member checksummed, hash bare lowercase hex)."""
        ledger = self.deployment.address_of(LEDGER)
        query = {"fromBlock": info.block_number, "toBlock": info.block_number, "address": ledger}
        logs = self._sender.read(lambda: self.w3.eth.get_logs(query), "eth_getLogs")
        events = sorted(decode_logs(self._events, logs), key=lambda e: e.position)
        transactions = {
            e.transaction_hash
            for e in events
            if e.event == "ClusterRecorded"
            and (e.args["round"], e.args["cluster"]) == (info.round, info.cluster)
        }
        if len(transactions) != 1:
            raise ChainError(
                f"block {info.block_number} holds {len(transactions)} ClusterRecorded events "
                f"for round {info.round}, cluster {info.cluster}; expected one: is the node "
                "connected to the chain the federation was deployed on?"
            )
        return tuple(
            (str(e.args["member"]), hash_hex(e.args["updateHash"]), int(e.args["samples"]))
            for e in events
            if e.event == "UpdateRecorded" and e.transaction_hash in transactions
        )

    def round_status(self, round: int) -> RoundStatus:
        """Clusters recorded in ``round`` and, once final, its hash and attestations."""
        clusters, finalized, final, attestations = self._call(LEDGER, "roundStatus", round)
        return RoundStatus(
            round=round,
            clusters_recorded=int(clusters),
            finalized=bool(finalized),
            final_hash=hash_hex(final) if finalized else None,
            attestations=int(attestations),
        )

    def round_privacy(self, round: int) -> PrivacyBudget | None:
        """The privacy budget stored with a final round (that of the attestation that
        finalized it); None while the round is not final."""
        if not self.round_status(round).finalized:
            return None
        epsilon_e6, delta_e18 = self._call(LEDGER, "roundPrivacy", round)
        return PrivacyBudget(int(epsilon_e6), int(delta_e18))

    def votes(self, round: int, global_hash: bytes | str) -> int:
        """Attestations of ``global_hash`` for ``round``."""
        return int(self._call(LEDGER, "votes", round, hash_bytes(global_hash)))

    def has_attested(self, round: int, address: str) -> bool:
        """Whether ``address`` attested ``round`` (any hash)."""
        return bool(self._call(LEDGER, "hasAttested", round, to_checksum_address(address)))

    def contribution(self, address: str) -> int:
        """Cumulative contribution score of a member."""
        return int(self._call(LEDGER, "contribution", to_checksum_address(address)))

    def total_contribution(self) -> int:
        """Sum of all recorded scores."""
        return int(self._call(LEDGER, "totalContribution"))

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

    def record_cluster(
        self,
        round: int,
        cluster: int,
        aggregate_hash: bytes | str,
        previous_hash: bytes | str,
        records: Sequence[MemberRecord],
    ) -> TxOutcome:
        """Record this member's cluster aggregate for the open round (records sent sorted).

        The first valid record of a (round, cluster) wins; a later one raises
        ContractReverted with ``error_name == "ClusterAlreadyRecorded"``: adopt
        :meth:`cluster_record` then.
        """
        ordered = sort_records(records)
        return self._transact(
            LEDGER,
            "recordCluster",
            round,
            cluster,
            hash_bytes(aggregate_hash),
            hash_bytes(previous_hash),
            [r.address for r in ordered],
            [hash_bytes(r.update_hash) for r in ordered],
            [r.samples for r in ordered],
            [r.score for r in ordered],
        )

    def attest(
        self, round: int, global_hash: bytes | str, privacy: PrivacyBudget = NO_GUARANTEE
    ) -> TxOutcome:
        """Attest the global hash of ``round`` with this member's privacy budget after it; the
        outcome holds RoundFinalized if it closed."""
        return self._transact(
            LEDGER, "attest", round, hash_bytes(global_hash), *privacy.as_call_arguments()
        )

    def withdraw(self) -> int:
        """Withdraw this member's whole credit; returns the wei paid out."""
        outcome = self._transact(REWARD_POOL, "withdraw")
        return sum(int(e.args["amount"]) for e in outcome.named("Withdrawn"))


class AdminClient(FederationClient):
    """What the consortium admin (the deployer) does on chain."""

    def admit(self, address: str, name: str, cluster: int = 0) -> TxOutcome:
        """Admit a hospital's account under a human-readable name into ``cluster``, which
        must exist or be the next new one (``cluster <= cluster_count()``)."""
        return self._transact(REGISTRY, "admit", to_checksum_address(address), name, cluster)

    def set_genesis(self, initial_model_hash: bytes | str) -> TxOutcome:
        """Set the hash of the shared initial model, once (round 1 builds on it)."""
        return self._transact(LEDGER, "setGenesis", hash_bytes(initial_model_hash))

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

"""Where a federation keeps its rounds: the seam between the round loop and the chain.

The round loop (:mod:`node.hospital`, :mod:`node.aggregator`) asks a :class:`RoundBook` who
the members are, who aggregates a cluster, what each cluster committed, and which global model
is final. Two books exist:

- :class:`LedgerBook` keeps rounds in the ``Registry``/``Ledger`` contracts: every cluster
  record and every attestation (with the member's privacy budget) is a transaction.
- :class:`node.consortium_book.ConsortiumBook` keeps them in the ``Consortium`` contract:
  cluster commitments and attestations travel as signed gossip, and one member submits the
  whole round in one transaction (docs/ledger.md).

Every method is async; chain calls run in worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import trio

from gossip.messages import AggregateInput
from incentive.chain_stats import ChainCallStats
from incentive.clients import MemberClient
from incentive.errors import ContractReverted
from incentive.member_directory import MemberDirectory
from incentive.privacy_budget import NO_GUARANTEE, PrivacyBudget
from incentive.records import ClusterInfo, MemberInfo, MemberRecord

if TYPE_CHECKING:
    from node.hospital import HospitalNode

log = logging.getLogger(__name__)

AveragedInputs = tuple[tuple[str, str, int], ...]


def averaged_inputs(inputs: Iterable[tuple[str, str, int]]) -> AveragedInputs:
    """Who contributed what to an average, in its order: (sender, update hash, samples), the
    sender's address in lowercase whatever case it came in."""
    return tuple((sender.lower(), update, samples) for sender, update, samples in inputs)


@dataclass(frozen=True)
class Standing:
    """A member's standing on chain: its contribution so far, and its reputation (0..10,000)
    where the contracts keep one (the Consortium; None on the Ledger)."""

    contribution: int
    reputation: int | None


class RoundBook(Protocol):
    """The round loop's view of the federation's system of record."""

    kind: str  # "ledger" or "consortium": the ``federation.ledger`` that selects it

    @property
    def address(self) -> str:
        """This node's account (checksummed)."""
        ...

    @property
    def chain_stats(self) -> ChainCallStats:
        """Latency of this book's chain requests and its transactions in flight."""
        ...

    def bind(self, node: HospitalNode) -> None:
        """Called once by the node that uses this book (gossip and inbox are ready)."""

    async def register(self, peer_id: str, multiaddrs: Sequence[str]) -> None:
        """Publish where this node listens."""

    async def members(self) -> list[MemberInfo]:
        """Every member; ``active`` is False for members that may not take part."""
        ...

    async def standings(self) -> dict[str, Standing]:
        """Each member's contribution and reputation, by lowercase address."""
        ...

    async def genesis_hash(self) -> str | None: ...

    async def last_finalized_round(self) -> int: ...

    async def final_hash(self, round_number: int) -> str | None:
        """The final global hash of a finalized round (None while it is not final)."""
        ...

    async def aggregator_candidates(self, round_number: int, cluster: int) -> list[str]:
        """The cluster's members in take-over order for the round (checksummed)."""
        ...

    async def record_cluster(
        self,
        round_number: int,
        cluster: int,
        aggregate_hash: str,
        previous_hash: str,
        inputs: Sequence[AggregateInput],
    ) -> bool:
        """Commit this node's aggregate of the cluster; False if another candidate's is
        already committed (the caller then stays quiet)."""
        ...

    async def cluster_record(self, round_number: int, cluster: int) -> ClusterInfo | None:
        """The cluster's committed aggregate in the round, once there is one."""
        ...

    async def cluster_inputs(self, info: ClusterInfo) -> AveragedInputs:
        """The accepted inputs committed with an aggregate, in averaging order."""
        ...

    async def attest(
        self,
        round_number: int,
        previous_hash: str,
        global_hash: str,
        used: Sequence[ClusterInfo] = (),
        privacy: PrivacyBudget = NO_GUARANTEE,
    ) -> None:
        """Vote for ``global_hash`` as the round's model, computed from the clusters'
        commitments ``used``; ``privacy`` is the members' budget after the round, for a book
        that records it."""

    async def poll_final(self, round_number: int) -> str | None:
        """The round's final hash if it is final; otherwise None (called a few times a
        second while a node waits, so a book may also push the round along here)."""
        ...


class LedgerBook:
    """Rounds in the Registry and Ledger contracts, through one member's :class:`MemberClient`;
    the registry is read in full only after it changed (:mod:`incentive.member_directory`)."""

    kind = "ledger"

    def __init__(self, client: MemberClient) -> None:
        self.client = client
        self.directory = MemberDirectory(client)  # the registry, re-read when it changed

    @property
    def address(self) -> str:
        return self.client.address

    @property
    def chain_stats(self) -> ChainCallStats:
        return self.client.chain_stats

    def bind(self, node: HospitalNode) -> None:
        pass

    async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(function, *args)

    async def register(self, peer_id: str, multiaddrs: Sequence[str]) -> None:
        await self._run(self.client.register, peer_id, list(multiaddrs))

    async def members(self) -> list[MemberInfo]:
        return list(await self._run(self.directory.members))

    async def standings(self) -> dict[str, Standing]:
        def read() -> dict[str, Standing]:
            return {
                m.address.lower(): Standing(self.client.contribution(m.address), None)
                for m in self.directory.members()
            }

        return await self._run(read)  # type: ignore[no-any-return]

    async def genesis_hash(self) -> str | None:
        return await self._run(self.client.genesis_hash)  # type: ignore[no-any-return]

    async def last_finalized_round(self) -> int:
        return int(await self._run(self.client.last_finalized_round))

    async def final_hash(self, round_number: int) -> str | None:
        return await self._run(self.client.final_hash, round_number)  # type: ignore[no-any-return]

    async def aggregator_candidates(self, round_number: int, cluster: int) -> list[str]:
        return list(await self._run(self.client.aggregator_candidates, round_number, cluster))

    async def record_cluster(
        self,
        round_number: int,
        cluster: int,
        aggregate_hash: str,
        previous_hash: str,
        inputs: Sequence[AggregateInput],
    ) -> bool:
        records = [
            MemberRecord(i.sender, i.blob_hash, i.samples, i.score)
            for i in inputs
            if not i.rejected  # the Ledger records only what went into the average
        ]
        try:
            await self._run(
                self.client.record_cluster,
                round_number,
                cluster,
                aggregate_hash,
                previous_hash,
                records,
            )
        except ContractReverted as exc:
            if exc.error_name == "ClusterAlreadyRecorded":
                return False
            raise
        return True

    async def cluster_record(self, round_number: int, cluster: int) -> ClusterInfo | None:
        return await self._run(self.client.cluster_record, round_number, cluster)  # type: ignore[no-any-return]

    async def cluster_inputs(self, info: ClusterInfo) -> AveragedInputs:
        return averaged_inputs(await self._run(self.client.cluster_inputs, info))

    async def attest(
        self,
        round_number: int,
        previous_hash: str,
        global_hash: str,
        used: Sequence[ClusterInfo] = (),
        privacy: PrivacyBudget = NO_GUARANTEE,
    ) -> None:
        client = self.client
        if await self._run(client.has_attested, round_number, client.address):
            return
        status = await self._run(client.round_status, round_number)
        if status.finalized and status.final_hash != global_hash:
            return  # the round is settled on another hash; attesting ours would revert
        try:
            await self._run(client.attest, round_number, global_hash, privacy)
        except ContractReverted as exc:
            if exc.error_name not in ("AlreadyAttested", "HashMismatch"):
                raise
            log.info("attestation of round %d not counted: %s", round_number, exc)

    async def poll_final(self, round_number: int) -> str | None:
        status = await self._run(self.client.round_status, round_number)
        return str(status.final_hash) if status.finalized and status.final_hash else None

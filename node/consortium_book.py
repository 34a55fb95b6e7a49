"""Rounds kept by the Consortium contract: commitments and votes by gossip, one transaction.

How a round is kept (docs/ledger.md, "The round loop on the Consortium"):

- **Members** come from ``memberTable()`` (one call) plus the ``MemberAdmitted`` and
  ``MemberRegistered`` events since the last read (names, peer ids, addresses). Only active,
  non-excluded hospitals take part; the others' announcements are ignored by every node.
- **Cluster commitments** are the aggregators' signed aggregate announcements, which list
  every update considered with its score and whether it was rejected. A member takes the
  commitment of the best-ranked candidate it has received (the take-over order of
  :mod:`incentive.candidates`); a candidate that sees a better-ranked commitment stays quiet.
- **Attestations** are gossiped EIP-712 signatures over the round digest: round, previous
  hash, global hash, the commitments hash of the clusters this member used and the members'
  differential-privacy budget after the round (:mod:`incentive.privacy_budget`). Signatures
  over another digest do not count, so only members that agree on every commitment, on the
  global model and on the budget add up to a quorum.
- **Submission**: members are ordered per round like candidates of a pseudo-cluster 65535;
  the member of rank ``k`` sends ``finalizeRound`` once it holds a quorum (every cluster's
  aggregator among the signers) and ``k`` x ``federation.takeover_timeout`` seconds have passed
  since it attested. A late submitter's ``RoundNotOpen`` just means the round is final.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import trio
from eth_utils import to_checksum_address

from gossip.messages import AggregateInput, Announcement, AnnouncementKind
from incentive.candidates import aggregator_candidates
from incentive.chain_stats import ChainCallStats
from incentive.consortium import ConsortiumClient, ConsortiumMember
from incentive.errors import ContractReverted
from incentive.privacy_budget import NO_GUARANTEE, PrivacyBudget
from incentive.records import ClusterInfo, MemberInfo
from incentive.round_commit import (
    ClusterCommit,
    Record,
    RoundSignature,
    commitments_hash,
    recover_round_signer,
    round_digest,
    sign_round,
)
from node.errors import RoundFailed
from node.round_book import AveragedInputs, Standing, averaged_inputs

if TYPE_CHECKING:
    from node.hospital import HospitalNode

log = logging.getLogger(__name__)

SUBMITTERS = 65535  # the pseudo-cluster whose candidate order says who submits a round
SCORE_MAX = 2**32 - 1  # the contract's records carry uint32 scores
LOG_CHUNK_BLOCKS = 2000  # blocks per eth_getLogs query when reading membership events


class _Attested(NamedTuple):
    """What this node signed for a round, kept to submit it."""

    digest: bytes
    clusters: list[ClusterCommit]
    global_hash: str
    privacy: PrivacyBudget
    signed_at: float  # time.monotonic()


class ConsortiumBook:
    """One member's view of a Consortium's rounds (see the module doc)."""

    kind = "consortium"

    def __init__(self, client: ConsortiumClient, account_key: str, submit_stagger: float) -> None:
        self.client = client
        self._key = account_key
        self._stagger = submit_stagger
        self._node: HospitalNode | None = None
        self._rows: list[ConsortiumMember] = []
        self._names: dict[int, str] = {}
        self._peers: dict[int, tuple[str, list[str]]] = {}
        self._next_block = 0  # events before this block are read already
        self._domain: bytes | None = None
        self._final: dict[int, str] = {}
        self._attested: dict[int, _Attested] = {}  # per round: what this node signed
        self._submitted: dict[int, frozenset[int]] = {}  # signer sets already sent, per round
        self._quorum: dict[int, int] = {}  # per round, read once
        self._ignored: set[str] = set()  # commitments found unusable (logged once)

    @property
    def address(self) -> str:
        return self.client.account

    @property
    def chain_stats(self) -> ChainCallStats:
        return self.client.chain_stats

    def bind(self, node: HospitalNode) -> None:
        self._node = node

    @property
    def node(self) -> HospitalNode:
        if self._node is None:
            raise RuntimeError("ConsortiumBook used before a node bound it")
        return self._node

    async def _run(self, function: Any, *args: Any) -> Any:
        return await trio.to_thread.run_sync(function, *args)

    # ------------------------------------------------------------------ members

    async def register(self, peer_id: str, multiaddrs: Sequence[str]) -> None:
        await self._run(self.client.register, peer_id, list(multiaddrs))

    async def members(self) -> list[MemberInfo]:
        await self._refresh()
        return [
            MemberInfo(
                address=row.account,
                name=self._names.get(row.index, f"member {row.index}"),
                peer_id=self._peers.get(row.index, ("", []))[0],
                multiaddrs=self._peers.get(row.index, ("", []))[1],
                active=row.votes,
                cluster=row.cluster,
            )
            for row in self._rows
        ]

    async def _refresh(self) -> None:
        if not self._next_block:
            self._next_block = int(await self._run(self.client.deployed_at))
        last = int(await self._run(self.client.block_number))
        self._rows = list(await self._run(self.client.member_rows))
        if last < self._next_block:
            return
        events = []
        for first in range(self._next_block, last + 1, LOG_CHUNK_BLOCKS):
            to = min(first + LOG_CHUNK_BLOCKS - 1, last)  # providers cap a query's block range
            events += await self._run(self.client.events_between, first, to)
        for event in events:
            if event.event == "MemberAdmitted":
                self._names[int(event.args["index"])] = str(event.args["name"])
            elif event.event == "MemberRegistered":
                addresses = [a for a in str(event.args["multiaddrs"]).split(",") if a]
                self._peers[int(event.args["index"])] = (str(event.args["peerId"]), addresses)
        self._next_block = last + 1

    async def standings(self) -> dict[str, Standing]:
        def read() -> dict[str, Standing]:
            return {
                row.account.lower(): Standing(
                    self.client.contribution(row.index), self.client.reputation(row.index)
                )
                for row in self.client.member_rows()
            }

        return await self._run(read)  # type: ignore[no-any-return]

    def _voters(self) -> list[ConsortiumMember]:
        return [row for row in self._rows if row.votes]

    def _index(self) -> dict[str, ConsortiumMember]:
        return {row.account.lower(): row for row in self._rows}

    # ------------------------------------------------------------------- rounds

    async def genesis_hash(self) -> str | None:
        genesis = bytes(await self._run(self.client.genesis_hash))
        return genesis.hex() if any(genesis) else None

    async def last_finalized_round(self) -> int:
        return int(await self._run(self.client.last_finalized_round))

    async def final_hash(self, round_number: int) -> str | None:
        if round_number not in self._final:
            found = await self._run(self.client.final_hash, round_number)
            if found is None:
                return None
            self._final[round_number] = bytes(found).hex()
        return self._final[round_number]

    async def aggregator_candidates(self, round_number: int, cluster: int) -> list[str]:
        if not self._rows:
            await self._refresh()
        return self._candidates(round_number, cluster)

    def _candidates(self, round_number: int, cluster: int) -> list[str]:
        members = [row.account for row in self._voters() if row.cluster == cluster]
        return aggregator_candidates(round_number, cluster, members)

    async def record_cluster(
        self,
        round_number: int,
        cluster: int,
        aggregate_hash: str,
        previous_hash: str,
        inputs: Sequence[AggregateInput],
    ) -> bool:
        """Nothing to send: the aggregate announcement that follows is the commitment. False
        if a better-ranked candidate's commitment is here already."""
        best = self._best_commitment(round_number, cluster)
        if best is None:
            return True
        order = self._candidates(round_number, cluster)
        return order.index(self.address) < order.index(_checksum(best.sender))

    async def cluster_record(self, round_number: int, cluster: int) -> ClusterInfo | None:
        best = self._best_commitment(round_number, cluster)
        if best is None:
            return None
        return ClusterInfo(
            round=round_number,
            cluster=cluster,
            aggregate_hash=best.blob_hash,
            previous_hash="",
            records_hash=_commitment_id(best),
            aggregator=_checksum(best.sender),
            total_samples=best.samples,
            block_number=0,
        )

    async def cluster_inputs(self, info: ClusterInfo) -> AveragedInputs:
        commitment = self._commitment(info)
        return averaged_inputs(
            (i.sender, i.blob_hash, i.samples) for i in commitment.inputs if not i.rejected
        )

    def _best_commitment(self, round_number: int, cluster: int) -> Announcement | None:
        """The best-ranked candidate's well-formed aggregate announcement, if any is here."""
        order = [c.lower() for c in self._candidates(round_number, cluster)]
        members = self._index()
        found = []
        for announcement in self.node.inbox.aggregates(round_number, cluster):
            sender = announcement.sender.lower()
            problem = _commitment_problem(announcement, cluster, members)
            problem = problem or self._evidence_problem(announcement)
            if _commitment_id(announcement) in self.node.refused_commitments:
                continue  # this node could not check or fetch it: the next candidate's turn
            if sender not in order:
                problem = f"{sender} is not an aggregator candidate of cluster {cluster}"
            if problem:
                if announcement.signature not in self._ignored:
                    self._ignored.add(announcement.signature)
                    log.warning("round %d: commitment ignored: %s", round_number, problem)
                continue
            found.append((order.index(sender), announcement))
        return min(found, key=lambda item: item[0])[1] if found else None

    def _evidence_problem(self, announcement: Announcement) -> str:
        """Why a commitment cannot stand given what its members signed this round (empty if
        it can): it takes an update whose member also signed an announcement the validators
        refused and passed on as evidence (an oversized blob, a replay; every member holds
        it, so every member judges alike), or, but in a secure round, its aggregator lists
        no update of its own (an aggregator trains before it collects; one that did not
        must not leave itself out of the record)."""
        refused = self.node.inbox.refused_updates(announcement.round)
        for item in announcement.inputs:
            sender = item.sender.lower()
            if not item.rejected and sender in refused:
                return (
                    f"it takes the update of {sender}, who also signed an announcement "
                    f"refused this round: {refused[sender][1]}"
                )
        listed = {item.sender.lower() for item in announcement.inputs}
        aggregator = announcement.sender.lower()
        if not self.node.config.federation.secure_aggregation and aggregator not in listed:
            return f"its aggregator {aggregator} lists no update of its own"
        return ""

    def _commitment(self, info: ClusterInfo) -> Announcement:
        for announcement in self.node.inbox.aggregates(info.round, info.cluster):
            if _commitment_id(announcement) == info.records_hash:
                return announcement
        raise RoundFailed(
            f"round {info.round}: the commitment of cluster {info.cluster} is no longer held"
        )

    # ------------------------------------------------------------- attestations

    async def attest(
        self,
        round_number: int,
        previous_hash: str,
        global_hash: str,
        used: Sequence[ClusterInfo] = (),
        privacy: PrivacyBudget = NO_GUARANTEE,
    ) -> None:
        """Sign the round digest over the commitments ``used`` and the privacy budget, and
        gossip the signature."""
        members = self._index()
        clusters = [
            _cluster_commit(self._commitment(info), members)
            for info in sorted(used, key=lambda i: i.cluster)
        ]
        accounts = {row.index: row.account for row in self._rows}
        if self._domain is None:
            self._domain = bytes(await self._run(self.client.domain))
        digest = round_digest(
            self._domain,
            round_number,
            bytes.fromhex(previous_hash),
            bytes.fromhex(global_hash),
            commitments_hash(round_number, clusters, accounts),
            privacy,
        )
        own = members[self.address.lower()]
        signature = sign_round(self._key, own.index, digest)
        self._attested[round_number] = _Attested(
            digest, clusters, global_hash, privacy, time.monotonic()
        )
        node = self.node
        await node.gossip.publish(
            node.announcement(
                AnnouncementKind.ATTEST,
                round_number,
                own.cluster,
                global_hash,
                0,
                0,
                round_signature=signature.signature.hex(),
            )
        )

    async def poll_final(self, round_number: int) -> str | None:
        if await self.last_finalized_round() >= round_number:
            return await self.final_hash(round_number)
        await self._maybe_submit(round_number)
        return None

    async def _maybe_submit(self, round_number: int) -> None:
        attested = self._attested.get(round_number)
        if attested is None:
            return
        digest, clusters, global_hash, privacy, signed_at = attested
        voters = [row.account for row in self._voters()]
        submitters = aggregator_candidates(round_number, SUBMITTERS, voters)
        if self.address not in submitters:
            return
        rank = submitters.index(self.address)
        if time.monotonic() < signed_at + rank * self._stagger:
            return
        signatures = self._signatures(round_number, digest)
        signers = frozenset(s.signer for s in signatures)
        aggregators = {c.aggregator for c in clusters}
        if round_number not in self._quorum:
            self._quorum[round_number] = int(await self._run(self.client.quorum))
        quorum = self._quorum[round_number]
        if len(signatures) < quorum or not aggregators <= signers:
            return
        if signers in self._submitted.get(round_number, set()):
            return  # this very set was sent (and reverted) already
        self._submitted[round_number] = frozenset(signers)
        try:
            await self._run(
                self.client.finalize_round,
                round_number,
                bytes.fromhex(global_hash),
                clusters,
                signatures,
                privacy,
            )
        except ContractReverted as exc:
            if exc.error_name == "RoundNotOpen":
                return  # another member submitted first
            log.warning("round %d: finalizeRound reverted: %s", round_number, exc)
            self.node.emit(
                {"event": "finalize-reverted", "round": round_number, "reason": str(exc)}
            )
            return
        self.node.emit({"event": "finalized", "round": round_number, "signatures": len(signatures)})

    def _signatures(self, round_number: int, digest: bytes) -> list[RoundSignature]:
        """The signatures over ``digest`` from voting hospitals, one per signer."""
        voters = {row.account.lower(): row for row in self._voters()}
        found: dict[int, RoundSignature] = {}
        for announcement in self.node.inbox.attestations(round_number):
            row = voters.get(announcement.sender.lower())
            if row is None:
                continue
            signature = bytes.fromhex(announcement.round_signature)
            signer = recover_round_signer(digest, signature)
            if signer is not None and signer.lower() == row.account.lower():
                found[row.index] = RoundSignature(row.index, signature)
        return [found[i] for i in sorted(found)]


def _checksum(address: str) -> str:
    return str(to_checksum_address(address))


def _commitment_id(announcement: Announcement) -> str:
    """Names one aggregate announcement (its signature covers every field)."""
    return announcement.signature


def _commitment_problem(
    announcement: Announcement, cluster: int, members: dict[str, ConsortiumMember]
) -> str:
    """Why an aggregate announcement cannot be a commitment of ``cluster`` (empty if it can)."""
    senders = [i.sender.lower() for i in announcement.inputs]
    if len(set(senders)) != len(senders):
        return "an update is listed twice"
    for sender in senders:
        row = members.get(sender)
        if row is None or not row.votes or row.cluster != cluster:
            return f"{sender} is not a voting hospital of cluster {cluster}"
    return ""


def _cluster_commit(
    announcement: Announcement, members: dict[str, ConsortiumMember]
) -> ClusterCommit:
    """The contract's view of an aggregate announcement: records sorted by member index."""
    records = sorted(
        (
            Record(
                member=members[i.sender.lower()].index,
                update_hash=bytes.fromhex(i.blob_hash),
                samples=i.samples,
                score=min(i.score, SCORE_MAX),
                rejected=i.rejected,
            )
            for i in announcement.inputs
        ),
        key=lambda r: r.member,
    )
    return ClusterCommit(
        cluster=announcement.cluster,
        aggregator=members[announcement.sender.lower()].index,
        aggregate_hash=bytes.fromhex(announcement.blob_hash),
        records=tuple(records),
    )

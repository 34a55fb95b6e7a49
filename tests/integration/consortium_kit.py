"""Helpers for tests of ``contracts/Consortium.sol`` on the real in-process EVM.

:func:`start_consortium` deploys a consortium, admits hospitals (and auditors) through k-of-n
governance and sets the genesis hash. :meth:`Consortium.build_round` builds and signs a round
with :mod:`incentive.round_commit`; :class:`FinalizeCall` holds the raw ``finalizeRound``
arguments so a test can bend any of them into something the Python builders would refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak as _keccak

from contracts import load_artifact
from incentive.abi_codec import EventDecoder
from incentive.chain import EmbeddedChain
from incentive.consortium import (
    CONSORTIUM,
    ROLE_AUDITOR,
    ROLE_HOSPITAL,
    ConsortiumClient,
    deploy_consortium,
)
from incentive.privacy_budget import NO_GUARANTEE, PrivacyBudget
from incentive.round_commit import (
    ClusterCommit,
    Record,
    RoundSignature,
    commitments_hash,
    domain_separator,
    pack_records,
    pack_signatures,
    round_digest,
    sign_round,
)
from incentive.tx import TransactionSender, TxOutcome

# The default consortium: hospital i is member i, in cluster i % 2; the auditor comes after
# them. Eight voting hospitals make a quorum of ceil(8 * 2 / 3) = 6.
CLUSTERS = (0, 1, 0, 1, 0, 1, 0, 1)
HOSPITALS = range(len(CLUSTERS))
AUDITOR = len(CLUSTERS)
ADMINS = 3
THRESHOLD = 2
SCORES = {i: 10 * (i + 1) for i in HOSPITALS}
SIGNERS = [0, 1, 2, 3, 4, 5]  # a quorum that includes both clusters' first members


def keccak(text: str) -> bytes:
    """Keccak-256 of ``text``: the tests' stand-in for model and update hashes."""
    return keccak_bytes(text.encode())


def keccak_bytes(data: bytes) -> bytes:
    return bytes(_keccak(data))


GENESIS = keccak("genesis model")


def samples_of(member: int) -> int:
    """The sample count every round's record of ``member`` carries."""
    return 100 + member


def update_hash(round_number: int, member: int) -> bytes:
    return keccak(f"update {round_number} {member}")


def aggregate_hash(round_number: int, cluster: int) -> bytes:
    return keccak(f"aggregate {round_number} {cluster}")


def global_hash(round_number: int) -> bytes:
    return keccak(f"global {round_number}")


def packed_record(member: int, round_number: int, score: int, rejected: bool = False) -> bytes:
    """A record as ``finalizeRound`` reads it, packed by hand (the update hash and samples
    that :meth:`Consortium.build_round` gives every record)."""
    return (
        member.to_bytes(2, "big")
        + update_hash(round_number, member)
        + samples_of(member).to_bytes(8, "big")
        + score.to_bytes(4, "big")
        + bytes([int(rejected)])
    )


@dataclass(frozen=True)
class Admission:
    """What the test admitted as one member, known without asking the contract."""

    account: str
    key: str
    name: str
    cluster: int
    role: int


@dataclass(frozen=True)
class FinalizeCall:
    """The raw arguments of ``Consortium.finalizeRound``."""

    round_number: int
    global_hash: bytes
    clusters: tuple[tuple[int, int, bytes, int], ...]
    records: bytes
    signatures: bytes
    members: bytes
    epsilon_e6: int = NO_GUARANTEE.epsilon_e6
    delta_e18: int = NO_GUARANTEE.delta_e18


@dataclass(frozen=True)
class Round:
    """A round built and signed off chain, ready to submit."""

    number: int
    previous_hash: bytes
    global_hash: bytes
    commits: tuple[ClusterCommit, ...]
    commitments: bytes
    digest: bytes
    signatures: tuple[RoundSignature, ...]
    members: bytes  # the member table it was built against
    privacy: PrivacyBudget = NO_GUARANTEE

    def call(self) -> FinalizeCall:
        return FinalizeCall(
            self.number,
            self.global_hash,
            tuple(c.as_call_argument() for c in self.commits),
            pack_records(self.commits),
            pack_signatures(self.signatures),
            self.members,
            *self.privacy.as_call_arguments(),
        )


@dataclass
class Consortium:
    """One deployed consortium and a client for each account that talks to it."""

    chain: EmbeddedChain
    address: str
    admins: list[ConsortiumClient]
    threshold: int
    admitted: list[Admission]  # by member index
    members: list[ConsortiumClient]  # by member index
    outsider: ConsortiumClient  # a funded account that was never admitted
    outsider_key: str
    spare_keys: list[str]  # funded accounts left for the tests to admit
    _senders: dict[str, TransactionSender] = field(default_factory=dict, repr=False)

    def accounts(self) -> dict[int, str]:
        return {i: a.account for i, a in enumerate(self.admitted)}

    def sender(self, key: str) -> TransactionSender:
        """A transaction sender for ``key`` that decodes this contract's events."""
        if key not in self._senders:
            abi = load_artifact(CONSORTIUM).abi
            self._senders[key] = TransactionSender(
                self.chain.w3,
                key,
                self.chain.lock,
                decoder=EventDecoder({self.address: (CONSORTIUM, abi)}),
            )
        return self._senders[key]

    def view(self, function: str, *args: Any) -> Any:
        """Call any function of the contract as the outsider; reverts raise
        :class:`~incentive.errors.ContractReverted`."""
        fn = getattr(self.outsider.contract.functions, function)(*args)
        return self.sender(self.outsider_key).call(CONSORTIUM, function, fn)

    def govern(self, propose: Callable[[ConsortiumClient], TxOutcome]) -> TxOutcome:
        """Propose with the first admin and approve with the next ones up to the threshold;
        the outcome of the transaction that executed the proposal."""
        outcome = propose(self.admins[0])
        proposal = proposal_id(outcome)
        for admin in self.admins[1 : self.threshold]:
            outcome = admin.approve(proposal)
        return outcome

    def admit(
        self, key: str, name: str, cluster: int, role: int = ROLE_HOSPITAL
    ) -> ConsortiumClient:
        """Admit the account of ``key`` through governance; its client."""
        client = ConsortiumClient(self.chain.w3, self.address, key, self.chain.lock)
        self.govern(lambda a: a.propose_admit(client.account, name, cluster, role))
        self.admitted.append(Admission(client.account, key, name, cluster, role))
        self.members.append(client)
        return client

    def voting(self) -> list[int]:
        """Member indices of active, non-excluded hospitals, as the chain has them now."""
        return [
            m.index
            for m in self.outsider.members()
            if m.role == ROLE_HOSPITAL and m.active and not m.excluded
        ]

    def build_round(
        self,
        scores: Mapping[int, int],
        *,
        rejected: Collection[int] = (),
        aggregators: Mapping[int, int] | None = None,
        signers: Sequence[int] | None = None,
        number: int | None = None,
        final_hash: bytes | None = None,
        privacy: PrivacyBudget = NO_GUARANTEE,
    ) -> Round:
        """A round with a record for each member in ``scores`` (rejected if in ``rejected``),
        grouped by cluster. By default each cluster's aggregator is its lowest member index
        with a record, and the signers are the aggregators plus the lowest voting hospitals
        up to the quorum; they sign ``privacy`` with the round."""
        number = number if number is not None else self.outsider.last_finalized_round() + 1
        previous = self.outsider.last_global_hash()
        final = final_hash if final_hash is not None else global_hash(number)
        by_cluster: dict[int, list[Record]] = {}
        for member in sorted(scores):
            record = Record(
                member,
                update_hash(number, member),
                samples_of(member),
                scores[member],
                member in rejected,
            )
            by_cluster.setdefault(self.admitted[member].cluster, []).append(record)
        chosen = dict(aggregators or {})
        commits = tuple(
            ClusterCommit(
                cluster,
                chosen.get(cluster, records[0].member),
                aggregate_hash(number, cluster),
                tuple(records),
            )
            for cluster, records in sorted(by_cluster.items())
        )
        commitments = commitments_hash(number, commits, self.accounts())
        digest = round_digest(self.domain(), number, previous, final, commitments, privacy)
        if signers is None:
            wanted = {c.aggregator for c in commits}
            quorum = self.outsider.quorum()
            for index in self.voting():
                if len(wanted) >= quorum:
                    break
                wanted.add(index)
            signers = sorted(wanted)
        signatures = tuple(sign_round(self.admitted[i].key, i, digest) for i in signers)
        return Round(
            number,
            previous,
            final,
            commits,
            commitments,
            digest,
            signatures,
            self.outsider.member_table(),
            privacy,
        )

    def play(
        self,
        scores: Sequence[int],
        rejected: Collection[int] = (),
        absent: Collection[int] = (),
        privacy: PrivacyBudget = NO_GUARANTEE,
    ) -> TxOutcome:
        """Finalize the next round: a record for member i with ``scores[i]``, except the
        ``absent`` ones, flagged when in ``rejected``; the default aggregators and signers,
        who sign ``privacy`` with it."""
        chosen = {i: score for i, score in enumerate(scores) if i not in absent}
        return self.finalize(self.build_round(chosen, rejected=set(rejected), privacy=privacy))

    def exclude(self, member: int) -> None:
        """Finalize two rounds rejecting ``member``'s record: its reputation goes
        10000 -> 7500 -> 5625, below the default exclusion threshold of 6000."""
        for _ in range(2):
            self.finalize(self.build_round({i: 1 for i in self.voting()}, rejected={member}))
        assert self.outsider.member(member).excluded

    def domain(self) -> bytes:
        return domain_separator(int(self.chain.w3.eth.chain_id), self.address)

    def finalize(self, plan: Round, sender: int = 0) -> TxOutcome:
        """Submit ``plan`` through the client of member ``sender``."""
        return self.members[sender].finalize_round(
            plan.number, plan.global_hash, plan.commits, plan.signatures, plan.privacy
        )

    def submit(self, call: FinalizeCall, key: str | None = None) -> TxOutcome:
        """Send ``finalizeRound`` with raw arguments, signed by ``key`` (member 0's by
        default)."""
        sender = self.sender(key if key is not None else self.admitted[0].key)
        fn = self.outsider.contract.functions.finalizeRound(
            call.round_number,
            call.global_hash,
            call.epsilon_e6,
            call.delta_e18,
            list(call.clusters),
            call.records,
            call.signatures,
            call.members,
        )
        return sender.transact(CONSORTIUM, "finalizeRound", fn)


def proposal_id(outcome: TxOutcome) -> int:
    """The id of the proposal a ``propose`` transaction created."""
    (proposed,) = outcome.named("Proposed")
    return int(proposed.args["id"])


def start_consortium(
    chain: EmbeddedChain,
    clusters: Sequence[int] = CLUSTERS,
    auditors: int = 1,
    admins: int = ADMINS,
    threshold: int = THRESHOLD,
    genesis: bytes | None = GENESIS,
) -> Consortium:
    """Deploy with keys 0..admins-1 as admins, admit one hospital per entry of ``clusters``
    (member index = position) and then ``auditors`` auditors, and set ``genesis``. The next
    key is the outsider; the rest are spare."""
    keys = chain.private_keys
    needed = admins + len(clusters) + auditors + 1
    if len(keys) < needed:
        raise ValueError(f"the chain has {len(keys)} accounts, the consortium needs {needed}")
    admin_accounts = [a.address for a in chain.accounts[:admins]]
    address, _ = deploy_consortium(chain.w3, keys[0], admin_accounts, threshold, chain.lock)

    def client(key: str) -> ConsortiumClient:
        return ConsortiumClient(chain.w3, address, key, chain.lock)

    consortium = Consortium(
        chain=chain,
        address=address,
        admins=[client(k) for k in keys[:admins]],
        threshold=threshold,
        admitted=[],
        members=[],
        outsider=client(keys[needed - 1]),
        outsider_key=keys[needed - 1],
        spare_keys=list(keys[needed:]),
    )
    member_keys = keys[admins : needed - 1]
    for i, cluster in enumerate(clusters):
        consortium.admit(member_keys[i], f"Hospital {i}", cluster)
    for j in range(auditors):
        consortium.admit(member_keys[len(clusters) + j], f"Auditor {j}", 0, ROLE_AUDITOR)
    if genesis is not None:
        consortium.govern(lambda a: a.propose_genesis(genesis))
    return consortium

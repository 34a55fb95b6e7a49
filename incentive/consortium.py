"""Client of ``contracts/Consortium.sol``: governance, membership, rounds, reputation.

One :class:`ConsortiumClient` per signing account. Governance actions are proposed with their
ABI-encoded data and run once ``threshold`` admins approved; :meth:`ConsortiumClient.finalize_round`
submits a round built with :mod:`incentive.round_commit`. Transactions go through
:class:`~incentive.tx.TransactionSender` (signed locally, receipts awaited, reverts named).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_utils import keccak, to_checksum_address

from incentive.abi_codec import EventDecoder
from incentive.contract_client import ContractClient, deploy_contract
from incentive.events import EventRecord, decode_logs
from incentive.privacy_budget import NO_GUARANTEE, PrivacyBudget
from incentive.round_commit import (
    ClusterCommit,
    RoundSignature,
    commitments_hash,
    domain_separator,
    pack_records,
    pack_signatures,
    round_digest,
    sign_round,
)
from incentive.tx import TxOutcome

CONSORTIUM = "Consortium"
ROLE_HOSPITAL = 1
ROLE_AUDITOR = 2
ACTION_ADMIT = 1
ACTION_REMOVE = 2
ACTION_SET_GENESIS = 3
ACTION_SET_QUORUM = 4
ACTION_SET_EXCLUSION = 5
ACTION_REINSTATE = 6
ACTION_SET_ADMINS = 7
MEMBER_ROW_BYTES = 25  # memberTable(): account 20 | cluster 2 | role 1 | active 1 | excluded 1
_ROUND_FINALIZED = keccak(
    text="RoundFinalized(uint64,bytes32,bytes32,bytes32,uint256,uint64,uint64)"
)


@dataclass(frozen=True)
class ConsortiumMember:
    index: int
    account: str
    cluster: int
    role: int
    active: bool
    excluded: bool

    @property
    def votes(self) -> bool:
        """Whether the member takes part in rounds: an active hospital not excluded."""
        return self.role == ROLE_HOSPITAL and self.active and not self.excluded


def deploy_consortium(
    w3: Any,
    deployer_key: str | bytes,
    admins: Sequence[str],
    threshold: int,
    lock: AbstractContextManager[Any] | None = None,
) -> tuple[str, TxOutcome]:
    """Deploy a Consortium governed by ``threshold`` of ``admins``; its address and receipt."""
    return deploy_contract(w3, deployer_key, CONSORTIUM, list(admins), threshold, lock=lock)


class ConsortiumClient(ContractClient):
    """Calls and transactions of one account against one Consortium."""

    name = CONSORTIUM

    # governance
    def propose(self, kind: int, data: bytes) -> TxOutcome:
        return self._transact("propose", kind, data)

    def approve(self, proposal: int) -> TxOutcome:
        return self._transact("approve", proposal)

    def cancel(self, proposal: int) -> TxOutcome:
        """Withdraw a pending proposal this account made."""
        return self._transact("cancel", proposal)

    def propose_admit(
        self, account: str, name: str, cluster: int, role: int = ROLE_HOSPITAL
    ) -> TxOutcome:
        data = encode(["address", "string", "uint16", "uint8"], [account, name, cluster, role])
        return self.propose(ACTION_ADMIT, data)

    def propose_remove(self, account: str) -> TxOutcome:
        return self.propose(ACTION_REMOVE, encode(["address"], [account]))

    def propose_genesis(self, genesis_hash: bytes) -> TxOutcome:
        return self.propose(ACTION_SET_GENESIS, encode(["bytes32"], [genesis_hash]))

    def propose_quorum(self, numerator: int, denominator: int) -> TxOutcome:
        return self.propose(
            ACTION_SET_QUORUM, encode(["uint16", "uint16"], [numerator, denominator])
        )

    def propose_exclusion(self, threshold: int) -> TxOutcome:
        return self.propose(ACTION_SET_EXCLUSION, encode(["uint16"], [threshold]))

    def propose_reinstate(self, account: str) -> TxOutcome:
        return self.propose(ACTION_REINSTATE, encode(["address"], [account]))

    def propose_admins(self, admins: Sequence[str], threshold: int) -> TxOutcome:
        return self.propose(
            ACTION_SET_ADMINS, encode(["address[]", "uint8"], [list(admins), threshold])
        )

    # membership
    def register(self, peer_id: str, multiaddrs: Sequence[str]) -> TxOutcome:
        return self._transact("register", peer_id, ",".join(multiaddrs))

    def member(self, index: int) -> ConsortiumMember:
        account, cluster, role, active, excluded = self._call("member", index)
        return ConsortiumMember(index, account, cluster, role, active, excluded)

    def members(self) -> list[ConsortiumMember]:
        return [self.member(i) for i in range(self._call("memberCount"))]

    def index_of(self, account: str) -> int:
        return int(self._call("indexOf", account))

    def member_rows(self) -> list[ConsortiumMember]:
        """Every member from one ``memberTable()`` call (what ``members()`` reads one by one)."""
        return parse_member_table(self.member_table())

    def deployed_at(self) -> int:
        return int(self._call("deployedAt"))

    def genesis_hash(self) -> bytes:
        """The genesis hash (32 zero bytes until governance sets it)."""
        return bytes(self._call("genesisHash"))

    def events_between(
        self, first_block: int, last_block: int | str, topics: list[bytes] | None = None
    ) -> list[EventRecord]:
        """The Consortium's decoded events in blocks ``first_block`` .. ``last_block``
        (optionally only those whose topics start with ``topics``)."""
        address = self.contract.address
        query: dict[str, Any] = {"fromBlock": first_block, "toBlock": last_block}
        query.update({"address": address, **({"topics": topics} if topics else {})})
        logs = self._sender.read(lambda: self.contract.w3.eth.get_logs(query), "Consortium events")
        return decode_logs(EventDecoder({address: (self.name, self.contract.abi)}), logs)

    def block_number(self) -> int:
        return int(self._sender.read(lambda: self.contract.w3.eth.block_number, "block number"))

    def final_hash(self, round_number: int) -> bytes | None:
        """Round ``round_number``'s final global hash, from its ``RoundFinalized`` event
        (None while it is not final)."""
        event = self._round_finalized(round_number)
        if event is None:
            return None
        value = event.args["globalHash"]
        return value if isinstance(value, bytes) else bytes.fromhex(str(value).removeprefix("0x"))

    def privacy_budget(self, round_number: int) -> PrivacyBudget | None:
        """The privacy budget recorded with round ``round_number``, from its
        ``RoundFinalized`` event (None while it is not final)."""
        event = self._round_finalized(round_number)
        if event is None:
            return None
        return PrivacyBudget(int(event.args["epsilonE6"]), int(event.args["deltaE18"]))

    def _round_finalized(self, round_number: int) -> EventRecord | None:
        if not 1 <= round_number <= self.last_finalized_round():
            return None
        topics = [_ROUND_FINALIZED, round_number.to_bytes(32, "big")]
        events = self.events_between(self.deployed_at(), "latest", topics)
        return events[-1] if events else None

    # rounds
    def domain(self) -> bytes:
        return domain_separator(int(self.contract.w3.eth.chain_id), self.contract.address)

    def quorum(self) -> int:
        return int(self._call("quorum"))

    def last_finalized_round(self) -> int:
        return int(self._call("lastFinalizedRound"))

    def last_global_hash(self) -> bytes:
        """The final hash of the last finalized round (the genesis hash before round 1)."""
        return bytes(self._call("lastGlobalHash"))

    def last_privacy_budget(self) -> PrivacyBudget | None:
        """The privacy budget recorded with the last finalized round (None before round 1)."""
        if not self.last_finalized_round():
            return None
        return PrivacyBudget(int(self._call("lastEpsilonE6")), int(self._call("lastDeltaE18")))

    def finalize_round(
        self,
        round_number: int,
        global_hash: bytes,
        clusters: Sequence[ClusterCommit],
        signatures: Sequence[RoundSignature],
        privacy: PrivacyBudget = NO_GUARANTEE,
    ) -> TxOutcome:
        """Submit a round; ``privacy`` must be the budget the signatures cover."""
        return self._transact(
            "finalizeRound",
            round_number,
            global_hash,
            *privacy.as_call_arguments(),
            [c.as_call_argument() for c in clusters],
            pack_records(clusters),
            pack_signatures(signatures),
            self.member_table(),
        )

    def member_table(self) -> bytes:
        """The packed member table ``finalizeRound`` checks against ``membersHash``."""
        return bytes(self._call("memberTable"))

    def contribution(self, index: int) -> int:
        return int(self._call("contribution", index))

    def reputation(self, index: int) -> int:
        return int(self._call("reputation", index))


def parse_member_table(table: bytes) -> list[ConsortiumMember]:
    """The members packed in ``memberTable()``, by index."""
    if len(table) % MEMBER_ROW_BYTES:
        raise ValueError(f"a member table has a multiple of {MEMBER_ROW_BYTES} bytes")
    rows = []
    for index in range(len(table) // MEMBER_ROW_BYTES):
        row = table[index * MEMBER_ROW_BYTES : (index + 1) * MEMBER_ROW_BYTES]
        rows.append(
            ConsortiumMember(
                index,
                to_checksum_address(row[:20]),
                int.from_bytes(row[20:22], "big"),
                row[22],
                bool(row[23]),
                bool(row[24]),
            )
        )
    return rows


def sign_and_finalize(
    submitter: ConsortiumClient,
    round_number: int,
    previous_hash: bytes,
    global_hash: bytes,
    clusters: Sequence[ClusterCommit],
    signer_keys: Mapping[int, str | bytes],
    accounts: Mapping[int, str],
    privacy: PrivacyBudget = NO_GUARANTEE,
) -> TxOutcome:
    """Have each member in ``signer_keys`` (member index -> key) sign the round (with its
    privacy budget) and submit it from ``submitter``; ``accounts`` maps the records' member
    indices to their accounts."""
    digest = round_digest(
        submitter.domain(),
        round_number,
        previous_hash,
        global_hash,
        commitments_hash(round_number, clusters, accounts),
        privacy,
    )
    signatures = [sign_round(key, index, digest) for index, key in sorted(signer_keys.items())]
    return submitter.finalize_round(round_number, global_hash, clusters, signatures, privacy)

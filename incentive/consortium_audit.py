"""Audit of a Consortium (and its EpochRewards pool) from the chain's events alone.

:func:`audit_events` replays the events in chain order and checks, without trusting any view
of the contracts:

- every cluster's ``recordsRoot`` is the Merkle root of the records the event carries, and
  each record has a Merkle proof against it (:mod:`incentive.merkle`);
- every round's ``commitments`` hash is the one recomputed from its clusters, and each round
  builds on the previous round's final hash (genesis for round 1);
- every round's privacy budget (``epsilonE6``, ``deltaE18``, signed by the round's quorum) is
  one the contract's encoding allows, and the budgets only accumulate privacy loss from round
  to round (:func:`incentive.privacy_budget.budget_problems`); the contract's
  ``lastEpsilonE6``/``lastDeltaE18`` equal the last round's (:func:`read_and_audit`);
- contributions and reputations, replayed with the contract's rule, equal what the contract
  reports now (compared by :func:`read_and_audit`);
- every epoch's credits equal :func:`incentive.payouts.epoch_split` of the replayed state,
  and pot = paid + dust.

Each failure is a line in ``ConsortiumAudit.problems``. :meth:`ConsortiumAudit.lineage` traces
a model hash to its round, clusters, records with proofs, and hospitals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_utils import to_canonical_address, to_checksum_address

from incentive.abi_codec import EventDecoder
from incentive.errors import InvalidPrivacyBudget
from incentive.events import EventRecord, decode_logs
from incentive.merkle import keccak, merkle_proof, merkle_root, record_leaf, verify_proof
from incentive.payouts import epoch_split
from incentive.privacy_budget import PrivacyBudget, budget_problems
from incentive.round_commit import FLAG_REJECTED, RECORD_BYTES

REPUTATION_MAX = 10_000
DEFAULT_EXCLUSION = 6_000


@dataclass
class AuditedMember:
    index: int
    account: str
    name: str
    cluster: int
    role: int
    active: bool = True
    excluded: bool = False
    contribution: int = 0
    penalty: int = 0  # 10_000 - reputation
    accounted: int = 0  # contribution already settled by an epoch
    credited: int = 0
    withdrawn: int = 0
    reputation_history: list[tuple[int, int]] = field(default_factory=list)  # (round, value)

    @property
    def reputation(self) -> int:
        return REPUTATION_MAX - self.penalty


@dataclass(frozen=True)
class AuditedRecord:
    member: int
    account: str
    update_hash: str
    samples: int
    score: int
    rejected: bool
    leaf: str
    proof: list[str]


@dataclass(frozen=True)
class AuditedCluster:
    cluster: int
    aggregator: int
    aggregate_hash: str
    records_root: str
    total_samples: int
    records: list[AuditedRecord]


@dataclass(frozen=True)
class AuditedRound:
    round: int
    previous_hash: str
    global_hash: str
    commitments: str
    signatures: int
    block: int
    transaction: str
    clusters: list[AuditedCluster]
    # the members' differential-privacy budget after the round, as recorded (epsilon and
    # delta None when the round carries no guarantee; all None for events without the fields)
    epsilon: float | None = None
    delta: float | None = None
    epsilon_e6: int | None = None
    delta_e18: int | None = None


@dataclass(frozen=True)
class AuditedEpoch:
    epoch: int
    pot: int
    paid: int
    dust: int
    credits: dict[int, int]
    expected: dict[int, int]


@dataclass
class ConsortiumAudit:
    members: dict[int, AuditedMember] = field(default_factory=dict)
    rounds: list[AuditedRound] = field(default_factory=list)
    epochs: list[AuditedEpoch] = field(default_factory=list)
    genesis_hash: str | None = None
    funded: int = 0
    model_payments: list[dict[str, Any]] = field(default_factory=list)  # payer, model, amount
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lineage(self, model_hash: str) -> dict[str, Any] | None:
        """Round, clusters, records with proofs and hospitals behind a global model hash."""
        wanted = _hex(model_hash)
        for r in self.rounds:
            if r.global_hash == wanted:
                return {
                    "round": r.round,
                    "global_hash": r.global_hash,
                    "previous_hash": r.previous_hash,
                    "transaction": r.transaction,
                    "block": r.block,
                    "clusters": [
                        {
                            **asdict(c),
                            "aggregator_name": self.members[c.aggregator].name,
                            "hospitals": [self.members[x.member].name for x in c.records],
                        }
                        for c in r.clusters
                    ],
                }
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "genesis_hash": self.genesis_hash,
            "funded": self.funded,
            "model_payments": self.model_payments,
            "members": [{**asdict(m), "reputation": m.reputation} for m in self.members.values()],
            "rounds": [asdict(r) for r in self.rounds],
            "epochs": [asdict(e) for e in self.epochs],
        }


def audit_events(events: Iterable[EventRecord]) -> ConsortiumAudit:
    """Replay Consortium and EpochRewards events (any order; sorted here) and check them."""
    audit = ConsortiumAudit()
    threshold = DEFAULT_EXCLUSION
    ordered = sorted(events, key=lambda e: (e.block_number, e.log_index))
    pending: list[EventRecord] = []  # ClusterCommitted events of the round being finalized
    epoch_credits: dict[int, dict[int, int]] = {}
    for event in ordered:
        args = event.args
        name = event.event
        if name == "MemberAdmitted":
            index = int(args["index"])
            audit.members[index] = AuditedMember(
                index,
                to_checksum_address(args["account"]),
                str(args["name"]),
                int(args["cluster"]),
                int(args["role"]),
            )
        elif name == "MemberRemoved":
            audit.members[int(args["index"])].active = False
        elif name == "MemberReinstated":
            m = audit.members[int(args["index"])]
            m.excluded, m.penalty = False, 0
        elif name == "ExclusionThresholdSet":
            threshold = int(args["threshold"])
        elif name == "GenesisSet":
            audit.genesis_hash = _hex(args["genesisHash"])
        elif name == "ClusterCommitted":
            pending.append(event)
        elif name == "RoundFinalized":
            _finalize(audit, event, pending, threshold)
            pending = []
        elif name == "Funded":
            audit.funded += int(args["amount"])
        elif name == "ModelUsed":
            audit.model_payments.append(
                {
                    "payer": to_checksum_address(args["payer"]),
                    "model_hash": _hex(args["modelHash"]),
                    "amount": int(args["amount"]),
                    "block": event.block_number,
                }
            )
        elif name == "RewardCredited":
            epoch_credits.setdefault(int(args["epoch"]), {})[int(args["member"])] = int(
                args["amount"]
            )
        elif name == "EpochClosed":
            _close_epoch(audit, args, epoch_credits.pop(int(args["epoch"]), {}))
        elif name == "Withdrawn":
            account = to_checksum_address(args["account"])
            for m in audit.members.values():
                if m.account == account:
                    m.withdrawn += int(args["amount"])
    if pending:
        audit.problems.append(
            f"{len(pending)} cluster commitment(s) after the last final round: a round that "
            "reverted cannot leave events, so the event list is incomplete or forged"
        )
    audit.problems += budget_problems(
        [(r.round, budget) for r in audit.rounds if (budget := _budget(r)) is not None]
    )
    return audit


def _finalize(
    audit: ConsortiumAudit, event: EventRecord, clusters: Sequence[EventRecord], threshold: int
) -> None:
    args = event.args
    number = int(args["round"])
    previous = _hex(args["previousHash"])
    expected_previous = audit.rounds[-1].global_hash if audit.rounds else audit.genesis_hash
    expected_number = audit.rounds[-1].round + 1 if audit.rounds else 1
    if number != expected_number:
        audit.problems.append(f"round {number} does not follow the previous final round")
    if previous != expected_previous:
        audit.problems.append(
            f"round {number} builds on {previous}, but the previous final hash is "
            f"{expected_previous}"
        )
    audited = [_cluster(audit, number, c) for c in clusters]
    packed = b"".join(
        c.cluster.to_bytes(2, "big")
        + to_canonical_address(audit.members[c.aggregator].account)
        + bytes.fromhex(c.aggregate_hash)
        + bytes.fromhex(c.records_root)
        + c.total_samples.to_bytes(8, "big")
        for c in audited
    )
    if keccak(packed).hex() != _hex(args["commitments"]):
        audit.problems.append(f"round {number}: the commitments hash does not match its clusters")
    for cluster in audited:
        for record in cluster.records:
            _apply(audit, number, record, threshold)
    privacy: dict[str, Any] = {}
    if "epsilonE6" in args:
        try:
            privacy = PrivacyBudget(int(args["epsilonE6"]), int(args["deltaE18"])).as_dict()
        except InvalidPrivacyBudget as exc:
            audit.problems.append(f"round {number}: privacy budget not recordable: {exc}")
    audit.rounds.append(
        AuditedRound(
            number,
            previous,
            _hex(args["globalHash"]),
            _hex(args["commitments"]),
            int(args["signatures"]),
            event.block_number,
            event.transaction_hash,
            audited,
            **privacy,
        )
    )


def _budget(audited: AuditedRound) -> PrivacyBudget | None:
    if audited.epsilon_e6 is None or audited.delta_e18 is None:
        return None
    return PrivacyBudget(audited.epsilon_e6, audited.delta_e18)


def _cluster(audit: ConsortiumAudit, number: int, event: EventRecord) -> AuditedCluster:
    args = event.args
    cluster = int(args["cluster"])
    raw = bytes.fromhex(_hex(args["records"]))
    rows = []
    for at in range(0, len(raw), RECORD_BYTES):
        r = raw[at : at + RECORD_BYTES]
        index = int.from_bytes(r[0:2], "big")
        rows.append(
            (
                index,
                r[2:34],
                int.from_bytes(r[34:42], "big"),
                int.from_bytes(r[42:46], "big"),
                r[46],
            )
        )
    leaves = [
        record_leaf(number, cluster, audit.members[i].account, h, samples, score, flags)
        for i, h, samples, score, flags in rows
    ]
    root = merkle_root(leaves) if leaves else b""
    if root.hex() != _hex(args["recordsRoot"]):
        audit.problems.append(f"round {number} cluster {cluster}: records root does not match")
    records = []
    for position, ((i, h, samples, score, flags), leaf) in enumerate(
        zip(rows, leaves, strict=True)
    ):
        proof = merkle_proof(leaves, position)
        if not verify_proof(root, leaf, position, len(leaves), proof):
            audit.problems.append(f"round {number}: no valid proof for member {i}")
        records.append(
            AuditedRecord(
                i,
                audit.members[i].account,
                h.hex(),
                samples,
                score,
                bool(flags & FLAG_REJECTED),
                leaf.hex(),
                [p.hex() for p in proof],
            )
        )
    accepted = sum(r.samples for r in records if not r.rejected)
    if accepted != int(args["totalSamples"]):
        audit.problems.append(
            f"round {number} cluster {cluster}: total samples {args['totalSamples']} are not "
            f"the {accepted} of its accepted records"
        )
    return AuditedCluster(
        cluster,
        int(args["aggregator"]),
        _hex(args["aggregateHash"]),
        _hex(args["recordsRoot"]),
        int(args["totalSamples"]),
        records,
    )


def _apply(audit: ConsortiumAudit, number: int, record: AuditedRecord, threshold: int) -> None:
    """The contract's rule: contribution for accepted records, reputation a quarter of the way."""
    m = audit.members[record.member]
    if not record.rejected:
        m.contribution += record.score
    m.penalty = (
        m.penalty + (REPUTATION_MAX - m.penalty) // 4
        if record.rejected
        else m.penalty - m.penalty // 4
    )
    m.reputation_history.append((number, m.reputation))
    if m.reputation < threshold:
        m.excluded = True


def _close_epoch(audit: ConsortiumAudit, args: Mapping[str, Any], credits: dict[int, int]) -> None:
    number, pot, paid = int(args["epoch"]), int(args["pot"]), int(args["paid"])
    members = audit.members.values()
    deltas = {m.index: m.contribution - m.accounted for m in members}
    try:
        expected = epoch_split(
            pot,
            deltas,
            {m.index: m.reputation for m in members},
            {m.index: m.active and not m.excluded and m.role == 1 for m in members},
        ).credits
    except ValueError:
        expected = {}
    expected = {i: v for i, v in expected.items() if v or i in credits}
    if credits != expected:
        audit.problems.append(
            f"epoch {number}: credits {credits} differ from the rule's {expected}"
        )
    if pot - paid != int(args["dust"]) or sum(credits.values()) != paid:
        audit.problems.append(f"epoch {number}: pot, paid and dust do not add up")
    for m in members:
        m.accounted = m.contribution
        m.credited += credits.get(m.index, 0)
    audit.epochs.append(AuditedEpoch(number, pot, paid, pot - paid, credits, expected))


def read_events(w3: Any, consortium: str, rewards: str | None = None) -> list[EventRecord]:
    """Every event of a live Consortium (and pool) since the Consortium's deployment block."""
    from contracts import load_artifact  # artifacts are read only by this chain-facing part

    address = to_checksum_address(consortium)
    contracts = {address: ("Consortium", load_artifact("Consortium").abi)}
    if rewards:
        contracts[to_checksum_address(rewards)] = (
            "EpochRewards",
            load_artifact("EpochRewards").abi,
        )
    book = w3.eth.contract(address=address, abi=contracts[address][1])
    start = int(book.functions.deployedAt().call())
    logs = w3.eth.get_logs({"fromBlock": start, "toBlock": "latest", "address": list(contracts)})
    return decode_logs(EventDecoder(contracts), logs)


def read_and_audit(
    w3: Any,
    consortium: str,
    rewards: str | None = None,
    events: Sequence[EventRecord] | None = None,
) -> ConsortiumAudit:
    """Audit the events of a live Consortium (and pool), fetched here unless ``events`` (from
    :func:`read_events`) are given; then compare the replayed contributions, reputations and
    credits with the contracts' own views."""
    from contracts import load_artifact

    audit = audit_events(read_events(w3, consortium, rewards) if events is None else events)
    book = w3.eth.contract(
        address=to_checksum_address(consortium), abi=load_artifact("Consortium").abi
    )
    for m in audit.members.values():
        on_chain = (
            int(book.functions.contribution(m.index).call()),
            int(book.functions.reputation(m.index).call()),
        )
        if on_chain != (m.contribution, m.reputation):
            audit.problems.append(
                f"member {m.index} ({m.name}): the contract reports contribution/reputation "
                f"{on_chain}, the replay {(m.contribution, m.reputation)}"
            )
    if rewards:
        pool = w3.eth.contract(
            address=to_checksum_address(rewards), abi=load_artifact("EpochRewards").abi
        )
        for m in audit.members.values():
            owed = m.credited - m.withdrawn
            if int(pool.functions.credit(m.account).call()) != owed:
                audit.problems.append(f"member {m.index} ({m.name}): credit differs from replay")
    last = _budget(audit.rounds[-1]) if audit.rounds else None
    if last is not None:
        on_chain = (
            int(book.functions.lastEpsilonE6().call()),
            int(book.functions.lastDeltaE18().call()),
        )
        if on_chain != (last.epsilon_e6, last.delta_e18):
            audit.problems.append(
                f"the contract reports privacy budget {on_chain} (epsilonE6, deltaE18), the "
                f"last round's event {(last.epsilon_e6, last.delta_e18)}"
            )
    return audit


def _hex(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    text = str(value).lower()
    return text[2:] if text.startswith("0x") else text

"""Ledger on the real EVM: who may record which round, commitments, contributions, quorum."""

from __future__ import annotations

import threading

import pytest
from chain_kit import Federation, sha
from eth_utils import keccak

from incentive.errors import ContractReverted
from incentive.records import MemberRecord

pytestmark = pytest.mark.integration

GENESIS = "00" * 32


def record(fed: Federation, round: int, scores: list[int], previous: str = GENESIS) -> str:
    """Record ``round`` as its aggregator; returns the global hash used."""
    global_hash = sha(f"global {round}")
    fed.aggregator_for(round).record_round(round, global_hash, previous, fed.records(round, scores))
    return global_hash


def reverted_with(error: str, call: object, *args: object) -> ContractReverted:
    assert callable(call)
    with pytest.raises(ContractReverted) as caught:
        call(*args)
    assert caught.value.error_name == error, str(caught.value)
    return caught.value


def test_expected_aggregator_rotates_through_members_in_admission_order(fed: Federation) -> None:
    for round in range(1, 6):
        assert fed.outsider.expected_aggregator(round) == fed.members[round % 4].address


def test_record_round_stores_commitment_and_emits_one_event_per_member(fed: Federation) -> None:
    records = fed.records(1, [5, 0, 7, 11])
    global_hash = sha("global 1")

    outcome = fed.aggregator_for(1).record_round(1, global_hash, GENESIS, records)

    ordered = sorted(records, key=lambda r: int(r.address, 16))
    packed = b"".join(
        bytes.fromhex(r.address[2:])
        + bytes.fromhex(r.update_hash)
        + r.samples.to_bytes(8, "big")
        + r.score.to_bytes(8, "big")
        for r in ordered
    )
    info = fed.outsider.round_info(1)
    assert info is not None
    assert info.global_hash == global_hash
    assert info.previous_hash == GENESIS
    assert info.records_hash == keccak(packed).hex()
    assert info.aggregator == fed.aggregator_for(1).address
    assert info.block_number == outcome.block_number
    assert (info.attestations, info.finalized) == (0, False)
    assert fed.outsider.last_recorded_round() == 1
    updates = outcome.named("UpdateRecorded")
    assert [e.args["member"] for e in updates] == [r.address for r in ordered]
    assert [e.args["score"] for e in updates] == [r.score for r in ordered]
    assert updates[0].args["updateHash"] == "0x" + ordered[0].update_hash
    (recorded,) = outcome.named("RoundRecorded")
    assert recorded.args["recordsHash"] == "0x" + keccak(packed).hex()


def test_contributions_accumulate_over_rounds(fed: Federation) -> None:
    first = record(fed, 1, [5, 0, 7, 11])
    record(fed, 2, [1, 2, 3, 4], previous=first)

    assert [fed.outsider.contribution(m.address) for m in fed.members] == [6, 2, 10, 15]
    assert fed.outsider.total_contribution() == 33
    assert fed.outsider.round_info(2) is not None
    assert fed.outsider.round_info(3) is None


def test_only_the_expected_aggregator_records(fed: Federation) -> None:
    wrong = fed.not_aggregator_for(1)
    error = reverted_with(
        "WrongAggregator", wrong.record_round, 1, sha("g"), GENESIS, fed.records(1, [1, 1, 1, 1])
    )
    assert error.error_args == {
        "caller": wrong.address,
        "expected": fed.aggregator_for(1).address,
    }


def test_non_members_cannot_record(fed: Federation) -> None:
    reverted_with(
        "NotMember", fed.outsider.record_round, 1, sha("g"), GENESIS, fed.records(1, [1, 1, 1, 1])
    )


def test_rounds_are_recorded_in_order_and_once(fed: Federation) -> None:
    error = reverted_with(
        "RoundNotNext",
        fed.aggregator_for(2).record_round,
        2,
        sha("g"),
        GENESIS,
        fed.records(2, [1, 1, 1, 1]),
    )
    assert error.error_args == {"round": 2, "expected": 1}
    record(fed, 1, [1, 1, 1, 1])
    reverted_with(
        "RoundAlreadyRecorded",
        fed.aggregator_for(1).record_round,
        1,
        sha("g"),
        GENESIS,
        fed.records(1, [1, 1, 1, 1]),
    )


def test_records_must_name_members(fed: Federation) -> None:
    records = [
        *fed.records(1, [1, 1, 1, 1])[:3],
        MemberRecord(fed.outsider.address, sha("x"), 1, 1),
    ]
    error = reverted_with(
        "UnknownMember", fed.aggregator_for(1).record_round, 1, sha("g"), GENESIS, records
    )
    assert error.error_args == {"member": fed.outsider.address}


def test_record_arrays_must_have_equal_lengths(fed: Federation) -> None:
    agg = fed.aggregator_for(1)
    members = sorted((m.address for m in fed.members), key=lambda a: int(a, 16))
    reverted_with(
        "LengthMismatch",
        agg._transact,
        "Ledger",
        "recordRound",
        1,
        b"\x01" * 32,
        b"\x00" * 32,
        members,
        [b"\x02" * 32] * 3,
        [1] * 4,
        [1] * 4,
    )


def test_records_must_be_sorted_without_duplicates_and_not_empty(fed: Federation) -> None:
    agg = fed.aggregator_for(1)
    a, b = sorted((fed.members[0].address, fed.members[1].address), key=lambda x: int(x, 16))

    def raw(members: list[str]) -> None:
        n = len(members)
        agg._transact(
            "Ledger", "recordRound", 1, b"\x01" * 32, b"\x00" * 32, members,
            [b"\x02" * 32] * n, [1] * n, [1] * n,
        )  # fmt: skip

    assert reverted_with("RecordsNotSorted", raw, [b, a]).error_args == {"index": 1}
    assert reverted_with("RecordsNotSorted", raw, [a, a]).error_args == {"index": 1}
    reverted_with("NoRecords", raw, [])


def test_round_finalizes_once_when_two_thirds_attest(fed: Federation) -> None:
    global_hash = record(fed, 1, [1, 2, 3, 4])
    assert fed.outsider.quorum() == 3  # ceil(2 * 4 / 3)

    first = [fed.members[i].attest(1, global_hash) for i in range(2)]
    assert not fed.outsider.is_final(1)
    third = fed.members[2].attest(1, "0x" + global_hash.upper())
    fourth = fed.members[3].attest(1, bytes.fromhex(global_hash))

    assert all(not o.named("RoundFinalized") for o in first)
    (finalized,) = third.named("RoundFinalized")
    assert finalized.args == {"round": 1, "globalHash": "0x" + global_hash, "attestations": 3}
    assert not fourth.named("RoundFinalized")
    assert fed.outsider.is_final(1)
    info = fed.outsider.round_info(1)
    assert info is not None and (info.attestations, info.finalized) == (4, True)
    assert fed.outsider.has_attested(1, fed.members[3].address)
    assert not fed.outsider.has_attested(1, fed.outsider.address)


def test_attest_rejects_unrecorded_rounds_wrong_hashes_repeats_and_outsiders(
    fed: Federation,
) -> None:
    member = fed.members[0]
    reverted_with("RoundNotRecorded", member.attest, 1, sha("g"))
    global_hash = record(fed, 1, [1, 1, 1, 1])
    error = reverted_with("HashMismatch", member.attest, 1, sha("other"))
    assert error.error_args["recorded"] == "0x" + global_hash
    member.attest(1, global_hash)
    reverted_with("AlreadyAttested", member.attest, 1, global_hash)
    reverted_with("NotMember", fed.outsider.attest, 1, global_hash)


def test_gas_stays_within_budget(fed: Federation) -> None:
    global_hash = sha("global 1")
    first = fed.aggregator_for(1).record_round(1, global_hash, GENESIS, fed.records(1, [1] * 4))
    later = fed.aggregator_for(2).record_round(2, sha("g2"), global_hash, fed.records(2, [1] * 4))
    attests = [m.attest(1, global_hash).gas_used for m in fed.members]

    assert first.gas_used < 260_000  # fresh contribution slots for all four members
    assert later.gas_used < 200_000
    assert max(attests) < 65_000


def test_clients_can_be_called_from_worker_threads(fed: Federation) -> None:
    global_hash = record(fed, 1, [1, 1, 1, 1])
    errors: list[BaseException] = []

    def attest(member_index: int) -> None:
        try:
            fed.members[member_index].attest(1, global_hash)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    def register_twice() -> None:  # one client, two threads: nonces must stay ordered
        try:
            fed.members[0].register("12D3KooWfirst", [])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attest, args=(i,)) for i in range(4)]
    threads += [threading.Thread(target=register_twice) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    info = fed.outsider.round_info(1)
    assert info is not None and (info.attestations, info.finalized) == (4, True)
    assert len([e for e in fed.log.records() if e.event == "MemberRegistered"]) == 2

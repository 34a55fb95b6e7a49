"""Ledger on the real EVM: cluster records, failover candidates, the genesis/previous-hash chain."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from chain_kit import GENESIS, Federation, reverted_with, sha, start_federation
from eth_utils import keccak

from incentive.candidates import aggregator_candidates
from incentive.chain import EmbeddedChain
from incentive.errors import ContractReverted
from incentive.records import MemberRecord

pytestmark = pytest.mark.integration


def packed(records: list[MemberRecord]) -> bytes:
    """The recordsHash preimage, built here by hand: sorted by address, 68 bytes each."""
    return b"".join(
        bytes.fromhex(r.address[2:])
        + bytes.fromhex(r.update_hash)
        + r.samples.to_bytes(8, "big")
        + r.score.to_bytes(8, "big")
        for r in sorted(records, key=lambda r: int(r.address, 16))
    )


def test_candidate_order_on_chain_matches_python(chain: EmbeddedChain) -> None:
    fed = start_federation(chain, clusters=[0, 0, 0, 0, 0, 1])
    members0 = [m.address for m in fed.in_cluster(0)]
    orders = set()

    for round in range(1, 9):
        for cluster in (0, 1, 2):
            on_chain = fed.outsider.aggregator_candidates(round, cluster)
            addresses = [m.address for m in fed.in_cluster(cluster)]
            assert on_chain == aggregator_candidates(round, cluster, addresses)
        orders.add(tuple(fed.outsider.aggregator_candidates(round, 0)))

    assert fed.outsider.aggregator_candidates(1, 2) == []
    assert all(sorted(order) == sorted(members0) for order in orders)
    assert len(orders) > 1  # the first candidate changes from round to round


def test_record_cluster_stores_commitment_and_emits_one_event_per_member(
    fed: Federation,
) -> None:
    records = fed.records(1, [5, 0, 7, 11], cluster=1)
    aggregator = fed.candidates(1, 1)[0]

    outcome = aggregator.record_cluster(1, 1, sha("aggregate 1 1"), GENESIS, records)

    ordered = sorted(records, key=lambda r: int(r.address, 16))
    records_hash = keccak(packed(records)).hex()
    info = fed.outsider.cluster_record(1, 1)
    assert info is not None
    assert (info.round, info.cluster) == (1, 1)
    assert info.aggregate_hash == sha("aggregate 1 1")
    assert info.previous_hash == GENESIS
    assert info.records_hash == records_hash
    assert info.aggregator == aggregator.address
    assert info.total_samples == 102 + 103
    assert info.block_number == outcome.block_number
    assert fed.outsider.cluster_record(1, 0) is None
    (recorded,) = outcome.named("ClusterRecorded")
    assert recorded.args == {
        "round": 1,
        "cluster": 1,
        "aggregateHash": "0x" + sha("aggregate 1 1"),
        "previousGlobalHash": "0x" + GENESIS,
        "recordsHash": "0x" + records_hash,
        "aggregator": aggregator.address,
        "totalSamples": 205,
        "candidateRank": 0,
    }
    updates = outcome.named("UpdateRecorded")
    assert [e.args["member"] for e in updates] == [r.address for r in ordered]
    assert [e.args["score"] for e in updates] == [r.score for r in ordered]
    assert updates[0].args["updateHash"] == "0x" + ordered[0].update_hash
    status = fed.outsider.round_status(1)
    assert (status.clusters_recorded, status.finalized, status.final_hash) == (1, False, None)
    # What a member checking the aggregate averages: the recorded inputs, in recorded order.
    other = fed.candidates(1, 0)[0].record_cluster(
        1, 0, sha("aggregate 1 0"), GENESIS, fed.records(1, [1, 2, 3, 4], cluster=0)
    )
    assert other.block_number != info.block_number
    assert fed.outsider.cluster_inputs(info) == tuple(
        (r.address, r.update_hash, r.samples) for r in ordered
    )


def test_failover_candidate_records_and_the_slower_one_learns_it_lost(fed: Federation) -> None:
    first, second = fed.candidates(1, 0)
    records = fed.records(1, [1, 2, 3, 4], cluster=0)

    outcome = second.record_cluster(1, 0, sha("aggregate by second"), GENESIS, records)

    (recorded,) = outcome.named("ClusterRecorded")
    assert (recorded.args["aggregator"], recorded.args["candidateRank"]) == (second.address, 1)
    error = reverted_with(
        "ClusterAlreadyRecorded",
        first.record_cluster,
        1,
        0,
        sha("aggregate by first"),
        GENESIS,
        records,
    )
    assert error.error_args == {"round": 1, "cluster": 0}
    info = fed.outsider.cluster_record(1, 0)
    assert info is not None and info.aggregate_hash == sha("aggregate by second")


def test_a_race_decided_inside_one_block_still_names_cluster_already_recorded(
    fed: Federation,
) -> None:
    tester = fed.chain.provider.ethereum_tester
    candidates = fed.candidates(1, 0)
    records = fed.records(1, [1, 2, 3, 4], cluster=0)
    errors: list[BaseException] = []

    def record(rank: int) -> None:
        try:
            candidates[rank].record_cluster(1, 0, sha(f"agg {rank}"), GENESIS, records)
        except BaseException as exc:  # collected for the assertions below
            errors.append(exc)

    tester.disable_auto_mine_transactions()
    try:
        with fed.chain.lock:
            sent = fed.chain.w3.eth.filter("pending")
        threads = [threading.Thread(target=record, args=(rank,)) for rank in (0, 1)]
        for t in threads:
            t.start()
        _wait_for_pending(fed, sent, 2)  # both passed their pre-flight check and were sent
        with fed.chain.lock:
            tester.mine_blocks(1)
        for t in threads:
            t.join(timeout=30)
    finally:
        tester.enable_auto_mine_transactions()

    assert len(errors) == 1, errors
    assert isinstance(errors[0], ContractReverted)
    assert errors[0].error_name == "ClusterAlreadyRecorded"
    assert len([e for e in fed.log.records() if e.event == "ClusterRecorded"]) == 1


def _wait_for_pending(fed: Federation, sent: Any, count: int, timeout: float = 20.0) -> None:
    """Poll a pending-transaction filter until ``count`` transactions were sent."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        with fed.chain.lock:
            seen += len(sent.get_new_entries())
        if seen >= count:
            return
        assert time.monotonic() < deadline, f"only {seen} of {count} transactions were sent"
        time.sleep(0.01)


def test_only_members_of_the_cluster_record(fed: Federation) -> None:
    records = fed.records(1, [1, 1, 1, 1], cluster=0)
    reverted_with("NotMember", fed.outsider.record_cluster, 1, 0, sha("a"), GENESIS, records)
    outsider_of_cluster = fed.in_cluster(1)[0]
    error = reverted_with(
        "NotInCluster", outsider_of_cluster.record_cluster, 1, 0, sha("a"), GENESIS, records
    )
    assert error.error_args == {"account": outsider_of_cluster.address, "cluster": 0}


def test_records_must_name_members_of_that_cluster(fed: Federation) -> None:
    aggregator = fed.candidates(1, 0)[0]
    stranger = MemberRecord(fed.outsider.address, sha("x"), 1, 1)
    error = reverted_with(
        "UnknownMember",
        aggregator.record_cluster, 1, 0, sha("a"), GENESIS,
        [*fed.records(1, [1, 1, 1, 1], cluster=0), stranger],
    )  # fmt: skip
    assert error.error_args == {"member": fed.outsider.address}
    error = reverted_with(
        "NotInCluster",
        aggregator.record_cluster, 1, 0, sha("a"), GENESIS, fed.records(1, [1, 1, 1, 1]),
    )  # fmt: skip
    assert error.error_args["cluster"] == 0
    assert error.error_args["account"] in {m.address for m in fed.in_cluster(1)}


def test_record_arrays_are_checked(fed: Federation) -> None:
    aggregator = fed.candidates(1, 0)[0]
    a, b = sorted((m.address for m in fed.in_cluster(0)), key=lambda x: int(x, 16))

    def raw(members: list[str], hashes: int | None = None, samples: int = 1) -> None:
        n = len(members)
        aggregator._transact(
            "Ledger", "recordCluster", 1, 0, b"\x01" * 32, bytes.fromhex(GENESIS), members,
            [b"\x02" * 32] * (n if hashes is None else hashes), [samples] * n, [1] * n,
        )  # fmt: skip

    assert reverted_with("RecordsNotSorted", raw, [b, a]).error_args == {"index": 1}
    assert reverted_with("RecordsNotSorted", raw, [a, a]).error_args == {"index": 1}
    reverted_with("NoRecords", raw, [])
    reverted_with("LengthMismatch", raw, [a, b], 1)
    reverted_with("SamplesOverflow", raw, [a, b], None, 2**63)


def test_rounds_open_one_at_a_time_on_the_previous_final_hash(fed: Federation) -> None:
    aggregator = fed.candidates(1, 0)[0]
    records = fed.records(1, [1, 1, 1, 1], cluster=0)
    error = reverted_with(
        "PreviousHashMismatch", aggregator.record_cluster, 1, 0, sha("a"), sha("other"), records
    )
    assert error.error_args == {
        "round": 1,
        "expected": "0x" + GENESIS,
        "given": "0x" + sha("other"),
    }
    error = reverted_with(
        "RoundNotOpen", fed.candidates(2, 0)[0].record_cluster, 2, 0, sha("a"), GENESIS,
        fed.records(2, [1, 1, 1, 1], cluster=0),
    )  # fmt: skip
    assert error.error_args == {"round": 2, "expected": 1}

    final_1 = fed.finish_round(1, [1, 1, 1, 1], GENESIS)

    assert fed.outsider.last_finalized_round() == 1
    assert fed.outsider.final_hash(1) == final_1
    late = fed.candidates(1, 0)[1]
    reverted_with(  # already recorded wins over not open: the loser learns it lost
        "ClusterAlreadyRecorded", late.record_cluster, 1, 0, sha("a"), GENESIS, records
    )
    round_2 = fed.records(2, [1, 1, 1, 1], cluster=0)
    error = reverted_with(
        "PreviousHashMismatch",
        fed.candidates(2, 0)[0].record_cluster, 2, 0, sha("a"), GENESIS, round_2,
    )  # fmt: skip
    assert error.error_args["expected"] == "0x" + final_1
    fed.candidates(2, 0)[0].record_cluster(2, 0, sha("a"), final_1, round_2)
    info = fed.outsider.cluster_record(2, 0)
    assert info is not None and info.previous_hash == final_1
    reverted_with(
        "RoundNotOpen", fed.candidates(3, 0)[0].record_cluster, 3, 0, sha("a"), final_1,
        fed.records(3, [1, 1, 1, 1], cluster=0),
    )  # fmt: skip


def test_genesis_is_set_once_by_the_admin_and_needed_before_round_1(
    chain: EmbeddedChain,
) -> None:
    fed = start_federation(chain, genesis=None)
    assert fed.outsider.genesis_hash() is None
    reverted_with(
        "GenesisNotSet", fed.candidates(1, 0)[0].record_cluster, 1, 0, sha("a"), "00" * 32,
        fed.records(1, [1, 1, 1, 1], cluster=0),
    )  # fmt: skip
    reverted_with("NotAdmin", fed.members[0]._transact, "Ledger", "setGenesis", b"\x01" * 32)
    reverted_with("ZeroHash", fed.admin.set_genesis, "00" * 32)

    outcome = fed.admin.set_genesis(GENESIS)

    (event,) = outcome.named("GenesisSet")
    assert event.args == {"genesisHash": "0x" + GENESIS}
    assert fed.outsider.genesis_hash() == GENESIS
    reverted_with("GenesisAlreadySet", fed.admin.set_genesis, sha("another"))


def test_contributions_accumulate_over_clusters_and_rounds(fed: Federation) -> None:
    final_1 = fed.finish_round(1, [5, 0, 7, 11], GENESIS)
    fed.record_clusters(2, [1, 2, 3, 4], final_1)

    assert [fed.outsider.contribution(m.address) for m in fed.members] == [6, 2, 10, 15]
    assert fed.outsider.total_contribution() == 33
    assert fed.outsider.round_status(2).clusters_recorded == 2
    assert fed.outsider.cluster_record(3, 0) is None

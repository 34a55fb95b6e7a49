"""Every way ``Consortium.finalizeRound`` refuses a round, on the real EVM.

Each test starts from a round the Python builders made and the contract accepts
(``test_a_raw_submission_of_a_built_round_finalizes``), bends one argument of the raw call
(``consortium_kit.FinalizeCall``) and checks the custom error and its arguments.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from chain_kit import reverted_with
from consortium_kit import (
    AUDITOR,
    HOSPITALS,
    SCORES,
    Consortium,
    FinalizeCall,
    aggregate_hash,
    keccak,
    keccak_bytes,
    packed_record,
)
from eth_utils import to_checksum_address

from incentive.privacy_budget import NO_GUARANTEE, PrivacyBudget
from incentive.round_commit import RoundSignature, pack_signatures, sign_round

pytestmark = pytest.mark.integration

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_a_raw_submission_of_a_built_round_finalizes(cons: Consortium) -> None:
    """The baseline every revert test below bends one argument of."""
    outcome = cons.submit(cons.build_round(SCORES).call())

    assert outcome.named("RoundFinalized")[0].args["round"] == 1


@pytest.mark.parametrize(
    ("epsilon_e6", "delta_e18"),
    [
        (2**64 - 1, 1),  # no guarantee names no delta
        (1_000_000, 0),  # a finite epsilon needs a delta above 0
        (1_000_000, 10**18),  # and below 1
        (0, 2**64 - 1),
    ],
)
def test_a_privacy_budget_out_of_range_reverts(
    cons: Consortium, epsilon_e6: int, delta_e18: int
) -> None:
    call = replace(cons.build_round(SCORES).call(), epsilon_e6=epsilon_e6, delta_e18=delta_e18)

    error = reverted_with("BadPrivacyBudget", cons.submit, call)
    assert error.error_args == {"epsilonE6": epsilon_e6, "deltaE18": delta_e18}


def test_the_signatures_cover_the_privacy_budget(cons: Consortium) -> None:
    signed = PrivacyBudget(3_000_000, 10**13)
    call = cons.build_round(SCORES, privacy=signed).call()

    for other in (PrivacyBudget(2_999_999, 10**13), PrivacyBudget(3_000_000, 10**12)):
        bent = replace(call, epsilon_e6=other.epsilon_e6, delta_e18=other.delta_e18)
        reverted_with("BadSignature", cons.submit, bent)
    bent = replace(call, epsilon_e6=NO_GUARANTEE.epsilon_e6, delta_e18=0)
    reverted_with("BadSignature", cons.submit, bent)

    assert cons.submit(call).named("RoundFinalized")[0].args["epsilonE6"] == 3_000_000


def test_only_active_members_submit(cons: Consortium) -> None:
    call = cons.build_round(SCORES).call()

    error = reverted_with("NotMember", cons.submit, call, cons.outsider_key)
    assert error.error_args == {"account": cons.outsider.account}

    cons.govern(lambda a: a.propose_remove(cons.admitted[7].account))
    call = cons.build_round({i: 1 for i in range(7)}).call()
    error = reverted_with("NotMember", cons.submit, call, cons.admitted[7].key)
    assert error.error_args == {"account": cons.admitted[7].account}


def test_the_member_table_must_be_the_current_one(cons: Consortium) -> None:
    call = cons.build_round(SCORES).call()
    forged = bytearray(call.members)
    forged[25 * 4 + 24] = 1  # mark member 4 excluded

    error = reverted_with("StaleMemberTable", cons.submit, replace(call, members=bytes(forged)))
    current = "0x" + keccak_bytes(call.members).hex()
    assert error.error_args == {
        "given": "0x" + keccak_bytes(bytes(forged)).hex(),
        "current": current,
    }

    cons.admit(cons.spare_keys[0], "Hospital 9", 0)
    error = reverted_with("StaleMemberTable", cons.submit, call)
    assert error.error_args["given"] == current


def test_only_the_next_round_is_open(cons: Consortium) -> None:
    for number in (0, 2):
        call = cons.build_round(SCORES, number=number).call()
        error = reverted_with("RoundNotOpen", cons.submit, call)
        assert error.error_args == {"round": number, "expected": 1}

    call = cons.build_round(SCORES).call()
    cons.submit(call)

    error = reverted_with("RoundNotOpen", cons.submit, call)  # replayed
    assert error.error_args == {"round": 1, "expected": 2}


def test_no_round_before_genesis(unstarted: Consortium) -> None:
    call = unstarted.build_round({0: 1, 1: 1}).call()

    reverted_with("GenesisNotSet", unstarted.submit, call)


def test_the_global_hash_is_not_zero(cons: Consortium) -> None:
    call = cons.build_round(SCORES).call()

    reverted_with("ZeroHash", cons.submit, replace(call, global_hash=bytes(32)))


def _split(call: FinalizeCall) -> tuple[bytes, bytes]:
    """The records of cluster 0 and of cluster 1 (four each)."""
    return call.records[: 4 * 47], call.records[4 * 47 :]


def test_cluster_list_errors(cons: Consortium) -> None:
    call = cons.build_round(SCORES).call()
    first, second = call.clusters
    records0, records1 = _split(call)

    reverted_with("NoClusters", cons.submit, replace(call, clusters=(), records=b""))
    many = tuple((c, 0, first[2], 1) for c in range(257))
    assert reverted_with(
        "TooManyClusters", cons.submit, replace(call, clusters=many)
    ).error_args == {"count": 257}
    reversed_ = replace(call, clusters=(second, first), records=records1 + records0)
    assert reverted_with("ClustersNotSorted", cons.submit, reversed_).error_args == {"position": 1}
    twice = replace(call, clusters=(first, first), records=records0 + records0)
    assert reverted_with("ClustersNotSorted", cons.submit, twice).error_args == {"position": 1}
    beyond = replace(call, clusters=(first, (2, 1, second[2], 4)))
    assert reverted_with("ClusterOutOfRange", cons.submit, beyond).error_args == {
        "cluster": 2,
        "clusterCount": 2,
    }
    empty = replace(call, clusters=(first, (1, 1, second[2], 0)), records=records0)
    assert reverted_with("EmptyCluster", cons.submit, empty).error_args == {"cluster": 1}


@pytest.mark.parametrize(
    ("cut", "extra"),
    [(47, b""), (1, b""), (0, bytes(47)), (0, b"\x00")],
    ids=["record-short", "byte-short", "record-over", "byte-over"],
)
def test_records_must_fill_the_clusters_exactly(cons: Consortium, cut: int, extra: bytes) -> None:
    call = cons.build_round(SCORES).call()
    records = call.records[: len(call.records) - cut] + extra

    error = reverted_with("RecordsLength", cons.submit, replace(call, records=records))

    # Short: the second cluster would end at byte 8 * 47. Over: the clusters end there.
    assert error.error_args == {"length": len(records), "expected": 8 * 47}


def test_records_are_sorted_by_member_within_a_cluster(cons: Consortium) -> None:
    call = cons.build_round(SCORES).call()
    records0, records1 = _split(call)
    swapped = records0[47:94] + records0[:47] + records0[94:]
    repeated = records0[:47] + records0[:47] + records0[47:]
    first, second = call.clusters

    error = reverted_with(
        "RecordsNotSorted", cons.submit, replace(call, records=swapped + records1)
    )
    assert error.error_args == {"cluster": 0, "position": 1}
    bent = replace(call, clusters=((*first[:3], 5), second), records=repeated + records1)
    error = reverted_with("RecordsNotSorted", cons.submit, bent)
    assert error.error_args == {"cluster": 0, "position": 1}


def test_records_name_hospitals_of_their_cluster(cons: Consortium) -> None:
    call = cons.build_round(SCORES).call()
    _, second = call.clusters
    every = b"".join(packed_record(m, 1, SCORES[m]) for m in HOSPITALS)
    one_cluster = replace(call, clusters=((0, 0, aggregate_hash(1, 0), 8),), records=every)
    error = reverted_with("NotInCluster", cons.submit, one_cluster)
    assert error.error_args == {"index": 1, "cluster": 0}

    stranger = replace(
        call,
        clusters=(call.clusters[0], (*second[:3], 5)),
        records=call.records + packed_record(99, 1, 1),
    )
    assert reverted_with("UnknownMember", cons.submit, stranger).error_args == {"index": 99}
    auditor = replace(
        call,
        clusters=((*call.clusters[0][:3], 5), second),
        records=_split(call)[0] + packed_record(AUDITOR, 1, 1) + _split(call)[1],
    )
    error = reverted_with("NotMember", cons.submit, auditor)
    assert error.error_args == {"account": cons.admitted[AUDITOR].account}


@pytest.mark.parametrize(
    ("aggregator", "error", "args"),
    [
        (2, "WrongAggregator", {"cluster": 1, "aggregator": 2}),
        (99, "UnknownMember", {"index": 99}),
        (AUDITOR, "NotMember", {"account": "auditor"}),
    ],
)
def test_the_aggregator_is_a_hospital_of_its_cluster(
    cons: Consortium, aggregator: int, error: str, args: dict[str, object]
) -> None:
    call = cons.build_round(SCORES).call()
    first, second = call.clusters

    bent = replace(call, clusters=(first, (second[0], aggregator, *second[2:])))

    caught = reverted_with(error, cons.submit, bent)
    auditor = cons.admitted[AUDITOR].account
    assert caught.error_args == {k: auditor if v == "auditor" else v for k, v in args.items()}


def _signatures(call: FinalizeCall) -> list[bytes]:
    return [call.signatures[i : i + 67] for i in range(0, len(call.signatures), 67)]


def test_signature_list_errors(cons: Consortium) -> None:
    call = cons.build_round(SCORES).call()  # signers 0..5
    sigs = _signatures(call)

    error = reverted_with(
        "SignaturesLength", cons.submit, replace(call, signatures=call.signatures[:-1])
    )
    assert error.error_args == {"length": 6 * 67 - 1}
    swapped = b"".join([sigs[1], sigs[0], *sigs[2:]])
    error = reverted_with("SignersNotSorted", cons.submit, replace(call, signatures=swapped))
    assert error.error_args == {"position": 1}
    twice = b"".join([sigs[0], *sigs])
    error = reverted_with("SignersNotSorted", cons.submit, replace(call, signatures=twice))
    assert error.error_args == {"position": 1}
    error = reverted_with("AggregatorDidNotSign", cons.submit, replace(call, signatures=b""))
    assert error.error_args == {"cluster": 0, "aggregator": 0}


def _bad_signature(cons: Consortium, call: FinalizeCall, slot: int, signature: bytes) -> None:
    """Put ``signature`` in place of signer ``slot``'s; the contract must name that signer."""
    sigs = _signatures(call)
    sigs[slot] = slot.to_bytes(2, "big") + signature
    bent = replace(call, signatures=b"".join(sigs))
    assert reverted_with("BadSignature", cons.submit, bent).error_args == {"signer": slot}


def test_signatures_must_come_from_the_signer_over_this_round(cons: Consortium) -> None:
    plan = cons.build_round(SCORES)
    call = plan.call()

    by_other_key = sign_round(cons.admitted[7].key, 2, plan.digest)
    _bad_signature(cons, call, 2, by_other_key.signature)
    other_round = cons.build_round(SCORES, final_hash=keccak("another global model"))
    _bad_signature(cons, call, 2, other_round.signatures[2].signature)
    zero_v = plan.signatures[2].signature[:64] + b"\x00"
    _bad_signature(cons, call, 2, zero_v)


def _ecrecover(cons: Consortium, digest: bytes, signature: bytes) -> str:
    """The EVM's ecrecover precompile, asked directly."""
    r, s, v = signature[:32], signature[32:64], signature[64]
    data = digest + v.to_bytes(32, "big") + r + s
    with cons.chain.lock:
        out = bytes(cons.chain.w3.eth.call({"to": "0x" + "00" * 19 + "01", "data": data}))
    return to_checksum_address(out[12:])


def test_a_high_s_signature_is_refused_though_it_recovers_the_signer(cons: Consortium) -> None:
    plan = cons.build_round(SCORES)
    original = plan.signatures[2].signature
    s = int.from_bytes(original[32:64], "big")
    malleated = original[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - original[64]])

    assert original[64] in (27, 28)
    assert _ecrecover(cons, plan.digest, original) == cons.admitted[2].account
    assert _ecrecover(cons, plan.digest, malleated) == cons.admitted[2].account
    _bad_signature(cons, plan.call(), 2, malleated)


def test_every_cluster_aggregator_signs(cons: Consortium) -> None:
    plan = cons.build_round(SCORES, signers=[0, 2, 3, 4, 5, 6])

    error = reverted_with("AggregatorDidNotSign", cons.submit, plan.call())

    assert error.error_args == {"cluster": 1, "aggregator": 1}


def test_a_quorum_of_hospitals_signs(cons: Consortium) -> None:
    short = cons.build_round(SCORES, signers=[0, 1, 2, 3, 4])

    error = reverted_with("QuorumNotReached", cons.submit, short.call())

    assert error.error_args == {"signatures": 5, "quorum": 6}
    cons.submit(cons.build_round(SCORES, signers=[0, 1, 2, 3, 4, 7]).call())


def test_signers_are_hospitals_of_the_table(cons: Consortium) -> None:
    plan = cons.build_round(SCORES)
    call = plan.call()
    auditor = sign_round(cons.admitted[AUDITOR].key, AUDITOR, plan.digest)
    error = reverted_with(
        "NotMember",
        cons.submit,
        replace(call, signatures=pack_signatures([*plan.signatures, auditor])),
    )
    assert error.error_args == {"account": cons.admitted[AUDITOR].account}
    stranger = RoundSignature(99, plan.signatures[0].signature)
    error = reverted_with(
        "UnknownMember",
        cons.submit,
        replace(call, signatures=pack_signatures([*plan.signatures, stranger])),
    )
    assert error.error_args == {"index": 99}

"""Consortium governance and membership on the real EVM.

The k-of-n proposals and every action they run (admit, remove, genesis, quorum, exclusion
threshold, reinstate, admin set) with each of their errors; registration; the packed member
table and its stored hash. The consortium (``cons``, see ``consortium_kit``) is deployed once
per module and rolled back after each test; expected values are worked out here by hand.
"""

from __future__ import annotations

import pytest
from chain_kit import reverted_with
from consortium_kit import (
    AUDITOR,
    CLUSTERS,
    GENESIS,
    HOSPITALS,
    Admission,
    Consortium,
    keccak,
    keccak_bytes,
    proposal_id,
)
from eth_utils import to_canonical_address, to_checksum_address

from incentive.consortium import (
    ACTION_ADMIT,
    ACTION_SET_ADMINS,
    ACTION_SET_EXCLUSION,
    ACTION_SET_QUORUM,
    ROLE_AUDITOR,
    ROLE_HOSPITAL,
    ConsortiumClient,
    deploy_consortium,
)

pytestmark = pytest.mark.integration

ZERO_ADDRESS = "0x" + "00" * 20


def table_entry(admission: Admission, active: bool = True, excluded: bool = False) -> bytes:
    """A member table entry, packed by hand: account | cluster u16 | role | active | excluded."""
    return (
        to_canonical_address(admission.account)
        + admission.cluster.to_bytes(2, "big")
        + bytes([admission.role, int(active), int(excluded)])
    )


def expected_table(
    cons: Consortium, removed: frozenset[int] = frozenset(), excluded: frozenset[int] = frozenset()
) -> bytes:
    return b"".join(
        table_entry(a, i not in removed, i in excluded) for i, a in enumerate(cons.admitted)
    )


# ---------------------------------------------------------------------------- governance


def test_a_proposal_runs_once_threshold_admins_approved(cons: Consortium) -> None:
    count = cons.view("proposalCount")

    proposed = cons.admins[0].propose_quorum(1, 2)

    pid = proposal_id(proposed)
    assert pid == count
    assert [e.event for e in proposed.events] == ["Proposed", "Approved"]
    assert proposed.named("Approved")[0].args["approvals"] == 1
    kind, executed, approvals, data = cons.view("proposal", pid)
    assert (kind, executed, approvals) == (ACTION_SET_QUORUM, False, 1)
    assert bytes(data) == (1).to_bytes(32, "big") + (2).to_bytes(32, "big")
    assert (cons.view("quorumNumerator"), cons.view("quorumDenominator")) == (2, 3)

    approved = cons.admins[2].approve(pid)

    assert [e.event for e in approved.events] == ["Approved", "QuorumSet", "Executed"]
    assert approved.named("Approved")[0].args == {
        "id": pid,
        "admin": cons.admins[2].account,
        "approvals": 2,
    }
    assert approved.named("Executed")[0].args == {"id": pid, "kind": ACTION_SET_QUORUM}
    assert tuple(cons.view("proposal", pid))[:3] == (ACTION_SET_QUORUM, True, 2)
    assert (cons.view("quorumNumerator"), cons.view("quorumDenominator")) == (1, 2)
    assert cons.outsider.quorum() == 4  # ceil(8 * 1 / 2)


def test_below_the_threshold_nothing_runs(cons: Consortium) -> None:
    outcome = cons.admins[1].propose_exclusion(7_000)

    assert "Executed" not in [e.event for e in outcome.events]
    assert cons.view("exclusionThreshold") == 6_000
    assert tuple(cons.view("proposal", proposal_id(outcome)))[:3] == (
        ACTION_SET_EXCLUSION,
        False,
        1,
    )


@pytest.mark.parametrize("who", ["outsider", "hospital", "auditor"])
def test_only_admins_propose_and_approve(cons: Consortium, who: str) -> None:
    client = {"outsider": cons.outsider, "hospital": cons.members[0]}.get(
        who, cons.members[AUDITOR]
    )
    pending = proposal_id(cons.admins[0].propose_quorum(1, 2))

    error = reverted_with("NotAdmin", client.propose_quorum, 1, 2)
    assert error.error_args == {"caller": client.account}
    error = reverted_with("NotAdmin", client.approve, pending)
    assert error.error_args == {"caller": client.account}


def test_an_admin_approves_once(cons: Consortium) -> None:
    admin = cons.admins[0]
    pid = proposal_id(admin.propose_quorum(1, 2))

    error = reverted_with("AlreadyApproved", admin.approve, pid)

    assert error.error_args == {"id": pid, "admin": admin.account}
    assert tuple(cons.view("proposal", pid))[:3] == (ACTION_SET_QUORUM, False, 1)


def test_an_executed_proposal_takes_no_more_approvals(cons: Consortium) -> None:
    executed = cons.govern(lambda a: a.propose_quorum(1, 2))
    pid = executed.named("Executed")[0].args["id"]

    for admin in cons.admins:  # the two who approved and the one who did not
        error = reverted_with("AlreadyExecuted", admin.approve, pid)
        assert error.error_args == {"id": pid}


def test_unknown_proposals_and_actions_are_refused(cons: Consortium) -> None:
    count = cons.view("proposalCount")

    assert reverted_with("UnknownProposal", cons.admins[0].approve, count).error_args == {
        "id": count
    }
    reverted_with("UnknownProposal", cons.view, "proposal", count)
    for kind in (0, ACTION_SET_ADMINS + 1, 255):
        error = reverted_with("UnknownAction", cons.admins[0].propose, kind, b"")
        assert error.error_args == {"kind": kind}
    assert cons.view("proposalCount") == count


def test_a_new_admin_set_makes_pending_proposals_stale(cons: Consortium) -> None:
    pending = proposal_id(cons.admins[0].propose_exclusion(7_000))
    newcomer = ConsortiumClient(cons.chain.w3, cons.address, cons.spare_keys[0], cons.chain.lock)
    new_set = [cons.admins[1].account, cons.admins[2].account, newcomer.account]

    outcome = cons.govern(lambda a: a.propose_admins(new_set, 2))

    (admins_set,) = outcome.named("AdminsSet")
    assert admins_set.args == {"admins": new_set, "threshold": 2, "generation": 2}
    assert cons.view("admins") == new_set
    assert (cons.view("threshold"), cons.view("adminGeneration")) == (2, 2)
    assert reverted_with("StaleProposal", cons.admins[1].approve, pending).error_args == {
        "id": pending
    }
    reverted_with("NotAdmin", cons.admins[0].propose_quorum, 1, 2)
    fresh = proposal_id(newcomer.propose_exclusion(7_000))
    cons.admins[2].approve(fresh)
    assert cons.view("exclusionThreshold") == 7_000


def _addresses(n: int) -> list[str]:
    return [to_checksum_address((i + 1).to_bytes(20, "big")) for i in range(n)]


@pytest.mark.parametrize(
    ("size", "threshold", "duplicate", "error"),
    [
        (0, 1, False, "BadAdminSet"),
        (2, 0, False, "BadAdminSet"),
        (2, 3, False, "BadAdminSet"),
        (3, 2, True, "BadAdminSet"),
        (249, 1, False, "BadAdminSet"),
    ],
)
def test_bad_admin_sets_are_refused_and_the_proposal_stays_pending(
    cons: Consortium, size: int, threshold: int, duplicate: bool, error: str
) -> None:
    admins = _addresses(size)
    if duplicate:
        admins[-1] = admins[0]
    pid = proposal_id(cons.admins[0].propose_admins(admins, threshold))

    reverted_with(error, cons.admins[1].approve, pid)

    # The failing action reverted the whole approving transaction: still one approval.
    assert tuple(cons.view("proposal", pid))[:3] == (ACTION_SET_ADMINS, False, 1)
    assert cons.view("admins") == [a.account for a in cons.admins]
    assert cons.view("adminGeneration") == 1


def test_an_admin_set_with_the_zero_address_is_refused(cons: Consortium) -> None:
    pid = proposal_id(cons.admins[0].propose_admins([cons.admins[0].account, ZERO_ADDRESS], 1))

    reverted_with("ZeroAddress", cons.admins[1].approve, pid)


@pytest.mark.parametrize(("size", "threshold"), [(0, 1), (2, 0), (2, 3), (249, 1)])
def test_deployment_refuses_bad_admin_sets(cons: Consortium, size: int, threshold: int) -> None:
    reverted_with(
        "BadAdminSet",
        deploy_consortium,
        cons.chain.w3,
        cons.spare_keys[0],
        _addresses(size),
        threshold,
        cons.chain.lock,
    )


def test_a_failing_action_reverts_the_transaction_that_would_run_it(cons: Consortium) -> None:
    pid = proposal_id(cons.admins[0].propose_quorum(0, 3))

    reverted_with("BadQuorum", cons.admins[1].approve, pid)
    reverted_with("BadQuorum", cons.admins[2].approve, pid)  # and every later try

    assert tuple(cons.view("proposal", pid))[:3] == (ACTION_SET_QUORUM, False, 1)
    # With threshold 1 the proposal runs inside `propose`, which then reverts as a whole.
    cons.govern(lambda a: a.propose_admins([a.account for a in cons.admins], 1))
    count = cons.view("proposalCount")
    reverted_with("BadQuorum", cons.admins[0].propose_quorum, 0, 3)
    assert cons.view("proposalCount") == count
    outcome = cons.admins[0].propose_quorum(1, 2)
    assert [e.event for e in outcome.events] == ["Proposed", "Approved", "QuorumSet", "Executed"]


def test_the_proposer_alone_withdraws_a_stuck_proposal(cons: Consortium) -> None:
    pid = proposal_id(cons.admins[0].propose_quorum(0, 3))
    reverted_with("BadQuorum", cons.admins[1].approve, pid)

    assert reverted_with("NotProposer", cons.admins[1].cancel, pid).error_args == {
        "id": pid,
        "caller": cons.admins[1].account,
    }
    assert [e.event for e in cons.admins[0].cancel(pid).events] == ["Cancelled"]
    reverted_with("AlreadyCancelled", cons.admins[1].approve, pid)
    reverted_with("AlreadyCancelled", cons.admins[0].cancel, pid)
    reverted_with("UnknownProposal", cons.admins[0].cancel, pid + 100)
    done = proposal_id(cons.admins[0].propose_quorum(1, 2))
    cons.admins[1].approve(done)
    reverted_with("AlreadyExecuted", cons.admins[0].cancel, done)


@pytest.mark.parametrize(("numerator", "denominator"), [(0, 3), (3, 0), (0, 0), (4, 3)])
def test_bad_quorums_are_refused(cons: Consortium, numerator: int, denominator: int) -> None:
    pid = proposal_id(cons.admins[0].propose_quorum(numerator, denominator))

    error = reverted_with("BadQuorum", cons.admins[1].approve, pid)

    assert error.error_args == {"numerator": numerator, "denominator": denominator}
    assert (cons.view("quorumNumerator"), cons.view("quorumDenominator")) == (2, 3)


@pytest.mark.parametrize(
    ("numerator", "denominator", "quorum"),
    [(2, 3, 6), (1, 2, 4), (3, 4, 6), (1, 1, 8), (5, 7, 6), (1, 8, 1), (1, 9, 1)],
)
def test_quorum_is_the_ceiling_of_the_voting_share(
    cons: Consortium, numerator: int, denominator: int, quorum: int
) -> None:
    if (numerator, denominator) != (2, 3):
        outcome = cons.govern(lambda a: a.propose_quorum(numerator, denominator))
        assert outcome.named("QuorumSet")[0].args == {
            "numerator": numerator,
            "denominator": denominator,
        }

    assert cons.view("votingHospitals") == 8
    assert cons.outsider.quorum() == quorum


@pytest.mark.parametrize("value", [0, 10_000])
def test_exclusion_threshold_accepts_zero_to_ten_thousand(cons: Consortium, value: int) -> None:
    outcome = cons.govern(lambda a: a.propose_exclusion(value))

    assert outcome.named("ExclusionThresholdSet")[0].args == {"threshold": value}
    assert cons.view("exclusionThreshold") == value


@pytest.mark.parametrize("value", [10_001, 65_535])
def test_exclusion_threshold_above_ten_thousand_is_refused(cons: Consortium, value: int) -> None:
    pid = proposal_id(cons.admins[0].propose_exclusion(value))

    assert reverted_with("BadThreshold", cons.admins[1].approve, pid).error_args == {
        "threshold": value
    }
    assert cons.view("exclusionThreshold") == 6_000


def test_genesis_is_set_once(cons: Consortium) -> None:
    for candidate in (keccak("another genesis"), bytes(32)):
        pid = proposal_id(cons.admins[0].propose_genesis(candidate))
        reverted_with("GenesisAlreadySet", cons.admins[1].approve, pid)

    assert bytes(cons.view("genesisHash")) == GENESIS


def test_genesis_is_never_zero(unstarted: Consortium) -> None:
    pid = proposal_id(unstarted.admins[0].propose_genesis(bytes(32)))

    reverted_with("ZeroHash", unstarted.admins[1].approve, pid)

    outcome = unstarted.govern(lambda a: a.propose_genesis(GENESIS))
    assert outcome.named("GenesisSet")[0].args == {"genesisHash": "0x" + GENESIS.hex()}
    assert bytes(unstarted.view("genesisHash")) == GENESIS
    assert unstarted.outsider.last_global_hash() == GENESIS


@pytest.mark.parametrize(
    ("account", "name", "cluster", "role", "error", "args"),
    [
        (ZERO_ADDRESS, "New", 0, ROLE_HOSPITAL, "ZeroAddress", {}),
        ("spare", "", 0, ROLE_HOSPITAL, "EmptyName", {}),
        ("spare", "New", 0, 0, "BadRole", {"role": 0}),
        ("spare", "New", 0, 3, "BadRole", {"role": 3}),
        ("hospital", "Again", 0, ROLE_HOSPITAL, "AlreadyMember", {"account": "hospital"}),
        ("auditor", "Again", 1, ROLE_HOSPITAL, "AlreadyMember", {"account": "auditor"}),
        ("spare", "New", 3, ROLE_HOSPITAL, "ClusterOutOfRange", {"cluster": 3, "clusterCount": 2}),
    ],
)
def test_admission_errors(
    cons: Consortium,
    account: str,
    name: str,
    cluster: int,
    role: int,
    error: str,
    args: dict[str, object],
) -> None:
    named = {
        "spare": ConsortiumClient(
            cons.chain.w3, cons.address, cons.spare_keys[0], cons.chain.lock
        ).account,
        "hospital": cons.admitted[3].account,
        "auditor": cons.admitted[AUDITOR].account,
    }
    account = named.get(account, account)
    pid = proposal_id(cons.admins[0].propose_admit(account, name, cluster, role))

    caught = reverted_with(error, cons.admins[1].approve, pid)

    assert caught.error_args == {k: named.get(str(v), v) for k, v in args.items()}
    assert tuple(cons.view("proposal", pid))[:3] == (ACTION_ADMIT, False, 1)
    assert cons.view("memberCount") == 9


def test_admitting_to_the_next_cluster_number_opens_it(cons: Consortium) -> None:
    newcomer = cons.admit(cons.spare_keys[0], "New Hospital", 2)
    auditor = cons.admit(cons.spare_keys[1], "New Auditor", 7, ROLE_AUDITOR)

    assert cons.view("clusterCount") == 3  # an auditor's cluster number opens nothing
    assert cons.view("votingHospitals") == 9
    assert cons.outsider.index_of(newcomer.account) == 9
    assert cons.outsider.member(10).account == auditor.account
    assert cons.outsider.member(9).cluster == 2


def test_removal_and_reinstatement_need_an_active_member(cons: Consortium) -> None:
    outsider = cons.outsider.account
    pid = proposal_id(cons.admins[0].propose_remove(outsider))
    assert reverted_with("NotMember", cons.admins[1].approve, pid).error_args == {
        "account": outsider
    }
    pid = proposal_id(cons.admins[0].propose_reinstate(outsider))
    reverted_with("NotMember", cons.admins[1].approve, pid)

    removed = cons.admitted[3].account
    outcome = cons.govern(lambda a: a.propose_remove(removed))
    assert outcome.named("MemberRemoved")[0].args == {"index": 3, "account": removed}
    for propose in (ConsortiumClient.propose_remove, ConsortiumClient.propose_reinstate):
        pid = proposal_id(propose(cons.admins[0], removed))
        reverted_with("NotMember", cons.admins[1].approve, pid)


# ---------------------------------------------------------------------------- membership


def test_members_register_their_peer_id_and_addresses(cons: Consortium) -> None:
    hospital = cons.members[2]
    addresses = ["/ip4/10.0.0.2/tcp/4001", "/ip4/10.0.0.2/udp/4001/quic-v1"]

    outcome = hospital.register("12D3KooWHospital2", addresses)

    assert outcome.named("MemberRegistered")[0].args == {
        "index": 2,
        "peerId": "12D3KooWHospital2",
        "multiaddrs": "/ip4/10.0.0.2/tcp/4001,/ip4/10.0.0.2/udp/4001/quic-v1",
    }
    assert cons.view("peerIdOf", 2) == "12D3KooWHospital2"
    assert cons.view("multiaddrsOf", 2) == ",".join(addresses)
    cons.members[AUDITOR].register("12D3KooWAuditor", [])
    assert cons.view("peerIdOf", AUDITOR) == "12D3KooWAuditor"


def test_registration_errors(cons: Consortium) -> None:
    error = reverted_with("NotMember", cons.outsider.register, "12D3KooWOutsider", [])
    assert error.error_args == {"account": cons.outsider.account}
    reverted_with("EmptyPeerId", cons.members[0].register, "", ["/ip4/10.0.0.1/tcp/1"])

    cons.govern(lambda a: a.propose_remove(cons.admitted[0].account))

    error = reverted_with("NotMember", cons.members[0].register, "12D3KooWGone", [])
    assert error.error_args == {"account": cons.admitted[0].account}


def test_member_table_is_the_packed_entries_and_its_hash_is_stored(cons: Consortium) -> None:
    table = cons.outsider.member_table()

    assert len(table) == 25 * 9
    assert table == expected_table(cons)
    assert bytes(cons.view("membersHash")) == keccak_bytes(table)
    assert cons.outsider.member(AUDITOR).role == ROLE_AUDITOR
    assert [m.cluster for m in cons.outsider.members()][:8] == [CLUSTERS[i] for i in HOSPITALS]
    assert reverted_with("UnknownMember", cons.view, "member", 9).error_args == {"index": 9}


def test_members_hash_follows_admission_removal_exclusion_and_reinstatement(
    cons: Consortium,
) -> None:
    def check(removed: frozenset[int], excluded: frozenset[int]) -> None:
        table = expected_table(cons, removed, excluded)
        assert cons.outsider.member_table() == table
        assert bytes(cons.view("membersHash")) == keccak_bytes(table)

    cons.admit(cons.spare_keys[0], "Hospital 9", 1)
    check(frozenset(), frozenset())
    cons.govern(lambda a: a.propose_remove(cons.admitted[3].account))
    check(frozenset({3}), frozenset())
    cons.exclude(5)
    check(frozenset({3}), frozenset({5}))
    outcome = cons.govern(lambda a: a.propose_reinstate(cons.admitted[5].account))
    assert outcome.named("MemberReinstated")[0].args == {"index": 5}
    check(frozenset({3}), frozenset())

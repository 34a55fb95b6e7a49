"""Registry on the real EVM: admission into clusters, registration, wiring, access rules."""

from __future__ import annotations

import pytest
from chain_kit import CLUSTERS, HOSPITALS, Federation, reverted_with

from incentive.deployment import Deployment
from incentive.errors import ContractReverted
from incentive.member_directory import MemberDirectory

pytestmark = pytest.mark.integration


def test_members_are_listed_in_admission_order_with_their_peer_info(fed: Federation) -> None:
    members = fed.admin.members()

    assert [m.address for m in members] == [c.address for c in fed.members]
    assert [m.name for m in members] == HOSPITALS
    assert [m.cluster for m in members] == CLUSTERS
    assert members[1].peer_id == "12D3KooWCharite"
    assert members[1].multiaddrs == ["/ip4/127.0.0.1/tcp/4000"]
    assert all(m.active for m in members)
    assert fed.admin.is_member(fed.members[2].address)
    assert not fed.admin.is_member(fed.outsider.address)


def test_clusters_list_their_members_in_admission_order(fed: Federation) -> None:
    assert fed.outsider.cluster_count() == 2
    assert fed.outsider.cluster_members(0) == [fed.members[0].address, fed.members[1].address]
    assert fed.outsider.cluster_members(1) == [fed.members[2].address, fed.members[3].address]
    assert fed.outsider.cluster_members(2) == []
    assert [fed.outsider.cluster_of(m.address) for m in fed.members] == CLUSTERS
    error = reverted_with("NotMember", fed.outsider.cluster_of, fed.outsider.address)
    assert error.error_args == {"caller": fed.outsider.address}


def test_admission_opens_the_next_cluster_but_cannot_skip_one(fed: Federation) -> None:
    error = reverted_with("ClusterOutOfRange", fed.admin.admit, fed.outsider.address, "Far", 3)
    assert error.error_args == {"cluster": 3, "clusterCount": 2}

    outcome = fed.admin.admit(fed.outsider.address, "Newcomer", 2)

    (admitted,) = outcome.named("MemberAdmitted")
    assert admitted.args == {"member": fed.outsider.address, "name": "Newcomer", "cluster": 2}
    assert fed.outsider.cluster_count() == 3
    assert fed.outsider.member_info(fed.outsider.address).cluster == 2
    assert fed.outsider.cluster_members(2) == [fed.outsider.address]


def test_admit_defaults_to_cluster_0(fed: Federation) -> None:
    fed.admin.admit(fed.outsider.address, "Newcomer")

    assert fed.outsider.cluster_members(0)[-1] == fed.outsider.address
    assert fed.outsider.cluster_count() == 2


def test_register_updates_peer_id_and_addresses(fed: Federation) -> None:
    member = fed.members[0]

    outcome = member.register("12D3KooWnew", ["/ip4/10.0.0.1/tcp/1", "/dns4/a.example/tcp/2"])

    info = fed.admin.members()[0]
    assert (info.peer_id, info.multiaddrs) == (
        "12D3KooWnew",
        ["/ip4/10.0.0.1/tcp/1", "/dns4/a.example/tcp/2"],
    )
    (event,) = outcome.named("MemberRegistered")
    assert event.args == {
        "member": member.address,
        "peerId": "12D3KooWnew",
        "multiaddrs": "/ip4/10.0.0.1/tcp/1,/dns4/a.example/tcp/2",
    }


def test_only_the_admin_admits(fed: Federation) -> None:
    intruder = fed.members[0]
    with pytest.raises(ContractReverted) as caught:
        intruder._transact("Registry", "admit", fed.outsider.address, "Rogue", 0)
    assert caught.value.error_name == "NotAdmin"
    assert "NotAdmin" in str(caught.value)


@pytest.mark.parametrize(
    ("which", "name", "error"),
    [("member0", "Again", "AlreadyMember"), ("outsider", "", "EmptyName")],
)
def test_admit_rejects_duplicates_and_empty_names(
    fed: Federation, which: str, name: str, error: str
) -> None:
    address = fed.members[0].address if which == "member0" else fed.outsider.address
    with pytest.raises(ContractReverted) as caught:
        fed.admin.admit(address, name)
    assert caught.value.error_name == error


def test_admit_rejects_the_zero_address(fed: Federation) -> None:
    with pytest.raises(ContractReverted) as caught:
        fed.admin.admit("0x" + "00" * 20, "Nobody")
    assert caught.value.error_name == "ZeroAddress"


def test_only_members_register_and_peer_id_is_required(fed: Federation) -> None:
    with pytest.raises(ContractReverted) as caught:
        fed.outsider.register("12D3KooWx", [])
    assert caught.value.error_name == "NotMember"
    with pytest.raises(ContractReverted) as caught:
        fed.members[0].register("", [])
    assert caught.value.error_name == "EmptyPeerId"


def test_contracts_are_wired_once_and_discoverable_from_the_registry(fed: Federation) -> None:
    found = Deployment.discover(fed.chain.w3, fed.deployment.registry, fed.chain.lock)

    assert (found.ledger, found.rewards, found.admin) == (
        fed.deployment.ledger,
        fed.deployment.rewards,
        fed.deployment.admin,
    )
    assert found.registry_block == fed.deployment.registry_block
    with pytest.raises(ContractReverted) as caught:
        fed.admin._transact(
            "Registry", "setContracts", fed.deployment.ledger, fed.deployment.rewards
        )
    assert caught.value.error_name == "ContractsAlreadySet"


def test_member_at_out_of_range_names_the_error(fed: Federation) -> None:
    with pytest.raises(ContractReverted) as caught:
        fed.admin._call("Registry", "memberAt", 4)
    assert caught.value.error_name == "IndexOutOfRange"
    assert caught.value.error_args == {"index": 4, "count": 4}


def test_member_directory_follows_admissions_and_registrations(fed: Federation) -> None:
    directory = MemberDirectory(fed.outsider)
    assert directory.members() == fed.admin.members()

    fed.admin.fund_rewards(10**15)  # a block without a Registry event: no full read
    assert directory.members() == fed.admin.members()
    assert directory.full_reads == 1

    fed.members[0].register("12D3KooWmoved", ["/ip4/10.0.0.9/tcp/9"])
    moved = directory.members()
    assert (moved[0].peer_id, moved[0].multiaddrs) == ("12D3KooWmoved", ["/ip4/10.0.0.9/tcp/9"])
    fed.admin.admit(fed.outsider.address, "Newcomer", 1)
    assert directory.members() == fed.admin.members()
    assert directory.members()[-1].name == "Newcomer"
    assert directory.full_reads == 3

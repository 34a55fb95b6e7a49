"""Gas per hospital per round: the Consortium's one-transaction round against the Ledger's.

Both federations run on one in-process EVM (py-evm; anvil charges the same gas) with the same
hospitals, clusters and rounds. The Consortium path (``contracts/Consortium.sol``) submits each
round once: every cluster's records (Merkle-committed on chain) and the EIP-712 signatures of a
quorum, collected off chain. The baseline is the Ledger path the nodes use today
(``contracts/Ledger.sol``): one ``recordCluster`` per cluster and one ``attest`` per hospital.
Gas per hospital per round is a path's total round gas over ``hospitals * rounds``; set-up
(deployment, admission, genesis) is reported apart. Each round (Consortium and Ledger) records
the privacy budget a federation with differential privacy would (``DP_NOISE``, ``DP_DELTA``:
epsilon 8 after 20 rounds, docs/privacy.md), so its calldata holds realistic figures.
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import asdict, dataclass

from incentive.candidates import aggregator_candidates
from incentive.chain import EmbeddedChain
from incentive.clients import AdminClient, MemberClient
from incentive.consortium import ConsortiumClient, deploy_consortium, sign_and_finalize
from incentive.deploy import deploy_federation
from incentive.privacy_budget import PrivacyBudget
from incentive.records import MemberRecord
from incentive.round_commit import ClusterCommit, Record
from node.accountant import RdpAccountant

DP_NOISE, DP_DELTA = 2.85, 1e-5


@dataclass(frozen=True)
class GasResult:
    hospitals: int
    clusters: int
    rounds: int
    gas_per_hospital_round: float
    round_gas: list[int]
    baseline_gas_per_hospital_round: float
    baseline_round_gas: list[int]
    ratio_to_baseline: float
    quorum: int
    setup_gas: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _clusters_of(hospitals: int, clusters: int) -> list[int]:
    """Hospital i goes to cluster i % clusters."""
    if clusters < 1 or hospitals < clusters:
        raise ValueError("need at least one cluster and one hospital per cluster")
    return [i % clusters for i in range(hospitals)]


def _budget(round_number: int) -> PrivacyBudget:
    """The privacy budget after ``round_number`` rounds at ``DP_NOISE``, ``DP_DELTA``."""
    epsilon = RdpAccountant(DP_NOISE).step(round_number).epsilon(DP_DELTA)
    return PrivacyBudget.from_spent(epsilon, DP_DELTA)


def _score(round_number: int, hospital: int) -> int:
    return 1_000 + 37 * hospital + round_number


def measure_consortium(hospitals: int, clusters: int, rounds: int) -> tuple[list[int], int, int]:
    """Gas of each round's ``finalizeRound``, the set-up gas and the quorum."""
    chain = EmbeddedChain(num_accounts=hospitals + 1)
    keys = chain.private_keys
    admin_address = chain.accounts[0].address
    address, deployed = deploy_consortium(chain.w3, keys[0], [admin_address], 1, chain.lock)
    admin = ConsortiumClient(chain.w3, address, keys[0], chain.lock)
    groups = _clusters_of(hospitals, clusters)
    setup = deployed.gas_used
    for i, cluster in enumerate(groups):
        setup += admin.propose_admit(chain.accounts[i + 1].address, f"H{i}", cluster).gas_used
    genesis = _digest("genesis")
    setup += admin.propose_genesis(genesis).gas_used
    submitter = ConsortiumClient(chain.w3, address, keys[1], chain.lock)
    accounts = {i: chain.accounts[i + 1].address for i in range(hospitals)}
    quorum = submitter.quorum()
    previous, gas = genesis, []
    for r in range(1, rounds + 1):
        commits = []
        for c in range(clusters):
            members = [i for i in range(hospitals) if groups[i] == c]
            records = tuple(
                Record(i, _digest(f"update {r} {i}"), 100 + i, _score(r, i)) for i in members
            )
            commits.append(ClusterCommit(c, members[0], _digest(f"aggregate {r} {c}"), records))
        global_hash = _digest(f"global {r}")
        aggregators = {c.aggregator for c in commits}
        others = [i for i in range(hospitals) if i not in aggregators]
        signers = sorted(aggregators | set(others[: max(0, quorum - len(aggregators))]))
        outcome = sign_and_finalize(
            submitter,
            r,
            previous,
            global_hash,
            commits,
            {i: keys[i + 1] for i in signers},
            accounts,
            _budget(r),
        )
        gas.append(outcome.gas_used)
        previous = global_hash
    return gas, setup, quorum


def measure_ledger(hospitals: int, clusters: int, rounds: int) -> list[int]:
    """Gas of each round on the Ledger: every cluster record plus every hospital's attest."""
    chain = EmbeddedChain(num_accounts=hospitals + 1)
    keys = chain.private_keys
    deployment = deploy_federation(chain.w3, keys[0], chain.lock)
    admin = AdminClient(chain.w3, deployment, keys[0], chain.lock)
    members = [MemberClient(chain.w3, deployment, k, chain.lock) for k in keys[1 : hospitals + 1]]
    groups = _clusters_of(hospitals, clusters)
    for i, (member, cluster) in enumerate(zip(members, groups, strict=True)):
        admin.admit(member.address, f"H{i}", cluster)
    previous = _digest("genesis").hex()
    admin.set_genesis(previous)
    by_address = {m.address: (i, m) for i, m in enumerate(members)}
    gas = []
    for r in range(1, rounds + 1):
        total = 0
        for c in range(clusters):
            in_cluster = {a: v for a, v in by_address.items() if groups[v[0]] == c}
            first = aggregator_candidates(r, c, list(in_cluster))[0]
            records = [
                MemberRecord(a, _digest(f"update {r} {i}").hex(), 100 + i, _score(r, i))
                for a, (i, _) in in_cluster.items()
            ]
            aggregate = _digest(f"aggregate {r} {c}").hex()
            total += (
                in_cluster[first][1].record_cluster(r, c, aggregate, previous, records).gas_used
            )
        global_hash = _digest(f"global {r}").hex()
        for member in members:  # every node attests, as the round loop does
            total += member.attest(r, global_hash, _budget(r)).gas_used
        gas.append(total)
        previous = global_hash
    return gas


def measure_gas(hospitals: int = 8, clusters: int = 2, rounds: int = 10) -> GasResult:
    """Run both paths with the same federation and compare their gas per hospital and round."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    gas, setup, quorum = measure_consortium(hospitals, clusters, rounds)
    baseline = measure_ledger(hospitals, clusters, rounds)
    per = sum(gas) / (hospitals * rounds)
    base = sum(baseline) / (hospitals * rounds)
    return GasResult(
        hospitals=hospitals,
        clusters=clusters,
        rounds=rounds,
        gas_per_hospital_round=round(per, 1),
        round_gas=gas,
        baseline_gas_per_hospital_round=round(base, 1),
        baseline_round_gas=baseline,
        ratio_to_baseline=round(per / base, 3),
        quorum=quorum,
        setup_gas=setup,
    )


def steady_round_gas(result: GasResult) -> float:
    """Median gas of rounds 2.. (round 1 opens the contribution slots)."""
    return statistics.median(result.round_gas[1:] or result.round_gas)

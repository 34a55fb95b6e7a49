"""A Consortium on the real in-process EVM, and rounds played through it with real signatures."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from incentive.chain import EmbeddedChain
from incentive.consortium import ConsortiumClient, deploy_consortium, sign_and_finalize
from incentive.round_commit import ClusterCommit, Record

CLUSTERS = (0, 0, 1, 1)
ETH = 10**18


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


@dataclass
class Consortium:
    chain: EmbeddedChain
    address: str
    admin: ConsortiumClient
    hospitals: list[ConsortiumClient]
    keys: list[str]  # of the hospitals
    accounts: dict[int, str]  # member index -> account
    clusters: tuple[int, ...] = CLUSTERS  # by member index
    round: int = 0
    previous: bytes = digest("genesis")

    def play(
        self, scores: Sequence[int], rejected: Sequence[int] = (), absent: Sequence[int] = ()
    ) -> None:
        """One round in which hospital i scores ``scores[i]``: a record of every hospital but
        the ``absent`` ones; ``rejected`` records are flagged; neither kind signs."""
        self.round += 1
        r = self.round
        commits = []
        for c in sorted(set(self.clusters)):
            members = [i for i, k in enumerate(self.clusters) if k == c and i not in absent]
            records = tuple(
                Record(i, digest(f"u{r}{i}"), 10, scores[i], rejected=i in rejected)
                for i in members
            )
            aggregator = next(i for i in members if i not in rejected)
            commits.append(ClusterCommit(c, aggregator, digest(f"a{r}{c}"), records))
        global_hash = digest(f"g{r}")
        signers = {
            i: key for i, key in enumerate(self.keys) if i not in rejected and i not in absent
        }
        sign_and_finalize(
            self.hospitals[0], r, self.previous, global_hash, commits, signers, self.accounts
        )
        self.previous = global_hash


def start_consortium(chain: EmbeddedChain, clusters: Sequence[int] = CLUSTERS) -> Consortium:
    """Deploy from key 0 (the only admin, threshold 1), admit keys 1..n, set the genesis."""
    keys = chain.private_keys
    address, _ = deploy_consortium(chain.w3, keys[0], [chain.accounts[0].address], 1, chain.lock)
    admin = ConsortiumClient(chain.w3, address, keys[0], chain.lock)
    for i, cluster in enumerate(clusters):
        admin.propose_admit(chain.accounts[i + 1].address, f"H{i}", cluster)
    admin.propose_genesis(digest("genesis"))
    n = len(clusters)
    return Consortium(
        chain,
        address,
        admin,
        [ConsortiumClient(chain.w3, address, k, chain.lock) for k in keys[1 : n + 1]],
        list(keys[1 : n + 1]),
        {i: chain.accounts[i + 1].address for i in range(n)},
        tuple(clusters),
    )

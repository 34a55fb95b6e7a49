"""Time a full audit of a 50-round, 8-hospital Consortium history against anvil.

    python bench/audit_consortium.py [--rounds 50] [--hospitals 8] [--epoch-every 10] [--json]

Starts anvil (from node_modules), deploys a Consortium and an EpochRewards pool, plays the
rounds with real signatures (2 clusters, one hospital rejected now and then), closes an epoch
every EPOCH_EVERY rounds, then times ``read_and_audit``: every event fetched over JSON-RPC,
every Merkle root, proof, commitment hash, contribution, reputation and payout recomputed and
compared with the contracts. Prints the seconds and whether every check passed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import threading
import time
from pathlib import Path

from incentive.chain import connect_rpc
from incentive.consortium import ConsortiumClient, deploy_consortium, sign_and_finalize
from incentive.consortium_audit import read_and_audit
from incentive.epoch_rewards import RewardsClient, deploy_rewards
from incentive.round_commit import ClusterCommit, Record
from testnet.anvil import AnvilChain, AnvilConfig


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--hospitals", type=int, default=8)
    parser.add_argument("--epoch-every", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, AnvilChain(AnvilConfig(Path(tmp))) as chain:
        w3 = connect_rpc(chain.url)
        lock = threading.Lock()
        keys = chain.private_keys(args.hospitals + 2)
        accounts = [ConsortiumClient.account_of(k) for k in keys]
        address, _ = deploy_consortium(w3, keys[0], [accounts[0]], 1, lock)
        admin = ConsortiumClient(w3, address, keys[0], lock)
        clusters = [i % 2 for i in range(args.hospitals)]
        for i, cluster in enumerate(clusters):
            admin.propose_admit(accounts[i + 1], f"H{i}", cluster)
        admin.propose_genesis(_digest("genesis"))
        rewards = deploy_rewards(w3, keys[0], address, None, lock)
        pool = RewardsClient(w3, rewards, keys[-1], lock)
        submitter = ConsortiumClient(w3, address, keys[1], lock)
        members = {i: accounts[i + 1] for i in range(args.hospitals)}
        previous = _digest("genesis")
        started = time.perf_counter()
        for r in range(1, args.rounds + 1):
            rejected = r % 7 == 0 and args.hospitals > 2  # the last hospital, now and then
            commits = []
            for c in (0, 1):
                ids = [i for i in range(args.hospitals) if clusters[i] == c]
                records = tuple(
                    Record(
                        i,
                        _digest(f"u{r} {i}"),
                        100 + i,
                        1_000 + i,
                        rejected=rejected and i == args.hospitals - 1,
                    )
                    for i in ids
                )
                commits.append(ClusterCommit(c, ids[0], _digest(f"a{r} {c}"), records))
            global_hash = _digest(f"g{r}")
            signers = {i: keys[i + 1] for i in range(args.hospitals)}
            sign_and_finalize(submitter, r, previous, global_hash, commits, signers, members)
            previous = global_hash
            if r % args.epoch_every == 0:
                pool.fund(10**18)
                pool.distribute()
        play_seconds = time.perf_counter() - started
        started = time.perf_counter()
        audit = read_and_audit(w3, address, rewards)
        seconds = time.perf_counter() - started
    result = {
        "rounds": args.rounds,
        "hospitals": args.hospitals,
        "epochs": len(audit.epochs),
        "audit_seconds": round(seconds, 3),
        "ok": audit.ok,
        "problems": audit.problems,
        "records": sum(len(c.records) for r in audit.rounds for c in r.clusters),
        "play_seconds": round(play_seconds, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"audited {result['rounds']} rounds of {result['hospitals']} hospitals "
            f"({result['records']} records, {result['epochs']} epochs) against anvil in "
            f"{result['audit_seconds']:.2f} s: {'every check passed' if audit.ok else 'PROBLEMS'}"
        )


if __name__ == "__main__":
    main()

"""How much the real network and chain cost per round, against the same learning in memory.

Runs Fed-Heart-Disease FedAvg twice in this process with the same seed: once as the in-memory
simulation (the baseline: training and averaging only) and once as a real federation (4 libp2p
hosts, embedded EVM, signed announcements, blob transfer, on-chain records). Prints seconds per
round for both, their ratio, whether both reached the same global model, and the peak RSS.

    python bench/federation_round.py [--rounds 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
import trio

from node.config import MedswarmConfig, with_overrides
from node.data import load_all_sites, resolve_data_dir
from node.simulate import fedavg_round, initial_weights
from node.weights import weights_hash
from testnet.local import LocalRun, run_local_federation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data_dir = resolve_data_dir(args.data_dir, os.environ)
    config = with_overrides(MedswarmConfig(), rounds=args.rounds)

    with tempfile.TemporaryDirectory() as out:
        run = LocalRun(config=config, nodes=4, data_dir=data_dir, out_dir=Path(out))
        started = time.perf_counter()
        summary = trio.run(run_local_federation, run)
        network_seconds = time.perf_counter() - started

    # in the order the aggregator sums the updates, its members' addresses (float32 sums
    # depend on the order)
    address = {h.site: h.address.lower() for h in summary.hospitals}
    sites = sorted(load_all_sites("heart-disease", data_dir), key=lambda s: address[s.site])
    started = time.perf_counter()
    weights = initial_weights(sites, config.federation.seed)
    for index in range(args.rounds):
        weights = fedavg_round(weights, sites, config.training, config.federation.seed, index)
    memory_seconds = time.perf_counter() - started

    result = {
        "rounds": args.rounds,
        "in_memory_seconds_per_round": memory_seconds / args.rounds,
        "federation_seconds_per_round": network_seconds / args.rounds,
        "ratio": network_seconds / memory_seconds,
        "same_global_model": summary.final_global_hash == weights_hash(weights),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"in-memory FedAvg   {result['in_memory_seconds_per_round']:.3f} s/round (baseline)")
        print(
            f"real federation    {result['federation_seconds_per_round']:.3f} s/round "
            f"({result['ratio']:.1f}x the baseline, includes start-up, chain and rewards)"
        )
        print(f"same global model  {result['same_global_model']}")
        print(f"peak RSS           {result['peak_rss_mb']:.0f} MB (whole process, 4 nodes)")
    return 0 if result["same_global_model"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

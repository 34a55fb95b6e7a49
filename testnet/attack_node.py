"""A hostile node process for scenarios: ``python -m testnet.attack_node ATTACK --config F``.

The testnet starts it instead of ``medswarm node run`` for a scenario node with ``attack = ...``
(testnet/scenario.py). It is the same node process with the misbehaviour of
:mod:`testnet.attacks` put in before it starts; nothing of it ships in a hospital's node.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import trio

from node.config import load_config
from node.process import release_large_allocations, run_node_process
from testnet.attacks import ATTACKS, flip_labels, inject


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("attack", choices=ATTACKS)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    torch.set_num_threads(1)
    release_large_allocations()
    attack: str = args.attack
    return trio.run(
        run_node_process,
        config,
        args.config.resolve().parent,
        flip_labels if attack == "label-flip" else None,
        lambda node: inject(node, attack, config.federation.seed),
    )


if __name__ == "__main__":
    sys.exit(main())

"""A hostile node process for scenarios: ``python -m testnet.attack_node [-v] ATTACK --config F``.

The testnet starts it instead of ``medswarm node run`` for a scenario node with ``attack = ...``
(testnet/scenario.py). It is the same node process, keys, passphrase and error reporting
included, with the misbehaviour of :mod:`testnet.attacks` put in before it starts; nothing of
it ships in a hospital's node. An ``outsider``, never admitted, trespasses
(:func:`testnet.attacks.trespass`) instead of taking part in rounds and exits once the last
round is final.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import trio

from medswarm.cli import configure_logging, run_reporting_errors
from node.config import load_config
from node.errors import ConfigError
from node.hospital import HospitalNode
from node.passphrase import node_passphrase
from node.process import release_large_allocations, run_node_process
from testnet.attacks import ATTACKS, OUTSIDER, flip_labels, inject, longest_run_seconds, trespass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("attack", choices=ATTACKS)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    return run_reporting_errors(lambda: run(args.attack, args.config))


def run(attack: str, config_file: Path) -> int:
    if not config_file.exists():
        raise ConfigError(f"config file {config_file} does not exist")
    config = load_config(config_file)
    base_dir = config_file.resolve().parent
    passphrase = node_passphrase(config.node.passphrase_file, base_dir, os.environ)
    torch.set_num_threads(1)
    release_large_allocations()
    seed = config.federation.seed

    async def trespass_until_done(node: HospitalNode) -> None:
        rounds = config.federation.rounds
        await trespass(node, rounds, longest_run_seconds(config), seed=seed)

    return trio.run(
        run_node_process,
        config,
        base_dir,
        passphrase,
        flip_labels if attack == "label-flip" else None,
        lambda node: inject(node, attack, seed),
        trespass_until_done if attack == OUTSIDER else None,
    )


if __name__ == "__main__":
    sys.exit(main())
